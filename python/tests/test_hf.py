# SPDX-License-Identifier: Apache-2.0
"""promptdistill.hf.generate on transformers models against the C++ pipelines (the CLI's
`generate --json --dump-selection` with the same ids): the same selected tokens, cache lengths and
greedy tokens for every method, on the tiny random checkpoints (Llama-3.1, Qwen2, Phi-3.5) and on
SmolLM2 loaded from the embedded GGUF in float32. Mistral (which the C++ loader does not read) is
checked against the same weights run as Llama, and `full` against transformers' own generate."""

import random

import pytest
import torch
import transformers

import promptdistill as pd
from conftest import GOLDEN, selected_rows

TINY = ["tiny_llama31", "tiny_qwen2", "tiny_phi35"]
# Tiny models have two layers: the selection layer is 0; budgets well below the 100-token prompt.
TINY_ARGS = dict(selection_layers=[0], n_topks=[32], budget=48, window=16, max_new_tokens=16)


def cli_generate(cli, model_path, ids, tmp_path, method, *, selection_layers, n_topks, cache_truncation_end=None, budget=None,
                 window=None, per=None, pool=None, pool_kernel=None, max_new_tokens=16, score_layers=None, tsp_layer=None,
                 tsp_length=None, tsp_rate=None, retain_rate=None):
    """The CLI's run of the same configuration: each setting given is passed, the others are the
    published defaults on both sides."""
    ids_file = tmp_path / f"ids_{method}.txt"
    ids_file.write_text(" ".join(map(str, ids)))
    # Only the options the method reads: the CLI refuses the others.
    options = []
    if method in ("promptdistill", "gemfilter"):
        options += ["--selection-layers", *selection_layers, "--n-topks", *n_topks]
    given = dict(budget=budget, window=window, per=per, pool=pool, pool_kernel=pool_kernel, tsp_layer=tsp_layer,
                 tsp_length=tsp_length, tsp_rate=tsp_rate, retain_rate=retain_rate)
    if method == "promptdistill":
        given["cache_truncation_end"] = cache_truncation_end
    pooling = ("promptdistill", "gemfilter", "snapkv", "fastkv")
    readers = {"budget": ("snapkv", "h2o", "fastkv"), "window": ("snapkv", "h2o", "fastkv"), "per": ("snapkv", "h2o"),
               "pool": pooling, "pool_kernel": pooling, "cache_truncation_end": ("promptdistill",),
               "tsp_layer": ("fastkv",), "tsp_length": ("fastkv",), "tsp_rate": ("fastkv",), "retain_rate": ("fastkv",)}
    for name, value in given.items():
        if value is not None and method in readers[name]:
            options += ["--" + name.replace("_", "-"), value]
    if score_layers:
        options += ["--score-layers", *score_layers]
    return cli("generate", "--model", model_path, "--prompt-ids", ids_file, "--method", method, *options, "--max-new-tokens",
               max_new_tokens, "--dump-selection")


def assert_same_run(result, expected, method, case):
    assert result.prompt_tokens == expected["prompt_tokens"], case
    assert result.retained == expected["retained"], case
    assert result.cache_lengths == expected["cache_lengths"], case
    want = expected.get("selected_indices", [])
    if method == "fastkv":
        assert result.propagated == expected.get("propagated", []), case
    if method in ("snapkv", "h2o", "fastkv"):
        assert len(result.selected_indices) == len(want), case
        for layer, (ours, theirs) in enumerate(zip(result.selected_indices, want)):
            theirs = selected_rows(theirs)
            # A CLI that dumps only row 0 is compared on row 0; one that dumps every row on all.
            assert ours[:len(theirs)] == theirs, f"{case}: layer {layer} selects differently"
    else:
        assert result.selected_indices == want, case
    assert result.generated_ids == expected["generated_ids"], case


@pytest.fixture(scope="module", params=TINY)
def tiny(request):
    model = transformers.AutoModelForCausalLM.from_pretrained(GOLDEN / request.param, dtype=torch.float32).eval()
    return request.param, model


def random_prompt(seed, length, vocab=512):
    rng = random.Random(seed)
    return [rng.randint(3, vocab - 1) for _ in range(length)]


# fastkv on two layers: propagation after layer 0, 64 of the 100 tokens.
TINY_FASTKV = dict(tsp_layer=0, tsp_length=64)


@pytest.mark.parametrize("method", ["full", "promptdistill", "gemfilter", "snapkv", "h2o", "fastkv"])
def test_tiny_models_match_the_cpp_pipelines(cli, tmp_path, tiny, method):
    name, model = tiny
    seed = 7
    ids = random_prompt(seed, 100)
    args = {**TINY_ARGS, **(TINY_FASTKV if method == "fastkv" else {})}
    result = pd.hf.generate(model, torch.tensor([ids]), method=method, **args)
    expected = cli_generate(cli, GOLDEN / name, ids, tmp_path, method, **args)
    assert_same_run(result, expected, method, f"model={name} method={method} seed={seed} args={args}")


def test_per_query_head_without_grouped_heads(cli, tmp_path):
    """Phi-3.5 has as many KV heads as query heads: one selection per query head fits its cache."""
    model = transformers.AutoModelForCausalLM.from_pretrained(GOLDEN / "tiny_phi35", dtype=torch.float32).eval()
    ids = random_prompt(3, 90)
    for method in ("snapkv", "h2o"):
        result = pd.hf.generate(model, ids, method=method, per="head", **TINY_ARGS)
        expected = cli_generate(cli, GOLDEN / "tiny_phi35", ids, tmp_path, method, per="head", **TINY_ARGS)
        assert_same_run(result, expected, method, f"tiny_phi35 method={method} per=head")


def test_full_equals_transformers_generate(tiny):
    name, model = tiny
    # 100 tokens: past Phi-3.5's original context of 64 from the start (transformers' generate
    # recomputes the whole cache when a sequence crosses it; the pipelines do not).
    ids = random_prompt(11, 100)
    ours = pd.hf.generate(model, ids, method="full", max_new_tokens=12, eos_token_id=[])
    theirs = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0,
                            min_new_tokens=12)
    assert ours.generated_ids == theirs[0, len(ids):].tolist(), f"model={name}"
    assert ours.cache_lengths == [len(ids)] * 2 and ours.prompt_tokens == 100  # after the prefill, as the CLI reports


def tiny_pair(sliding_window=None):
    """The same random weights as a Mistral and as a Llama model (the two architectures are the same
    computation; Mistral's only difference, the sliding window, is off)."""
    dims = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                vocab_size=256, max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1,
                eos_token_id=2)
    torch.manual_seed(5)
    mistral = transformers.MistralForCausalLM(transformers.MistralConfig(**dims, sliding_window=sliding_window)).eval()
    with torch.no_grad():
        for p in mistral.parameters():
            p.mul_(3.0 if p.dim() > 1 else 1.0)  # attention far from uniform, as in the golden checkpoints
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(**dims)).eval()
    llama.load_state_dict(mistral.state_dict())
    return mistral, llama


@pytest.mark.parametrize("method,kwargs", [("full", {}), ("promptdistill", dict(selection_layers=[0, 1], n_topks=[40, 16],
                                                                                cache_truncation_end=-1)),
                                           ("gemfilter", dict(selection_layers=[1], n_topks=[24])),
                                           ("snapkv", dict(budget=40, window=8)), ("h2o", dict(budget=40, window=8))])
def test_mistral_runs_like_the_same_weights_as_llama(method, kwargs):
    mistral, llama = tiny_pair()
    ids = random_prompt(13, 80, vocab=256)
    a = pd.hf.generate(mistral, ids, method=method, max_new_tokens=10, **kwargs)
    b = pd.hf.generate(llama, ids, method=method, max_new_tokens=10, **kwargs)
    assert a.selected_indices == b.selected_indices and a.generated_ids == b.generated_ids, f"method={method} kwargs={kwargs}"
    assert a.cache_lengths == b.cache_lengths and a.retained == b.retained
    if method == "promptdistill":  # two stages, both truncating the caches below them
        assert a.retained == [41, 17] and a.cache_lengths == [17] * 3


def test_eager_attention_gives_what_sdpa_gives():
    mistral, _ = tiny_pair()
    ids = random_prompt(17, 70, vocab=256)
    sdpa = pd.hf.generate(mistral, ids, method="promptdistill", selection_layers=[1], n_topks=[20], max_new_tokens=8)
    mistral.set_attn_implementation("eager")
    eager = pd.hf.generate(mistral, ids, method="promptdistill", selection_layers=[1], n_topks=[20], max_new_tokens=8)
    assert eager.selected_indices == sdpa.selected_indices and eager.generated_ids == sdpa.generated_ids


@pytest.fixture(scope="module")
def smollm2(smollm2_model, smollm2_prompt):
    return smollm2_model, smollm2_prompt


SMOLLM2_CASES = [
    ("full", {}),
    ("promptdistill", dict(selection_layers=[13], n_topks=[64], cache_truncation_end=1)),
    ("promptdistill", dict(selection_layers=[20], n_topks=[64], cache_truncation_end=0, pool="max", pool_kernel=7)),
    ("promptdistill", dict(selection_layers=[10, 20], n_topks=[128, 48], cache_truncation_end=-1)),
    ("gemfilter", dict(selection_layers=[13], n_topks=[64])),
    ("snapkv", dict(budget=96, per="kv-group")),
    ("h2o", dict(budget=96, per="kv-group")),
    # The published variant (the default): SmolLM2 has 9 query heads over 3 KV heads, so the caches
    # are GQA-expanded.
    ("snapkv", dict(budget=96)),
    ("h2o", dict(budget=96, per="head")),
    # Scores aggregated over layers (score_partial summed, finish_select), and FastKV in both modes.
    ("promptdistill", dict(selection_layers=[13], n_topks=[64], cache_truncation_end=1, score_layers=[10, 11, 12, 13])),
    ("gemfilter", dict(selection_layers=[13], n_topks=[64], score_layers=[12, 13])),
    ("fastkv", dict(budget=64, tsp_length=128)),
    ("fastkv", dict(retain_rate=0.3, tsp_rate=0.5)),
]


@pytest.mark.parametrize("method,kwargs", SMOLLM2_CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(SMOLLM2_CASES)])
def test_smollm2_matches_the_cpp_pipelines(cli, tmp_path, smollm2_path, smollm2, method, kwargs):
    model, ids = smollm2
    args = dict(selection_layers=[13], n_topks=[1024], max_new_tokens=8)
    args.update(kwargs)
    result = pd.hf.generate(model, ids, method=method, **args)
    expected = cli_generate(cli, smollm2_path, ids, tmp_path, method, **args)
    assert_same_run(result, expected, method, f"SmolLM2 method={method} args={args} prompt={len(ids)} tokens")
    assert result.ttft_s > 0 and (result.decode_s_per_token > 0 or len(result.generated_ids) < 2)


HF_ERRORS = [
    ("unknown method", dict(method="streamingllm"), "method must be"),
    ("the last layer as selection layer", dict(selection_layers=[2], n_topks=[8]), "last layer"),
    ("decreasing selection layers", dict(selection_layers=[1, 0], n_topks=[8, 4]), "strictly increasing"),
    ("unpaired budgets", dict(selection_layers=[0, 1], n_topks=[8]), "n_topks has 1"),
    ("budget below the window", dict(method="snapkv", budget=8, window=16), "window"),
    ("an unknown grouping", dict(method="snapkv", budget=40, per="layer"), "per"),
    ("selection layers not a list", dict(selection_layers=13), "list of ints"),
]


@pytest.mark.parametrize("what,kwargs,words", HF_ERRORS, ids=[e[0] for e in HF_ERRORS])
def test_generate_errors(what, kwargs, words):
    mistral, _ = tiny_pair()
    with pytest.raises(pd.Error) as info:
        pd.hf.generate(mistral, random_prompt(1, 60, vocab=256), **kwargs)
    assert words in str(info.value), f"{what}: {info.value}"


def test_generate_input_errors():
    mistral, _ = tiny_pair()
    with pytest.raises(pd.Error, match="batch 1"):
        pd.hf.generate(mistral, torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(pd.Error, match="outside the vocabulary"):
        pd.hf.generate(mistral, [5, 300, 7])
    with pytest.raises(pd.Error, match="empty prompt"):
        pd.hf.generate(mistral, [])
    with pytest.raises(pd.Error, match="list of ints"):
        pd.hf.generate(mistral, "a prompt")
    windowed, _ = tiny_pair(sliding_window=64)
    with pytest.raises(pd.Error, match="sliding window"):
        pd.hf.generate(windowed, random_prompt(2, 60, vocab=256), method="full", max_new_tokens=10)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(pd.Error, match="model_type"):
        pd.hf.generate(gpt2, [1, 2, 3])
