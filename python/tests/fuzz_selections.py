# SPDX-License-Identifier: Apache-2.0
"""Selections for the fuzz tests of gather, remap_positions and compact_kv: either what `select`
returns for random queries and keys (any method, grouping and budget), or a `Selection` built by
hand from generated rows, as a caller may build one (indices and counts of any content and dtype:
increasing or not, inside the prompt or not, rows of different counts, negative counts)."""

import numpy as np
import torch
from hypothesis import strategies as st

import promptdistill as pd
from fuzz_specs import pick, rare


@st.composite
def selection_specs(draw, B, H_kv, lengths, allow_per_head=True, head_uniform=False):
    """A selection over requests of `lengths` tokens (B of them) for a cache of H_kv KV heads;
    mostly one row per request if `head_uniform`."""
    if draw(st.booleans()):
        methods = ["promptdistill", "gemfilter"] if head_uniform and not rare(draw, 5) else ["promptdistill", "gemfilter",
                                                                                              "snapkv", "h2o"]
        method = draw(st.sampled_from(methods))
        G = draw(st.integers(1, 2))
        per = draw(st.sampled_from(["kv-group", "head"])) if allow_per_head and method in ("snapkv", "h2o") else "kv-group"
        window = draw(st.integers(1, 6))
        budget = draw(st.integers(0, 40)) + (window if method in ("snapkv", "h2o") else 0)
        return {"kind": "select", "method": method, "G": G, "per": per, "window": window, "budget": budget,
                "seed": draw(st.integers(0, 2**32 - 1))}
    R = pick(draw, st.just(1) if head_uniform else st.sampled_from([1, H_kv]), [H_kv, H_kv + 1, 0], 20)
    rows = []
    for b in range(B):
        n = max(lengths[b], 0)
        count = pick(draw, st.integers(0, n), [n + 1, -1], 20)
        per_row = []
        for r in range(R):
            c = count if not rare(draw, 20) else max(count - 1, 0)
            kept = sorted(draw(st.sets(st.integers(0, max(n - 1, 0)), min_size=min(max(c, 0), n), max_size=min(max(c, 0), n))))
            if n == 0:
                kept = []
            corrupt = draw(st.sampled_from(["none"] * 12 + ["descending", "repeat", "past", "negative"]))
            if corrupt == "descending" and len(kept) > 1:
                kept = kept[::-1]
            elif corrupt == "repeat" and kept:
                kept = kept[:-1] + [kept[0]] if len(kept) > 1 else kept + kept
            elif corrupt == "past":
                kept = kept + [n + draw(st.integers(0, 3))]
            elif corrupt == "negative" and kept:
                kept[0] = -1
            per_row.append({"count": c, "kept": kept})
        rows.append(per_row)
    return {"kind": "handmade", "R": R, "rows": rows, "dtype": pick(draw, st.just("int32"), ["int64"], 25),
            "capacity_extra": draw(st.integers(0, 3)), "method": draw(st.sampled_from(["promptdistill", "snapkv"]))}


def make_selection(spec, lib, B, H_kv, lengths, D=16, batched=True):
    """The Selection a spec stands for (arrays of `lib`), or None when select itself refuses."""
    if spec["kind"] == "select":
        rng = np.random.default_rng(spec["seed"])
        L = max(max(lengths, default=1), 1)
        method = spec["method"]
        rows = {"promptdistill": 1, "gemfilter": 1, "snapkv": spec["window"], "h2o": L}[method]
        q = rng.standard_normal((B, rows, H_kv * spec["G"], D)).astype(np.float32)
        k = rng.standard_normal((B, L, H_kv, D)).astype(np.float32)
        n = np.array([min(max(x, 1), L) for x in lengths], np.int32)
        conv = (lambda x: x) if lib == "numpy" else torch.from_numpy
        if not batched:
            return pd.select(conv(q[0]), conv(k[0]), spec["budget"], method=method, window=spec["window"], per=spec["per"])
        return pd.select(conv(q), conv(k), spec["budget"], method=method, window=spec["window"], per=spec["per"],
                         lengths=conv(n))
    R = spec["R"]
    width = max([len(r["kept"]) for rows in spec["rows"] for r in rows] + [0]) + spec["capacity_extra"]
    idx = np.full((B, R, width), -1, np.int64 if spec["dtype"] == "int64" else np.int32)
    counts = np.zeros((B, R), idx.dtype)
    for b, rows in enumerate(spec["rows"]):
        for r, row in enumerate(rows):
            idx[b, r, :len(row["kept"])] = row["kept"]
            counts[b, r] = row["count"]
    conv = (lambda x: x) if lib == "numpy" else torch.from_numpy
    lens = np.array([max(x, 0) for x in lengths], np.int32)
    method = spec["method"] if R == 1 else "snapkv"  # a head-uniform method has one row per request
    public = (lambda x: x[:, 0]) if method == "promptdistill" else (lambda x: x)
    return pd.Selection(indices=conv(public(idx)), positions=conv(public(idx)), scores=None, counts=conv(public(counts)),
                        lengths=conv(lens), method=method, batched=batched, rows_indices=conv(idx),
                        rows_counts=conv(counts))


def selection_rows(sel):
    """(indices [B, R, C], counts [B, R]) of a Selection as NumPy, whatever its library."""
    def np_of(x):
        return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np_of(sel.rows_indices), np_of(sel.rows_counts)
