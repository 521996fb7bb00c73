# SPDX-License-Identifier: Apache-2.0
"""Property-based fuzzing of `gather` and `remap_positions` (Hypothesis): hidden states and
position arrays of every dtype and storage, batched or not, with selections from `select` or
built by hand (indices in any order, outside the prompt, negative; counts negative or past the
capacity; rows per request 0, 1 or several). Each call equals NumPy indexing (rows of `hidden`
at the kept indices, zero rows past the count; `positions[indices]`, the indices, or 0..count-1)
or raises promptdistill.Error leaving the caller's arrays unchanged. Replays
fuzz_regressions/gather.jsonl and remap_positions.jsonl."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import promptdistill as pd
import fuzz_arrays as fa
from fuzz_selections import make_selection, selection_rows, selection_specs
from fuzz_specs import pick, rare, storage
from fuzz_support import check, fuzz_settings, outcome, regressions, seeded


@st.composite
def gather_specs(draw):
    lib = draw(st.sampled_from(["numpy", "torch"]))
    B = draw(st.integers(1, 3))
    lengths = [draw(st.integers(1, 20)) for _ in range(B)]
    dtypes = ["float32", "float16", "int32"] + (["bfloat16"] if lib == "torch" else [])
    return {"lib": lib, "B": B, "lengths": lengths, "L": max(lengths) + pick(draw, st.integers(0, 3), [-1], 15),
            "E": draw(st.integers(1, 24)), "dtype": pick(draw, st.sampled_from(dtypes), ["float64", "uint8"], 20),
            "unbatched": rare(draw, 5), "rank": pick(draw, st.just(None), [1, 4], 25), "hidden": draw(storage()),
            "positions": pick(draw, st.none() | st.just("given"), ["int64", "short", "rank"], 12),
            "renumber": draw(st.booleans()), "selection": draw(selection_specs(B, 2, lengths, allow_per_head=False, head_uniform=True)),
            "seed": draw(st.integers(0, 2**32 - 1))}


def selection_problem(spec, sel, limit_per_request, need_uniform):
    """The rules of a selection's rows (int32, counts in [0, capacity], kept indices in
    [0, limit)); gather also needs one row per request."""
    idx, counts = selection_rows(sel)
    if idx.dtype != np.int32 or counts.dtype != np.int32:
        return "selection int64"
    if need_uniform and idx.shape[1] != 1:
        return "gather of a selection with several rows per request"
    if idx.shape[1] < 1 and need_uniform:
        return "no rows"
    for b in range(idx.shape[0]):
        for r in range(idx.shape[1]):
            c = counts[b, r]
            if not 0 <= c <= idx.shape[2]:
                return "count outside [0, capacity]"
            row = idx[b, r, :c].tolist()
            if limit_per_request is not None and any(not 0 <= x < limit_per_request for x in row):
                return "kept index outside the rows given"
    return None


def build_selection(spec):
    B = spec["B"]
    unbatched = spec["unbatched"] and B == 1
    sel = make_selection(spec["selection"], spec["lib"], B, 2, spec["lengths"], batched=not unbatched)
    return sel, unbatched


def run_gather(spec):
    case = f"gather spec={json.dumps(spec)}"
    sel, unbatched = build_selection(spec)
    B, L, E = spec["B"], spec["L"], spec["E"]
    shape = (L, E) if unbatched else (B, L, E)
    if spec["rank"] is not None:
        shape = (L,) if spec["rank"] == 1 else (1,) + shape
    hidden, owner = fa.make(dict(spec["hidden"], axis=spec["hidden"]["axis"] % len(shape)), shape, spec["lib"],
                            spec["dtype"], spec["seed"], "integers")
    problem = None
    if spec["rank"] is not None:
        problem = "hidden of the wrong rank"
    elif spec["dtype"] not in fa.FLOATS + ("int32",):
        problem = f"hidden {spec['dtype']}"
    elif any(s < 0 for s in fa.element_strides(hidden)):
        problem = "negative stride"
    else:
        problem = selection_problem(spec, sel, L, True)
    snap = fa.Snapshot(owner)
    out = outcome(lambda: pd.gather(hidden, sel), problem, snap, case)
    if out is None:
        return
    assert snap.unchanged(), f"{case}\ngather changed hidden"
    idx, counts = selection_rows(sel)
    got = fa.to_numpy(out.float() if isinstance(out, torch.Tensor) else out)
    src = fa.to_numpy(hidden.float() if isinstance(hidden, torch.Tensor) else hidden)
    got, src = (got[None], src[None]) if unbatched else (got, src)
    assert got.shape == (B, idx.shape[2], E), f"{case}\nshape {got.shape}"
    for b in range(B):
        c = int(counts[b, 0])
        assert np.array_equal(got[b, :c], src[b, idx[b, 0, :c]]), f"{case}\nrequest {b}: rows"
        assert (got[b, c:] == 0).all(), f"{case}\nrequest {b}: rows past the count"


def run_remap(spec):
    case = f"remap_positions spec={json.dumps(spec)}"
    sel, unbatched = build_selection(spec)
    B, L = spec["B"], spec["L"]
    positions, owner, limit, problem = None, None, 2**31 - 1, None
    if spec["positions"] is not None:
        n = L - (2 if spec["positions"] == "short" else 0)
        values = np.random.default_rng(spec["seed"]).integers(0, 10**6, (B, max(n, 0)))
        positions = values.astype(np.int64 if spec["positions"] == "int64" else np.int32)
        if unbatched and spec["positions"] != "rank" or not unbatched and spec["positions"] == "rank":
            positions = positions[0]
        owner = positions = positions if spec["lib"] == "numpy" else torch.from_numpy(positions)
        if spec["positions"] == "int64":
            problem = "positions int64"
        elif spec["positions"] == "rank":
            problem = "positions of the wrong rank"
        limit = max(n, 0)
    problem = problem or selection_problem(spec, sel, None if spec["renumber"] else limit, False)
    snap = fa.Snapshot(owner)
    out = outcome(lambda: pd.remap_positions(sel, positions, renumber=spec["renumber"]), problem, snap, case)
    if out is None:
        return
    assert snap.unchanged(), f"{case}\nremap_positions changed positions"
    idx, counts = selection_rows(sel)
    got = fa.to_numpy(out)
    got = got[None] if unbatched else got
    got = got[:, None] if got.ndim == 2 else got  # head-uniform selections drop the rows dimension
    table = None if positions is None else fa.to_numpy(positions)
    table = table[None] if table is not None and unbatched else table
    for b in range(B):
        for r in range(idx.shape[1]):
            c = int(counts[b, r])
            row = idx[b, r, :c]
            want = list(range(c)) if spec["renumber"] else (row.tolist() if table is None else table[b, row].tolist())
            assert got[b, r, :c].tolist() == want, f"{case}\nrequest {b} row {r}"
            assert (got[b, r, c:] == -1).all(), f"{case}\nrequest {b} row {r}: padding"


@seeded
@fuzz_settings(300)
@given(gather_specs())
def test_gather_fuzz(spec):
    check("gather", spec, run_gather)


@seeded
@fuzz_settings(300)
@given(gather_specs())
def test_remap_positions_fuzz(spec):
    check("remap_positions", spec, run_remap)


@pytest.mark.parametrize("spec", regressions("gather"))
def test_gather_regressions(spec):
    check("gather", spec, run_gather)


@pytest.mark.parametrize("spec", regressions("remap_positions"))
def test_remap_positions_regressions(spec):
    check("remap_positions", spec, run_remap)
