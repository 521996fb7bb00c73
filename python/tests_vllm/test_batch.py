# SPDX-License-Identifier: Apache-2.0
"""Batches: one llm.generate call with prompts of 1,200, 700, 400 and 120 tokens (the last shorter
than k), in steps that mix prefills and decoding, gives each request what hf.generate gives it
alone, with PromptDistill and GemFilter; requests that vLLM preempts (its KV cache full) and recomputes
continue exactly as if they had not been preempted."""

import pytest

import promptdistill.vllm as pdv
from conftest import generate, needle_prompt

CONFIGS = {"promptdistill": dict(method="promptdistill", selection_layers=[20], n_topks=[256], cache_truncation_end=1),
           "gemfilter": dict(method="gemfilter", selection_layers=[20], n_topks=[256])}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ragged_batch_equals_requests_alone(name, model_dir, tokenizer, reference, engines):
    config = CONFIGS[name]
    prompts = [needle_prompt(tokenizer, n, seed=s, code=c) for n, s, c in ((1200, 3, "5150"), (700, 5, "2718"), (400, 7, "1618"),
                                                                           (120, 9, "3141"))]
    refs = [reference(p, **config) for p in prompts]
    # A step takes at most 1,300 tokens: the 1,200-token prompt is prefilled alone, the others in
    # the next step while it decodes, so steps mix prefills and decoding.
    llm = engines.start(**dict(pdv.engine_kwargs(model_dir, **config), max_model_len=1300, max_num_batched_tokens=1300))
    assert generate(llm, prompts) == [r.generated_ids for r in refs]
    # vLLM's request ids are the prompt's index in the call plus a suffix.
    sel = sorted(pdv.selections(llm).items(), key=lambda kv: int(kv[0].split("-")[0]))
    assert [s["selected_indices"] for _, s in sel] == [r.selected_indices for r in refs]
    kept = [257, 257, 257, 120] if name == "promptdistill" else [256, 256, 256, 120]
    assert [s["retained"] for _, s in sel] == [[k] for k in kept]  # the short prompt is not reduced
    assert llm.apply_model(lambda m: m.promptdistill_mixed_steps)[0] > 0


PREEMPTED = {"promptdistill": dict(method="promptdistill", selection_layers=[20], n_topks=[64], cache_truncation_end=0),
             "gemfilter": dict(method="gemfilter", selection_layers=[20], n_topks=[200])}


@pytest.mark.parametrize("name", list(PREEMPTED))
def test_preempted_requests_continue_exactly(name, model_dir, tokenizer, reference, engines):
    # 6 usable blocks of 128 tokens (and the null block): three 250-token prompts fill them;
    # decoding past 256 tokens needs a third block each, so vLLM preempts a request and later
    # recomputes its prompt and the tokens it generated in one step. (These configurations free
    # no block after the prefill, to keep the cache full: cache_truncation_end 0; GemFilter keeps
    # 200 of 250 tokens, which start at slot 0.)
    config = PREEMPTED[name]
    prompts = [needle_prompt(tokenizer, 250, seed=s, code=c) for s, c in ((11, "1111"), (12, "2222"), (13, "3333"))]
    refs = [reference(p, max_new_tokens=40, **config) for p in prompts]
    llm = engines.start(**pdv.engine_kwargs(model_dir, **config), num_gpu_blocks_override=7, max_model_len=512)
    assert generate(llm, prompts, max_tokens=40) == [r.generated_ids for r in refs]
    assert llm.apply_model(lambda m: m.promptdistill_resumed)[0] > 0  # the recomputation path ran
