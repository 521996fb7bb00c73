# SPDX-License-Identifier: Apache-2.0
"""Every bad input raises promptdistill.Error (a ValueError) with the library's message, and leaves
what the caller owns unchanged. No input crashes the interpreter."""

import numpy as np
import pytest
import torch

import promptdistill as pd

H, H_KV, D, L = 4, 2, 16, 40
RNG = np.random.default_rng(0)
Q1 = RNG.standard_normal((1, H, D)).astype(np.float32)      # one query row (promptdistill, gemfilter)
QW = RNG.standard_normal((8, H, D)).astype(np.float32)      # a window of queries (snapkv)
K = RNG.standard_normal((L, H_KV, D)).astype(np.float32)
QB = RNG.standard_normal((2, 1, H, D)).astype(np.float32)   # batched
KB = RNG.standard_normal((2, L, H_KV, D)).astype(np.float32)


def lengths(*values):
    return np.array(values, np.int32)


SELECT_ERRORS = [
    # (what, call, words the message must contain)
    ("q of rank 2", lambda: pd.select(Q1[0], K, 8), "dimensions"),
    ("q and k of different ranks", lambda: pd.select(QB, K, 8), "dimensions"),
    ("head_dim differs", lambda: pd.select(Q1, K[:, :, :8].copy(), 8), "head_dim differs"),
    ("several query rows for promptdistill", lambda: pd.select(QW, K, 8), "one query row"),
    ("heads that do not divide", lambda: pd.select(RNG.standard_normal((1, 3, D)).astype(np.float32), K, 8), "not a multiple"),
    ("head_dim not a multiple of 8", lambda: pd.select(Q1[:, :, :12].copy(), K[:, :, :12].copy(), 8), "head_dim 12"),
    ("empty prompt", lambda: pd.select(Q1, K[:0], 8), "no tokens"),
    ("no query rows", lambda: pd.select(QW[:0], K, 16, method="snapkv", window=8), "no query rows"),
    ("an empty request in a batch", lambda: pd.select(QB, KB, 8, lengths=lengths(40, 0)), "empty prompt"),
    ("float64", lambda: pd.select(Q1.astype(np.float64), K.astype(np.float64), 8), "float64"),
    ("integers", lambda: pd.select(Q1.astype(np.int32), K.astype(np.int32), 8), "int32"),
    ("q and k of different dtypes", lambda: pd.select(Q1, K.astype(np.float16), 8), "same dtype"),
    ("unknown method", lambda: pd.select(Q1, K, 8, method="streamingllm"), "method must be"),
    ("unknown pooling", lambda: pd.select(QW, K, 16, method="snapkv", window=8, pool="median"), "pool must be"),
    ("unknown grouping", lambda: pd.select(QW, K, 16, method="snapkv", window=8, per="layer"), "must be one of kv-group, head"),
    ("negative budget", lambda: pd.select(Q1, K, -1), "must be >= 0"),
    ("capacity below the window", lambda: pd.select(QW, K, 4, method="snapkv", window=8), "window"),
    ("even pool kernel", lambda: pd.select(Q1, K, 8, pool_kernel=4), "odd"),
    ("budget not an int", lambda: pd.select(Q1, K, 8.5), "budget must be an int"),
    ("budget beyond int64", lambda: pd.select(torch.from_numpy(Q1), torch.from_numpy(K), 2**70), "does not fit int64"),
    ("budget beyond int32", lambda: pd.select(Q1, K, 2**40), "does not fit int32"),
    ("lengths beyond the array", lambda: pd.select(QB, KB, 8, lengths=lengths(40, 41)), "exceeds"),
    ("negative length", lambda: pd.select(QB, KB, 8, lengths=lengths(-1, 40)), "negative"),
    ("lengths of the wrong dtype", lambda: pd.select(QB, KB, 8, lengths=np.array([40, 40], np.int64)), "int32"),
    ("lengths of the wrong size", lambda: pd.select(QB, KB, 8, lengths=lengths(40, 40, 40)), "elements"),
    ("non-contiguous lengths", lambda: pd.select(QB, KB, 8, lengths=np.array([40, 0, 40, 0], np.int32)[::2]), "contiguous"),
    ("lengths on an unbatched call", lambda: pd.select(Q1, K, 8, lengths=lengths(40)), "batched"),
    ("head_dim not contiguous", lambda: pd.select(Q1, np.ascontiguousarray(np.repeat(K, 2, axis=2))[:, :, ::2], 8), "stride 1"),
    ("negative strides", lambda: pd.select(Q1, K[::-1], 8), ""),
    ("h2o with fewer query rows than tokens", lambda: pd.select(QW, K, 16, method="h2o", window=8), "exceeds"),
    ("q is not an array", lambda: pd.select(Q1.tolist(), K, 8), "must be an array"),
    ("k is not an array", lambda: pd.select(Q1, "keys", 8), "must be an array"),
    ("q NumPy, k PyTorch", lambda: pd.select(Q1, torch.from_numpy(K), 8), "one library"),
    ("an object array", lambda: pd.select(np.empty((1, H, D), object), K, 8), "dtype object"),
    ("a byte-swapped array", lambda: pd.select(Q1.astype(">f4"), K.astype(">f4"), 8), "native-endian"),
    ("tensors on different devices", lambda: pd.select(torch.from_numpy(Q1), torch.from_numpy(K).to("meta"), 8), "same device"),
    ("a tensor on an unsupported device", lambda: pd.select(torch.from_numpy(Q1).to("meta"), torch.from_numpy(K).to("meta"), 8),
     "CPU and on CUDA"),
]


@pytest.mark.parametrize("what,call,words", SELECT_ERRORS, ids=[c[0] for c in SELECT_ERRORS])
def test_select_errors(what, call, words):
    with pytest.raises(pd.Error) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert words in str(info.value), f"{what}: {info.value}"


def test_inputs_unchanged_and_error_carries_the_status_code():
    q, k = Q1.copy(), K.copy()
    with pytest.raises(pd.Error) as info:
        pd.select(q, k, -5)
    assert str(info.value).startswith("invalid argument: ") and info.value.code == "invalid argument"
    assert np.array_equal(q, Q1) and np.array_equal(k, K)


def cache_and_selection(method="promptdistill", per="kv-group"):
    q = QW if method == "snapkv" else Q1
    sel = pd.select(q, K, 16, method=method, window=8, per=per)
    rng = np.random.default_rng(3)
    return rng.standard_normal((48, H_KV, D)).astype(np.float32), rng.standard_normal((48, H_KV, D)).astype(np.float32), sel


COMPACT_ERRORS = [
    ("unknown layout", dict(layout="nhd"), "layout must be"),
    ("seq_lens beyond the cache", dict(seq_lens=lengths(49)), "exceeds"),
    ("paged layout without a block table", dict(layout="paged_nhd"), "block_table"),
    ("block table on a contiguous layout", dict(block_table=np.zeros((1, 4), np.int32)), "only used by the paged"),
    ("page metadata on a paged layout", dict(layout="paged_nhd", block_table=np.zeros((1, 8), np.int32),
                                            kv_indptr=np.zeros(2, np.int32)), "only used by the flashinfer"),
    ("flashinfer without its metadata", dict(layout="flashinfer_nhd"), "kv_indptr"),
    ("seq_lens of the wrong dtype", dict(seq_lens=np.array([40], np.int64)), "int32"),
]


@pytest.mark.parametrize("what,kwargs,words", COMPACT_ERRORS, ids=[c[0] for c in COMPACT_ERRORS])
def test_compact_errors_leave_the_cache_unchanged(what, kwargs, words):
    k, v, sel = cache_and_selection()
    k0, v0 = k.copy(), v.copy()
    with pytest.raises(pd.Error) as info:
        pd.compact_kv(k, v, sel, **kwargs)
    assert words in str(info.value), f"{what}: {info.value}"
    assert np.array_equal(k, k0) and np.array_equal(v, v0), f"{what}: the cache changed"


def test_compact_kv_refuses():
    k, v, sel = cache_and_selection()
    with pytest.raises(pd.Error, match="read-only"):
        k.flags.writeable = False
        pd.compact_kv(k, v, sel)
    k, v, sel = cache_and_selection()
    with pytest.raises(pd.Error, match="same dtype"):
        pd.compact_kv(k, v.astype(np.float16), sel)
    with pytest.raises(pd.Error, match="dimensions"):
        pd.compact_kv(k[0], v[0], sel)
    with pytest.raises(pd.Error, match="must be what promptdistill.select returned"):
        pd.compact_kv(k, v, {"indices": [1, 2]})
    # One selection per query head does not fit a cache of fewer KV heads.
    k, v, per_head = cache_and_selection("snapkv", per="head")
    k0 = k.copy()
    with pytest.raises(pd.Error, match="GQA-expanded") as info:
        pd.compact_kv(k, v, per_head)
    assert info.value.code == "unsupported" and np.array_equal(k, k0)
    # A page table entry outside the cache.
    storage = np.zeros((4, 8, H_KV, D), np.float32)
    with pytest.raises(pd.Error, match="out of range|outside"):
        pd.compact_kv(storage, storage.copy(), sel, layout="paged_nhd", block_table=np.array([[0, 1, 2, 9, 3]], np.int32))


def test_gather_and_remap_errors():
    _, _, sel = cache_and_selection()
    with pytest.raises(pd.Error, match="dimensions"):
        pd.gather(np.zeros((2, L, 8), np.float32), sel)
    with pytest.raises(pd.Error, match="float32, float16, bfloat16 or int32"):
        pd.gather(np.zeros((L, 8), np.float64), sel)
    with pytest.raises(pd.Error, match="outside"):  # the selection points past the rows given
        pd.gather(np.zeros((10, 8), np.float32), sel)
    _, _, snap = cache_and_selection("snapkv")
    with pytest.raises(pd.Error, match="head-uniform"):
        pd.gather(np.zeros((L, 8), np.float32), snap)
    with pytest.raises(pd.Error, match="int32"):
        pd.remap_positions(sel, np.arange(L, dtype=np.int64))
    with pytest.raises(pd.Error, match="outside"):
        pd.remap_positions(sel, np.arange(5, dtype=np.int32))
