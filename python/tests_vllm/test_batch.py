# SPDX-License-Identifier: Apache-2.0
"""Batches: one llm.generate call with prompts of 1,200, 700, 400 and 120 tokens (the last shorter
than k) gives each request what hf.generate gives it alone; requests that vLLM preempts (its KV cache full) and recomputes
continue exactly as if they had not been preempted."""

import promptdistill.vllm as pdv
from conftest import generate, needle_prompt

CONFIG = dict(method="promptdistill", selection_layers=[20], n_topks=[256], cache_truncation_end=1)


def test_ragged_batch_equals_requests_alone(model_dir, tokenizer, reference, engines):
    prompts = [needle_prompt(tokenizer, n, seed=s, code=c) for n, s, c in ((1200, 3, "5150"), (700, 5, "2718"), (400, 7, "1618"),
                                                                           (120, 9, "3141"))]
    refs = [reference(p, **CONFIG) for p in prompts]
    llm = engines.start(**pdv.engine_kwargs(model_dir, **CONFIG))
    assert generate(llm, prompts) == [r.generated_ids for r in refs]
    # vLLM's request ids are the prompt's index in the call plus a suffix.
    sel = sorted(pdv.selections(llm).items(), key=lambda kv: int(kv[0].split("-")[0]))
    assert [s["selected_indices"] for _, s in sel] == [r.selected_indices for r in refs]
    assert [s["retained"] for _, s in sel] == [[257], [257], [257], [120]]  # the short prompt is not reduced


def test_preempted_requests_continue_exactly(model_dir, tokenizer, reference, engines):
    # 6 usable blocks of 128 tokens (and the null block): three 250-token prompts fill them;
    # decoding past 256 tokens needs a third block each, so vLLM preempts a request and later
    # recomputes its prompt and the tokens it generated in one step (cache_truncation_end 0 frees
    # nothing, to keep the cache full).
    config = dict(method="promptdistill", selection_layers=[20], n_topks=[64], cache_truncation_end=0)
    prompts = [needle_prompt(tokenizer, 250, seed=s, code=c) for s, c in ((11, "1111"), (12, "2222"), (13, "3333"))]
    refs = [reference(p, max_new_tokens=40, **config) for p in prompts]
    llm = engines.start(**pdv.engine_kwargs(model_dir, **config), num_gpu_blocks_override=7, max_model_len=512)
    assert generate(llm, prompts, max_tokens=40) == [r.generated_ids for r in refs]
    assert llm.apply_model(lambda m: m.promptdistill_resumed)[0] > 0  # the recomputation path ran
