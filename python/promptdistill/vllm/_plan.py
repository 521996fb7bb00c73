# SPDX-License-Identifier: Apache-2.0
"""The plugin's configuration (the ``promptdistill`` entry of ``hf_overrides``) and the pipeline
plan it reads: which stages select, how many tokens each keeps of a prompt, which layers' caches
they truncate.

Everything the plugin needs from the library's pipeline rules goes through ``read_plan``: the
checks are ``PipelineConfig::validate`` (``_core.check_pipeline``), the kept counts are the
Selector's own geometry (``_core.geometry``), so the plugin cannot read a configuration
differently from the C++ pipelines. ``read_plan`` is the one function to switch to the library's
``promptdistill.plan`` once it is public.
"""

import dataclasses
import json

from .. import _core
from .._errors import Error

#: The methods the plugin runs (SnapKV/H2O compress per KV group after every layer: not here).
METHODS = ("full", "promptdistill", "gemfilter")
#: The keys of the ``promptdistill`` entry and their defaults, those of ``PipelineConfig``.
DEFAULTS = {"method": "promptdistill", "selection_layers": [13], "n_topks": [1024], "cache_truncation_end": 0, "pool": "avg",
            "pool_kernel": 5}


@dataclasses.dataclass(frozen=True)
class Stage:
    layer: int
    budget: int
    truncates: bool  # this stage cuts the caches of every layer up to `layer` to the tokens it keeps


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a prefill does for a prompt of L tokens on a model of ``num_layers`` layers."""

    method: str
    num_layers: int
    stages: tuple
    pool: str
    pool_kernel: int

    def kept(self, prompt_length):
        """Tokens each stage keeps of a prompt of ``prompt_length`` tokens (stage i chooses among
        the survivors of stage i-1), as the Selector counts them."""
        counts, n = [], prompt_length
        for stage in self.stages:
            select = "gemfilter" if self.method == "gemfilter" else "promptdistill"
            n = _core.geometry(select, stage.budget, 32, self.pool, self.pool_kernel, "kv-group", 1, 1, n)[1]
            counts.append(n)
        return counts

    def layer_rows(self, prompt_length):
        """Rows each layer runs on in the prefill (GemFilter: in the second pass, on the kept ids)."""
        if self.method == "gemfilter":
            return [self.kept(prompt_length)[0]] * self.num_layers
        rows, n, kept = [], prompt_length, self.kept(prompt_length)
        stage = 0
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
        if self.method != "promptdistill":
            return lengths
        kept = self.kept(prompt_length)
        for i, stage in enumerate(self.stages):
            if stage.truncates:
                for layer in range(stage.layer + 1):
                    lengths[layer] = kept[i]
        return lengths

    def position_offset(self, prompt_length):
        """What decoding adds to vLLM's position L + t: GemFilter renumbers the kept ids 0..k-1, so
        its decoding continues at k + t."""
        return self.kept(prompt_length)[0] - prompt_length if self.method == "gemfilter" else 0


def parse_config(value):
    """The ``promptdistill`` entry of ``hf_overrides`` (a dict, or its JSON) with the defaults
    filled in; unknown keys and wrong types raise ``promptdistill.Error``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise Error(f"the promptdistill configuration is not valid JSON: {e}") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise Error(f"the promptdistill configuration must be a dict, got {type(value).__name__}")
    unknown = sorted(set(value) - set(DEFAULTS))
    if unknown:
        raise Error(f"unknown promptdistill configuration keys {unknown} (known: {', '.join(DEFAULTS)})")
    config = {**DEFAULTS, **value}
    if not isinstance(config["method"], str) or config["method"] not in METHODS:
        raise Error(f"method must be one of {', '.join(METHODS)} in vLLM (snapkv and h2o are not run by the plugin), "
                    f"got {config['method']!r}")
    for key in ("selection_layers", "n_topks"):
        v = config[key]
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise Error(f"{key} must be a list of ints, got {config[key]!r}")
        config[key] = [int(x) for x in v]
    for key in ("cache_truncation_end", "pool_kernel"):
        if not isinstance(config[key], int) or isinstance(config[key], bool):
            raise Error(f"{key} must be an int, got {config[key]!r}")
    if not isinstance(config["pool"], str):
        raise Error(f"pool must be a string, got {config['pool']!r}")
    return config


def read_plan(config, num_layers, max_positions):
    """Checks ``config`` (a parsed configuration) against a model of ``num_layers`` layers with the
    library's ``PipelineConfig::validate`` and returns its ``Plan``."""
    _core.check_pipeline(config["method"], config["selection_layers"], config["n_topks"], config["cache_truncation_end"], 1024,
                         32, config["pool"], config["pool_kernel"], "kv-group", num_layers, max_positions, 1)
    stages = ()
    if config["method"] != "full":
        tt = config["cache_truncation_end"]
        stages = tuple(Stage(layer, budget, config["method"] == "promptdistill" and (tt == -1 or i < tt))
                       for i, (layer, budget) in enumerate(zip(config["selection_layers"], config["n_topks"])))
    return Plan(config["method"], num_layers, stages, config["pool"], config["pool_kernel"])


def kv_start(plan, prompt_length, block_size):
    """Where a request's compacted caches start in its block table after the prefill: the largest
    block boundary s with s + (longest cache) <= L. Every layer keeps its tokens at [s, s + n) and
    decodes after them, so the blocks before s are read by no layer again and can be freed, and no
    layer ever writes past slot L + t, which vLLM has allocated."""
    longest = max(plan.cache_lengths(prompt_length))
    return (prompt_length - longest) // block_size * block_size
