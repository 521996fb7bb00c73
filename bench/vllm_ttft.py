#!/usr/bin/env python3
"""Time to first token in vLLM: its own full prefill against the promptdistill plugin
(PromptDistill at layer 20 with k 1024, and GemFilter at layer 20 with k 1024) on the embedded
SmolLM2 (float32 folder from scripts/gguf_to_hf.py), vLLM's CPU backend, 2 threads.

One engine per method (as engine_kwargs sets it up; full: the same settings with vLLM's own
class), all alive at once, the runs interleaved across methods, the machine's load average
recorded at every run:
  - TTFT of one prompt of L = 2,048 / 4,096 / 8,000 tokens (random token ids, a fixed seed):
    the wall time of llm.generate(max_tokens=1), the median of --repeats runs, and the process's
    CPU time over the same call (the engine runs in this process), which other jobs on the
    machine disturb much less than the wall time (idle OpenMP threads sleep: PASSIVE);
  - decode: llm.generate(max_tokens=65) on the same prompt; (time - TTFT) / 64 per token;
  - a batch of 8 prompts of 2,048 tokens in one llm.generate(max_tokens=1): time to the last
    first token (--batch, --batch-length).
Writes vllm_ttft.json (every run, medians, ratios to full, the targets and whether they are met,
machine and date) and vllm_ttft.png to OUT_DIR (bench/results/<machine>-<date>/vllm/).

  VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=2 VLLM_ENABLE_V1_MULTIPROCESSING=0 OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE \\
      build/vllm-venv/bin/python bench/vllm_ttft.py OUT_DIR [--lengths 2048 4096 8000] [--repeats 3]
  python bench/vllm_ttft.py --plot OUT_DIR/vllm_ttft.json     # the PNG again
The PNG needs matplotlib in the same environment (uv pip install -p build/vllm-venv/bin/python matplotlib).
"""
import argparse
import datetime
import gc
import json
import os
import pathlib
import platform
import random
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "build" / "vllm-tests" / "smollm2-f32"
METHODS = {
    "full": None,
    "promptdistill": dict(method="promptdistill", selection_layers=[20], n_topks=[1024], cache_truncation_end=1),
    "gemfilter": dict(method="gemfilter", selection_layers=[20], n_topks=[1024]),
}
# The targets: PromptDistill's TTFT against vLLM's full prefill, and decoding no slower.
TARGETS = {"promptdistill_ttft_ratio_4096": 0.75, "promptdistill_ttft_ratio_8000": 0.72}


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    return {"cpu": cpu, "cores": os.cpu_count(), "avx512f": "avx512f" in flags, "platform": platform.platform(),
            "python": platform.python_version()}


def engine(method, model_dir):
    import vllm
    import promptdistill.vllm as pdv

    config = METHODS[method]
    kwargs = pdv.engine_kwargs(model_dir, **(config or {"method": "full"}))
    if config is None:  # vLLM's own model class, with the same engine settings
        kwargs.pop("hf_overrides")
    return vllm.LLM(dtype="float32", seed=0, **kwargs)


def timed(llm, prompts, max_tokens):
    import vllm

    params = vllm.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    llm.generate([vllm.TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    return time.perf_counter() - start, load, time.process_time() - cpu


def run(args):
    import torch
    import vllm

    rng = random.Random(1234)
    prompts = {L: [rng.randrange(100, 49000) for _ in range(L)] for L in args.lengths}
    batch = [[rng.randrange(100, 49000) for _ in range(args.batch_length)] for _ in range(args.batch)]
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "vllm": vllm.__version__,
               "torch": torch.__version__, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "lengths": args.lengths, "repeats": args.repeats,
               "batch": {"prompts": args.batch, "tokens": args.batch_length}, "configs": METHODS,
               "engine": "engine_kwargs' settings for every method (no prefix caching, no chunked prefill, "
                         "max_num_batched_tokens 8192, eager); full runs vLLM's own LlamaForCausalLM",
               "methods": {}, "targets": TARGETS}
    # All three engines live at once and the runs are interleaved (full, promptdistill, gemfilter,
    # full, ...), so that a change in the machine's load hits every method alike.
    engines = {m: engine(m, args.model) for m in METHODS}
    results["threads_in_engine"] = engines["full"].apply_model(lambda m: torch.get_num_threads())[0]
    entries = {m: {"ttft_s": {}, "ttft_runs": {}, "ttft_cpu_s": {}, "ttft_cpu_runs": {}, "decode_ms_per_token": {}, "load": {}}
               for m in METHODS}
    for llm in engines.values():
        timed(llm, [prompts[args.lengths[0]][:256]], 1)  # warm-up
    for L in args.lengths:
        for m in METHODS:
            entries[m]["ttft_runs"][L], entries[m]["load"][L], entries[m]["ttft_cpu_runs"][L] = [], [], []
        for _ in range(args.repeats):
            for m, llm in engines.items():
                t, load, cpu = timed(llm, [prompts[L]], 1)
                entries[m]["ttft_runs"][L].append(t)
                entries[m]["load"][L].append(load)
                entries[m]["ttft_cpu_runs"][L].append(cpu)
        for m, llm in engines.items():
            e = entries[m]
            e["ttft_s"][L] = statistics.median(e["ttft_runs"][L])
            e["ttft_cpu_s"][L] = statistics.median(e["ttft_cpu_runs"][L])
            total, _, _ = timed(llm, [prompts[L]], 65)
            e["decode_ms_per_token"][L] = 1000 * (total - e["ttft_s"][L]) / 64
            print(m, L, f"TTFT {e['ttft_s'][L]:.2f} s (CPU {e['ttft_cpu_s'][L]:.2f} s)", f"decode {e['decode_ms_per_token'][L]:.1f} ms/t", f"load {e['load'][L]}",
                  flush=True)
    for m, llm in engines.items():
        entries[m]["batch_s"], entries[m]["batch_load"], entries[m]["batch_cpu_s"] = timed(llm, batch, 1)
        print(m, f"batch of {args.batch}", f"{entries[m]['batch_s']:.2f} s", flush=True)
    results["methods"] = entries
    for llm in engines.values():
        llm.llm_engine.engine_core.shutdown()
    del engines
    gc.collect()
    full = results["methods"]["full"]
    results["ratios"] = {m: {"ttft": {L: e["ttft_s"][L] / full["ttft_s"][L] for L in args.lengths},
                             "ttft_cpu": {L: e["ttft_cpu_s"][L] / full["ttft_cpu_s"][L] for L in args.lengths},
                             "batch_cpu": e["batch_cpu_s"] / full["batch_cpu_s"],
                             "decode_ms_per_token": {L: e["decode_ms_per_token"][L] / full["decode_ms_per_token"][L]
                                                     for L in args.lengths},
                             "batch": e["batch_s"] / full["batch_s"]}
                         for m, e in results["methods"].items()}
    pd_ratio = results["ratios"]["promptdistill"]
    met = {}
    for key, bound in TARGETS.items():
        L = int(key.rsplit("_", 1)[1])
        if L in pd_ratio["ttft"]:
            met[key] = {"measured": pd_ratio["ttft"][L], "measured_cpu_time": pd_ratio["ttft_cpu"][L], "bound": bound,
                        "met": pd_ratio["ttft"][L] <= bound, "met_in_cpu_time": pd_ratio["ttft_cpu"][L] <= bound}
    met["promptdistill_decode_not_slower"] = {"measured": max(pd_ratio["decode_ms_per_token"].values()), "bound": 1.0,
                                              "met": max(pd_ratio["decode_ms_per_token"].values()) <= 1.0}
    results["targets_met"] = met
    return results


def plot(results, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = [str(L) for L in results["lengths"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(results["methods"])
    for i, (m, e) in enumerate(results["methods"].items()):
        xs = [j + i * width for j in range(len(lengths))]
        a.bar(xs, [e["ttft_s"][L] for L in lengths], width, label=m)
        b.bar([i], [e["batch_s"]], 0.6, label=m)
    a.set_xticks([j + width for j in range(len(lengths))], [f"{L} tokens" for L in lengths])
    a.set_ylabel("time to first token, s")
    a.set_title("one prompt")
    a.legend()
    b.set_xticks(range(len(results["methods"])), list(results["methods"]))
    b.set_ylabel("s")
    b.set_title(f"batch of {results['batch']['prompts']} × {results['batch']['tokens']} tokens, to the last first token")
    fig.suptitle(f"vLLM {results['vllm']} CPU, SmolLM2-135M f32, {results.get('threads_in_engine')} threads "
                 f"(OMP_WAIT_POLICY {results.get('omp_wait_policy')}), "
                 f"{results['machine']['cpu']} ({results['date']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=pathlib.Path, nargs="?")
    p.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=8, help="prompts in the batch (default 8)")
    p.add_argument("--batch-length", type=int, default=2048, help="tokens per batch prompt (default 2048)")
    p.add_argument("--model", type=pathlib.Path, default=MODEL_DIR)
    p.add_argument("--plot", type=pathlib.Path, help="redraw the PNG of a JSON file")
    args = p.parse_args()
    if args.plot:
        results = json.loads(args.plot.read_text())
        plot(results, args.plot.with_suffix(".png"))
        return 0
    if args.out is None:
        p.error("OUT_DIR is required")
    if not (args.model / "config.json").exists():
        sys.path.insert(0, str(ROOT / "scripts"))
        import gguf_to_hf

        gguf_to_hf.convert(gguf_to_hf.DEFAULT_GGUF, args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    results = run(args)
    out = args.out / "vllm_ttft.json"
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results["ratios"], indent=1), json.dumps(results["targets_met"], indent=1))
    try:
        plot(json.loads(out.read_text()), out.with_suffix(".png"))
    except ImportError:
        print("matplotlib is not installed: no PNG (python bench/vllm_ttft.py --plot", out, ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
