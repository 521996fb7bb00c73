# SPDX-License-Identifier: Apache-2.0
"""Pipeline configurations and their plans, read from the C++ library.

``published_default(method)`` is the one set of defaults (``PipelineConfig::published_default``);
``plan(config, num_layers)`` is ``plan_pipeline`` of a configuration checked against a model: what a
prefill does (the selection stages with their layers, budgets, pooling and cache truncation, or
the SnapKV/H2O compression) and how many tokens each selection keeps (``kept_tokens``). The
drivers written in Python (``promptdistill.hf.generate``, the vLLM plugin) run plans, so that they
cannot read a configuration differently from the C++ pipelines.
"""

import dataclasses

from . import _core
from ._geometry import require_str
from ._errors import Error

#: The methods a pipeline runs.
METHODS = ("full", "promptdistill", "gemfilter", "snapkv", "h2o", "fastkv")


def _is_int(value):
    """An int the C++ side can take (int64; not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """A pipeline's settings, with the C++ ``PipelineConfig``'s names and meanings.

    ``method``: one of ``METHODS``. ``selection_layers`` / ``n_topks``: promptdistill stages
    (strictly increasing 0-based layers, tokens chosen besides the last one); gemfilter uses the
    first pair. ``cache_truncation_end``: promptdistill stages i < tt truncate the caches below
    them (-1: every stage). ``budget``, ``window``, ``per``: snapkv/h2o/fastkv tokens per row
    (window included), observation/recent window, ``"head"`` or ``"kv-group"`` rows (fastkv:
    kv-group). ``pool`` / ``pool_kernel``: the pooling of every selecting method but h2o.
    ``score_layers``: promptdistill/gemfilter selections rank by the mean over these layers (each
    stage takes those after the previous stage's layer up to its own, which must be listed);
    empty: each stage's own layer. ``tsp_layer``, ``tsp_length``, ``tsp_rate``, ``retain_rate``:
    fastkv's token-selective propagation layer and length, and its proportional mode (both rates
    > 0).
    """

    method: str
    selection_layers: tuple
    n_topks: tuple
    cache_truncation_end: int
    budget: int
    window: int
    pool: str
    pool_kernel: int
    per: str
    score_layers: tuple = ()
    tsp_layer: int = 15
    tsp_length: int = 2048
    tsp_rate: float = 0.0
    retain_rate: float = 0.0

    def replace(self, **changes):
        """A copy with ``changes`` (checked like ``pipeline_config``'s)."""
        return pipeline_config(self, **changes)


_FIELDS = tuple(f.name for f in dataclasses.fields(PipelineConfig))


def published_default(method="promptdistill"):
    """The published settings of ``method`` (``promptdistill defaults`` prints them)."""
    if not isinstance(method, str):
        raise Error(f"method must be a string, got {type(method).__name__}")
    d = _core.published_default(require_str("method", method))
    return PipelineConfig(**{**d, "selection_layers": tuple(d["selection_layers"]), "n_topks": tuple(d["n_topks"]),
                             "score_layers": tuple(d["score_layers"])})


def _checked(name, value):
    if name in ("tsp_rate", "retain_rate"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise Error(f"{name} must be a number, got {value!r}")
        return float(value)
    if name in ("selection_layers", "n_topks", "score_layers"):
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
            raise Error(f"{name} must be a list of ints (int64), got {value!r}")
        return tuple(value)
    if name in ("method", "pool", "per"):
        return require_str(name, value)
    if not _is_int(value):
        raise Error(f"{name} must be an int (int64), got {value!r}")
    return value


def pipeline_config(config=None, **changes):
    """A ``PipelineConfig`` from ``config`` (a ``PipelineConfig``, a mapping of its field names such
    as vLLM's ``hf_overrides["promptdistill"]``, or None) and keyword ``changes``; every field not
    given is the published default of the method (default ``"promptdistill"``). A value of None
    counts as not given. Unknown names and values of the wrong type raise ``Error``."""
    if config is None:
        given = {}
    elif isinstance(config, PipelineConfig):
        given = dataclasses.asdict(config)
    elif hasattr(config, "items"):
        given = dict(config.items())
    else:
        raise Error(f"config must be a PipelineConfig or a mapping, got {type(config).__name__}")
    unknown = sorted(str(k) for k in list(given) + list(changes) if k not in _FIELDS)
    if unknown:
        raise Error(f"unknown pipeline setting(s) {', '.join(unknown)}; the settings are {', '.join(_FIELDS)}")
    # None is "not given" on both sides: a keyword left at None must not erase the config's value
    # (hf.generate passes every keyword, most of them None). Every value given is checked, also
    # one a keyword overrides.
    given = {k: _checked(k, v) for k, v in given.items() if v is not None}
    given.update({k: _checked(k, v) for k, v in changes.items() if v is not None})
    method = given.get("method", "promptdistill")
    base = dataclasses.asdict(published_default(method))
    base.update(given)
    return PipelineConfig(**base)


@dataclasses.dataclass(frozen=True)
class SelectionPlan:
    """One selection of a plan: ``method`` (the Selector method), ``budget``, ``window``, ``pool``,
    ``pool_kernel``, ``per`` as the Selector takes them, and the top-k geometry (``k`` candidates
    chosen, ``keep_last`` forced) that ``kept`` reads."""

    method: str
    budget: int
    window: int
    pool: str
    pool_kernel: int
    per: str
    k: int
    keep_last: int

    def kept(self, prompt_length):
        """Tokens this selection keeps per row of ``prompt_length`` tokens (C++ ``kept_tokens``)."""
        return _core.kept_tokens(self.k, self.keep_last, int(prompt_length))

    def select_kwargs(self):
        """The keyword arguments of ``promptdistill.select`` for this selection (with the budget)."""
        return dict(method=self.method, window=self.window, pool=self.pool, pool_kernel=self.pool_kernel, per=self.per)


@dataclasses.dataclass(frozen=True)
class Stage:
    """A promptdistill or gemfilter stage: the selection at ``layer`` of the current tokens;
    ``truncates_cache``: whether it cuts the caches of every layer up to ``layer`` to what it keeps;
    ``score_layers``: the layers whose scores it averages (``score_partial`` at each, summed, then
    ``finish_select`` over their head terms), empty when it ranks by its own layer (``select``)."""

    layer: int
    truncates_cache: bool
    selection: SelectionPlan
    score_layers: tuple = ()

    def kept(self, current_tokens):
        return self.selection.kept(current_tokens)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a prefill with ``config`` does on a model of ``num_layers`` layers.

    ``stages``: promptdistill's selections in layer order (gemfilter: its filter stage; the kept
    ids are then prefilled again at positions 0..k-1). ``compression``: snapkv/h2o's selection,
    applied to every layer's cache right after its forward for prompts of at least its budget
    tokens (``compresses``), or fastkv's (its budget per layer from ``fastkv_layer``); None for the
    other methods. ``truncate_after_last_layer``: gather the
    truncating stages' caches after the last layer (reference order) instead of at each stage.
    """

    config: PipelineConfig
    num_layers: int
    method: str
    stages: tuple
    compression: object
    truncate_after_last_layer: bool
    #: The shortest prompt snapkv/h2o compress (None for the other methods).
    compresses_from: object = None
    #: fastkv: (tsp_layer, tsp_length, tsp_rate, retain_rate); None for the other methods.
    fastkv: object = None

    def fastkv_layer(self, layer, tokens):
        """fastkv at ``layer`` over ``tokens`` tokens (C++ ``PipelinePlan::fastkv_layer``): the
        budget each KV head keeps, whether the layer compresses, and the tokens the next layer
        runs on (fewer only after the TSP layer)."""
        if self.fastkv is None:
            raise Error(f"fastkv_layer is fastkv's; this plan is {self.method}'s")
        return _core.fastkv_layer(self.compression.budget, *self.fastkv, int(layer), int(tokens))

    def compresses(self, prompt_length):
        """snapkv/h2o compress a prompt of ``prompt_length`` tokens (C++ ``PipelinePlan::compresses``:
        L >= C); shorter ones keep every token."""
        return self.compresses_from is not None and prompt_length >= self.compresses_from

    def kept_tokens(self, prompt_length):
        """Tokens each stage keeps of a prompt of ``prompt_length`` tokens, in stage order (one
        entry for snapkv/h2o: the row length of every compressed layer; fastkv: one per layer, what
        each KV head's cache keeps; none for full)."""
        if self.fastkv is not None:
            kept, n = [], prompt_length
            for layer in range(self.num_layers):
                budget, compresses, propagated = self.fastkv_layer(layer, n)
                kept.append(min(budget, n) if compresses else n)
                n = propagated
            return kept
        if self.compression is not None:
            return [self.compression.kept(prompt_length) if self.compresses(prompt_length) else prompt_length]
        kept, n = [], prompt_length
        for stage in self.stages:
            n = stage.kept(n)
            kept.append(n)
        return kept


def plan(config, num_layers):
    """``plan_pipeline`` of ``config`` (as ``pipeline_config`` takes it) on a model of ``num_layers``
    layers, checked as the C++ pipelines check it before any work: a ``Plan``."""
    config = pipeline_config(config)
    if not _is_int(num_layers):
        raise Error(f"num_layers must be an int, got {num_layers!r}")
    raw = _core.pipeline_plan(config.method, list(config.selection_layers), list(config.n_topks), config.cache_truncation_end,
                              config.budget, config.window, config.pool, config.pool_kernel, config.per, num_layers,
                              **later_settings(config))
    stage_keys = ("layer", "truncates_cache", "score_layers")
    stages = tuple(Stage(layer=s["layer"], truncates_cache=s["truncates_cache"], score_layers=tuple(s["score_layers"]),
                         selection=SelectionPlan(**{k: v for k, v in s.items() if k not in stage_keys}))
                   for s in raw["stages"])
    compression = SelectionPlan(**raw["compression"]) if raw["compression"] is not None else None
    return Plan(config=config, num_layers=num_layers, method=raw["method"], stages=stages, compression=compression,
                truncate_after_last_layer=raw["truncate_after_last_layer"], compresses_from=raw["compresses_from"],
                fastkv=raw["fastkv"])


def later_settings(config):
    """The keyword arguments of ``_core.pipeline_plan`` and ``check_pipeline`` after their first ones."""
    return dict(score_layers=list(config.score_layers), tsp_layer=config.tsp_layer, tsp_length=config.tsp_length,
                tsp_rate=config.tsp_rate, retain_rate=config.retain_rate)
