# SPDX-License-Identifier: Apache-2.0
"""The peak memory of a prefill, before any work: the C++ ``estimate_prefill_bytes`` (the one
estimate the CLI, the C++ sessions and ``hf.generate`` use), and what the system has."""

import dataclasses

from . import _core
from ._geometry import require_int
from ._errors import Error
from ._pipeline import pipeline_config, published_default

#: ModelConfig's names of the dimensions the estimate reads, and transformers' names of them.
_DIMS = (("num_layers", "num_hidden_layers"), ("hidden", "hidden_size"), ("num_heads", "num_attention_heads"),
         ("num_kv_heads", "num_key_value_heads"), ("head_dim", "head_dim"), ("intermediate", "intermediate_size"),
         ("vocab", "vocab_size"))


@dataclasses.dataclass(frozen=True)
class PrefillMemory:
    """Bytes a prefill holds at its peak: ``activations`` (hidden states, projections, the MLP,
    attention rows, logits), ``kv_cache`` (the largest set of caches held at once), ``scores``
    (a selection's taps, score rows and ranking; SnapKV/H2O: a row per query head), ``total``."""

    activations: int
    kv_cache: int
    scores: int
    total: int


def _model_dims(model):
    """The seven dimensions of a mapping with ModelConfig's names, or of a transformers config."""
    mapping = hasattr(model, "keys") and hasattr(model, "get")
    found = {ours: (model.get(ours) if mapping else getattr(model, theirs, None)) for ours, theirs in _DIMS}
    heads = found["num_heads"]
    if found["num_kv_heads"] is None:  # transformers: no grouping
        found["num_kv_heads"] = heads
    if found["head_dim"] is None and found["hidden"] is not None and heads:
        found["head_dim"] = found["hidden"] // heads
    missing = [f"{ours} ({theirs})" for ours, theirs in _DIMS if found[ours] is None]
    if missing:
        raise Error(f"model lacks {', '.join(missing)}: give a mapping with ModelConfig's names or a transformers config")
    return [_required_int(ours, found[ours]) for ours, _ in _DIMS]


def _required_int(name, value):
    if value is None:
        raise Error(f"{name} must be an int, got None")
    return require_int(name, value)


def estimate_prefill_bytes(config, model, prompt_length, *, batch=1, element_bytes=4, mlp_chunk_rows=512,
                           decode_reserve=0, attention_rows=0, budgets=1):
    """The peak memory of a prefill of ``prompt_length`` tokens with ``config`` (as
    ``pipeline_config`` takes it, or a method name: its published settings) on ``model`` (a mapping with ModelConfig's names num_layers,
    hidden, num_heads, num_kv_heads, head_dim, intermediate, vocab, or a transformers config),
    executed with ``batch`` requests of ``element_bytes`` per element, the MLP in chunks of
    ``mlp_chunk_rows`` rows (0: all), ``decode_reserve`` cache tokens per request beyond the
    prompt, ``attention_rows`` f32 rows of attention probabilities held at once, and ``budgets``
    > 1 for a sweep sharing one prefill. Returns a ``PrefillMemory``."""
    c = published_default(config) if isinstance(config, str) else pipeline_config(config)
    ints = [_required_int(name, value) for name, value in (("prompt_length", prompt_length), ("batch", batch),
                                                         ("element_bytes", element_bytes), ("mlp_chunk_rows", mlp_chunk_rows),
                                                         ("decode_reserve", decode_reserve), ("attention_rows", attention_rows),
                                                         ("budgets", budgets))]
    d = _core.estimate_prefill_bytes(c.method, list(c.selection_layers), list(c.n_topks), c.cache_truncation_end, c.budget,
                                     c.window, c.pool, c.pool_kernel, c.per, _model_dims(model), *ints,
                                     score_layers=list(c.score_layers), tsp_layer=c.tsp_layer, tsp_length=c.tsp_length,
                                     tsp_rate=c.tsp_rate, retain_rate=c.retain_rate)
    return PrefillMemory(**d)


def available_memory_bytes():
    """What the system reports it can give without swapping (/proc/meminfo's MemAvailable), in
    bytes; None where it reports nothing."""
    available = _core.available_memory_bytes()
    return None if available < 0 else available
