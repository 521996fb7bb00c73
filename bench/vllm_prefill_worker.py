#!/usr/bin/env python3
"""vLLM's CPU backend as a long-lived timing worker for bench/prefill_compare.py (run by the
Python of a vLLM environment, e.g. the one scripts/run_vllm_tests.sh makes in build/vllm-venv).

Starts one engine (float32, no prefix caching: every prompt is prefilled from scratch; a token
budget of the whole context, so a prompt is prefilled in one step), warms it up, prints one JSON
line {"ready": true, ...}, then for every JSON line {"ids": [...]} on stdin times
llm.generate(prompt, max_tokens=1) (wall clock: the prefill and the first token) and prints
{"ms": ..., "load1": ...}. The thread count is the environment's (OMP_NUM_THREADS and
VLLM_CPU_OMP_THREADS_BIND, set by the caller); it cannot change in a running engine.

  python vllm_prefill_worker.py MODEL_DIR MAX_MODEL_LEN [--context N]
"""
import json
import os
import sys
import time


def main():
    model_dir, max_len = sys.argv[1], int(sys.argv[2])
    context = int(sys.argv[sys.argv.index("--context") + 1]) if "--context" in sys.argv else 0
    # The protocol owns stdout; vLLM logs to stdout, so file descriptor 1 becomes stderr for
    # everything else and the JSON lines go to a copy of the original.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import torch
    import vllm

    kwargs = dict(model=model_dir, dtype="float32", seed=0, max_model_len=max_len, max_num_batched_tokens=max_len,
                  max_num_seqs=1, enable_prefix_caching=False)
    if context:
        # The context raised past the trained one (RoPE unchanged), as generate --max-positions
        # and llama.cpp's -p past n_ctx_train do.
        kwargs["hf_overrides"] = {"max_position_embeddings": context}
    llm = vllm.LLM(**kwargs)
    params = vllm.SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True)

    def run(ids):
        start = time.perf_counter()
        llm.generate([vllm.TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
        return 1000.0 * (time.perf_counter() - start)

    run(list(range(100, 612)))  # warm-up
    info = {"ready": True, "vllm": vllm.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND"),
            "engine": {k: v for k, v in kwargs.items() if k != "model"}}
    print(json.dumps(info), file=protocol, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        load = os.getloadavg()[0]
        print(json.dumps({"ms": run(request["ids"]), "load1": load}), file=protocol, flush=True)


if __name__ == "__main__":
    main()
