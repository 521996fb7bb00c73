# SPDX-License-Identifier: Apache-2.0
"""Selection under tensor parallelism with a real distributed runtime: torch.distributed on the gloo
backend (CPU, loopback), launched with torch.distributed.run, 3 processes each holding only its 3 of
SmolLM2's 9 query heads (and its 1 of 3 KV heads) at selection layer 13 of the golden prompt in
transformers. Each rank calls score_partial, dist.all_reduce, finish_select
(examples/tp_gloo_select.py). Checked: every rank gets the same selection and the same bits of
scores (Tier A/B: they finish the same all-reduced sums), equal to the single-process
promptdistill.select on all heads; the pooled scores differ from the single-process ones by at most
the bound of docs/algorithms.md §9 (gloo sums in its own order). Bounded in time."""

import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT

EXAMPLE = ROOT / "examples" / "tp_gloo_select.py"
RANKS, LAYER, BUDGET, KERNEL = 3, 13, 64, 5
TIME_LIMIT_S = 180  # the whole launch: three interpreters importing torch, a gloo rendezvous, one selection


def example_module():
    spec = importlib.util.spec_from_file_location("tp_gloo_select", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pooled_score_bound(q, k):
    """delta[j] = 2 gamma(H + K) A[j] (docs/algorithms.md §9), A the 5-tap average (zero padding,
    last token zeroed) of the mean over heads of |q_h . k_g(h),j / sqrt(d)|."""
    heads, kv_heads, dim = q.shape[1], k.shape[1], q.shape[2]
    terms = np.einsum("hd,lhd->lh", q[0].astype(np.float64), np.repeat(k, heads // kv_heads, axis=1).astype(np.float64))
    magnitude = np.abs(terms / np.sqrt(dim)).mean(axis=1)
    magnitude[-1] = 0.0
    averaged = np.convolve(magnitude, np.ones(KERNEL), mode="same") / KERNEL
    u, m = 2.0**-24, heads + KERNEL
    # 1 % of slack for the float64 einsum standing in for the library's f32 dot products.
    return 2.0 * m * u / (1.0 - m * u) * averaged * 1.01


def test_gloo_ranks_select_like_one_process(tmp_path, smollm2_model, smollm2_prompt):
    example = example_module()
    q, k = example.layer_queries_and_keys(smollm2_model, smollm2_prompt, LAYER)
    assert q.shape == (1, 9, 64) and k.shape == (len(smollm2_prompt), 3, 64)
    example.write_shards(q, k, RANKS, BUDGET, tmp_path)
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={RANKS}", str(EXAMPLE), "run",
               "--dir", str(tmp_path)]
    start = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, timeout=TIME_LIMIT_S, env=env, cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert out.returncode == 0, f"{' '.join(command)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"gloo run of {RANKS} ranks in {elapsed:.1f} s: {report}")
    assert report == {**report, "ranks": RANKS, "every_rank_same_selection": True, "equals_single_process": True}

    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(RANKS)]
    single = np.load(tmp_path / "single.npz")
    for r, result in enumerate(ranks):
        case = f"rank {r} of {RANKS}, layer {LAYER}, budget {BUDGET}, {len(smollm2_prompt)} tokens"
        assert result["heads"].tolist() == [3 * r, 3, 1], f"{case}: a rank holds its 3 query heads and 1 KV head"
        assert result["summed"].tobytes() == ranks[0]["summed"].tobytes(), f"{case}: the all-reduce gave other bits"
        assert result["scores"].tobytes() == ranks[0]["scores"].tobytes(), case
        assert np.array_equal(result["indices"], single["indices"]), f"{case}: not the single-process selection"
    diff = np.abs(ranks[0]["scores"].astype(np.float64) - single["scores"].astype(np.float64))
    bound = pooled_score_bound(q, k)
    assert (diff <= bound).all(), f"pooled scores beyond the bound at {np.flatnonzero(diff > bound)[:5]}"
    assert elapsed < TIME_LIMIT_S
