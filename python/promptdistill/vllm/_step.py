# SPDX-License-Identifier: Apache-2.0
"""What the model needs to know about a step that vLLM does not pass to ``model.forward``: which
request each span of tokens belongs to, its prompt length, how many of its tokens are already in
the cache, and its row of the block table.

vLLM's model runner holds all of it (its persistent ``input_batch``, in the order the tokens are
flattened). The plugin wraps ``GPUModelRunner._model_forward`` (the CPU runner inherits it; vLLM
documents it as the method to override for model execution) so that, while the model runs, the
current step's ``StepInfo`` is available through ``current()``. Calls that do not come through it
(the start-up profile and warm-up runs) see ``None`` and run the stock forward.
"""

import contextlib
import dataclasses
import threading

import numpy as np

_local = threading.local()
_installed = False


@dataclasses.dataclass
class StepInfo:
    req_ids: list  # in the order of the flattened tokens
    num_prompt: np.ndarray  # prompt tokens per request
    num_computed: np.ndarray  # tokens already in the cache before this step
    query_start: np.ndarray  # [R + 1]: where each request's tokens start in the step
    block_table: np.ndarray  # [R, max_blocks] int32, the worker's copy (host)
    block_size: int
    live_req_ids: set  # every request the runner holds (scheduled in this step or not)
    builder: object  # the attention metadata builder of the model's (single) KV cache group

    @property
    def num_reqs(self):
        return len(self.req_ids)

    @property
    def num_scheduled(self):
        return np.diff(self.query_start)


def current():
    """The StepInfo of the forward that is running, or None outside ``_model_forward``."""
    return getattr(_local, "step", None)


def _step_of(runner):
    batch = runner.input_batch
    n = batch.num_reqs
    tables = batch.block_table.block_tables
    if len(tables) != 1 or len(runner.attn_groups) != 1 or len(runner.attn_groups[0]) != 1:
        raise RuntimeError("promptdistill: the model must have exactly one KV cache group and one attention group, got "
                           f"{len(tables)} and {[len(g) for g in runner.attn_groups]}")
    return StepInfo(req_ids=list(batch.req_ids[:n]),
                    num_prompt=np.array(batch.num_prompt_tokens[:n], dtype=np.int64),
                    num_computed=np.array(batch.num_computed_tokens_cpu[:n], dtype=np.int64),
                    query_start=runner.query_start_loc.cpu[:n + 1].numpy().astype(np.int64),
                    block_table=tables[0].get_numpy_array()[:n].copy(),
                    block_size=int(tables[0].block_size),
                    live_req_ids=set(runner.requests),
                    builder=runner.attn_groups[0][0].get_metadata_builder())


def install():
    """Wraps ``GPUModelRunner._model_forward`` once per process (vLLM may load plugins more than
    once). Models that are not the plugin's see no difference."""
    global _installed
    if _installed:
        return
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    forward = GPUModelRunner._model_forward

    def _model_forward(self, *args, **kwargs):
        if not getattr(self.model, "promptdistill_model", False):
            return forward(self, *args, **kwargs)
        with _active(_step_of(self)):
            return forward(self, *args, **kwargs)

    _model_forward.__wrapped__ = forward
    GPUModelRunner._model_forward = _model_forward
    _installed = True


@contextlib.contextmanager
def _active(step):
    _local.step = step
    try:
        yield step
    finally:
        _local.step = None
