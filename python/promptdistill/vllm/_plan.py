# SPDX-License-Identifier: Apache-2.0
"""The plugin's configuration (the ``promptdistill`` entry of ``hf_overrides``) and what the
library's plan of it means for vLLM's caches.

The configuration is a ``promptdistill.PipelineConfig`` (``pipeline_config``: unset settings are
the published defaults of the method) and the prefill runs ``promptdistill.plan`` of it, the C++
``plan_pipeline``: its stages (layer, selection, whether it truncates the caches below it) and
their kept counts (``kept_tokens``). Nothing here re-derives a rule of the pipelines; the per-layer
row counts and cache lengths below follow from the plan's stages as the C++ pipelines lay their
caches out (algorithms.md §3).
"""

import json

from .. import _core
from .._errors import Error
from .._pipeline import pipeline_config, plan

#: The methods the plugin runs (SnapKV and H2O compress every layer's cache after its forward:
#: not in vLLM).
METHODS = ("full", "promptdistill", "gemfilter")
#: The settings engine_kwargs writes into hf_overrides (the others do not apply to these methods).
WRITTEN = ("method", "selection_layers", "n_topks", "cache_truncation_end", "pool", "pool_kernel")


def parse_config(value):
    """A ``PipelineConfig`` from the ``promptdistill`` entry of ``hf_overrides`` (a mapping, its JSON,
    or None for the published PromptDistill); ``promptdistill.Error`` for unknown settings, wrong
    types and the methods the plugin does not run."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise Error(f"the promptdistill configuration is not valid JSON: {e}") from None
    config = pipeline_config(value)
    if config.method not in METHODS:
        raise Error(f"method must be one of {', '.join(METHODS)} in vLLM (snapkv and h2o are not run by the plugin), "
                    f"got {config.method!r}")
    return config


def as_dict(config):
    """The settings of ``config`` that hf_overrides carries (JSON-ready)."""
    return {k: list(getattr(config, k)) if isinstance(getattr(config, k), tuple) else getattr(config, k) for k in WRITTEN}


class Layout:
    """A plan read for vLLM: per prompt length, the rows each layer runs on and the cache lengths
    each layer holds after the prefill."""

    def __init__(self, config, num_layers, max_positions):
        # The configuration against the model, as the C++ pipelines check it before any work.
        _core.check_pipeline(config.method, list(config.selection_layers), list(config.n_topks), config.cache_truncation_end,
                             config.budget, config.window, config.pool, config.pool_kernel, config.per, num_layers,
                             max_positions, 1)
        self.config = config
        self.plan = plan(config, num_layers)
        self.method = self.plan.method
        self.num_layers = num_layers
        self.stages = self.plan.stages
        # Layers up to the last truncating stage's are prefilled where they can be rewritten.
        self.last_truncating = max((s.layer for s in self.stages if s.truncates_cache), default=-1)

    def kept(self, prompt_length):
        return self.plan.kept_tokens(prompt_length)

    def layer_rows(self, prompt_length):
        """Rows each layer runs on in the prefill (GemFilter: in its second pass, the kept ids)."""
        kept = self.kept(prompt_length)
        if self.method == "gemfilter":
            return [kept[0]] * self.num_layers
        rows, n, stage = [], prompt_length, 0
        for layer in range(self.num_layers):
            rows.append(n)
            if stage < len(self.stages) and layer == self.stages[stage].layer:
                n = kept[stage]
                stage += 1
        return rows

    def cache_lengths(self, prompt_length):
        """Entries each layer's cache holds after the prefill: a truncating stage cuts every layer
        up to its selection layer to its kept tokens (the last such stage wins)."""
        lengths = self.layer_rows(prompt_length)
        kept = self.kept(prompt_length)
        for i, stage in enumerate(self.stages):
            if stage.truncates_cache:
                lengths[:stage.layer + 1] = [kept[i]] * (stage.layer + 1)
        return lengths

    def position_offset(self, prompt_length):
        """What decoding adds to vLLM's position L + t: GemFilter renumbers the kept ids 0..k-1, so
        its decoding continues at k + t."""
        return self.kept(prompt_length)[0] - prompt_length if self.method == "gemfilter" else 0

    def kv_start(self, prompt_length, block_size):
        """Where a request's caches start in its block table row after the prefill: the largest
        block boundary s with s + (longest cache) <= L. Every layer keeps its tokens at
        [s, s + n) and decodes right after them, so the blocks before s are read by no layer again
        and can be freed, and no layer writes past slot L + t, which vLLM has allocated."""
        longest = max(self.cache_lengths(prompt_length))
        return (prompt_length - longest) // block_size * block_size


def read_plan(value, num_layers, max_positions):
    """The ``Layout`` of a ``promptdistill`` entry on a model of ``num_layers`` layers."""
    return Layout(parse_config(value), num_layers, max_positions)
