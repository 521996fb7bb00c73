# SPDX-License-Identifier: Apache-2.0
"""Property-based fuzzing of `promptdistill.hf.generate`'s arguments (Hypothesis) on the tiny
random checkpoints: input_ids of every shape, dtype and container (empty, batched, float, bool,
out-of-vocabulary ids), methods, selection layers inside and outside the model, budgets and
n_topks <= 0 or past int32, windows, pooling, groupings, truncation, max_new_tokens, stop
tokens and configuration mappings. Arguments a documented rule refuses raise promptdistill.Error
(never an exception from inside transformers or PyTorch); every other call generates, with the
prompt length, the kept counts of the plan and at most max_new_tokens tokens. Replays
fuzz_regressions/hf_generate.jsonl."""

import functools
import json

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, strategies as st

import promptdistill as pd
from conftest import GOLDEN
from fuzz_specs import pick
from fuzz_support import check, fuzz_settings, outcome, regressions, seeded

MODELS = ("tiny_llama31", "tiny_qwen2", "tiny_phi35")
METHODS = ("full", "promptdistill", "gemfilter", "snapkv", "h2o")
INT32_MAX = 2**31 - 1
#: A configuration mapping the keywords override (None keywords do not).
SETTINGS = ("selection_layers", "n_topks", "cache_truncation_end", "budget", "window", "pool", "pool_kernel", "per")
GOOD_CONFIG = {"method": "snapkv", "budget": 16, "window": 4, "per": "kv-group"}


@functools.cache
def model(name):
    return transformers.AutoModelForCausalLM.from_pretrained(GOLDEN / name, dtype=torch.float32).eval()


def maybe(draw, valid, invalid, one_in=12):
    """None (not given) half the time, else a valid value or (once in `one_in`) an invalid one."""
    return None if draw(st.booleans()) else pick(draw, valid, invalid, one_in)


@st.composite
def generate_specs(draw):
    L = pick(draw, st.integers(1, 40), [0], 20)
    method = maybe(draw, st.sampled_from(METHODS), ["PromptDistill", "", 4], 15)
    if method in (None, "promptdistill", "gemfilter"):  # the published layer 13 is outside these 2-layer models
        layers = pick(draw, st.just([0]) if method != "gemfilter" else st.sampled_from([[0], [1]]),
                      [[2], [-1], [1, 0], [], [0.5], "0", [1], [0, 1]], 8)
    else:
        layers = maybe(draw, st.sampled_from([[0], [1], [0, 1]]), [[2], [-1]])
    return {"model": draw(st.sampled_from(MODELS)), "L": L,
            "ids": pick(draw, st.sampled_from(["tensor", "list", "tuple", "tensor_int32"]),
                        ["tensor1d", "tensor_batch2", "numpy", "tensor_float", "tensor_bool", "list_bool", "list_float",
                         "nested", "string"], 8),
            "bad_id": pick(draw, st.none(), ["negative", "vocab", "huge"], 12),
            "method": method, "selection_layers": layers,
            "n_topks": maybe(draw, st.lists(st.integers(1, 48), min_size=len(layers) if isinstance(layers, list) else 1,
                                            max_size=len(layers) if isinstance(layers, list) and layers else 1),
                             [[0], [-3], [2**40], [2**70], [8, 8, 8]]),
            "cache_truncation_end": maybe(draw, st.integers(-1, 3), [-2, 1.0]),
            "budget": maybe(draw, st.integers(1, 48), [0, -1, 2**40, "8"]),
            "window": maybe(draw, st.integers(1, 12), [0, -4, 2**33]),
            "pool": maybe(draw, st.sampled_from(["avg", "max", "none"]), ["mean", 1]),
            "pool_kernel": maybe(draw, st.sampled_from([1, 3, 5, 7]), [0, 4, -1, 2**31 + 1]),
            "per": maybe(draw, st.sampled_from(["head", "kv-group"]), ["query", ""]),
            "max_new_tokens": pick(draw, st.integers(0, 3), [-1, 2.0, True], 10),
            "eos_token_id": pick(draw, st.none() | st.just([]), [2, "2", [2.5], -1], 10),
            "config": pick(draw, st.none() | st.just(GOOD_CONFIG), [{"methd": "full"}, {"budget": "x"}, "promptdistill"], 20),
            "seed": draw(st.integers(0, 2**32 - 1))}


def make_ids(spec, vocab):
    ids = np.random.default_rng(spec["seed"]).integers(3, vocab, spec["L"]).tolist()
    if spec["bad_id"] and ids:
        ids[len(ids) // 2] = {"negative": -1, "vocab": vocab, "huge": 2**40}[spec["bad_id"]]
    kind = spec["ids"]
    if kind in ("tensor", "tensor1d", "tensor_batch2", "tensor_float", "tensor_bool", "tensor_int32"):
        if spec["bad_id"] == "huge" and ids:
            ids[len(ids) // 2] = 2**40  # still an int64
        t = torch.tensor([ids], dtype=torch.int64) if ids else torch.zeros((1, 0), dtype=torch.int64)
        return {"tensor": t, "tensor1d": t[0], "tensor_batch2": t.repeat(2, 1), "tensor_float": t.float() + 0.25,
                "tensor_bool": t > 10, "tensor_int32": t.to(torch.int32) if spec["bad_id"] != "huge" else t}[kind]
    return {"list": ids, "tuple": tuple(ids), "numpy": np.array([ids], np.int64), "list_bool": [True] + ids,
            "list_float": [float(i) for i in ids] + [1.5], "nested": [ids], "string": " ".join(map(str, ids))}[kind]


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def effective(spec):
    """The settings given: the configuration mapping's, overridden by the keywords given."""
    given = dict(spec["config"]) if spec["config"] == GOOD_CONFIG else {}
    given.update({k: spec[k] for k in ("method",) + SETTINGS if spec[k] is not None})
    return given


def problem_of(spec, m):
    """The documented rule the arguments break, or None."""
    vocab, N = m.config.vocab_size, m.config.num_hidden_layers
    if spec["ids"] not in ("tensor", "list", "tuple", "tensor_int32"):
        return f"input_ids as {spec['ids']}"
    if spec["bad_id"] and spec["L"] > 0:
        return f"token id {spec['bad_id']}"
    if not is_int(spec["max_new_tokens"]) or spec["max_new_tokens"] < 0:
        return "max_new_tokens"
    if spec["config"] not in (None, GOOD_CONFIG):
        return "config with an unknown key, a wrong type or not a mapping"
    eos = spec["eos_token_id"]
    if eos is not None and not (is_int(eos) and eos >= 0 or isinstance(eos, list) and all(is_int(t) and t >= 0 for t in eos)):
        return "eos_token_id"
    given = effective(spec)
    method = given.get("method", "promptdistill")
    if method not in METHODS:
        return f"method {method!r}"
    defaults = pd.published_default(method)
    settings = {k: given.get(k, getattr(defaults, k)) for k in
                ("selection_layers", "n_topks", "cache_truncation_end", "budget", "window", "pool", "pool_kernel", "per")}
    if not all(isinstance(x, list) or isinstance(x, tuple) for x in (settings["selection_layers"], settings["n_topks"])) or \
            not all(is_int(x) for x in list(settings["selection_layers"]) + list(settings["n_topks"])):
        return "selection_layers or n_topks not lists of ints"
    if not all(is_int(settings[k]) for k in ("cache_truncation_end", "budget", "window", "pool_kernel")):
        return "a setting is not an int"
    if not all(isinstance(settings[k], str) for k in ("pool", "per")):
        return "pool or per not a string"
    if any(not -(2**63) <= x < 2**63 for x in list(settings["n_topks"]) + list(settings["selection_layers"])):
        return "a value beyond int64"
    if not 1 <= settings["window"] < 2**31 or not 1 <= settings["pool_kernel"] < 2**31:
        return "window or pool_kernel outside [1, 2^31-1]"
    if settings["pool"] not in ("avg", "max", "none") or settings["per"] not in ("head", "kv-group"):
        return "pool or per unknown"
    if spec["L"] < 1:
        return "empty prompt"
    if method in ("promptdistill", "gemfilter"):
        layers, topks = list(settings["selection_layers"]), list(settings["n_topks"])
        if not layers or len(layers) != len(topks) or (method == "gemfilter" and len(layers) != 1):
            return "selection_layers and n_topks do not pair"
        if settings["cache_truncation_end"] < -1:
            return "cache_truncation_end < -1"
        if any(x < 0 for x in layers) or any(b <= a for a, b in zip(layers, layers[1:])):
            return "selection layers negative or not increasing"
        if any(not 0 < k <= INT32_MAX for k in topks) or settings["pool_kernel"] % 2 == 0:
            return "n_topks outside [1, 2^31-1] or an even kernel"
        if any(x >= N for x in layers) or (method == "promptdistill" and layers[-1] == N - 1):
            return "a selection layer outside the model or the last one"
    if method in ("snapkv", "h2o"):
        budget, window = settings["budget"], settings["window"]
        if budget <= 0:
            return "budget <= 0"
        if method == "h2o" and (settings["pool"] != "avg" or settings["pool_kernel"] != 5):
            return "h2o does not pool"
        if budget > INT32_MAX or budget < window or settings["pool_kernel"] % 2 == 0:
            return "budget below the window, past int32, or an even kernel"
    return None


def run_generate(spec):
    case = f"hf.generate spec={json.dumps(spec)}"
    m = model(spec["model"])
    ids = make_ids(spec, m.config.vocab_size)
    kwargs = {k: spec[k] for k in ("method", "selection_layers", "n_topks", "cache_truncation_end", "budget", "window", "pool",
                                   "pool_kernel", "per") if spec[k] is not None}
    state = {k: v.clone() for k, v in m.state_dict().items()}
    snap = type("NoArrays", (), {"unchanged": lambda self: True})()
    call = lambda: pd.hf.generate(m, ids, spec["config"], max_new_tokens=spec["max_new_tokens"],  # noqa: E731
                                  eos_token_id=spec["eos_token_id"], **kwargs)
    result = outcome(call, problem_of(spec, m), snap, case)
    assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items()), f"{case}\nthe model's weights changed"
    if result is None:
        return
    L = spec["L"]
    assert result.prompt_tokens == L, case
    assert len(result.generated_ids) <= spec["max_new_tokens"], case
    assert all(0 <= t < m.config.vocab_size for t in result.generated_ids), case
    p = pd.plan(pd.pipeline_config(effective(spec)), m.config.num_hidden_layers)
    if p.compression is not None:
        assert result.retained == [p.kept_tokens(L)[0]] * m.config.num_hidden_layers, case
    else:
        assert result.retained == p.kept_tokens(L), f"{case}\nretained {result.retained}, the plan keeps {p.kept_tokens(L)}"


@seeded
@fuzz_settings(150)
@given(generate_specs())
def test_hf_generate_fuzz(spec):
    check("hf_generate", spec, run_generate)


@pytest.mark.parametrize("spec", regressions("hf_generate"))
def test_hf_generate_regressions(spec):
    check("hf_generate", spec, run_generate)
