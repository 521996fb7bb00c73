# SPDX-License-Identifier: Apache-2.0
"""Concurrent callers: eight Python threads calling select and compact_kv (NumPy and PyTorch CPU
tensors, every method, contiguous and paged caches) on their own data at the same time get
exactly what each gets alone; and the operations run without the GIL, so that other Python
threads run meanwhile."""

import threading
import time

import numpy as np
import torch

import promptdistill as pd

H, H_KV, D = 4, 2, 32


def job(i):
    """One thread's work (seeded by i): a selection, then the compaction of a cache with it;
    returns every output as bytes."""
    rng = np.random.default_rng(100 + i)
    method = ("promptdistill", "gemfilter", "snapkv", "h2o")[i % 4]
    lengths = [90, 61]
    rows = {"promptdistill": 1, "gemfilter": 1, "snapkv": 8, "h2o": 90}[method]
    q = rng.standard_normal((2, rows, H, D)).astype(np.float32)
    k = rng.standard_normal((2, 90, H_KV, D)).astype(np.float32)
    lib = torch.from_numpy if i % 2 else np.asarray
    sel = pd.select(lib(q), lib(k), 24 + i, method=method, window=8, lengths=lib(np.array(lengths, np.int32)))
    out = [np.asarray(x).tobytes() for x in (sel.rows_indices, sel.rows_counts, sel.scores, sel.positions)]
    if i < 4:  # a contiguous cache, compacted in place
        cache_k, cache_v = rng.standard_normal((2, 96, H_KV, D)).astype(np.float32), rng.standard_normal((2, 96, H_KV, D)).astype(np.float32)
        cache_k, cache_v = lib(cache_k), lib(cache_v)
        res = pd.compact_kv(cache_k, cache_v, sel, layout="bshd")
    else:  # vLLM pages: request b owns pages 8b..8b+6 of 16
        page = 16
        storage_k = lib(rng.standard_normal((16, page, H_KV, D)).astype(np.float32))
        storage_v = lib(rng.standard_normal((16, page, H_KV, D)).astype(np.float32))
        table = lib(np.array([[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 11]], np.int32))
        cache_k, cache_v = storage_k, storage_v
        res = pd.compact_kv(cache_k, cache_v, sel, layout="paged_nhd", block_table=table)
    out += [np.asarray(x).tobytes() for x in (cache_k, cache_v, res.new_lengths, res.freed_pages)]
    return out


def test_eight_threads_get_what_each_gets_alone():
    alone = [job(i) for i in range(8)]
    rounds = 3
    together = [[None] * rounds for _ in range(8)]
    errors = []

    def work(i):
        try:
            for r in range(rounds):
                together[i][r] = job(i)
        except Exception as e:  # reported on the main thread
            errors.append(f"thread {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(8):
        for r in range(rounds):
            assert together[i][r] == alone[i], f"thread {i} round {r} differs from its run alone"


def test_the_work_runs_without_the_gil():
    """While one thread is inside a long H2O selection, the main thread wakes up from a short
    sleep: with the GIL held for the whole call it could only wake once the call had returned."""
    rng = np.random.default_rng(1)
    L = 5000  # about a second of H2O scoring here
    q = rng.standard_normal((L, 8, 64)).astype(np.float32)
    k = rng.standard_normal((L, 2, 64)).astype(np.float32)
    started = threading.Event()
    times = {}

    def long_call():
        times["start"] = time.perf_counter()
        started.set()
        pd.select(q, k, 64, method="h2o", window=8)
        times["end"] = time.perf_counter()

    worker = threading.Thread(target=long_call)
    worker.start()
    started.wait()
    time.sleep(0.02)
    times["woke"] = time.perf_counter()
    worker.join()
    took, woke = times["end"] - times["start"], times["woke"] - times["start"]
    assert took > 0.2, f"the selection took {took:.3f} s: too short to tell"
    assert woke < 0.5 * took, f"the main thread woke {woke:.3f} s into a {took:.3f} s selection: the GIL was held"
