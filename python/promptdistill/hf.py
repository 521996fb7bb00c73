# SPDX-License-Identifier: Apache-2.0
"""Every method on Hugging Face transformers models, with the semantics of the C++ pipelines.

``generate`` runs the model's own decoder layers one by one (no patched classes, no hooks) and
selects between them with ``promptdistill.select``, so that with PromptDistill the layers after a
selection layer run on the kept tokens only, at their original positions: the prefill compute that
compressing the KV cache after the prefill cannot save. Batch 1, greedy decoding.

- full: the stock prefill.
- promptdistill: at each selection layer r (strictly increasing) the last token's query scores the
  current tokens' keys (mean over heads, / sqrt(d), no softmax; pooled); the top ``n_topks[i]``
  plus the last token are kept, layer r's output rows are gathered and the next layers run on
  them. Stages i < ``cache_truncation_end`` (-1: all) also cut the caches of layers <= r to them.
- gemfilter: layers 0..r without a cache, the top ``n_topks[0]`` tokens (sum over heads, pooled,
  last token not forced), then a fresh prefill of the kept ids at positions 0..k-1.
- snapkv / h2o: a full prefill; when the prompt has at least ``budget`` tokens, each layer's
  cache is compacted right after it runs to ``budget`` tokens per row (window included),
  ranked by the last ``window`` queries' softmax (snapkv) or by all queries' (h2o).
- fastkv: every layer's cache compacted per KV group to its budget (each query head's SnapKV row
  pooled, summed over the group); at ``tsp_layer`` the group rows, summed, choose the tokens
  (window included) whose output rows the later layers run on, at their original positions.
- ``score_layers`` (promptdistill, gemfilter): a stage ranks by the mean over its listed layers of
  the last token's logits, each layer's ``score_partial`` added as the forward passes it, then
  ``finish_select`` over their head terms.
"""

import dataclasses
import sys
import time

import torch

from . import _core
from ._compat import renamed_argument
from ._engine import compact_kv, gather, remap_positions, select
from ._errors import Error
from ._memory import available_memory_bytes, estimate_prefill_bytes
from ._pipeline import later_settings, pipeline_config, plan
from ._tensor_parallel import finish_select, score_partial

#: model_type -> the family it is (the architectures the C++ pipelines implement).
SUPPORTED_MODEL_TYPES = {"llama": "Llama (and SmolLM2)", "mistral": "Mistral", "qwen2": "Qwen2", "phi3": "Phi-3"}


@dataclasses.dataclass
class Result:
    """What ``generate`` did. ``selected_indices``: promptdistill: per stage, the original positions
    it kept; gemfilter: the kept positions; snapkv/h2o/fastkv: per layer, one list of kept
    positions per KV group (or per query head); empty when nothing was selected. ``propagated``:
    fastkv: the original positions its TSP layer propagated (empty when it propagated none)."""

    generated_ids: list
    selected_indices: list
    retained: list
    cache_lengths: list
    prompt_tokens: int
    ttft_s: float
    decode_s_per_token: float
    propagated: list = dataclasses.field(default_factory=list)


def _sliding_window(cfg):
    """The sliding window the model's attention applies, or None."""
    types = getattr(cfg, "layer_types", None)
    if types is not None:
        return getattr(cfg, "sliding_window", None) if "sliding_attention" in types else None
    if cfg.model_type == "qwen2" and not getattr(cfg, "use_sliding_window", False):
        return None
    return getattr(cfg, "sliding_window", None)


class _Model:
    """The parts of a causal LM the pipelines drive: embeddings, decoder layers, RoPE, final norm, head."""

    def __init__(self, model):
        cfg = getattr(model, "config", None)
        model_type = getattr(cfg, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise Error(f"hf.generate supports {', '.join(SUPPORTED_MODEL_TYPES.values())} models (model_type "
                        f"{', '.join(SUPPORTED_MODEL_TYPES)}), got {model_type!r}", "unsupported")
        self.cfg = cfg
        self.decoder = model.get_decoder()
        self.layers = self.decoder.layers
        self.embed = model.get_input_embeddings()
        self.lm_head = model.get_output_embeddings()
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads
        # RoPE as the model's own modeling file applies it (Phi-3's handles partial rotary dims).
        self.apply_rope = sys.modules[type(self.layers[0].self_attn).__module__].apply_rotary_pos_emb
        self.device = self.embed.weight.device
        impl = getattr(cfg, "_attn_implementation", None) or "eager"
        if not (impl in ("eager", "sdpa") or impl.startswith("flash_attention")):
            raise Error(f"hf.generate runs the eager, sdpa and flash_attention_* implementations, got {impl!r}", "unsupported")
        self.attn_impl = impl

    def rope(self, h, positions):
        return self.decoder.rotary_emb(h, positions[None])

    def causal_mask(self, n, dtype):
        """What the layer needs to attend causally within n new tokens into an empty cache (or one
        new token into a full one): sdpa and flash attention are causal without a mask; eager
        adds it."""
        if n == 1 or self.attn_impl != "eager":
            return None
        mask = torch.full((n, n), torch.finfo(dtype).min, dtype=dtype, device=self.device).triu(1)
        return mask[None, None]

    def run_layers(self, h, positions, layers, cache):
        """h [1, n, hidden] through `layers` at `positions` (long [n]), appending to `cache` (or None)."""
        rope = self.rope(h, positions)
        mask = self.causal_mask(h.shape[1], h.dtype)
        for l in layers:
            out = self.layers[l](h, attention_mask=mask, position_ids=positions[None], past_key_values=cache,
                                 use_cache=cache is not None, position_embeddings=rope)
            h = out[0] if isinstance(out, tuple) else out
        return h

    def _project(self, l, x, which):
        attn = self.layers[l].self_attn
        if hasattr(attn, "qkv_proj"):  # Phi-3: fused q, k, v
            qkv = attn.qkv_proj(x)
            q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
            return qkv[..., :q_size] if which == "q" else qkv[..., q_size:q_size + kv_size]
        return attn.q_proj(x) if which == "q" else attn.k_proj(x)

    def queries(self, l, h_in, positions, rows):
        """Post-RoPE queries [rows, H, D] of layer l for the last `rows` rows of its input."""
        n = h_in.shape[1]
        x = self.layers[l].input_layernorm(h_in[:, n - rows:])
        q = self._project(l, x, "q").view(1, rows, self.num_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rope(h_in, positions)  # all positions: LongRoPE picks its factors by the longest
        q, _ = self.apply_rope(q, q, cos[:, n - rows:], sin[:, n - rows:])
        return q[0].transpose(0, 1).contiguous()

    def keys(self, l, h_in, positions):
        """Post-RoPE keys [n, H_kv, D] of layer l for its input h_in (without running the layer)."""
        n = h_in.shape[1]
        x = self.layers[l].input_layernorm(h_in)
        k = self._project(l, x, "k").view(1, n, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rope(h_in, positions)
        _, k = self.apply_rope(k, k, cos, sin)
        return k[0].transpose(0, 1).contiguous()

    def next_token(self, h):
        logits = self.lm_head(self.decoder.norm(h[:, -1:]))
        return int(torch.argmax(logits[0, -1]))


def _cached_keys(cache, l):
    """Layer l's cached keys as [n, H_kv, D] (the cache holds [1, H_kv, n, D])."""
    return cache.layers[l].keys[0].transpose(0, 1).contiguous()


def _expand_cache_layer(cache, l, groups):
    """Repeats layer l's cached K/V heads `groups` times (head h serves query head h) and makes the
    layer expand the keys and values appended to it later the same way."""
    layer = cache.layers[l]
    layer.keys, layer.values = layer.keys.repeat_interleave(groups, 1), layer.values.repeat_interleave(groups, 1)
    update = layer.update
    layer.update = lambda k, v, *args, **kwargs: update(k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1),
                                                         *args, **kwargs)


def _compact_cache_layer(cache, l, selection, kept):
    """Compacts layer l's cache in place with the library's compact_kv (the layout of Hugging Face's
    cache is bhsd) and drops the tail."""
    layer = cache.layers[l]
    compact_kv(layer.keys, layer.values, selection, layout="bhsd")
    layer.keys, layer.values = layer.keys[:, :, :kept], layer.values[:, :, :kept]


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prompt_ids(input_ids, vocab):
    if isinstance(input_ids, torch.Tensor):
        if input_ids.ndim != 2 or input_ids.shape[0] != 1:
            raise Error(f"input_ids must be a [1, L] tensor (batch 1) or a list of ids, got shape {tuple(input_ids.shape)}",
                        "shape mismatch")
        if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
            raise Error(f"input_ids must hold integer token ids, got a {input_ids.dtype} tensor", "unsupported")
        ids = [int(t) for t in input_ids[0].tolist()]
    elif isinstance(input_ids, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in input_ids):
        ids = list(input_ids)
    else:
        raise Error(f"input_ids must be a [1, L] tensor or a list of ints, got {type(input_ids).__name__}")
    for t in ids:
        if t < 0 or t >= vocab:
            raise Error(f"prompt token {t} is outside the vocabulary [0, {vocab})")
    return ids


def _stop_tokens(model, eos_token_id):
    if eos_token_id is not None:
        given = [eos_token_id] if not isinstance(eos_token_id, (list, tuple, set)) else list(eos_token_id)
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in given):
            raise Error(f"eos_token_id must be a token id or a list of them, got {eos_token_id!r}")
    if eos_token_id is None:
        generation = getattr(model, "generation_config", None)
        eos_token_id = getattr(generation, "eos_token_id", None)
        if eos_token_id is None:
            eos_token_id = getattr(model.config, "eos_token_id", None)
    if eos_token_id is None:
        return set()
    return {int(eos_token_id)} if isinstance(eos_token_id, int) else {int(t) for t in eos_token_id}


def _available_bytes(device):
    """Memory a prefill may use on `device`: its free memory (and what PyTorch's allocator holds
    unused) on CUDA, MemAvailable on the CPU; None when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return available_memory_bytes()


def _check_memory(m, model, p, L, max_new_tokens, max_memory):
    """Refuses a prefill whose estimated peak exceeds `max_memory` (or the device's available
    memory) before any work, with the numbers."""
    if max_memory is not None and (not isinstance(max_memory, int) or isinstance(max_memory, bool) or max_memory < 1):
        raise Error(f"max_memory must be a number of bytes >= 1, got {max_memory!r}")
    limit = max_memory if max_memory is not None else _available_bytes(m.device)
    if limit is None:
        return
    element = torch.tensor([], dtype=m.embed.weight.dtype).element_size()
    H = m.num_heads
    # Eager attention holds the [H, n, n] weights, their float32 softmax and its cast back at once
    # (in float32 rows of n); sdpa and flash attention work in blocks.
    rows = (H * L * (2 * element + 4) + 3) // 4 + L if m.attn_impl == "eager" else 0
    need = estimate_prefill_bytes(p.config, model.config, L, element_bytes=element, mlp_chunk_rows=0,
                                  decode_reserve=max(max_new_tokens, 0), attention_rows=rows)
    if need.total > limit:
        mib = 1024 * 1024
        raise Error(f"hf.generate of {L} tokens ({p.method}) needs about {need.total / mib:.1f} MiB (activations "
                    f"{need.activations / mib:.1f}, KV cache {need.kv_cache / mib:.1f}, scores {need.scores / mib:.1f} MiB) but "
                    f"{limit / mib:.1f} MiB are available ({'max_memory' if max_memory is not None else m.device.type + ' memory'})",
                    "out of memory")


@torch.no_grad()
def generate(model, input_ids, config=None, *, method=None, selection_layers=None, n_topks=None, cache_truncation_end=None,
             budget=None, window=None, pool=None, pool_kernel=None, per=None, max_new_tokens=50, eos_token_id=None,
             max_memory=None, capacity=None, score_layers=None, tsp_layer=None, tsp_length=None, tsp_rate=None,
             retain_rate=None):
    """Prefill ``input_ids`` with a pipeline and decode greedily; returns a ``Result``.

    model: a transformers causal LM (Llama, SmolLM2, Mistral, Qwen2, Phi-3), on any device and in
    any dtype (the selection runs on the same device). input_ids: ``[1, L]`` (as a tokenizer
    returns it) or a list of ids. config: a ``promptdistill.PipelineConfig`` or a mapping of its
    settings; the keyword settings override it, and every setting not given is the published
    default of the method (``promptdistill.published_default``; method default "promptdistill").
    selection_layers / n_topks: promptdistill stages (0-based layers, tokens chosen besides the
    last); gemfilter uses the first pair. budget: snapkv/h2o tokens per row, window included
    (``capacity`` is its former name, accepted with a DeprecationWarning).
    per: "head" (one selection per query head, the published variant; on models with grouped KV
    heads the compressed caches are GQA-expanded to one head per query head, as the reference code
    does) or "kv-group". pool / pool_kernel: the pooling of every selecting method but h2o.
    score_layers: promptdistill/gemfilter stages rank by the mean of these layers' scores.
    tsp_layer / tsp_length / tsp_rate / retain_rate: fastkv's propagation and proportional mode.
    eos_token_id: stop tokens (default: the model's generation config). The prefill runs
    ``promptdistill.plan`` of the configuration, as the C++ pipelines run theirs. max_memory:
    bytes the prefill may use (default: what the model's device has available); a prompt whose
    estimated peak (``promptdistill.estimate_prefill_bytes``) is larger is refused before any work.
    """
    m = _Model(model)
    ids = _prompt_ids(input_ids, model.config.vocab_size)
    L, N = len(ids), len(m.layers)
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise Error(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    stop = _stop_tokens(model, eos_token_id)  # checked before any work
    budget = renamed_argument(budget, capacity, "budget", "capacity", "hf.generate")
    cfg = pipeline_config(config, method=method, selection_layers=selection_layers, n_topks=n_topks,
                          cache_truncation_end=cache_truncation_end, budget=budget, window=window, pool=pool,
                          pool_kernel=pool_kernel, per=per, score_layers=score_layers, tsp_layer=tsp_layer,
                          tsp_length=tsp_length, tsp_rate=tsp_rate, retain_rate=retain_rate)
    # The prompt against the model (empty, past the context) and the configuration, as the C++
    # pipelines check them before any work; then the plan the prefill runs.
    _core.check_pipeline(cfg.method, list(cfg.selection_layers), list(cfg.n_topks), cfg.cache_truncation_end, cfg.budget,
                         cfg.window, cfg.pool, cfg.pool_kernel, cfg.per, N,
                         getattr(model.config, "max_position_embeddings", 1 << 30), L, **later_settings(cfg))
    p = plan(cfg, N)
    _check_memory(m, model, p, L, max_new_tokens, max_memory)
    window_limit = _sliding_window(model.config)
    if window_limit is not None and L + max(max_new_tokens, 0) > window_limit:
        raise Error(f"{L} prompt tokens and {max_new_tokens} new ones exceed the model's sliding window of {window_limit}; "
                    "hf.generate runs full attention, as the C++ pipelines do", "unsupported")

    from transformers import DynamicCache  # a plain per-layer cache (no sliding-window layers)

    result = Result(generated_ids=[], selected_indices=[], retained=[], cache_lengths=[], prompt_tokens=L, ttft_s=0.0,
                    decode_s_per_token=0.0)
    _synchronize(m.device)
    start = time.perf_counter()
    cache = DynamicCache()
    prefill = {"full": _prefill_full, "promptdistill": _prefill_promptdistill, "gemfilter": _prefill_gemfilter,
               "snapkv": _prefill_kv_compression, "h2o": _prefill_kv_compression, "fastkv": _prefill_fastkv}[p.method]
    first, next_position, cache = prefill(m, ids, cache, result, p)
    _synchronize(m.device)
    result.ttft_s = time.perf_counter() - start
    result.cache_lengths = [cache.layers[l].keys.shape[-2] for l in range(N)]
    # A cache compressed per query head holds H heads (GQA-expanded): attention then repeats none.
    expanded = cache.layers[0].keys.shape[1] != m.num_kv_heads
    saved = [layer.self_attn.num_key_value_groups for layer in m.layers] if expanded else []
    try:
        for layer in m.layers if expanded else []:
            layer.self_attn.num_key_value_groups = 1
        result.generated_ids, result.decode_s_per_token = _decode(m, cache, first, next_position, max_new_tokens, stop)
    finally:
        for layer, groups in zip(m.layers, saved):
            layer.self_attn.num_key_value_groups = groups
    return result


def _embed(m, ids):
    return m.embed(torch.tensor([ids], device=m.device))


def _arange(m, n):
    return torch.arange(n, device=m.device)


def _prefill_full(m, ids, cache, result, plan):
    h = m.run_layers(_embed(m, ids), _arange(m, len(ids)), range(len(m.layers)), cache)
    return m.next_token(h), len(ids), cache


def _select(q, keys, selection, budget=None, **changes):
    """promptdistill.select with a plan's selection (``budget`` and ``changes`` override its own)."""
    return select(q, keys, selection.budget if budget is None else budget, **{**selection.select_kwargs(), **changes})


class _Scores:
    """A stage's scores aggregated over its score layers: each layer's ``score_partial`` (q.k / sqrt(d)
    or q.k summed over the heads, from +0) added in layer order, as the C++ ScorePartial accumulates."""

    def __init__(self, stage, num_heads):
        self.stage, self.num_heads, self.summed, self.layers = stage, num_heads, None, 0

    def add(self, q, keys):
        partial = score_partial(q, keys, method=self.stage.selection.method, total_heads=self.num_heads)
        self.summed = partial if self.summed is None else self.summed + partial
        self.layers += 1

    def select(self):
        s = self.stage.selection
        return finish_select(self.summed, s.budget, method=s.method, total_heads=self.layers * self.num_heads, pool=s.pool,
                             pool_kernel=s.pool_kernel)


def _prefill_promptdistill(m, ids, cache, result, plan):
    L = len(ids)
    h = _embed(m, ids)
    positions = _arange(m, L).to(torch.int32)
    stages = list(plan.stages)
    scores = _Scores(stages[0], m.num_heads) if stages else None
    for l in range(len(m.layers)):
        stage = stages[0] if stages else None
        scoring = stage is not None and (l == stage.layer or l in stage.score_layers)
        long_positions = positions.long()
        q = m.queries(l, h, long_positions, 1) if scoring else None
        h = m.run_layers(h, long_positions, [l], cache)
        if scoring and stage.score_layers:
            scores.add(q, _cached_keys(cache, l))
        if stage is None or l != stage.layer:
            continue
        stages.pop(0)
        sel = scores.select() if stage.score_layers else _select(q, _cached_keys(cache, l), stage.selection)
        scores = _Scores(stages[0], m.num_heads) if stages else None
        kept = stage.kept(h.shape[1])  # known without reading the device
        h = gather(h[0], sel)[None]
        positions = remap_positions(sel, positions)
        result.retained.append(kept)
        result.selected_indices.append([int(p) for p in positions.tolist()])
        if stage.truncates_cache:  # every layer up to here holds exactly this stage's input tokens
            for ll in range(l + 1):
                _compact_cache_layer(cache, ll, sel, kept)
    return m.next_token(h), L, cache


def _prefill_gemfilter(m, ids, cache, result, plan):
    stage, L = plan.stages[0], len(ids)
    positions = _arange(m, L)
    h, scores = _embed(m, ids), _Scores(stage, m.num_heads)
    for l in range(stage.layer):  # the filter pass writes no cache
        if l in stage.score_layers:
            scores.add(m.queries(l, h, positions, 1), m.keys(l, h, positions))
        h = m.run_layers(h, positions, [l], None)
    q, keys = m.queries(stage.layer, h, positions, 1), m.keys(stage.layer, h, positions)
    if stage.score_layers:
        scores.add(q, keys)
        sel = scores.select()
    else:
        sel = _select(q, keys, stage.selection)
    kept = [int(i) for i in sel.indices.tolist()]
    result.retained.append(len(kept))
    result.selected_indices.append(kept)
    sub = [ids[i] for i in kept]
    h = m.run_layers(_embed(m, sub), _arange(m, len(sub)), range(len(m.layers)), cache)
    return m.next_token(h), len(sub), cache


def _prefill_kv_compression(m, ids, cache, result, plan):
    L, selection = len(ids), plan.compression
    positions = _arange(m, L)
    h = _embed(m, ids)
    compress = plan.compresses(L)
    for l in range(len(m.layers)):
        q = m.queries(l, h, positions, min(selection.window, L) if selection.method == "snapkv" else L) if compress else None
        h = m.run_layers(h, positions, [l], cache)
        if not compress:  # L < C: every row keeps every token, and says so (as the C++ pipelines)
            rows = m.num_heads if selection.per == "head" else m.num_kv_heads
            result.retained.append(L)
            result.selected_indices.append([list(range(L)) for _ in range(rows)])
            continue
        keys = _cached_keys(cache, l)
        per_rows = selection.per
        if selection.per == "head" and m.num_kv_heads != m.num_heads:
            # The published variant on grouped KV heads: the cache is GQA-expanded to one head per
            # query head, each compacted with its own row, and later tokens are expanded as they are
            # appended (as the SnapKV/H2O reference code does). One query head per expanded KV head
            # makes per-KV-group selection on the expanded keys the per-head selection.
            _expand_cache_layer(cache, l, m.num_heads // m.num_kv_heads)
            keys, per_rows = _cached_keys(cache, l), "kv-group"
        sel = _select(q, keys, selection, per=per_rows)
        kept = selection.kept(L)  # min(budget, L) for every row
        _compact_cache_layer(cache, l, sel, kept)
        result.retained.append(kept)
        result.selected_indices.append([[int(i) for i in row] for row in sel.indices.tolist()])
    return m.next_token(h), L, cache


def _propagation(ranked, keep, window):
    """fastkv's propagated tokens from a layer's ranked group rows ``[H_kv, n]``: the rows summed in
    order from the first (the C++ SumRows' additions), the last ``window`` forced and ``keep -
    window`` more by score, ties to the smaller index (TopK's rule: a stable descending sort)."""
    summed = ranked[0]
    for row in ranked[1:]:
        summed = summed + row
    n = summed.shape[0]
    order = torch.sort(summed[: n - window], descending=True, stable=True).indices[: keep - window]
    return torch.sort(torch.cat([order, torch.arange(n - window, n, device=order.device)])).values


def _prefill_fastkv(m, ids, cache, result, plan):
    L, selection = len(ids), plan.compression
    h = _embed(m, ids)
    positions = _arange(m, L)
    result.propagated = []
    for l in range(len(m.layers)):
        n = h.shape[1]
        budget, compresses, propagated = plan.fastkv_layer(l, n)
        q = m.queries(l, h, positions, min(selection.window, n)) if compresses else None
        h = m.run_layers(h, positions, [l], cache)
        kept_positions = [int(p) for p in positions.tolist()]
        if not compresses:  # its code keeps every token of the layer, and propagates none
            result.retained.append(n)
            result.selected_indices.append([kept_positions for _ in range(m.num_kv_heads)])
            continue
        sel = _select(q, _cached_keys(cache, l), selection, budget=budget)
        kept = _core.kept_tokens(budget - selection.window, selection.window, n)
        _compact_cache_layer(cache, l, sel, kept)
        result.retained.append(kept)
        result.selected_indices.append([[kept_positions[int(i)] for i in row] for row in sel.indices.tolist()])
        if propagated < n:
            index = _propagation(sel.scores, propagated, selection.window)
            h, positions = h[:, index], positions[index]
            result.propagated = [int(p) for p in positions.tolist()]
    return m.next_token(h), L, cache


def _decode(m, cache, first, next_position, max_new_tokens, stop):
    """Greedy decoding after the prefill, as the reference generation loops do it: `first` is kept
    whatever it is, then up to max_new_tokens - 1 more; a decoded stop token ends the output and is
    not returned. Returns the tokens and the mean seconds per decode step."""
    if max_new_tokens <= 0:
        return [], 0.0
    tokens, token, steps = [first], first, 0
    start = time.perf_counter()
    while len(tokens) < max_new_tokens:
        h = m.run_layers(_embed(m, [token]), torch.tensor([next_position], device=m.device), range(len(m.layers)), cache)
        token = m.next_token(h)
        next_position += 1
        steps += 1
        if token in stop:
            break
        tokens.append(token)
    _synchronize(m.device)
    return tokens, (time.perf_counter() - start) / steps if steps else 0.0
