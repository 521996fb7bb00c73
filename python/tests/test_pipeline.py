# SPDX-License-Identifier: Apache-2.0
"""promptdistill.published_default / pipeline_config / plan: the C++ PipelineConfig's published
defaults (the same lines `promptdistill defaults --json` prints), configurations from mappings
(vLLM's hf_overrides) with the C++ checks, and plans whose kept-token counts are those of the
pipelines (Tier A: integers)."""

import json
import subprocess

import pytest

import promptdistill as pd
from conftest import CLI


def test_published_defaults_are_the_cli_defaults():
    if not CLI.exists():
        pytest.skip(f"the promptdistill CLI is not built at {CLI}")
    out = subprocess.run([str(CLI), "defaults", "--json"], capture_output=True, text=True, check=True).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["method"] for line in lines] == ["promptdistill", "gemfilter", "snapkv", "h2o", "fastkv"]
    for line in lines:
        d = pd.published_default(line["method"])
        for key, value in line.items():
            if key == "pool" and line["method"] == "h2o":
                continue  # h2o never pools; the config keeps the shared pooling fields
            got = getattr(d, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, f"{line['method']}.{key}"


def test_pipeline_config_fills_what_is_not_given_with_the_published_default():
    base = pd.published_default("promptdistill")
    assert pd.pipeline_config() == base
    c = pd.pipeline_config({"method": "promptdistill", "selection_layers": [20], "n_topks": [256]})
    assert c.selection_layers == (20,) and c.n_topks == (256,)
    assert c.cache_truncation_end == base.cache_truncation_end and c.pool == base.pool
    assert pd.pipeline_config(c, pool_kernel=7).pool_kernel == 7
    assert c.replace(n_topks=[64]).n_topks == (64,)
    assert pd.pipeline_config({"method": "snapkv"}, budget=None) == pd.published_default("snapkv")  # None: not given
    for bad, words in [({"method": "snapkv", "budgett": 3}, "unknown pipeline setting"), ({"n_topks": 5}, "list of ints"),
                       ({"window": "32"}, "must be an int"), ({"method": 3}, "must be a string"),
                       ({"method": "streamingllm"}, "method must be one of")]:
        with pytest.raises(pd.Error, match=words):
            pd.pipeline_config(bad)
    with pytest.raises(pd.Error, match="PipelineConfig or a mapping"):
        pd.pipeline_config([("method", "full")])


def test_plan_of_every_method():
    p = pd.plan({"method": "promptdistill", "selection_layers": [4, 9], "n_topks": [100, 30], "cache_truncation_end": 1,
                 "pool": "max", "pool_kernel": 7}, 12)
    assert p.method == "promptdistill" and p.compression is None and not p.compresses(10**6)
    assert [s.layer for s in p.stages] == [4, 9]
    assert [s.truncates_cache for s in p.stages] == [True, False]
    assert [s.selection.budget for s in p.stages] == [100, 30]
    assert all(s.selection.pool == "max" and s.selection.pool_kernel == 7 for s in p.stages)
    # min(k, n - 1) + 1 at each stage, of the previous stage's survivors.
    for L in (1, 2, 30, 31, 32, 100, 101, 102, 5000):
        n0 = min(100, L - 1) + 1
        assert p.kept_tokens(L) == [n0, min(30, n0 - 1) + 1], L
    g = pd.plan({"method": "gemfilter", "selection_layers": [3], "n_topks": [64]}, 12)
    assert g.stages[0].selection.method == "gemfilter" and not g.stages[0].truncates_cache
    assert [g.kept_tokens(L) for L in (10, 64, 65, 1000)] == [[10], [64], [64], [64]]
    for method in ("snapkv", "h2o"):
        s = pd.plan({"method": method, "budget": 96, "window": 16, "per": "kv-group"}, 12)
        assert s.stages == () and s.compression.method == method and s.compression.per == "kv-group"
        assert s.compression.pool == ("none" if method == "h2o" else "avg")
        assert not s.compresses(95) and s.compresses(96)
        assert [s.kept_tokens(L) for L in (50, 95, 96, 97, 4000)] == [[50], [95], [96], [96], [96]]
        assert s.compression.select_kwargs() == dict(method=method, window=16, pool=s.compression.pool, pool_kernel=5,
                                                     per="kv-group")
    full = pd.plan({"method": "full"}, 12)
    assert full.stages == () and full.compression is None and full.kept_tokens(100) == []


def test_plan_of_score_layers_and_fastkv():
    """Each stage's score layers, and FastKV's per-layer budgets and propagation as the C++
    PipelinePlan::fastkv_layer gives them (constant and proportional modes)."""
    p = pd.plan({"selection_layers": [4, 9], "n_topks": [100, 30], "score_layers": [3, 4, 8, 9]}, 12)
    assert [s.score_layers for s in p.stages] == [(3, 4), (8, 9)]
    assert pd.plan({"selection_layers": [9], "n_topks": [30]}, 12).stages[0].score_layers == ()
    f = pd.plan({"method": "fastkv"}, 32)
    assert f.compression.method == "fastkv" and f.compression.per == "kv-group" and f.compression.pool == "max"
    assert (f.compression.budget, f.compression.window, f.compression.pool_kernel) == (512, 8, 7)
    assert f.fastkv_layer(0, 4000) == (512, True, 4000)
    assert f.fastkv_layer(15, 4000) == (512, True, 2048)   # the TSP layer propagates tsp_length
    assert f.fastkv_layer(15, 2048) == (512, True, 2048)   # no longer than tsp_length: nothing dropped
    assert f.fastkv_layer(3, 400) == (512, False, 400)     # below the budget: every token kept
    assert f.kept_tokens(4000) == [512] * 32 and f.kept_tokens(300) == [300] * 32
    r = pd.plan({"method": "fastkv", "retain_rate": 0.1, "tsp_rate": 0.2}, 32)
    assert r.fastkv_layer(0, 2449) == (244, True, 2449) and r.fastkv_layer(15, 2449) == (244, True, 489)
    assert r.fastkv_layer(16, 489) == (244, True, 489)      # int(489 * (0.1 / 0.2))
    with pytest.raises(pd.Error, match="fastkv_layer is fastkv"):
        p.fastkv_layer(0, 10)


def test_plan_refuses_what_the_pipelines_refuse():
    for config, num_layers, words in [
        ({"selection_layers": [11], "n_topks": [8]}, 12, "last layer"),
        ({"selection_layers": [12], "n_topks": [8]}, 12, "outside"),
        ({"selection_layers": [3, 3], "n_topks": [8, 4]}, 12, "strictly increasing"),
        ({"selection_layers": [3], "n_topks": [0]}, 12, "must be > 0"),
        ({"method": "gemfilter", "selection_layers": [1, 2], "n_topks": [8, 4]}, 12, "one filter layer"),
        ({"method": "snapkv", "budget": 8, "window": 16}, 12, "window"),
        ({"method": "h2o", "pool": "max"}, 12, "without pooling"),
        ({"method": "promptdistill"}, 0, "num_layers"),
        ({"selection_layers": [4], "n_topks": [8], "score_layers": [2, 3]}, 12, "must list the selection layer 4"),
        ({"method": "snapkv", "score_layers": [2]}, 12, "apply to promptdistill and gemfilter"),
        ({"method": "fastkv", "tsp_layer": 32}, 32, "tsp_layer 32 is outside"),
        ({"method": "fastkv", "budget": 8}, 32, "must exceed the window"),
        ({"method": "fastkv", "retain_rate": 0.1}, 32, "proportional mode"),
        ({"method": "fastkv", "per": "head"}, 32, "per KV group"),
    ]:
        with pytest.raises(pd.Error, match=words):
            pd.plan(config, num_layers)


def test_former_argument_names_warn_and_mean_the_same():
    import numpy as np
    rng = np.random.default_rng(3)
    q, k = rng.standard_normal((1, 4, 16), dtype=np.float32), rng.standard_normal((50, 2, 16), dtype=np.float32)
    with pytest.warns(DeprecationWarning, match="topk= is deprecated, use budget="):
        old = pd.select(q, k, topk=12)
    assert old.indices.tolist() == pd.select(q, k, 12).indices.tolist()
    with pytest.raises(pd.Error, match="not also topk"):
        pd.select(q, k, 12, topk=12)
    with pytest.raises(pd.Error, match="needs a budget"):
        pd.select(q, k)
    summed = rng.standard_normal(50).astype(np.float32)
    with pytest.warns(DeprecationWarning, match="topk= is deprecated"):
        old = pd.finish_select(summed, topk=9, total_heads=4)
    assert old.indices.tolist() == pd.finish_select(summed, 9, total_heads=4).indices.tolist()
