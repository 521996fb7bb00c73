#!/usr/bin/env python3
"""FastKV's golden fixture: its algorithm, as dongwonjo/FastKV's code runs it (baselines/fastkv/utils.py
and llama_model.py, read and re-written here in this project's own words on top of Hugging Face
transformers, like make_golden.py does for the other methods), on the embedded SmolLM2 in f32.

Writes tests/golden/smollm2_fastkv.json: for each case the configuration, every KV head's kept
positions of some layers, the positions the TSP layer propagated, and 16 greedy tokens. Cases: the
published default (its drivers' constant mode: C 512, window 8, max pool 7, TSP at layer 15
keeping 2048 tokens) and its scripts' proportional mode (retain_rate 0.1, tsp_rate 0.2) on the
2,449-token prompt of smollm2_published.json, and a small constant case (C 128, TSP 256) on the
~700-token prompt of smollm2_methods.json for the batch session.

What the reference does, per layer l over the n tokens that reach it (positions p):
  1. the layer runs (full causal attention over the n tokens) and appends its K/V to the cache;
  2. C = budget (constant) or int(n * rate), rate = retain_rate up to the TSP layer and
     retain_rate / tsp_rate after it; if n < C nothing is compressed and nothing propagated;
  3. A_h = softmax(Q_win K^T / sqrt(d)) in f32 for the last `window` queries of each query head
     (keys GQA-expanded, causal inside the window), s_h = sum over the window rows of the columns
     [0, n - W), pooled per head (max or avg, kernel k, padding k // 2), then summed over the G
     query heads of each KV group: the KV head keeps its top C - W and the window (K/V gathered in
     top-k order, as the code concatenates them);
  4. at the TSP layer, if n > T (T = tsp_len or int(n * tsp_rate)): the group rows summed over
     the KV heads rank the candidates, the top T - W and the window are kept, sorted, and the
     layer's output rows at those indices (and their original positions, RoPE recomputed) are
     what the next layers run on.
Decoding: token s at position L + s attends to each layer's compressed cache (the code's
prepare_inputs_for_generation numbers positions from the attention mask, which counts L).
Ties at the k-th score go to the smaller index (the library's rule; torch.topk leaves them open).

Usage: python3 scripts/golden/make_golden_fastkv.py (needs what make_golden.py needs; runs on a CPU).
"""
import json
import os
import pathlib
import subprocess
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_golden import OUT, ROOT, _greedy, _pool, _qk, _rope, _run_layers, _topk_indices  # noqa: E402


@torch.no_grad()
def reference_fastkv(model, ids, budget=512, window=8, pool="max", kernel=7, tsp_layer=15, tsp_len=2048,
                     retain_rate=0.0, tsp_rate=0.0, record_layers=(0,)):
    from transformers import DynamicCache

    cfg, L = model.config, len(ids)
    H, Hkv, N = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers
    G = H // Hkv
    proportional = retain_rate > 0
    h = model.model.embed_tokens(torch.tensor([ids]))
    pos = list(range(L))
    cache = DynamicCache(config=cfg)
    rows, propagated = {}, []
    for l in range(N):
        n = h.shape[1]
        cos, sin = _rope(model, pos)
        q, k = _qk(model.model.layers[l], h, cos, sin, cfg)  # [H, n, d], [Hkv, n, d], post-RoPE
        h = _run_layers(model, h, pos, [l], cache)
        if proportional:
            capacity = int(n * (retain_rate if l <= tsp_layer else retain_rate / tsp_rate))
        else:
            capacity = budget
        if n < capacity:
            if l in record_layers:
                rows[l] = [list(pos) for _ in range(Hkv)]
            continue
        kx = k.repeat_interleave(G, dim=0)
        w = q[:, n - window:, :] @ kx.transpose(1, 2) / (cfg.head_dim ** 0.5)  # [H, W, n]
        w[:, :, n - window:] += torch.full((window, window), float("-inf")).triu(1)
        a = torch.softmax(w.float(), dim=-1)
        s = _pool(a[:, :, : n - window].sum(1), pool, kernel)  # each query head pooled on its own
        group = s.view(Hkv, G, n - window).sum(1)               # then summed per KV group
        top = _topk_indices(group, capacity - window)           # [Hkv, C - W], by score
        keep = torch.cat([top, torch.arange(n - window, n).expand(Hkv, window)], dim=-1)
        lay = cache.layers[l]
        index = keep[None, :, :, None].expand(1, -1, -1, cfg.head_dim)
        lay.keys, lay.values = torch.gather(lay.keys, 2, index), torch.gather(lay.values, 2, index)
        if l in record_layers:
            rows[l] = [sorted(pos[int(i)] for i in row) for row in keep]
        length = int(n * tsp_rate) if proportional else tsp_len
        if l == tsp_layer and n > length:
            chosen = _topk_indices(group.sum(0), length - window)
            chosen = torch.sort(torch.cat([chosen, torch.arange(n - window, n)])).values
            h = h[:, chosen]
            pos = [pos[int(i)] for i in chosen]
            propagated = list(pos)
    first = int(torch.argmax(model.lm_head(model.model.norm(h))[0, -1]))
    return rows, propagated, _greedy(model, first, cache, L, 16)


def main():
    from transformers import AutoModelForCausalLM

    path = subprocess.check_output(["bash", str(ROOT / "scripts" / "fetch_model.sh")], text=True).strip()
    d, name = os.path.split(path)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    N = model.config.num_hidden_layers
    published = json.loads((OUT / "smollm2_published.json").read_text())["ids"]
    small = json.loads((OUT / "smollm2_methods.json").read_text())["ids"]
    record = (0, 15, 16, N - 1)
    settings = [
        ("published", published, dict(budget=512, window=8, pool="max", kernel=7, tsp_layer=15, tsp_len=2048)),
        ("proportional", published, dict(budget=512, window=8, pool="max", kernel=7, tsp_layer=15, tsp_len=2048,
                                         retain_rate=0.1, tsp_rate=0.2)),
        ("small", small, dict(budget=128, window=8, pool="max", kernel=7, tsp_layer=15, tsp_len=256)),
    ]
    cases = []
    for case, ids, kw in settings:
        rows, propagated, greedy = reference_fastkv(model, ids, record_layers=record, **kw)
        cases.append({"name": case, "method": "fastkv", "prompt": "published" if ids is published else "methods", **kw,
                      "layer_rows": {str(l): r for l, r in rows.items()}, "propagated": propagated, "greedy": greedy})
        print(f"fastkv {case}: {len(ids)} tokens, propagated {len(propagated)}, greedy {greedy[:6]}...")
    (OUT / "smollm2_fastkv.json").write_text(json.dumps({"cases": cases}))


if __name__ == "__main__":
    main()
