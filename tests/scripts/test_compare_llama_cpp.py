#!/usr/bin/env python3
"""bench/compare_llama_cpp.py's parsing and summary on hand-written data: llama-bench's JSON read
as prefill ms or decode ms per token, medians over repeats, the ratios ours / llama.cpp and
against llama.cpp's fastest format; the plot is written (into a temporary folder) when matplotlib
is there."""
import importlib.util
import json
import pathlib
import sys
import tempfile

sys.dont_write_bytecode = True  # tests write nothing into the source tree
ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("compare_llama_cpp", ROOT / "bench" / "compare_llama_cpp.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def run(tool, mode, fmt, kind, ms, threads=2, length=2048):
    return {"tool": tool, "mode": mode, "format": fmt, "threads": threads, "length": length, "kind": kind, "ms": ms}


def main():
    failures = []
    checks = 0

    def check(cond, what):
        nonlocal checks
        checks += 1
        if not cond:
            failures.append(what)

    prefill = json.dumps([{"n_prompt": 2048, "n_gen": 0, "avg_ns": 1500000000, "avg_ts": 1365.3}])
    decode = json.dumps([{"n_prompt": 0, "n_gen": 32, "n_depth": 2048, "avg_ns": 640000000, "avg_ts": 50.0}])
    check(compare.parse_llama_bench(prefill) == {"kind": "prefill", "ms": 1500.0, "tokens": 2048}, "llama-bench prefill")
    check(compare.parse_llama_bench(decode) == {"kind": "decode", "ms": 20.0, "depth": 2048}, "llama-bench decode")

    runs = [
        run("llama.cpp", "default", "Q4_1", "prefill", 2000), run("llama.cpp", "default", "Q4_1", "prefill", 2200),
        run("llama.cpp", "default", "Q4_1", "prefill", 9000),  # median of three: 2200
        run("llama.cpp", "default", "F16", "prefill", 1000),
        run("promptdistill", "fast", "Q4_1", "prefill", 1100), run("promptdistill", "fast", "F16", "prefill", 1200),
        run("promptdistill", "promptdistill", "Q4_1", "prefill", 800),
        run("llama.cpp", "default", "Q4_1", "decode", 20), run("promptdistill", "fast", "Q4_1", "decode", 10),
        run("promptdistill", "exact", "Q4_1", "decode", 40),
    ]
    rows = {(r["format"], r["kind"]): r for r in compare.summarize(runs)}
    q4 = rows[("Q4_1", "prefill")]
    check(q4["llama_cpp_ms"] == 2200, f"median of the repeats: {q4}")
    check(abs(q4["fast_ratio"] - 0.5) < 1e-12, f"ours / llama.cpp: {q4}")
    check(abs(q4["promptdistill_ratio"] - 800 / 2200) < 1e-12, f"PromptDistill's ratio: {q4}")
    check(q4["llama_cpp_fastest_format"] == "F16", f"llama.cpp's fastest format: {q4}")
    check(abs(q4["fast_ratio_to_llama_cpp_fastest"] - 1.1) < 1e-12, f"ours against llama.cpp's fastest: {q4}")
    check(abs(rows[("F16", "prefill")]["fast_ratio"] - 1.2) < 1e-12, "F16 ratio")
    dec = rows[("Q4_1", "decode")]
    check(abs(dec["fast_ratio"] - 0.5) < 1e-12 and abs(dec["exact_ratio"] - 2.0) < 1e-12, f"decode ratios: {dec}")
    check("promptdistill_ratio" not in dec, "no PromptDistill decode run, no ratio")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        matplotlib = None
    if matplotlib is not None:
        with tempfile.TemporaryDirectory() as tmp:
            png = pathlib.Path(tmp) / "plot.png"
            compare.plot(compare.summarize(runs), "test", png)
            check(png.exists() and png.stat().st_size > 1000, "the plot is written")

    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
