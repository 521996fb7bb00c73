# SPDX-License-Identifier: Apache-2.0
"""A prefill too long for the memory allowed is refused before any work: estimate_prefill_bytes
(the C++ estimate) from Python, and hf.generate's max_memory (default: the device's available
memory) with a limit set low."""

import pytest
import torch
import transformers

import promptdistill as pd
from conftest import GOLDEN

LLAMA_8B = dict(num_layers=32, hidden=4096, num_heads=32, num_kv_heads=8, head_dim=128, intermediate=14336, vocab=128256)


def test_estimate_prefill_bytes():
    full = pd.estimate_prefill_bytes("full", LLAMA_8B, 32000)
    assert isinstance(full, pd.PrefillMemory)
    assert full.total == full.activations + full.kv_cache + full.scores
    assert full.kv_cache >= 32 * 32000 * 2 * 8 * 128 * 4  # f32 by default
    assert pd.estimate_prefill_bytes("full", LLAMA_8B, 32000, element_bytes=2).kv_cache < full.kv_cache
    assert pd.estimate_prefill_bytes("full", LLAMA_8B, 64000).total > full.total
    pd_cfg = pd.pipeline_config(method="promptdistill", selection_layers=[13], n_topks=[1024])
    assert pd.estimate_prefill_bytes(pd_cfg, LLAMA_8B, 32000).kv_cache < full.kv_cache
    h2o = pd.estimate_prefill_bytes({"method": "h2o"}, LLAMA_8B, 32000)
    assert h2o.scores > pd.estimate_prefill_bytes({"method": "snapkv"}, LLAMA_8B, 32000).scores  # every token's queries
    # A transformers config works as the model.
    config = transformers.AutoConfig.from_pretrained(GOLDEN / "tiny_llama31")
    tiny = pd.estimate_prefill_bytes({"method": "promptdistill", "selection_layers": [0], "n_topks": [8]}, config, 100)
    assert 0 < tiny.total < full.total
    with pytest.raises(pd.Error, match="lacks"):
        pd.estimate_prefill_bytes("full", {"num_layers": 2}, 10)
    with pytest.raises(pd.Error, match="selection layer 13 is outside"):
        pd.estimate_prefill_bytes("promptdistill", dict(LLAMA_8B, num_layers=8), 10)
    with pytest.raises(pd.Error):
        pd.estimate_prefill_bytes("full", LLAMA_8B, 10, batch=0)
    assert pd.available_memory_bytes() > 0


def test_hf_generate_refuses_a_prompt_too_long_for_max_memory():
    model = transformers.AutoModelForCausalLM.from_pretrained(GOLDEN / "tiny_llama31", dtype=torch.float32).eval()
    ids = [(i * 37) % 500 + 3 for i in range(1500)]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(pd.Error) as info:
        pd.hf.generate(model, ids, method="h2o", budget=64, window=4, max_new_tokens=2, max_memory=1 << 20)
    message = str(info.value)
    assert info.value.code == "out of memory"
    for words in ("hf.generate of 1500 tokens (h2o) needs about", "activations", "KV cache", "scores",
                  "1.0 MiB are available (max_memory)"):
        assert words in message, message
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    # Enough memory: it runs; the default limit is what the machine has.
    r = pd.hf.generate(model, ids[:300], method="h2o", budget=64, window=4, max_new_tokens=2, max_memory=8 << 30)
    assert r.prompt_tokens == 300
    assert pd.hf.generate(model, ids[:300], method="full", max_new_tokens=2).prompt_tokens == 300
    for bad in (0, -1, "1G", 1.5, True):
        with pytest.raises(pd.Error, match="max_memory"):
            pd.hf.generate(model, ids[:30], method="full", max_new_tokens=1, max_memory=bad)
