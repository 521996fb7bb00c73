# SPDX-License-Identifier: Apache-2.0
"""Property-based fuzzing of `compact_kv` in every layout (bshd, bhsd, paged_nhd, paged_hnd,
flashinfer_nhd, flashinfer_hnd) with Hypothesis: generated caches (dtypes, views at odd offsets,
other axis orders, strided, reversed, stride 0, read-only), lengths (ragged, zero, past the
cache), page tables (random pages, entries out of range, negative, repeated within and across
requests, unused junk columns; FlashInfer indptr decreasing, negative or past kv_indices,
last_page_len out of range) and selections (from `select`, or built by hand with any content).
Every call either moves exactly the kept tokens as the NumPy statement says and touches no other
byte of the caller's buffers, or raises promptdistill.Error and touches none. Replays
fuzz_regressions/compact_kv.jsonl."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import promptdistill as pd
import fuzz_arrays as fa
from fuzz_selections import make_selection, selection_rows, selection_specs
from fuzz_specs import pick, rare
from fuzz_support import check, fuzz_settings, outcome, regressions, seeded

LAYOUTS = ("bshd", "bhsd", "paged_nhd", "paged_hnd", "flashinfer_nhd", "flashinfer_hnd")


@st.composite
def cache_storage(draw):
    kind = draw(st.sampled_from(fa.STORAGES)) if rare(draw, 3) else "contiguous"
    return {"storage": kind, "axis": draw(st.integers(0, 3)), "axis2": draw(st.sampled_from([0, 1, 2])),
            "offset": draw(st.sampled_from([1, 2, 4, 8, 16]))}


@st.composite
def compact_specs(draw):
    layout = pick(draw, st.sampled_from(LAYOUTS), ["nhd", "paged", 3], 30)
    lib = draw(st.sampled_from(["numpy", "torch"]))
    floats = ["float32", "float16"] + (["bfloat16"] if lib == "torch" else [])
    dtype = pick(draw, st.sampled_from(floats), ["float64", "int32"], 30)
    B, H_kv = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    lengths = [pick(draw, st.integers(1, 24), [0], 8) for _ in range(B)]
    spec = {"layout": layout, "lib": lib, "dtype": dtype, "v_dtype": pick(draw, st.just(dtype), ["float16"], 30),
            "B": B, "H_kv": H_kv, "D": pick(draw, st.sampled_from([8, 16]), [12], 30), "lengths": lengths,
            "S": max(lengths) + draw(st.integers(0, 4)) + (-1 if rare(draw, 25) else 0),
            "page": draw(st.integers(1, 6)), "extra_blocks": draw(st.integers(0, 3)), "junk_columns": draw(st.integers(0, 2)),
            "table": draw(st.sampled_from(["valid"] * 10 + ["out_of_range", "negative", "repeat_within", "repeat_across",
                                                              "too_narrow", "int64", "wrong_batch"])),
            "fi": draw(st.sampled_from(["valid"] * 10 + ["decreasing", "last_zero", "last_big", "short_indices",
                                                           "negative_start", "missing"])),
            "seq_lens": pick(draw, st.none(), ["given", "past", "int64"], 5),
            "k": draw(cache_storage()), "v": draw(cache_storage()), "same_kv": rare(draw, 40),
            "unbatched": rare(draw, 6), "seed": draw(st.integers(0, 2**32 - 1))}
    spec["selection"] = draw(selection_specs(B, H_kv, lengths))
    return spec


def page_tables(spec, rng):
    """(table per request: the page of each needed position, tables given to compact_kv, num_blocks,
    problem of the tables or None)."""
    page, lengths, B = spec["page"], spec["lengths"], spec["B"]
    need = [-(-n // page) for n in lengths]
    num_blocks = sum(need) + spec["extra_blocks"]
    order = rng.permutation(num_blocks)[:sum(need)].tolist()
    owned, start = [], 0
    for n in need:
        owned.append(order[start:start + n])
        start += n
    layout, problem = spec["layout"], None
    mode = spec["table"] if layout.startswith("paged") else spec["fi"]
    with_pages = [b for b in range(B) if owned[b]]
    if mode in ("out_of_range", "negative", "repeat_within", "repeat_across") and with_pages:
        b = with_pages[0]
        if mode == "out_of_range":
            owned[b][-1], problem = num_blocks + 2, "page out of range"
        elif mode == "negative":
            owned[b][0], problem = -1, "negative page"
        elif mode == "repeat_within" and len(owned[b]) > 1:
            owned[b][-1], problem = owned[b][0], "page repeated within a request"
        elif mode == "repeat_across" and len(with_pages) > 1:
            owned[with_pages[1]][0], problem = owned[b][0], "page shared by two requests"
    if layout.startswith("paged"):
        width = max(need) + spec["junk_columns"]
        if spec["table"] == "too_narrow" and max(need) > 0:
            width, problem = max(need) - 1, "block table narrower than a request"
        table = rng.integers(-5, num_blocks + 5, (B + (1 if spec["table"] == "wrong_batch" else 0), max(width, 0)))
        for b in range(B):
            table[b, :min(len(owned[b]), width)] = owned[b][:width]
        if spec["table"] == "wrong_batch":
            problem = problem or "block table rows differ from the batch"
        table = table.astype(np.int64 if spec["table"] == "int64" else np.int32)
        if spec["table"] == "int64":
            problem = problem or "block table int64"
        return owned, {"block_table": table}, num_blocks, problem
    indptr = np.cumsum([0] + need).astype(np.int32)
    indices = np.array([p for o in owned for p in o], np.int32)
    last = np.array([n - (p - 1) * page if p else 0 for n, p in zip(lengths, need)], np.int32)
    tables = {"kv_indptr": indptr, "kv_indices": indices, "kv_last_page_len": last}
    if mode == "decreasing" and B > 1 and need[0] > 0:
        indptr[1] = indptr[2] + 1 if indptr[2] + 1 > indptr[1] else indptr[1]
        problem = problem or "kv_indptr decreasing"
    elif mode == "last_zero" and with_pages:
        last[with_pages[0]], problem = 0, problem or "kv_last_page_len 0"
    elif mode == "last_big" and with_pages:
        last[with_pages[0]], problem = page + 1, problem or "kv_last_page_len above the page size"
    elif mode == "short_indices" and len(indices):
        tables["kv_indices"], problem = indices[:-1], problem or "kv_indptr past kv_indices"
    elif mode == "negative_start":
        tables["kv_indptr"], problem = indptr - 1, problem or "kv_indptr negative"
    elif mode == "missing":
        del tables["kv_last_page_len"]
        problem = problem or "kv_last_page_len missing"
    return owned, tables, num_blocks, problem


def token(layout, b, t, h, pages, page):
    """The element index of (request b, token t, head h) in a 4-dimensional cache."""
    if layout in ("bshd", "bhsd"):
        return (b, t, h) if layout == "bshd" else (b, h, t)
    p, s = pages[b][t // page], t % page
    return (p, s, h) if layout.endswith("nhd") else (p, h, s)


def view_on(owner_copy, view, owner):
    """`view`'s window over a copy of the buffer it views."""
    if isinstance(view, np.ndarray):
        offset = fa.data_address(view) - fa.data_address(owner)
        return np.ndarray(view.shape, view.dtype, buffer=owner_copy, offset=offset, strides=view.strides)
    offset = (view.data_ptr() - owner.data_ptr()) // view.element_size()
    return torch.as_strided(owner_copy, view.shape, view.stride(), owner_copy.storage_offset() + offset)


def build_cache(spec, which, shape, seed):
    dtype = spec["dtype"] if which == "k" else spec["v_dtype"]
    return fa.make(spec[which], shape, spec["lib"], dtype, seed)


def cache_problem(cache, head_major):
    """The rules of one cache view (check_kv, and no two elements at one address)."""
    if isinstance(cache, np.ndarray) and not cache.flags.writeable:
        return "read-only cache"
    strides = fa.element_strides(cache)
    seq, tok, head = strides[0], strides[2 if head_major else 1], strides[1 if head_major else 2]
    if not fa.kv_view_ok(cache, [seq, tok, head, strides[3]]):
        return "cache strides or alignment"
    if any(n > 1 and s == 0 for n, s in zip(cache.shape[:3], strides[:3])):
        return "cache with stride 0 (elements sharing an address)"
    return None


def table_rules(spec, tables, num_blocks, B):
    """(each request's length, its pages) as the page tables say, or (problem, None)."""
    page, layout = spec["page"], spec["layout"]
    if layout.startswith("paged"):
        bt = tables["block_table"]
        if bt.dtype != np.int32:
            return "block table int64", None
        if bt.shape[0] != B:
            return "block table rows differ from the batch", None
        seq = spec["seq"]
        if seq is None:
            return "seq_lens int64", None
        if len(seq) != B:
            return "seq_lens of the wrong size", None
        lengths, pages = seq, [bt[b].tolist() for b in range(B)]
        limits = [bt.shape[1] * page] * B
    else:
        if "kv_last_page_len" not in tables:
            return "kv_last_page_len missing", None
        indptr, indices, last = tables["kv_indptr"], tables["kv_indices"], tables["kv_last_page_len"]
        if len(indptr) != B + 1:
            return "kv_indptr of the wrong size", None
        if indptr[0] < 0 or any(indptr[b + 1] < indptr[b] for b in range(B)) or indptr[B] > len(indices):
            return "kv_indptr negative, decreasing or past kv_indices", None
        lengths, pages = [], []
        for b in range(B):
            n_pages = int(indptr[b + 1] - indptr[b])
            if n_pages and not 1 <= last[b] <= page:
                return "kv_last_page_len outside [1, page]", None
            lengths.append((n_pages - 1) * page + int(last[b]) if n_pages else 0)
            pages.append(indices[indptr[b]:indptr[b + 1]].tolist())
        limits = [len(p) * page for p in pages]
    seen = set()
    for b in range(B):
        if not 0 <= lengths[b] <= limits[b]:
            return f"length {lengths[b]} outside the {limits[b]} tokens of the table", None
        for p in pages[b][:-(-lengths[b] // page)]:
            if not 0 <= p < num_blocks:
                return "page outside the cache", None
            if p in seen:
                return "a page held twice (within a request or by two)", None
            seen.add(p)
    return lengths, pages


def compact_problem(spec, k, v, sel, tables, num_blocks):
    """(problem or None, each request's current length, its pages) of a compaction."""
    layout, B, D = spec["layout"], spec["B"], spec["D"]
    if layout not in LAYOUTS:
        return f"layout {layout!r}", None, None
    if spec["dtype"] not in fa.FLOATS or spec["v_dtype"] != spec["dtype"]:
        return "cache dtypes", None, None
    paged, head_major = not layout.startswith("b"), layout in ("bhsd", "paged_hnd", "flashinfer_hnd")
    for cache in (k, v):
        problem = cache_problem(cache if cache.ndim == 4 else cache[None], head_major)
        if problem:
            return problem, None, None
    if not (8 <= D <= 256 and D % 8 == 0):
        return f"head_dim {D}", None, None
    idx, counts = selection_rows(sel)
    if idx.dtype != np.int32 or counts.dtype != np.int32:
        return "selection int64", None, None
    if paged:
        lengths, pages = table_rules(spec, tables, num_blocks, B)
        if pages is None:
            return lengths, None, None
    else:
        lengths, pages = spec["seq"], None
        if lengths is None:
            return "seq_lens int64", None, None
        if any(not 0 <= n <= spec["S"] for n in lengths):
            return "length outside the cache", None, None
    R = idx.shape[1]
    if idx.shape[0] != B or (R != 1 and R != spec["H_kv"]):
        return f"selection of {R} rows for {spec['H_kv']} KV heads (or another batch)", None, None
    if spec["same_kv"]:
        return "k and v are one buffer", None, None
    for b in range(B):
        n, c = lengths[b], counts[b, 0]
        if not 0 <= c <= n or any(counts[b, r] != c for r in range(R)) or c > idx.shape[2]:
            return "counts", None, None
        for r in range(R):
            row = idx[b, r, :c].tolist()
            if any(x < 0 or x >= n for x in row) or any(a >= b2 for a, b2 in zip(row, row[1:])):
                return "indices outside the length or not increasing", None, None
    return None, lengths, pages


def run_compact(spec):
    case = f"compact_kv spec={json.dumps(spec)}"
    rng = np.random.default_rng(spec["seed"])
    layout, B, H_kv, D, page = spec["layout"], spec["B"], spec["H_kv"], spec["D"], spec["page"]
    paged = layout in LAYOUTS and not layout.startswith("b")
    tables, num_blocks = page_tables(spec, rng)[1:3] if paged else ({}, 0)
    head_major = layout in ("bhsd", "paged_hnd", "flashinfer_hnd")
    if paged:
        shape = (num_blocks, H_kv, page, D) if head_major else (num_blocks, page, H_kv, D)
    else:
        shape = (B, H_kv, spec["S"], D) if head_major else (B, spec["S"], H_kv, D)
    unbatched = spec["unbatched"] and B == 1 and not paged
    if unbatched:
        shape = shape[1:]
    k, k_owner = build_cache(spec, "k", shape, spec["seed"] + 1)
    v, v_owner = (k, k_owner) if spec["same_kv"] else build_cache(spec, "v", shape, spec["seed"] + 2)
    sel = make_selection(spec["selection"], spec["lib"], B, H_kv, spec["lengths"], batched=not unbatched)
    # The lengths compact_kv reads: seq_lens given, or the selection's (FlashInfer: its tables).
    if spec["seq_lens"] is not None and not layout.startswith("flashinfer"):
        tables["seq_lens"] = np.array([x + (1 if spec["seq_lens"] == "past" else 0) for x in spec["lengths"]],
                                      np.int64 if spec["seq_lens"] == "int64" else np.int32)
    seq = None if spec["seq_lens"] == "int64" and not layout.startswith("flashinfer") else (
        tables["seq_lens"].tolist() if "seq_lens" in tables else fa.to_numpy(sel.lengths).tolist())
    problem, lengths, pages = compact_problem(dict(spec, seq=seq), k, v, sel, tables, num_blocks)
    if spec["lib"] == "torch":
        tables = {name: torch.from_numpy(t) for name, t in tables.items()}
    snap, tables_before = fa.Snapshot(k_owner, v_owner), fa.Snapshot(*tables.values())
    result = outcome(lambda: pd.compact_kv(k, v, sel, layout=layout, **tables), problem, snap, case)
    assert tables_before.unchanged(), f"{case}\nthe page tables or seq_lens changed"
    if result is None:
        return
    idx, counts = selection_rows(sel)
    for which, view, owner in (("k", k, k_owner), ("v", v, v_owner)):
        before = snap.before(owner)
        expected = before.clone() if isinstance(before, torch.Tensor) else before.copy()
        out, old = view_on(expected, view, owner), view_on(before, view, owner)
        out, old = (out[None], old[None]) if unbatched else (out, old)
        for b in range(B):
            for h in range(H_kv):
                row = idx[b, 0 if idx.shape[1] == 1 else h]
                for i in range(int(counts[b, 0])):
                    out[token(layout, b, i, h, pages, page)] = old[token(layout, b, int(row[i]), h, pages, page)]
        assert np.array_equal(fa.Snapshot(owner).saved[0], fa.Snapshot(expected).saved[0]), \
            f"{case}\n{which} cache: other bytes than the NumPy statement's"
    new_lengths, freed = fa.to_numpy(result.new_lengths).tolist(), fa.to_numpy(result.freed_pages).tolist()
    for b in range(B):
        c = int(counts[b, 0])
        assert new_lengths[b] == c, f"{case}\nrequest {b}: new length {new_lengths[b]}, want {c}"
        want_freed = (-(-lengths[b] // page) - -(-c // page)) if paged else 0
        assert freed[b] == want_freed, f"{case}\nrequest {b}: freed pages {freed[b]}, want {want_freed}"


@seeded
@fuzz_settings(700)
@given(compact_specs())
def test_compact_kv_fuzz(spec):
    check("compact_kv", spec, run_compact)


@pytest.mark.parametrize("spec", regressions("compact_kv"))
def test_compact_kv_regressions(spec):
    check("compact_kv", spec, run_compact)
