#!/usr/bin/env python3
"""This project's CPU path against llama.cpp on the same machine, reproducibly.

Builds llama.cpp from the copy vendored in the PyPI sdist of llama-cpp-python (pinned below; for
every x86 extension of this machine but AMX, see LLAMA_CMAKE), converts the embedded SmolLM2-135M Q4_1 to
F16 and Q8_0 with llama.cpp's llama-quantize, then times, interleaved and with the machine's load
recorded at every run:
  - llama.cpp: `llama-bench` prefill of L tokens (-p L -n 0) and decode at a context of L tokens
    (-p 0 -n 32 -d L), its default f16 KV cache;
  - this project: `promptdistill generate --method full` on L random token ids, 33 new tokens
    (time to first token = prefill + first logits; decode = mean ms/token of the 32 steps), in its
    fast decode mode (--decode-weights gguf --kv-cache f16: the file's own blocks, f16 cache) on
    every format, the exact f32 mode on Q4_1, and PromptDistill (layer 20, k = L/4) on Q4_1;
at L = 512 / 2,048 / 7,900 tokens, 1 and 2 threads. Writes llama_cpp_compare.json (every run and
the medians and ratios) and llama_cpp_compare.png to OUT_DIR.

  python3 bench/compare_llama_cpp.py all BUILD_DIR OUT_DIR     # build, convert, run, plot
  python3 bench/compare_llama_cpp.py build                     # llama.cpp into .cache/llama/
  python3 bench/compare_llama_cpp.py convert                   # F16 / Q8_0 GGUF into .cache/llama/models/
  python3 bench/compare_llama_cpp.py run BUILD_DIR OUT_DIR [--lengths ...] [--threads ...] [--repeats N]
  python3 bench/compare_llama_cpp.py plot OUT_DIR/llama_cpp_compare.json
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
import tarfile

LLAMA_CPP_PYTHON = "0.3.36"  # the sdist vendors llama.cpp (vendor/llama.cpp)
ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "llama"
MODEL_Q4_1 = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
FORMATS = ("Q4_1", "Q8_0", "F16")
# CMake options: leave out what the benchmark does not need, and build ggml's CPU backend for every
# x86 extension of the build machine (AVX-512 with VNNI and BF16, AVX-VNNI) except AMX. llama.cpp's
# default, GGML_NATIVE (-march=native), also compiles its AMX kernels, and on the 2-core build
# machine (a sandboxed VM that lists amx_tile but grants no tile state) they die with SIGILL in the
# first matrix product. This is the fastest llama.cpp that runs here.
LLAMA_CMAKE = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
               "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
               "-DGGML_NATIVE=OFF", "-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
               "-DGGML_BMI2=ON", "-DGGML_AVX_VNNI=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VBMI=ON", "-DGGML_AVX512_VNNI=ON",
               "-DGGML_AVX512_BF16=ON", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]


def llama_source():
    return CACHE / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"


def llama_bin(name):
    return CACHE / "build" / "bin" / name


def model_path(fmt):
    return MODEL_Q4_1 if fmt == "Q4_1" else CACHE / "models" / f"SmolLM2-135M-Instruct.{fmt}.gguf"


def build():
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "--no-binary", ":all:",
                        "--no-deps", "-d", str(CACHE)], check=True)
    if not llama_source().exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(CACHE)
    subprocess.run(["cmake", "-S", str(llama_source()), "-B", str(CACHE / "build"), "-G", "Ninja", *LLAMA_CMAKE], check=True)
    subprocess.run(["cmake", "--build", str(CACHE / "build"), "-j", str(os.cpu_count() or 2), "--target", "llama-bench",
                    "llama-quantize"], check=True)


def convert():
    (CACHE / "models").mkdir(parents=True, exist_ok=True)
    for fmt in FORMATS[1:]:
        if not model_path(fmt).exists():
            subprocess.run([str(llama_bin("llama-quantize")), "--allow-requantize", str(MODEL_Q4_1), str(model_path(fmt)), fmt],
                           check=True, capture_output=True)


# ---- parsing and summaries (tests/scripts/test_compare_llama_cpp.py checks these) ----------------

def parse_llama_bench(text):
    """llama-bench -o json: the first test's mean time in ms (prefill) or ms per token (decode)."""
    test = json.loads(text)[0]
    if test["n_gen"] > 0:
        return {"kind": "decode", "ms": 1000.0 / test["avg_ts"], "depth": test.get("n_depth", 0)}
    return {"kind": "prefill", "ms": test["avg_ns"] / 1e6, "tokens": test["n_prompt"]}


def summarize(runs):
    """Medians per (tool, mode, format, threads, length, kind) and the ratios ours / llama.cpp."""
    groups = {}
    for r in runs:
        key = (r["tool"], r["mode"], r["format"], r["threads"], r["length"], r["kind"])
        groups.setdefault(key, []).append(r["ms"])
    medians = {k: statistics.median(v) for k, v in groups.items()}
    rows = []
    for (tool, mode, fmt, threads, length, kind), ms in sorted(medians.items()):
        if tool != "llama.cpp":
            continue
        row = {"format": fmt, "threads": threads, "length": length, "kind": kind, "llama_cpp_ms": ms}
        for ours_mode in ("fast", "exact", "promptdistill"):
            mine = medians.get(("promptdistill", ours_mode, fmt, threads, length, kind))
            if mine is not None:
                row[f"{ours_mode}_ms"] = mine
                row[f"{ours_mode}_ratio"] = mine / ms
        rows.append(row)
    # llama.cpp's fastest format per (threads, length, kind), and ours against it.
    for row in rows:
        peers = [r for r in rows if (r["threads"], r["length"], r["kind"]) == (row["threads"], row["length"], row["kind"])]
        best = min(peers, key=lambda r: r["llama_cpp_ms"])
        row["llama_cpp_fastest_format"] = best["format"]
        if "fast_ms" in row:
            row["fast_ratio_to_llama_cpp_fastest"] = row["fast_ms"] / best["llama_cpp_ms"]
    return rows


def plot(summary, title, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ("prefill", "decode")
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    for ax, kind in zip(axes, kinds):
        rows = [r for r in summary if r["kind"] == kind and "fast_ratio" in r]
        labels = [f"{r['format']} {r['threads']}t\n{r['length']}" for r in rows]
        values = [r["fast_ratio"] for r in rows]
        colors = ["#2a9d8f" if v <= 1.0 else "#e76f51" for v in values]
        bars = ax.bar(range(len(rows)), values, color=colors)
        for b, v in zip(bars, values):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{v:.2f}", ha="center", va="bottom", fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel(f"{kind}: ours / llama.cpp (time, lower is better)")
        ax.set_title(f"{kind} ({'time to first token' if kind == 'prefill' else 'ms per token at that context'})", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---- runs -------------------------------------------------------------------------------------------

def load1():
    return os.getloadavg()[0]


def prompt_file(out_dir, length):
    """L random token ids (seeded), the same for every run of that length."""
    path = out_dir / f"prompt_{length}.ids"
    rng = random.Random(length)
    path.write_text(" ".join(str(rng.randrange(1000, 40000)) for _ in range(length)) + "\n")
    return path


def run_llama(fmt, threads, length, kind):
    common = ["-m", str(model_path(fmt)), "-t", str(threads), "-r", "1", "-o", "json"]
    args = ["-p", str(length), "-n", "0"] if kind == "prefill" else ["-p", "0", "-n", "32", "-d", str(length)]
    out = subprocess.run([str(llama_bin("llama-bench")), *common, *args], check=True, capture_output=True, text=True).stdout
    return parse_llama_bench(out)["ms"], json.loads(out)[0]


def run_ours(cli, fmt, mode, threads, length, ids):
    args = [str(cli), "generate", "--json", "--model", str(model_path(fmt)), "--threads", str(threads), "--prompt-ids", str(ids),
            "--max-new-tokens", "33", "--ignore-eos"]
    if mode == "promptdistill":
        args += ["--method", "promptdistill", "--selection-layers", "20", "--n-topks", str(length // 4)]
    else:
        args += ["--method", "full"]
    if mode != "exact":
        args += ["--decode-weights", "gguf", "--kv-cache", "f16"]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def run(build_dir, out_dir, lengths, thread_counts, repeats):
    cli = pathlib.Path(build_dir) / "bin" / "promptdistill"
    out_dir.mkdir(parents=True, exist_ok=True)
    runs, llama_info = [], None
    for rep in range(repeats):
        for length in lengths:
            ids = prompt_file(out_dir, length)
            for threads in thread_counts:
                for fmt in FORMATS:
                    ours_modes = ["fast"] + (["exact", "promptdistill"] if fmt == "Q4_1" else [])
                    jobs = [("llama.cpp", kind) for kind in ("prefill", "decode")] + [("promptdistill", m) for m in ours_modes]
                    if rep % 2:
                        jobs.reverse()  # interleaved: neither tool always runs first
                    for tool, what in jobs:
                        start_load = load1()
                        base = {"tool": tool, "format": fmt, "threads": threads, "length": length, "repeat": rep, "load1": start_load}
                        if tool == "llama.cpp":
                            ms, info = run_llama(fmt, threads, length, what)
                            llama_info = llama_info or {k: info.get(k) for k in ("build_commit", "build_number", "cpu_info", "backends",
                                                                                 "type_k", "type_v", "n_batch", "n_ubatch", "flash_attn")}
                            runs.append({**base, "mode": "default", "kind": what, "ms": ms})
                        else:
                            r = run_ours(cli, fmt, what, threads, length, ids)
                            runs.append({**base, "mode": what, "kind": "prefill", "ms": r["ttft_ms"]})
                            runs.append({**base, "mode": what, "kind": "decode", "ms": r["decode_ms_per_token"],
                                         "decode_weights": r["decode_weights"], "kv_cache": r["kv_cache"]})
                        print(f"rep {rep} L={length} t={threads} {fmt} {tool} {what}: "
                              f"{runs[-1]['ms']:.1f} ms (load {start_load:.2f})", flush=True)
    loads = [r["load1"] for r in runs]
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
        "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "llama_cpp": {"pypi": f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "cmake": LLAMA_CMAKE, **(llama_info or {})},
        "model": "SmolLM2-135M-Instruct Q4_1 (embedded); F16 and Q8_0 made from it by llama-quantize --allow-requantize",
        "ours": "promptdistill generate: fast = --decode-weights gguf --kv-cache f16 (prefill is the exact f32 path in every "
                "mode); exact = f32 weights and cache; promptdistill = --method promptdistill --selection-layers 20 "
                "--n-topks L/4, fast mode",
        "load1": {"min": min(loads), "max": max(loads), "median": statistics.median(loads)},
        "quiet": max(loads) < 1.0,
    }
    return {"meta": meta, "runs": runs, "summary": summarize(runs)}


def cpu_model():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_results(result, out_dir):
    path = out_dir / "llama_cpp_compare.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    m = result["meta"]
    plot(result["summary"], f"SmolLM2-135M on {m['machine']['cores']} cores ({m['machine']['cpu']}), {m['date']}: "
         f"promptdistill (gguf blocks, f16 KV) / llama.cpp; green = as fast or faster; CPU figures", out_dir / "llama_cpp_compare.png")
    for row in result["summary"]:
        print(json.dumps(row))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["all", "build", "convert", "run", "plot"])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 7900])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if args.step in ("all", "build"):
        build()
    if args.step in ("all", "convert"):
        convert()
    if args.step in ("all", "run"):
        if len(args.paths) != 2:
            ap.error("run needs BUILD_DIR OUT_DIR")
        out_dir = pathlib.Path(args.paths[1])
        write_results(run(args.paths[0], out_dir, args.lengths, args.threads, args.repeats), out_dir)
        for ids in out_dir.glob("prompt_*.ids"):
            ids.unlink()
    if args.step == "plot":
        path = pathlib.Path(args.paths[0])
        result = json.loads(path.read_text())
        result["summary"] = summarize(result["runs"])
        write_results(result, path.parent)


if __name__ == "__main__":
    main()
