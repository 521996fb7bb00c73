# SPDX-License-Identifier: Apache-2.0
"""Property-based fuzzing of the tensor-parallel pair `score_partial` / `finish_select`
(Hypothesis), under the rule of test_fuzz_select.py: a result bit for bit equal to the NumPy
statement (fuzz_semantics.py: the rank's un-normalised head sums; the normalisation, pooling and
top-k of the finishing stage), or promptdistill.Error with the caller's arrays unchanged for
arguments a documented rule refuses. Replays fuzz_regressions/score_partial.jsonl and
finish_select.jsonl."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import promptdistill as pd
import fuzz_arrays as fa
import fuzz_semantics as sem
from fuzz_support import check, fuzz_settings, outcome, regressions, seeded
from fuzz_specs import INT32_MAX, array_problems, build, is_int, pick, same_bits, select_specs, storage

HEAD_SUM = ("promptdistill", "gemfilter")


@st.composite
def partial_specs(draw):
    spec = draw(select_specs())
    spec["method"] = pick(draw, st.sampled_from(HEAD_SUM), ["snapkv", "h2o", "streamingllm", 3], 15)
    spec["rows"] = pick(draw, st.just(1), [0, 2], 25)
    ranks = draw(st.integers(1, 4))
    spec["total_heads"] = pick(draw, st.just(spec["H"] * ranks), [spec["H"] - 1, spec["H"] * ranks + 1, 0, 2**63, "8"], 12)
    spec["head_offset"] = pick(draw, st.just(spec["H"] * draw(st.integers(0, ranks - 1))),
                               [-spec["H"], 1, spec["H"] * ranks, 2**64], 12)
    return spec


def partial_problem(spec, q, k, lengths):
    method, total, offset, H = spec["method"], spec["total_heads"], spec["head_offset"], spec["H"]
    if method not in HEAD_SUM:
        return f"method {method!r} has no partial scores"
    if not is_int(total) or not is_int(offset) or not -(2**63) <= total < 2**63 or not -(2**63) <= offset < 2**63:
        return "total_heads or head_offset is not an int64"
    problem = array_problems(spec, q, k, lengths)
    if problem:
        return problem
    if total < H or total % H:
        return "total_heads not a multiple of the rank's heads"
    if offset < 0 or offset % H or offset + H > total:
        return "head_offset outside the ranks"
    return None


def run_score_partial(spec):
    case = f"score_partial spec={json.dumps(spec)}"
    q, k, lengths, owners = build(spec)
    snap = fa.Snapshot(*owners)
    call = lambda: pd.score_partial(q, k, method=spec["method"], total_heads=spec["total_heads"],  # noqa: E731
                                    head_offset=spec["head_offset"], lengths=lengths)
    partial = outcome(call, partial_problem(spec, q, k, lengths), snap, case)
    if partial is None:
        return
    assert snap.unchanged(), f"{case}\nscore_partial changed its inputs"
    assert isinstance(partial, np.ndarray if spec["lib"] == "numpy" else torch.Tensor), case
    got = fa.to_numpy(partial) if spec["batched"] else fa.to_numpy(partial)[None]
    qf, kf = fa.to_f32(q), fa.to_f32(k)
    qf, kf = (qf, kf) if spec["batched"] else (qf[None], kf[None])
    assert got.shape == (spec["B"], spec["L"]) and got.dtype == np.float32, f"{case}\nshape {got.shape}"
    for b, n in enumerate(spec["lengths"] if spec["lengths"] is not None else [spec["L"]] * spec["B"]):
        want = sem.sum_heads(sem.head_terms(qf[b, 0], kf[b, :n], spec["method"]))
        assert same_bits(got[b, :n], want), f"{case}\nrequest {b}\n got {got[b, :n].tolist()}\nwant {want.tolist()}"
        assert (got[b, n:] == 0).all(), f"{case}\nrequest {b}: written past the length"


@st.composite
def finish_specs(draw):
    batched = draw(st.booleans())
    B = draw(st.integers(0, 3)) if batched else 1
    L = pick(draw, st.integers(1, 48), [0], 30)
    lengths = None
    if batched and draw(st.booleans()):
        lengths = [pick(draw, st.integers(1, max(L, 1)), [0, L + 1, -1], 20) for _ in range(B)]
    lib = draw(st.sampled_from(["numpy", "torch"]))
    return {"method": pick(draw, st.sampled_from(HEAD_SUM), ["snapkv", "h2o", "", 1], 20), "lib": lib,
            "dtype": pick(draw, st.just("float32"), ["float16", "float64", "int32"], 20), "batched": batched, "B": B, "L": L,
            "lengths": lengths, "lengths_storage": pick(draw, st.just("contiguous"), ["strided", "int64"], 20),
            "budget": pick(draw, st.integers(0, 50) | st.sampled_from([0, 1, max(L - 1, 0), L, L + 1, INT32_MAX]),
                           [INT32_MAX + 1, -1, 2**64, 1.0], 20),
            "total_heads": pick(draw, st.integers(1, 64) | st.just(2**24), [0, -3, 2**24 + 1, 2**63, None], 15),
            "pool": pick(draw, st.none() | st.sampled_from(["avg", "max", "none"]), ["mean", 0], 25),
            "pool_kernel": pick(draw, st.none() | st.sampled_from([1, 3, 5, 7]), [0, 4, -5, INT32_MAX, 2**31 + 1], 12),
            "scores": draw(storage()), "fill": draw(st.sampled_from(["normal", "normal", "integers", "specials", "constant"])),
            "seed": draw(st.integers(0, 2**32 - 1))}


def finish_problem(spec, scores):
    method, pool, kernel, budget, total = spec["method"], spec["pool"], spec["pool_kernel"], spec["budget"], spec["total_heads"]
    if method not in HEAD_SUM:
        return f"method {method!r}"
    if not is_int(budget) or not is_int(total):
        return "budget or total_heads not an int"
    if not -(2**63) <= budget < 2**63 or not -(2**63) <= total < 2**63:
        return "budget or total_heads beyond int64"
    if pool is not None and pool not in ("avg", "max", "none"):
        return f"pool {pool!r}"
    kernel = 5 if kernel is None else kernel
    if not 1 <= kernel <= INT32_MAX or kernel % 2 == 0:
        return "pool kernel"
    if not 0 <= budget <= INT32_MAX:
        return "budget outside [0, 2^31-1]"
    if spec["dtype"] != "float32":
        return f"scores {spec['dtype']}"
    if any(s < 0 for s in fa.element_strides(scores)):
        return "negative stride"
    if spec["L"] == 0:
        return "no tokens"
    if not 1 <= total <= 2**24:
        return "total_heads outside [1, 2^24]"
    if spec["lengths"] is not None:
        if not spec["batched"]:
            return "lengths on an unbatched call"
        if spec["lengths_storage"] == "int64" or (spec["lengths_storage"] == "strided" and len(spec["lengths"]) > 1):
            return "lengths storage"
        if any(not 1 <= n <= spec["L"] for n in spec["lengths"]):
            return "a length outside [1, L]"
    return None


def run_finish_select(spec):
    case = f"finish_select spec={json.dumps(spec)}"
    shape = (spec["B"], spec["L"]) if spec["batched"] else (spec["L"],)
    scores, owner = fa.make(spec["scores"], shape, spec["lib"], spec["dtype"], spec["seed"], spec["fill"])
    lengths, l_owner = None, None
    if spec["lengths"] is not None:
        n = np.array(spec["lengths"], np.int64 if spec["lengths_storage"] == "int64" else np.int32)
        if spec["lengths_storage"] == "strided":
            l_owner = np.repeat(n, 2)
            n = l_owner[::2]
        lengths = n if spec["lib"] == "numpy" else torch.from_numpy(n)
    snap = fa.Snapshot(owner, l_owner if l_owner is not None else lengths)
    kwargs = {name: spec[name] for name in ("pool", "pool_kernel") if spec[name] is not None}
    call = lambda: pd.finish_select(scores, spec["budget"], method=spec["method"], total_heads=spec["total_heads"],  # noqa: E731
                                    lengths=lengths, **kwargs)
    sel = outcome(call, finish_problem(spec, scores), snap, case)
    if sel is None:
        return
    assert snap.unchanged(), f"{case}\nfinish_select changed its inputs"
    method, pool, kernel = spec["method"], spec["pool"] or "avg", spec["pool_kernel"] or 5
    mode, zero_tail, _, k, keep_last = sem.method_plan(method, spec["budget"], 32, pool)
    summed = fa.to_f32(scores) if spec["batched"] else fa.to_f32(scores)[None]
    idx, pos, counts, final = (fa.to_numpy(x) if spec["batched"] else fa.to_numpy(x)[None]
                               for x in (sel.indices, sel.positions, sel.counts, sel.scores))
    cap = sem.kept_tokens(method, spec["budget"], 32, spec["L"])
    assert idx.shape == (spec["B"], cap) and final.shape == (spec["B"], spec["L"]), f"{case}\nshapes {idx.shape} {final.shape}"
    for b, n in enumerate(spec["lengths"] if spec["lengths"] is not None else [spec["L"]] * spec["B"]):
        s = summed[b, :n] / np.float32(spec["total_heads"]) if method == "promptdistill" else summed[b, :n]
        want_scores = sem.pool(s, mode, kernel, zero_tail)
        want = sem.topk(want_scores, n, k, keep_last)
        assert same_bits(final[b, :n], want_scores), f"{case}\nrequest {b}: pooled scores"
        assert (final[b, n:] == 0).all(), f"{case}\nrequest {b}: written past the length"
        c = int(counts[b])
        assert c == len(want) and idx[b, :c].tolist() == want, f"{case}\nrequest {b}: {idx[b, :c].tolist()} want {want}"
        assert pos[b, :c].tolist() == (list(range(c)) if method == "gemfilter" else want), f"{case}\nrequest {b}: positions"
        assert (idx[b, c:] == -1).all() and (pos[b, c:] == -1).all(), f"{case}\nrequest {b}: padding"


@seeded
@fuzz_settings(400)
@given(partial_specs())
def test_score_partial_fuzz(spec):
    check("score_partial", spec, run_score_partial)


@seeded
@fuzz_settings(500)
@given(finish_specs())
def test_finish_select_fuzz(spec):
    check("finish_select", spec, run_finish_select)


@pytest.mark.parametrize("spec", regressions("score_partial"))
def test_score_partial_regressions(spec):
    check("score_partial", spec, run_score_partial)


@pytest.mark.parametrize("spec", regressions("finish_select"))
def test_finish_select_regressions(spec):
    check("finish_select", spec, run_finish_select)
