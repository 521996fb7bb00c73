# SPDX-License-Identifier: Apache-2.0
"""gather, remap_positions and compact_kv against NumPy fancy indexing, in every KV layout
(contiguous bshd/bhsd, vLLM paged NHD/HND, FlashInfer NHD/HND with random page tables). Seeded."""

import numpy as np
import pytest
import torch

import promptdistill as pd

H, H_KV, D = 4, 2, 16


def selection(seed, method, lengths, budget, per="kv-group", library=np.asarray):
    """A batched selection over random q/k for prompts of `lengths` (arrays made by `library`)."""
    rng = np.random.default_rng(seed)
    B, L_max = len(lengths), max(lengths)
    rows = {"promptdistill": 1, "gemfilter": 1, "snapkv": 8, "h2o": L_max}[method]
    q = rng.standard_normal((B, rows, H, D)).astype(np.float32)
    k = rng.standard_normal((B, L_max, H_KV, D)).astype(np.float32)
    return pd.select(library(q), library(k), budget, method=method, window=8, per=per,
                     lengths=library(np.array(lengths, np.int32)))


def kept_rows(sel, b):
    """Request b's kept indices per KV head: [H_KV][count] (head-uniform selections repeat row 0)."""
    n = int(sel.rows_counts[b, 0])
    rows = sel.rows_indices[b, :, :n]
    return [rows[0 if rows.shape[0] == 1 else h].tolist() for h in range(H_KV)]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("method", ["promptdistill", "snapkv"])
@pytest.mark.parametrize("layout", ["bshd", "bhsd"])
def test_compact_contiguous(layout, method, dtype):
    seed, lengths, S = 4, [60, 41], 72  # capacity S beyond the lengths: the tail must stay untouched
    case = f"layout={layout} method={method} dtype={dtype.__name__} seed={seed} lengths={lengths}"
    sel = selection(seed, method, lengths, 24)
    rng = np.random.default_rng(seed + 1)
    shape = (len(lengths), S, H_KV, D) if layout == "bshd" else (len(lengths), H_KV, S, D)
    k, v = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    k0, v0 = k.copy(), v.copy()
    res = pd.compact_kv(k, v, sel, layout=layout)
    token_major = (lambda x, b: x[b]) if layout == "bshd" else (lambda x, b: x[b].transpose(1, 0, 2))  # -> [S, H_KV, D]
    for b, L in enumerate(lengths):
        rows = kept_rows(sel, b)
        n = len(rows[0])
        assert res.new_lengths[b] == n, case
        for cache, orig in ((k, k0), (v, v0)):
            got, want = token_major(cache, b), token_major(orig, b)
            for h in range(H_KV):
                assert np.array_equal(got[:n, h], want[rows[h], h]), f"{case} request={b} head={h}"
            assert np.array_equal(got[L:], want[L:]), f"{case} request={b}: tokens past the length changed"


def paged_cache(rng, lengths, page, layout, dtype=np.float32):
    """Logical [L, H_KV, D] sequences scattered over randomly numbered pages, and their tables."""
    logical = [rng.standard_normal((L, H_KV, D)).astype(dtype) for L in lengths]
    pages_of = [-(-L // page) for L in lengths]
    num_blocks = sum(pages_of) + 3  # spare pages nobody owns
    order = rng.permutation(num_blocks)[: sum(pages_of)]
    head_major = layout.endswith("hnd")
    storage = rng.standard_normal((num_blocks, H_KV, page, D) if head_major else (num_blocks, page, H_KV, D)).astype(dtype)
    owned, start = [], 0
    for seq, n in zip(logical, pages_of):
        mine = order[start:start + n].tolist()
        start += n
        owned.append(mine)
        for t in range(seq.shape[0]):
            p, o = mine[t // page], t % page
            if head_major:
                storage[p, :, o] = seq[t]
            else:
                storage[p, o] = seq[t]
    return logical, storage, owned


def read_pages(storage, pages, length, page, head_major):
    out = np.empty((length, H_KV, D), storage.dtype)
    for t in range(length):
        p, o = pages[t // page], t % page
        out[t] = storage[p, :, o] if head_major else storage[p, o]
    return out


@pytest.mark.parametrize("method", ["promptdistill", "snapkv"])
@pytest.mark.parametrize("layout", ["paged_nhd", "paged_hnd", "flashinfer_nhd", "flashinfer_hnd"])
def test_compact_paged(layout, method):
    seed, lengths, page = 9, [61, 38, 17], 8
    case = f"layout={layout} method={method} seed={seed} lengths={lengths} page={page}"
    rng = np.random.default_rng(seed)
    sel = selection(seed, method, lengths, 20)
    k_logical, k, owned = paged_cache(rng, lengths, page, layout)
    v = k.copy() * 2.0 + 1.0  # same layout and tables, different values
    v_logical = [x * 2.0 + 1.0 for x in k_logical]
    tables = {}
    if layout.startswith("paged"):
        width = max(len(o) for o in owned) + 1
        table = np.full((len(lengths), width), -1, np.int32)  # unused entries are never read
        for b, o in enumerate(owned):
            table[b, :len(o)] = o
        tables["block_table"] = table
    else:
        tables["kv_indptr"] = np.cumsum([0] + [len(o) for o in owned]).astype(np.int32)
        tables["kv_indices"] = np.concatenate(owned).astype(np.int32)
        tables["kv_last_page_len"] = np.array([L - (len(o) - 1) * page for L, o in zip(lengths, owned)], np.int32)
    res = pd.compact_kv(k, v, sel, layout=layout, **tables)
    for b, L in enumerate(lengths):
        rows = kept_rows(sel, b)
        n = len(rows[0])
        assert res.new_lengths[b] == n, case
        assert res.freed_pages[b] == len(owned[b]) - -(-n // page), f"{case} request={b}: freed pages"
        for cache, logical in ((k, k_logical), (v, v_logical)):
            got = read_pages(cache, owned[b], n, page, layout.endswith("hnd"))
            for h in range(H_KV):
                assert np.array_equal(got[:, h], logical[b][rows[h], h]), f"{case} request={b} head={h}"


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int32"])
def test_gather(dtype):
    lengths, E = [50, 29], 24
    sel = selection(2, "promptdistill", lengths, 10, library=torch.from_numpy)
    hidden = torch.arange(2 * 50 * E).reshape(2, 50, E).to(getattr(torch, dtype))
    out = pd.gather(hidden, sel)
    for b in range(2):
        idx = sel.indices[b, :int(sel.counts[b])].long()
        assert torch.equal(out[b, :len(idx)], hidden[b, idx]), f"dtype={dtype} request={b}"
        assert (out[b, len(idx):] == 0).all(), f"dtype={dtype} request={b}: padding"
    # Unbatched NumPy.
    q = np.random.default_rng(1).standard_normal((1, H, D)).astype(np.float32)
    k = np.random.default_rng(2).standard_normal((40, H_KV, D)).astype(np.float32)
    one = pd.select(q, k, 7)
    h = np.random.default_rng(3).standard_normal((40, E)).astype(np.float32)
    assert np.array_equal(pd.gather(h, one), h[one.indices])


def test_remap_positions():
    q = np.random.default_rng(1).standard_normal((1, H, D)).astype(np.float32)
    k = np.random.default_rng(2).standard_normal((40, H_KV, D)).astype(np.float32)
    sel = pd.select(q, k, 7)
    survivors = np.sort(np.random.default_rng(4).choice(1000, 40, replace=False)).astype(np.int32)
    assert pd.remap_positions(sel, survivors).tolist() == survivors[sel.indices].tolist()
    assert pd.remap_positions(sel).tolist() == sel.indices.tolist()
    assert pd.remap_positions(sel, renumber=True).tolist() == list(range(8))
    snap = selection(5, "snapkv", [30, 22], 12)
    out = pd.remap_positions(snap, np.tile(np.arange(100, 130, dtype=np.int32), (2, 1)))
    assert out.shape == snap.indices.shape
    for b in range(2):
        n = int(snap.counts[b, 0])
        assert (out[b, :, :n] == snap.indices[b, :, :n] + 100).all(), f"request={b}"
