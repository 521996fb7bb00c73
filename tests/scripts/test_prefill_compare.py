#!/usr/bin/env python3
"""bench/prefill_compare.py's arithmetic on hand-written runs: the prefill's FLOP count (checked
against the layer shapes written out here), medians over repeats, the fastest of llama.cpp and
vLLM per (threads, length), ours against it and against the f32 peak, and the targets; the plot
is written (into a temporary folder) when matplotlib is there."""
import importlib.util
import pathlib
import sys
import tempfile

sys.dont_write_bytecode = True  # tests write nothing into the source tree
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
spec = importlib.util.spec_from_file_location("prefill_compare", ROOT / "bench" / "prefill_compare.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def run(tool, variant, ms, threads=2, length=2048, rep=0):
    return {"tool": tool, "variant": variant, "threads": threads, "length": length, "repeat": rep, "ms": ms, "load1": 0.5}


def main():
    failures = []
    checks = 0

    def check(cond, what):
        nonlocal checks
        checks += 1
        if not cond:
            failures.append(what)

    # SmolLM2-135M, 2,048 tokens: per layer and token q 576x576, k and v 576x192, o 576x576,
    # gate/up/down 576x1536 multiply-adds; attention 9 heads x 64 x (2048 * 2049 / 2) twice.
    L = 2048
    linear = 576 * 576 * 2 + 576 * 192 * 2 + 576 * 1536 * 3
    want = 2 * 30 * (L * linear + 2 * 9 * 64 * L * (L + 1) // 2) + 2 * 576 * 49152
    check(bench.prefill_flops(L) == want, f"FLOPs at 2048: {bench.prefill_flops(L)} != {want}")
    check(abs(bench.prefill_flops(L) / 1e9 - 580.7) < 1.0, "about 0.58 TFLOP at 2K (issue 27's count)")

    runs = [run("promptdistill", "exact", 3000), run("promptdistill", "exact", 3400, rep=1), run("promptdistill", "exact", 9000, rep=2),
            run("promptdistill", "bf16", 1500),
            run("llama.cpp", "F16", 5000), run("llama.cpp", "Q4_1", 8000), run("vllm", "float32", 4500),
            run("promptdistill", "exact", 1000, threads=1, length=512), run("llama.cpp", "F16", 1100, threads=1, length=512)]
    peak = {"f32_best": {"1": 200.0, "2": 400.0}}
    rows = {(r["threads"], r["length"], r["mode"]): r for r in bench.summarize(runs, peak)}
    exact = rows[(2, 2048, "exact")]
    check(exact["ms"] == 3400, f"median of three repeats: {exact['ms']}")
    check(exact["fastest_other"] == "vllm:float32" and exact["fastest_other_ms"] == 4500, f"fastest other: {exact}")
    check(abs(exact["ratio_to_fastest_other"] - 3400 / 4500) < 1e-12, "ratio to the fastest other")
    check(abs(exact["fraction_of_f32_peak"] - want / 3.4 / 1e9 / 400.0) < 1e-12, "fraction of the 2-thread f32 peak")
    check(abs(rows[(2, 2048, "bf16")]["ratio_to_fastest_other"] - 1500 / 4500) < 1e-12, "bf16 ratio")
    small = rows[(1, 512, "exact")]
    check(small["fastest_other"] == "llama.cpp:F16" and abs(small["ratio_to_fastest_other"] - 1000 / 1100) < 1e-12,
          f"1 thread at 512: {small}")
    t = bench.targets(bench.summarize(runs, peak))
    check(t["exact_ratio_to_fastest_other"]["met"] is False and t["exact_ratio_to_fastest_other"]["at"] == [1, 512],
          f"the worst exact ratio (0.91 at 512, 1 thread) misses 0.8: {t}")
    check(t["bf16_ratio_to_fastest_other"]["met"] is True, f"bf16 meets 0.8: {t}")
    frac = t["exact_fraction_of_f32_peak_2048_2t"]
    check(frac["met"] is (frac["measured"] >= 0.7), f"the 2K peak target follows the fraction: {frac}")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        matplotlib = None
    if matplotlib is not None:
        result = {"runs": runs, "summary": bench.summarize(runs, peak),
                  "meta": {"machine": {"cores": 2, "cpu": "test"}, "date": "today", "load1": {"min": 0.1, "max": 0.5},
                           "quiet": True}}
        with tempfile.TemporaryDirectory() as tmp:
            png = pathlib.Path(tmp) / "plot.png"
            bench.plot(result, png)
            check(png.exists() and png.stat().st_size > 1000, "the plot is written")

    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
