# SPDX-License-Identifier: Apache-2.0
"""promptdistill.score_partial and finish_select (selection under tensor parallelism) in one process:
R ranks' partial scores summed in rank order give select's Selection bit for bit on integer-valued
data and for R = 1 (Tier B), on NumPy and PyTorch, batched and not; the PyTorch operators pass
opcheck and torch.compile; bad calls raise promptdistill.Error. The real multi-process run is in
test_tensor_parallel_gloo.py. Seeded; every failure message names its case."""

import numpy as np
import pytest
import torch

import promptdistill as pd

ops = torch.ops.promptdistill
H, H_KV, D = 12, 4, 64  # D = 64: sqrt(d) = 8, so integer-valued data gives exact head terms


def qk(seed, L, *, integers, batch=None):
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    if integers:
        q = rng.integers(-4, 5, lead + (1, H, D)).astype(np.float32)
        k = rng.integers(-4, 5, lead + (L, H_KV, D)).astype(np.float32)
    else:
        q = rng.standard_normal(lead + (1, H, D)).astype(np.float32)
        k = rng.standard_normal(lead + (L, H_KV, D)).astype(np.float32)
    return q, k


def shard(q, k, ranks, rank):
    """Rank `rank`'s query heads and the KV heads they read (Megatron's equal shards in rank order)."""
    hq, hkv = H // ranks, H_KV // ranks
    return q[..., rank * hq:(rank + 1) * hq, :], k[..., rank * hkv:(rank + 1) * hkv, :], rank * hq


def sharded_select(q, k, budget, ranks, method, **kwargs):
    """Every rank's partial scores, summed in rank order (the all-reduce), then finish_select."""
    summed = None
    for r in range(ranks):
        q_r, k_r, offset = shard(q, k, ranks, r)
        partial = pd.score_partial(q_r, k_r, method=method, total_heads=H, head_offset=offset, lengths=kwargs.get("lengths"))
        summed = partial if summed is None else summed + partial
    return pd.finish_select(summed, budget, method=method, total_heads=H, **kwargs)


def assert_same_selection(got, want, case):
    for name in ("indices", "positions", "counts"):
        assert np.array_equal(np.asarray(getattr(got, name)), np.asarray(getattr(want, name))), f"{case}: {name} differs"
    assert np.asarray(got.scores).tobytes() == np.asarray(want.scores).tobytes(), f"{case}: pooled scores differ in bits"


@pytest.mark.parametrize("method", ["promptdistill", "gemfilter"])
@pytest.mark.parametrize("ranks", [1, 2, 4])
@pytest.mark.parametrize("pool", ["avg", "max", "none"])
def test_rank_order_sums_give_select_on_integer_data(method, ranks, pool):
    seed, L = 31, 150
    q, k = qk(seed, L, integers=True)
    case = f"method={method} ranks={ranks} pool={pool} seed={seed} L={L}"
    want = pd.select(q, k, 20, method=method, pool=pool)
    got = sharded_select(q, k, 20, ranks, method, pool=pool)
    assert isinstance(got.indices, np.ndarray), case
    assert_same_selection(got, want, case)


@pytest.mark.parametrize("method", ["promptdistill", "gemfilter"])
def test_one_rank_is_select_on_random_data(method):
    q, k = qk(32, 200, integers=False)
    assert_same_selection(sharded_select(q, k, 30, 1, method), pd.select(q, k, 30, method=method), f"method={method}")


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_torch_batched_ragged(ranks):
    seed, lengths = 33, [120, 77, 9]
    q, k = qk(seed, max(lengths), integers=True, batch=len(lengths))
    q, k, lens = torch.from_numpy(q), torch.from_numpy(k), torch.tensor(lengths, dtype=torch.int32)
    want = pd.select(q, k, 16, lengths=lens)
    got = sharded_select(q, k, 16, ranks, "promptdistill", lengths=lens)
    assert isinstance(got.indices, torch.Tensor) and got.indices.dtype == torch.int32
    assert_same_selection(got, want, f"ranks={ranks} seed={seed} lengths={lengths}")


def test_partial_scores_shape_and_meaning():
    q, k = qk(34, 40, integers=True)
    partial = pd.score_partial(q, k, total_heads=H)
    assert partial.shape == (40,) and partial.dtype == np.float32
    # One rank holding every head: the sum over heads of q.k / sqrt(d), exact on integers.
    expected = np.einsum("hd,lhd->l", q[0], np.repeat(k, H // H_KV, axis=1)) / 8.0
    assert np.array_equal(partial, expected.astype(np.float32))
    gemfilter = pd.score_partial(torch.from_numpy(q), torch.from_numpy(k), method="gemfilter", total_heads=H)
    assert torch.equal(gemfilter, torch.from_numpy(expected * 8.0).float())


def test_opcheck_and_compile():
    q, k = (torch.from_numpy(x) for x in qk(35, 64, integers=False, batch=2))
    lengths = torch.tensor([64, 50], dtype=torch.int32)
    torch.library.opcheck(ops.score_partial.default, (q[:, :, :6], k[:, :, :2], lengths, "promptdistill", 6, 12))
    summed, _ = ops.score_partial(q, k, lengths, "promptdistill", 0, 12)
    torch.library.opcheck(ops.finish_select.default, (summed, lengths, 10, "promptdistill", 12, "avg", 5))

    def layer(q, k, lengths):  # what one rank runs, with the all-reduce left out (one rank)
        partial, _ = ops.score_partial(q, k, lengths, "promptdistill", 0, 12)
        indices, counts, positions, scores, _ = ops.finish_select(partial, lengths, 10, "promptdistill", 12, "avg", 5)
        return indices, counts, positions, scores

    torch._dynamo.reset()
    eager = layer(q, k, lengths)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")(q, k, lengths)
    for name, a, b in zip(("indices", "counts", "positions", "scores"), eager, compiled):
        assert torch.equal(a, b), f"{name} differs from eager"


ERRORS = [
    ("snapkv needs no partial", lambda q, k, s: pd.score_partial(q, k, method="snapkv", total_heads=H), "select on the rank's own heads"),
    ("the rank's heads as total", lambda q, k, s: pd.score_partial(q[:, :6], k[:, :2], total_heads=5), "not the rank's"),
    ("offset inside a shard", lambda q, k, s: pd.score_partial(q[:, :6], k[:, :2], total_heads=H, head_offset=3), "rank * 6"),
    ("h2o finishes nothing", lambda q, k, s: pd.finish_select(s, 40, method="h2o", total_heads=H), "select on the rank's own heads"),
    ("no heads", lambda q, k, s: pd.finish_select(s, 10, total_heads=0), "total_heads must be >= 1"),
    ("scores of 3 dimensions", lambda q, k, s: pd.finish_select(s[None, None], 10, total_heads=H), "[L] or [B, L]"),
    ("float64 scores", lambda q, k, s: pd.finish_select(s.astype(np.float64), 10, total_heads=H), "float32"),
    ("a float budget", lambda q, k, s: pd.finish_select(s, 2.5, total_heads=H), "budget must be an int"),
    ("lengths unbatched", lambda q, k, s: pd.finish_select(s, 10, total_heads=H, lengths=np.array([5], np.int32)), "batched"),
]


@pytest.mark.parametrize("what,call,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(what, call, words):
    q, k = qk(36, 30, integers=False)
    scores = pd.score_partial(q, k, total_heads=H)
    before = scores.copy()
    with pytest.raises(pd.Error) as info:
        call(q, k, scores)
    assert words in str(info.value), f"{what}: {info.value}"
    assert np.array_equal(scores, before), f"{what}: the caller's scores changed"
