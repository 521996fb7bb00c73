# SPDX-License-Identifier: Apache-2.0
"""PromptDistillQwen2ForCausalLM and PromptDistillMistralForCausalLM on small random checkpoints
written by transformers (float32, head dimension 32, grouped KV heads; Qwen2 with its q/k/v
biases): the same tokens and kept tokens as promptdistill.hf.generate."""

import pytest

import promptdistill.vllm as pdv
from conftest import MODEL_DIR, generate

CONFIG = dict(method="promptdistill", selection_layers=[1, 2], n_topks=[96, 40], cache_truncation_end=-1)


def _checkpoint(kind):
    import torch
    import transformers

    folder = MODEL_DIR.parent / f"tiny-{kind}"
    common = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                  vocab_size=1024, max_position_embeddings=1024, tie_word_embeddings=False)
    if kind == "qwen2":
        config = transformers.Qwen2Config(**common, use_sliding_window=False)
    else:
        config = transformers.MistralConfig(**common, sliding_window=None)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    return folder, model.eval()


@pytest.mark.parametrize("kind", ["qwen2", "mistral"])
def test_other_architectures(kind, engines):
    import random

    import promptdistill.hf

    folder, model = _checkpoint(kind)
    rng = random.Random(1)
    prompt = [rng.randrange(1024) for _ in range(300)]
    ref = promptdistill.hf.generate(model, prompt, max_new_tokens=8, eos_token_id=[], **CONFIG)
    kwargs = pdv.engine_kwargs(folder, **CONFIG)
    assert kwargs["hf_overrides"]["architectures"] == ["PromptDistill" + type(model).__name__]
    llm = engines.start(**kwargs, skip_tokenizer_init=True)
    assert generate(llm, [prompt], max_tokens=8)[0] == ref.generated_ids
    (sel,) = pdv.selections(llm).values()
    assert sel["selected_indices"] == ref.selected_indices
