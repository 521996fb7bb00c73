#!/usr/bin/env python3
"""End-to-end benchmark of every method on the embedded SmolLM2 with the built-in long prompt:
TTFT, decode ms/token, peak RSS and peak KV-cache bytes, written as JSON + a PNG bar chart.

Usage: python3 bench/run_e2e.py BUILD_DIR OUT_DIR [--backend cpu] [--prompt-words 2400]
Each method runs in its own process (`promptdistill generate --json`), so peak memory is its own.
"""
import argparse
import datetime
import json
import pathlib
import platform
import subprocess

CONFIGS = [
    ("full", []),
    ("promptdistill r20 k1024 tt1", ["--method", "promptdistill", "--selection-layers", "20", "--n-topks", "1024", "--cache-truncation-end", "1"]),
    ("promptdistill r13 k1024 tt1", ["--method", "promptdistill", "--selection-layers", "13", "--n-topks", "1024", "--cache-truncation-end", "1"]),
    ("promptdistill 2-stage 8/20 2048/1024", ["--method", "promptdistill", "--selection-layers", "8", "20", "--n-topks", "2048", "1024", "--cache-truncation-end", "-1"]),
    ("gemfilter r20 k1024", ["--method", "gemfilter", "--selection-layers", "20", "--n-topks", "1024"]),
    ("snapkv C1024", ["--method", "snapkv", "--capacity", "1024"]),
    ("h2o C1024", ["--method", "h2o", "--capacity", "1024"]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("out")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--prompt-words", default="2400")
    args = ap.parse_args()
    cli = pathlib.Path(args.build) / "bin" / "promptdistill"
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, extra in CONFIGS:
        cmd = [str(cli), "generate", "--json", "--max-new-tokens", "16", "--backend", args.backend,
               "--prompt-words", args.prompt_words] + (extra or ["--method", "full"])
        r = json.loads(subprocess.check_output(cmd, text=True))
        r["config"] = name
        r["correct"] = r.get("expected", "") in r["text"]
        results.append(r)
        print(f"{name:38s} kept {r['retained']} TTFT {r['ttft_ms']:.0f} ms, decode {r['decode_ms_per_token']:.1f} ms/tok, "
              f"RSS {r['peak_memory_bytes'] / 2**20:.0f} MiB, KV {r['peak_kv_cache_bytes'] / 2**20:.1f} MiB, "
              f"{'correct' if r['correct'] else 'wrong'}: {r['text']!r}")
    meta = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "backend": args.backend, "model": "SmolLM2-135M-Instruct Q4_1 (f32 compute)",
            "commit": subprocess.run(["git", "-C", str(pathlib.Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
            "results": results}
    (out / "e2e_smollm2.json").write_text(json.dumps(meta, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [r["config"] for r in results]
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
        for ax, key, label, scale in ((axes[0], "ttft_ms", "TTFT (ms)", 1), (axes[1], "decode_ms_per_token", "decode (ms/token)", 1),
                                      (axes[2], "peak_kv_cache_bytes", "peak KV cache (MiB)", 2 ** 20)):
            vals = [r[key] / scale for r in results]
            bars = ax.barh(names, vals, color=["#2a9d8f" if r["correct"] else "#e76f51" for r in results])
            ax.set_xlabel(label)
            ax.invert_yaxis()
            for b, v in zip(bars, vals):
                ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v:.0f}", va="center", fontsize=7)
        for ax in axes[1:]:
            ax.set_yticklabels([])
        fig.suptitle(f"SmolLM2-135M, {results[0]['prompt_tokens']}-token prompt, {args.backend} backend ({meta['date']}); "
                     "green = correct answer, red = wrong", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "e2e_smollm2.png", dpi=110)
    except ImportError:
        print("matplotlib missing: no plot")


if __name__ == "__main__":
    main()
