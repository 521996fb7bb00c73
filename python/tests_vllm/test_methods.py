# SPDX-License-Identifier: Apache-2.0
"""Every method of the plugin on SmolLM2 (float32) with a 2,048-token needle prompt: the same 16
greedy tokens, the same kept tokens and cache lengths as promptdistill.hf.generate with the same
configuration, and the KV blocks of the dropped tokens freed where every layer truncates. (Two
stages with cache_truncation_end -1 run on the Qwen2 and Mistral checkpoints of test_models.py.)"""

import math

import pytest

import promptdistill.vllm as pdv
from conftest import generate

CONFIGS = {
    "promptdistill-k256-tt0": dict(method="promptdistill", selection_layers=[20], n_topks=[256], cache_truncation_end=0),
    "promptdistill-k256-tt1": dict(method="promptdistill", selection_layers=[20], n_topks=[256], cache_truncation_end=1),
    "promptdistill-k1024-tt0": dict(method="promptdistill", selection_layers=[20], n_topks=[1024], cache_truncation_end=0),
    "promptdistill-k1024-tt1": dict(method="promptdistill", selection_layers=[20], n_topks=[1024], cache_truncation_end=1),
    "two-stage-tt1": dict(method="promptdistill", selection_layers=[10, 20], n_topks=[1024, 256], cache_truncation_end=1),
    "gemfilter": dict(method="gemfilter", selection_layers=[20], n_topks=[1024]),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_method_equals_hf_generate(name, model_dir, needle, reference, engines):
    config = CONFIGS[name]
    ref = reference(needle, **config)
    llm = engines.start(**pdv.engine_kwargs(model_dir, **config))
    tokens = generate(llm, [needle])[0]
    assert tokens == ref.generated_ids
    (sel,) = pdv.selections(llm).values()
    assert sel["prompt_tokens"] == len(needle)
    assert sel["selected_indices"] == ref.selected_indices
    assert sel["retained"] == ref.retained
    assert sel["cache_lengths"] == ref.cache_lengths
    # Blocks: every layer keeps at most max(cache_lengths) tokens at [kv_start, ...); the blocks
    # before kv_start are freed once the prefill has run, none when a layer keeps the whole prompt.
    block = llm.llm_engine.vllm_config.cache_config.block_size
    (blocks,) = pdv.kv_blocks(llm).values()
    longest = max(ref.cache_lengths)
    assert sel["kv_start"] == (len(needle) - longest) // block * block
    assert blocks == (math.ceil(len(needle) / block) - sel["kv_start"] // block, sel["kv_start"] // block)
    if longest < len(needle) - block:
        assert blocks[1] > 0
    if config.get("cache_truncation_end") == 0:
        assert blocks[1] == 0


def test_full_equals_vllm_and_hf_generate(model_dir, needle, reference, engines):
    ref = reference(needle, method="full")
    stock = generate(engines.start(model=str(model_dir), enforce_eager=True), [needle])[0]
    plugin = generate(engines.start(**pdv.engine_kwargs(model_dir, method="full")), [needle])[0]
    assert stock == ref.generated_ids
    assert plugin == stock
