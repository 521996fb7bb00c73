# SPDX-License-Identifier: Apache-2.0
"""KV block accounting: the plugin's KV cache spec and the scheduler-side manager that frees the
blocks of dropped tokens.

vLLM's KV manager gives a request blocks for all L + t of its tokens, shared by every layer of the
group. After a PromptDistill prefill each layer keeps at most n_max = max(cache lengths) prompt
tokens, stored at logical slots [s, s + n) with s = the largest block boundary <= L - n_max
(``_plan.Layout.kv_start``), and decodes right after them. The blocks before s are read by no layer
again. The manager frees them the way vLLM's sliding-window manager frees blocks outside its
window: it replaces them with the null block in the request's list (``_remove_blocks_in_range``),
so block indices stay aligned with the worker's block table, which only ever grows at its end.

What this cannot free: the blocks of tokens dropped *after* s (less than one block, at the end of
the range vLLM allocated), and nothing when some layer keeps the whole prompt (cache_truncation_end
0: layers up to the selection layer hold all L tokens).
"""

import collections
import dataclasses
import json

from vllm.logger import init_logger
from vllm.v1.core.single_type_kv_cache_manager import FullAttentionManager
from vllm.v1.kv_cache_interface import FullAttentionSpec
from vllm.v1.kv_cache_spec_registry import KVCacheSpecRegistry

from . import _plan

logger = init_logger(__name__)

# Requests whose block accounting stays readable (``promptdistill.vllm.kv_blocks``).
_REPORTED = 4096


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptDistillAttentionSpec(FullAttentionSpec):
    """A full-attention spec that carries the plugin's configuration (JSON: config, num_layers,
    max_positions) to the scheduler, where the KV manager is built from the spec alone."""

    promptdistill: str = ""

    @classmethod
    def from_full(cls, spec, config_json):
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.init}
        return cls(**fields, promptdistill=config_json)

    @classmethod
    def merge(cls, specs):
        merged = super().merge(specs)
        configs = {s.promptdistill for s in specs}
        if len(configs) != 1:
            raise ValueError("promptdistill: the layers of one KV cache group carry different configurations")
        return dataclasses.replace(merged, promptdistill=configs.pop())


class PromptDistillKVManager(FullAttentionManager):
    """FullAttentionManager that, once a request's prefill is processed, frees its blocks before
    the start of the compacted caches."""

    def __init__(self, kv_cache_spec, **kwargs):
        super().__init__(kv_cache_spec, **kwargs)
        info = json.loads(kv_cache_spec.promptdistill)
        self.layout = _plan.read_plan(info["config"], info["num_layers"], info["max_positions"])
        self.report = collections.OrderedDict()  # request id -> (blocks held, blocks freed) after its prefill

    def remove_skipped_blocks(self, request_id, processed_computed_tokens, num_prompt_tokens=None):
        super().remove_skipped_blocks(request_id, processed_computed_tokens, num_prompt_tokens)
        if num_prompt_tokens is None or processed_computed_tokens < num_prompt_tokens:
            return  # the prefill has not run yet: every block may still be read
        blocks = self.req_to_blocks.get(request_id)
        if not blocks:
            return
        skip = self.layout.kv_start(num_prompt_tokens, self.block_size) // self.block_size
        if skip and not blocks[skip - 1].is_null:
            self._remove_blocks_in_range(request_id, 0, skip)
            held = sum(not b.is_null for b in blocks)
            self.report[request_id] = (held, skip)
            if len(self.report) > _REPORTED:
                self.report.popitem(last=False)
            logger.debug("promptdistill: request %s holds %d blocks after freeing %d of dropped tokens", request_id, held,
                         skip)
        elif request_id not in self.report:
            self.report[request_id] = (sum(not b.is_null for b in blocks), 0)


def register():
    """Registers the spec with its manager. vLLM registers its built-in specs only when the
    registry is still empty, so they are registered first."""
    KVCacheSpecRegistry._ensure_registered()
    KVCacheSpecRegistry.register(PromptDistillAttentionSpec, PromptDistillKVManager, uniform_type_base_spec=FullAttentionSpec)
