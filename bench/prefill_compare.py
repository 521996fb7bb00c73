#!/usr/bin/env python3
"""The CPU prefill against llama.cpp and vLLM's CPU backend, and against the machine's peak.

At L = 512 / 2,048 / 8,000 / 16,000 tokens and 1 / 2 threads, interleaved (the order of the
tools turns around every repeat) with the load average recorded at every run:
  - ours: `promptdistill generate --method full --max-new-tokens 1` on L random ids, its
    time to first token (the prefill and the first logits; the weights are packed before the
    clock starts) in each prefill mode: exact (f32 weights and arithmetic, the reference) and
    bf16 (--prefill-weights bf16: AMX tiles where the CPU has them; Tier C);
  - llama.cpp (built by bench/compare_llama_cpp.py from the pinned llama-cpp-python sdist):
    `llama-bench -p L -n 0` in F16, Q8_0 and Q4_1;
  - vLLM's CPU backend, float32 (bench/vllm_prefill_worker.py in a vLLM environment, one engine
    per thread count kept for the whole run): llm.generate(max_tokens=1) on the same ids; left
    out, and said so in the JSON, when no vLLM environment is found.
SmolLM2-135M's context is 8,192 tokens: at 16,000 every tool runs the same model with its
context raised (RoPE unchanged, positions past 8,192 extrapolate): generate --max-positions,
llama-bench's context past n_ctx_train, vLLM's max_position_embeddings override. The times are
what matters there, not the text.
The machine's peak comes from promptdistill.bench.fma_peak (the decoder's own probes: f32 FMA
chains per vector ISA, AMX bf16 tiles), run at the start; the fraction of peak is the prefill's
arithmetic (linear layers and causal attention, counted below) over time x the best f32 peak of
that thread count. Targets (issue 27): ours <= 0.8 x the fastest of llama.cpp and vLLM at every
length; the exact mode >= 70 % of the f32 peak at 2,048 tokens.

Timings taken while the machine is busy are meaningless: the JSON records the load average of
every run and "quiet" (every one under 1); run it on a quiet machine.

  python3 bench/prefill_compare.py run BUILD_DIR OUT_DIR [--lengths ...] [--threads ...] [--repeats 2]
        [--tools ours llama vllm] [--vllm-python PY] [--vllm-model DIR]
  python3 bench/prefill_compare.py plot OUT_DIR/prefill_compare.json    (needs matplotlib)
(llama.cpp first: python3 bench/compare_llama_cpp.py build && python3 bench/compare_llama_cpp.py convert)
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import random
import statistics
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import compare_llama_cpp as llama  # noqa: E402  (build, convert, binaries, model paths)

ROOT = llama.ROOT
FORMATS = ("F16", "Q8_0", "Q4_1")
OUR_MODES = {"exact": "f32", "bf16": "bf16"}
TRAINED_CONTEXT = 8192
# SmolLM2-135M: what the prefill computes (the linear layers' weights per layer; attention shape).
MODEL = {"layers": 30, "hidden": 576, "intermediate": 1536, "heads": 9, "kv_heads": 3, "head_dim": 64, "vocab": 49152}
TARGET_RATIO = 0.8
TARGET_PEAK_FRACTION = 0.70


def prefill_flops(length, m=MODEL):
    """Multiply-adds x 2 of one prefill of `length` tokens: every token through the linear layers
    (Q, K, V, O, gate, up, down), causal attention (q.k and p.v over the keys each row sees), and
    the LM head for the last token."""
    qd, kvd = m["heads"] * m["head_dim"], m["kv_heads"] * m["head_dim"]
    linear = m["hidden"] * (qd + 2 * kvd) + qd * m["hidden"] + 3 * m["hidden"] * m["intermediate"]
    attention = 2 * m["heads"] * m["head_dim"] * length * (length + 1) // 2
    return 2 * m["layers"] * (length * linear + attention) + 2 * m["hidden"] * m["vocab"]


def ids_file(out_dir, length):
    path = out_dir / f"prompt_{length}.ids"
    rng = random.Random(length)
    ids = [rng.randrange(1000, 40000) for _ in range(length)]
    path.write_text(" ".join(map(str, ids)) + "\n")
    return path, ids


def run_ours(cli, mode, threads, length, ids):
    args = [str(cli), "generate", "--json", "--model", str(llama.MODEL_Q4_1), "--threads", str(threads), "--prompt-ids",
            str(ids), "--max-new-tokens", "1", "--ignore-eos", "--method", "full", "--prefill-weights", OUR_MODES[mode]]
    if length > TRAINED_CONTEXT:
        args += ["--max-positions", str(length + 1)]
    out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    return out["ttft_ms"], {k: out.get(k) for k in ("prefill_weights", "cpu_kernels", "threads")}


def run_llama(fmt, threads, length):
    args = [str(llama.llama_bin("llama-bench")), "-m", str(llama.model_path(fmt)), "-t", str(threads), "-r", "1", "-o",
            "json", "-p", str(length), "-n", "0"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return llama.parse_llama_bench(out)["ms"], json.loads(out)[0]


class VllmWorker:
    """One vLLM engine with `threads` threads (bench/vllm_prefill_worker.py), kept for the run."""

    def __init__(self, python, model, threads, max_len):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), VLLM_CPU_OMP_THREADS_BIND=f"0-{threads - 1}",
                   VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE="2", VLLM_ENABLE_V1_MULTIPROCESSING="0")
        args = [str(python), str(ROOT / "bench" / "vllm_prefill_worker.py"), str(model), str(max_len)]
        if max_len > TRAINED_CONTEXT:
            args += ["--context", str(max_len)]
        self.log = open(ROOT / "build" / f"vllm_prefill_worker_{threads}t.log", "w")
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the vLLM worker ({threads} threads) ended; see {self.log.name}")
        self.info = json.loads(line)

    def run(self, ids):
        self.proc.stdin.write(json.dumps({"ids": ids}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["ms"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=120)
        self.log.close()


def measure_peak(build_dir, threads):
    exe = pathlib.Path(build_dir) / "bench" / "promptdistill.bench.fma_peak"
    out = subprocess.run([str(exe), "--threads", *map(str, threads)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def cpu_flags():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16") if f in flags]
    except OSError:
        pass
    return []


def summarize(runs, peak):
    """Medians per (tool, variant, threads, length); the fastest of llama.cpp and vLLM; ours
    against it and against the f32 peak."""
    groups = {}
    for r in runs:
        groups.setdefault((r["tool"], r["variant"], r["threads"], r["length"]), []).append(r["ms"])
    med = {k: statistics.median(v) for k, v in groups.items()}
    rows = []
    for threads, length in sorted({(k[2], k[3]) for k in med}):
        others = {f"{tool}:{variant}": ms for (tool, variant, t, L), ms in med.items()
                  if (t, L) == (threads, length) and tool != "promptdistill"}
        fastest = min(others.items(), key=lambda kv: kv[1]) if others else None
        flops = prefill_flops(length)
        f32_peak = peak.get("f32_best", {}).get(str(threads))
        for mode in OUR_MODES:
            ms = med.get(("promptdistill", mode, threads, length))
            if ms is None:
                continue
            row = {"threads": threads, "length": length, "mode": mode, "ms": ms, "gflop": flops / 1e9,
                   "gflops": flops / ms / 1e6, "others_ms": others}
            if f32_peak:
                row["fraction_of_f32_peak"] = flops / ms / 1e6 / f32_peak
            if fastest:
                row["fastest_other"], row["fastest_other_ms"] = fastest
                row["ratio_to_fastest_other"] = ms / fastest[1]
            rows.append(row)
    return rows


def targets(summary):
    out = {}
    for mode in OUR_MODES:
        ratios = [r for r in summary if r["mode"] == mode and "ratio_to_fastest_other" in r]
        if ratios:
            worst = max(ratios, key=lambda r: r["ratio_to_fastest_other"])
            out[f"{mode}_ratio_to_fastest_other"] = {
                "bound": TARGET_RATIO, "worst": worst["ratio_to_fastest_other"], "at": [worst["threads"], worst["length"]],
                "met": worst["ratio_to_fastest_other"] <= TARGET_RATIO}
    at_2k = [r for r in summary if r["mode"] == "exact" and r["length"] == 2048 and "fraction_of_f32_peak" in r]
    for r in at_2k:
        out[f"exact_fraction_of_f32_peak_2048_{r['threads']}t"] = {
            "bound": TARGET_PEAK_FRACTION, "measured": r["fraction_of_f32_peak"], "met": r["fraction_of_f32_peak"] >= TARGET_PEAK_FRACTION}
    return out


def run(args):
    build_dir, out_dir = pathlib.Path(args.paths[0]), pathlib.Path(args.paths[1])
    cli = build_dir / "bin" / "promptdistill"
    out_dir.mkdir(parents=True, exist_ok=True)
    (ROOT / "build").mkdir(exist_ok=True)
    load_start = os.getloadavg()
    peak = measure_peak(build_dir, args.threads)
    print("peak", json.dumps(peak), flush=True)
    vllm_note, workers = None, {}
    if "vllm" in args.tools:
        python, model = pathlib.Path(args.vllm_python), pathlib.Path(args.vllm_model)
        if not python.exists() or not (model / "config.json").exists():
            vllm_note = f"left out: no vLLM environment ({python}) or model folder ({model}); scripts/run_vllm_tests.sh makes both"
        else:
            max_len = max(args.lengths) + 16
            for t in args.threads:
                workers[t] = VllmWorker(python, model, t, max(max_len, 1024))
                print(f"vLLM worker, {t} threads:", json.dumps(workers[t].info), flush=True)
    runs, info = [], {}
    prompts = {L: ids_file(out_dir, L) for L in args.lengths}
    for rep in range(args.repeats):
        for length in args.lengths:
            path, ids = prompts[length]
            for threads in args.threads:
                jobs = []
                if "ours" in args.tools:
                    jobs += [("promptdistill", m) for m in OUR_MODES]
                if "llama" in args.tools:
                    jobs += [("llama.cpp", f) for f in FORMATS]
                if threads in workers:
                    jobs.append(("vllm", "float32"))
                if rep % 2:
                    jobs.reverse()
                for tool, variant in jobs:
                    load = os.getloadavg()[0]
                    if tool == "promptdistill":
                        ms, info["ours"] = run_ours(cli, variant, threads, length, path)
                    elif tool == "llama.cpp":
                        ms, bench = run_llama(variant, threads, length)
                        info["llama_cpp"] = {k: bench.get(k) for k in ("build_commit", "build_number", "cpu_info", "backends",
                                                                        "type_k", "type_v", "n_batch", "n_ubatch", "flash_attn")}
                    else:
                        ms = workers[threads].run(ids)
                    runs.append({"tool": tool, "variant": variant, "threads": threads, "length": length, "repeat": rep,
                                 "ms": ms, "load1": load})
                    print(f"rep {rep} L={length} t={threads} {tool} {variant}: {ms:.0f} ms (load {load:.2f})", flush=True)
    for w in workers.values():
        w.close()
    for path, _ in prompts.values():
        path.unlink()
    loads = [r["load1"] for r in runs]
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu": llama.cpu_model(), "cores": os.cpu_count(), "flags": cpu_flags(), "platform": platform.platform()},
        "commit": commit,
        "load1": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)} if loads else None,
        "loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg(),
        "quiet": bool(loads) and max(loads) < 1.0,
        "peak_gflops": peak,
        "ours": {"modes": {"exact": "--prefill-weights f32 (f32 weights and arithmetic)",
                           "bf16": "--prefill-weights bf16 (bf16 weights, activations as two bf16 terms, f32 accumulation)"},
                 **info.get("ours", {})},
        "llama_cpp": {"pypi": f"llama-cpp-python=={llama.LLAMA_CPP_PYTHON}", "cmake": llama.LLAMA_CMAKE,
                      "formats": list(FORMATS), **info.get("llama_cpp", {})},
        "vllm": {k: v for k, v in next(iter(workers.values())).info.items() if k != "ready"}
        if workers else {"skipped": vllm_note or "not asked for (--tools)"},
        "model": "SmolLM2-135M-Instruct (embedded Q4_1 GGUF; ours dequantizes it to f32; llama.cpp's F16/Q8_0 made from it; "
                 "vLLM reads its float32 Hugging Face folder)",
        "long_context": f"past {TRAINED_CONTEXT} tokens every tool runs the model with its context raised, RoPE unchanged",
        "flops": "prefill_flops(): 2 x (linear layers + causal attention) per token, plus the last token's LM head",
    }
    summary = summarize(runs, peak)
    return {"meta": meta, "runs": runs, "summary": summary, "targets": targets(summary)}


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = sorted({r["threads"] for r in result["runs"]})
    lengths = sorted({r["length"] for r in result["runs"]})
    variants = sorted({(r["tool"], r["variant"]) for r in result["runs"]}, key=lambda v: (v[0] != "promptdistill", v))
    med = {}
    for r in result["runs"]:
        med.setdefault((r["tool"], r["variant"], r["threads"], r["length"]), []).append(r["ms"])
    fig, axes = plt.subplots(1, len(threads), figsize=(7 * len(threads), 5), squeeze=False)
    width = 0.8 / max(1, len(variants))
    for ax, t in zip(axes[0], threads):
        for i, (tool, variant) in enumerate(variants):
            xs, ys = [], []
            for j, L in enumerate(lengths):
                if (tool, variant, t, L) in med:
                    xs.append(j + i * width)
                    ys.append(statistics.median(med[(tool, variant, t, L)]) / 1000)
            ax.bar(xs, ys, width, label=f"{'ours' if tool == 'promptdistill' else tool} {variant}")
        for row in result["summary"]:
            if row["threads"] == t and "ratio_to_fastest_other" in row:
                j = lengths.index(row["length"])
                i = variants.index(("promptdistill", row["mode"]))
                ax.text(j + i * width, row["ms"] / 1000, f"{row['ratio_to_fastest_other']:.2f}x", ha="center", va="bottom",
                        fontsize=6, rotation=90)
        ax.set_yscale("log")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(lengths))], [f"{L} tokens" for L in lengths])
        ax.set_ylabel("prefill time, s (log)")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}; labels: ours / fastest of llama.cpp and vLLM", fontsize=9)
        ax.legend(fontsize=7)
    m = result["meta"]
    fig.suptitle(f"SmolLM2-135M prefill on {m['machine']['cores']} cores ({m['machine']['cpu']}), {m['date']}, "
                 f"load {m['load1']['min']:.1f}-{m['load1']['max']:.1f}{'' if m['quiet'] else ' (NOT QUIET)'}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write(result, out_dir):
    path = out_dir / "prefill_compare.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    for row in result["summary"]:
        print(json.dumps({k: v for k, v in row.items() if k != "others_ms"}))
    print(json.dumps(result["targets"], indent=1))
    try:
        plot(result, out_dir / "prefill_compare.png")
    except ImportError:
        print(f"matplotlib is not installed: no PNG (python3 {__file__} plot {path} where it is)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["run", "plot"])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8000, 16000])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tools", nargs="+", default=["ours", "llama", "vllm"], choices=["ours", "llama", "vllm"])
    ap.add_argument("--vllm-python", default=str(ROOT / "build" / "vllm-venv" / "bin" / "python"))
    ap.add_argument("--vllm-model", default=str(ROOT / "build" / "vllm-tests" / "smollm2-f32"))
    args = ap.parse_args()
    if args.step == "run":
        if len(args.paths) != 2:
            ap.error("run needs BUILD_DIR OUT_DIR")
        write(run(args), pathlib.Path(args.paths[1]))
    else:
        path = pathlib.Path(args.paths[0])
        result = json.loads(path.read_text())
        plot(result, path.with_suffix(".png"))


if __name__ == "__main__":
    main()
