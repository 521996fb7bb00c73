# SPDX-License-Identifier: Apache-2.0
"""promptdistill.select against the CLI's `select` (the same semantics by contract), on NumPy and
PyTorch CPU inputs, and the batched ragged form against one request at a time. Seeded; every
failure message names its case."""

import numpy as np
import pytest
import torch

import promptdistill as pd
from conftest import selected_rows

H, H_KV, D = 6, 2, 16  # three query heads per KV head, as in grouped-query models
BUDGETS = {"promptdistill": 12, "gemfilter": 12, "snapkv": 40, "h2o": 40}
WINDOW = 8


def query_rows(method, L):
    return {"promptdistill": 1, "gemfilter": 1, "snapkv": WINDOW, "h2o": L}[method]


def random_qk(seed, method, L):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((query_rows(method, L), H, D)).astype(np.float32)
    k = rng.standard_normal((L, H_KV, D)).astype(np.float32)
    return q, k


CASES = [("promptdistill", "kv-group", "avg"), ("gemfilter", "kv-group", "avg"), ("snapkv", "kv-group", "avg"),
         ("snapkv", "head", "avg"), ("snapkv", "kv-group", "max"), ("h2o", "kv-group", "avg"), ("h2o", "head", "avg")]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("method,per,pool", CASES)
def test_select_matches_cli(cli, tmp_path, method, per, pool, dtype):
    seed, L = 11, 80
    q, k = random_qk(seed, method, L)
    case = f"method={method} per={per} pool={pool} dtype={dtype} seed={seed} L={L}"
    if dtype == "float16":  # the CLI reads float16 .npy files exactly
        q, k = q.astype(np.float16), k.astype(np.float16)
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "k.npy", k)
    expected = cli("select", "--method", method, "--q", tmp_path / "q.npy", "--k", tmp_path / "k.npy", "--budget", BUDGETS[method],
                   "--window", WINDOW, "--per", per, "--pool", pool, "--dtype", {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}[dtype])
    if dtype == "bfloat16":  # the CLI rounds to nearest even, as PyTorch does
        sel = pd.select(torch.from_numpy(q).bfloat16(), torch.from_numpy(k).bfloat16(), BUDGETS[method], method=method, window=WINDOW,
                        per=per, pool=pool)
        indices, positions, scores = sel.indices.numpy(), sel.positions.numpy(), sel.scores.numpy()
    else:
        sel = pd.select(q, k, BUDGETS[method], method=method, window=WINDOW, per=per, pool=pool)
        indices, positions, scores = sel.indices, sel.positions, sel.scores
        assert isinstance(indices, np.ndarray), case
    if method in pd._engine.HEAD_UNIFORM:
        assert indices.tolist() == expected["indices"], case
        assert positions.tolist() == expected["positions"], case
        assert np.array_equal(scores, np.asarray(expected["scores"], np.float32)), case
        assert int(sel.counts) == len(expected["indices"]), case
    else:
        rows = H if per == "head" else H_KV
        assert indices.shape == (rows, min(BUDGETS[method], L)), case
        assert indices.tolist() == selected_rows(expected["indices"]), case
        assert positions.tolist() == selected_rows(expected["positions"]), case
        assert sel.counts.tolist() == [indices.shape[1]] * rows, case


@pytest.mark.parametrize("method", ["promptdistill", "gemfilter", "snapkv", "h2o"])
def test_torch_cpu_equals_numpy(method):
    q, k = random_qk(3, method, 64)
    a = pd.select(q, k, 20, method=method, window=WINDOW)
    b = pd.select(torch.from_numpy(q), torch.from_numpy(k), 20, method=method, window=WINDOW)
    assert isinstance(b.indices, torch.Tensor) and b.indices.dtype == torch.int32
    for name in ("indices", "positions", "scores", "counts"):
        assert np.array_equal(getattr(a, name), getattr(b, name).numpy()), f"{method}: {name} differs"


class ForeignArray:
    """A DLPack producer that is neither NumPy nor PyTorch (as CuPy or JAX arrays are)."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_any_dlpack_array_runs_as_numpy():
    q, k = random_qk(5, "promptdistill", 50)
    sel = pd.select(ForeignArray(q), ForeignArray(k), 9)
    assert isinstance(sel.indices, np.ndarray)
    assert sel.indices.tolist() == pd.select(q, k, 9).indices.tolist()


@pytest.mark.parametrize("method,per", [("promptdistill", "kv-group"), ("gemfilter", "kv-group"), ("snapkv", "kv-group"),
                                        ("snapkv", "head"), ("h2o", "kv-group")])
@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_batched_ragged_equals_one_request_at_a_time(method, per, library):
    seed, lengths = 21, [80, 57, 33]
    B, L_max = len(lengths), max(lengths)
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((B, L_max, H_KV, D)).astype(np.float32)
    rows = query_rows(method, L_max)
    q = rng.standard_normal((B, rows, H, D)).astype(np.float32)
    as_lib = (lambda x: x) if library == "numpy" else torch.from_numpy
    sel = pd.select(as_lib(q), as_lib(k), 24, method=method, window=WINDOW, per=per, lengths=as_lib(np.array(lengths, np.int32)))
    indices, counts = np.asarray(sel.indices), np.asarray(sel.counts)
    for b, L in enumerate(lengths):
        case = f"method={method} per={per} library={library} seed={seed} request={b} L={L}"
        # Request b alone: its own keys, and its query rows (H2O: the first L rows, one per token).
        q_b = q[b, :L] if method == "h2o" else q[b]
        alone = pd.select(q_b, k[b, :L], 24, method=method, window=WINDOW, per=per)
        if method in pd._engine.HEAD_UNIFORM:
            n = int(counts[b])
            assert indices[b, :n].tolist() == alone.indices.tolist(), case
            assert (indices[b, n:] == -1).all(), case
        else:
            n = int(counts[b, 0])
            assert counts[b].tolist() == alone.counts.tolist(), case
            assert indices[b, :, :n].tolist() == alone.indices.tolist(), case
            assert (indices[b, :, n:] == -1).all(), case


def test_selection_shapes():
    q, k = random_qk(8, "snapkv", 70)
    sel = pd.select(q, k, 40, method="snapkv", window=WINDOW)
    assert sel.indices.shape == (H_KV, 40) and sel.positions.shape == (H_KV, 40)
    assert sel.scores.shape == (H_KV, 70) and sel.scores.dtype == np.float32
    assert not sel.batched and sel.lengths.tolist() == [70]
    sel = pd.select(q, k, 40, method="snapkv", window=WINDOW, per="head")
    assert sel.indices.shape == (H, 40)
    # A prompt shorter than the capacity keeps every token.
    short = pd.select(q[:, :, :], k[:30], 40, method="snapkv", window=WINDOW)
    assert short.indices.tolist() == [list(range(30))] * H_KV
    # PromptDistill keeps min(k, L - 1) + 1 tokens, the last one always.
    q1, k1 = random_qk(8, "promptdistill", 70)
    for budget, kept in ((0, 1), (10, 11), (69, 70), (500, 70)):
        sel = pd.select(q1, k1, budget)
        assert sel.indices.shape == (kept,) and sel.indices[-1] == 69, f"budget={budget}"
        assert (np.diff(sel.indices) > 0).all(), f"budget={budget}: not ascending"
    # GemFilter renumbers the kept tokens (its second pass is a fresh prefill).
    sel = pd.select(q1, k1, 10, method="gemfilter")
    assert sel.positions.tolist() == list(range(10))
