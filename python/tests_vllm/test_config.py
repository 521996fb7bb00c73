# SPDX-License-Identifier: Apache-2.0
"""Bad configurations fail before any request, with the library's message: in engine_kwargs, and
at engine start when the hf_overrides are written by hand; engine settings that would give wrong
tokens (prefix caching, chunked prefill) are refused at engine start, naming the setting."""

import json

import pytest

import promptdistill
import promptdistill.vllm as pdv

BAD = [
    (dict(method="snapkv"), "method must be one of full, promptdistill, gemfilter"),
    (dict(method="bogus"), "method must be one of"),
    (dict(selection_layers=[30], n_topks=[256]), r"selection layer 30 is outside \[0, 30\)"),
    (dict(selection_layers=[29], n_topks=[256]), "selection layer 29 is the last layer"),
    (dict(selection_layers=[20], n_topks=[0]), r"n_topks\[0\] = 0 must be > 0"),
    (dict(selection_layers=[20, 10], n_topks=[256, 128]), r"strictly increasing \(10 after 20\)"),
    (dict(selection_layers=[10, 20], n_topks=[256]), "selection_layers has 2 entries but n_topks has 1"),
    (dict(method="gemfilter", selection_layers=[10, 20], n_topks=[256, 128]), "gemfilter takes one filter layer"),
    (dict(cache_truncation_end=-2), "cache_truncation_end must be -1, 0 or a stage count"),
    (dict(pool="median"), "pool"),
    (dict(selection_layers="20"), "selection_layers must be a list of ints"),
]


@pytest.mark.parametrize("config,message", BAD, ids=[m for _, m in BAD])
def test_engine_kwargs_refuses_bad_configurations(model_dir, config, message):
    with pytest.raises(promptdistill.Error, match=message):
        pdv.engine_kwargs(model_dir, **config)


def test_engine_kwargs_refuses_unsupported_architectures(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Phi3ForCausalLM"], "num_hidden_layers": 2}))
    with pytest.raises(promptdistill.Error, match="the promptdistill plugin runs LlamaForCausalLM"):
        pdv.engine_kwargs(tmp_path)
    with pytest.raises(promptdistill.Error, match="cannot read"):
        pdv.engine_kwargs(tmp_path / "missing")


def test_engine_kwargs(model_dir):
    kw = pdv.engine_kwargs(model_dir, method="promptdistill", selection_layers=[20], n_topks=[256], cache_truncation_end=1)
    assert kw["hf_overrides"] == {"architectures": ["PromptDistillLlamaForCausalLM"],
                                  "promptdistill": {"method": "promptdistill", "selection_layers": [20], "n_topks": [256],
                                                    "cache_truncation_end": 1, "pool": "avg", "pool_kernel": 5}}
    assert kw["model"] == str(model_dir)
    assert (kw["enable_prefix_caching"], kw["enable_chunked_prefill"], kw["enforce_eager"]) == (False, False, True)
    assert kw["max_num_batched_tokens"] == 8192  # SmolLM2's whole context: no prompt can be chunked


def _start_fails(engines, match, **kwargs):
    with pytest.raises(Exception, match=match):
        engines.start(**kwargs)
    engines.llm = None


def test_engine_start_refuses_bad_configurations(model_dir, engines):
    kw = pdv.engine_kwargs(model_dir, method="promptdistill", selection_layers=[20], n_topks=[256])
    bad = dict(kw, hf_overrides={"architectures": ["PromptDistillLlamaForCausalLM"],
                                 "promptdistill": {"selection_layers": [40], "n_topks": [256]}})
    _start_fails(engines, r"selection layer 40 is outside \[0, 30\)", **bad)
    chunked = dict(kw, enable_chunked_prefill=True, max_num_batched_tokens=2048)
    _start_fails(engines, "enable_chunked_prefill=False", **chunked)
    _start_fails(engines, "enable_prefix_caching=False", **dict(kw, enable_prefix_caching=True))
