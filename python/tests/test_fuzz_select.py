# SPDX-License-Identifier: Apache-2.0
"""Property-based fuzzing of `select`, `score_partial` and `finish_select` (Hypothesis): generated
shapes, dtypes, storages (views at odd offsets, other axis orders, strided, reversed, stride 0),
ragged, zero and too-long lengths, budgets (0, 1, L-1, L, huge), windows, pooling and head
groupings, valid and invalid. Every example must either equal the NumPy statement of the
semantics (fuzz_semantics.py) or raise promptdistill.Error with the caller's arrays unchanged,
and a call the documented rules allow must succeed. Replays fuzz_regressions/select*.jsonl."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given

import promptdistill as pd
import fuzz_arrays as fa
import fuzz_semantics as sem
from fuzz_specs import array_problems, build, name_problems, same_bits, select_specs
from fuzz_support import Unexpected, check, fuzz_settings, outcome, regressions, seeded


def call_select(spec, q, k, lengths):
    kwargs = {name: spec[name] for name in ("window", "pool", "pool_kernel") if spec[name] is not None}
    return pd.select(q, k, spec["budget"], method=spec["method"], per=spec["per"], lengths=lengths, **kwargs)


def rows_of(x, batched, head_uniform):
    """A result array as [B, rows, ...] NumPy."""
    x = fa.to_numpy(x)
    x = x if batched else x[None]
    return x[:, None] if head_uniform else x


def compare_select(spec, q, k, sel, case):
    method, batched = spec["method"], spec["batched"]
    uniform = method in ("promptdistill", "gemfilter")
    window = 32 if spec["window"] is None else spec["window"]
    pool, kernel = spec["pool"] or "avg", spec["pool_kernel"] or 5
    B, L = spec["B"], spec["L"]
    lengths = spec["lengths"] if spec["lengths"] is not None else [L] * B
    R = 1 if uniform else (spec["H_kv"] if spec["per"] == "kv-group" else spec["H"])
    cap = sem.kept_tokens(method, spec["budget"], window, L)
    idx, pos, counts, scores = (rows_of(x, batched, uniform) for x in (sel.indices, sel.positions, sel.counts, sel.scores))
    want_type = (np.ndarray, np.generic) if spec["lib"] == "numpy" else torch.Tensor
    assert all(isinstance(x, want_type) for x in (sel.indices, sel.positions, sel.counts, sel.scores)), case
    assert idx.shape == (B, R, cap) and pos.shape == idx.shape and counts.shape == (B, R) and scores.shape == (B, R, L), \
        f"{case}\nshapes {idx.shape} {counts.shape} {scores.shape}, want {(B, R, cap)}"
    qf, kf = fa.to_f32(q), fa.to_f32(k)
    qf, kf = (qf, kf) if batched else (qf[None], kf[None])
    finite = np.isfinite(qf).all() and np.isfinite(kf).all()
    mode, _, _, topk_k, keep_last = sem.method_plan(method, spec["budget"], window, pool)
    for b, n in enumerate(lengths):
        where = f"{case}\nrequest {b} (length {n})"
        want_idx, want_pos, want_scores, ref = sem.select_expected(qf[b], kf[b], n, method, spec["budget"], window, pool, kernel,
                                                                  spec["per"])
        assert (scores[b, :, n:] == 0).all(), f"{where}: scores past the length written"
        for r in range(R):
            c = int(counts[b, r])
            if uniform:
                assert same_bits(scores[b, r, :n], want_scores[r]), \
                    f"{where}: scores\n got {scores[b, r, :n].tolist()}\nwant {want_scores[r].tolist()}"
                expect = want_idx[r]
            else:
                expect = sem.topk(scores[b, r, :n], n, topk_k, keep_last)
                if finite:
                    assert np.allclose(scores[b, r, :n], ref[r], rtol=1e-4, atol=1e-5), \
                        f"{where} row {r}: softmax sums\n got {scores[b, r, :n].tolist()}\nwant {ref[r].tolist()}"
            assert c == len(expect) and idx[b, r, :c].tolist() == expect, f"{where} row {r}: indices {idx[b, r, :c].tolist()} want {expect}"
            want_p = list(range(c)) if method == "gemfilter" else expect
            assert pos[b, r, :c].tolist() == want_p, f"{where} row {r}: positions"
            assert (idx[b, r, c:] == -1).all() and (pos[b, r, c:] == -1).all(), f"{where} row {r}: padding"


def run_select(spec):
    case = f"select spec={json.dumps(spec)}"
    q, k, lengths, owners = build(spec)
    problem = name_problems(spec) or array_problems(spec, q, k, lengths)
    snap = fa.Snapshot(*owners)
    sel = outcome(lambda: call_select(spec, q, k, lengths), problem, snap, case)
    if sel is None:
        return
    if not snap.unchanged():
        raise Unexpected(f"{case}\nselect changed its inputs")
    compare_select(spec, q, k, sel, case)


@seeded
@fuzz_settings(1000)
@given(select_specs())
def test_select_fuzz(spec):
    check("select", spec, run_select)


@pytest.mark.parametrize("spec", regressions("select"))
def test_select_regressions(spec):
    check("select", spec, run_select)
