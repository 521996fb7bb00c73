#!/usr/bin/env python3
"""bench/plot_eval.py on hand-written JSON lines: the per-file summary, the merged grid table
(cells counted by hand below), and a case that disagrees between two files is refused."""
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "plot_eval.py"


def case(method, budget, length, depth, correct, kept=1.0, ttft=10.0):
    return {"task": "needle", "method": method, "budget": budget, "length": length, "depth": depth,
            "correct": correct, "kept_ratio": kept, "ttft_ms": ttft, "expected": "x", "generated": "x"}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def main():
    failures = []
    checks = 0

    def check(cond, what):
        nonlocal checks
        checks += 1
        if not cond:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        # Part 1: full KV right at depth 0, wrong at depth 50; PromptDistill 64 right at both.
        write(d / "needle_a.jsonl", [case("full", None, 100, 0, True), case("full", None, 100, 50, False),
                                    case("promptdistill", 64, 100, 0, True, 0.5, 4.0),
                                    case("promptdistill", 64, 100, 50, True, 0.25, 6.0)])
        # Part 2: another length, a repeat of a full-KV case, and a method run alone.
        write(d / "needle_b.jsonl", [case("full", None, 200, 0, True), case("full", None, 100, 0, True), case("h2o", 64, 200, 0, False),
                                    case("h2o", 64, 100, 0, False), case("h2o", 64, 100, 50, True)])
        r = run(d / "needle_a.jsonl")
        check(r.returncode == 0, f"summary failed: {r.stderr}")
        summary = (d / "needle_a_summary.md").read_text()
        # accuracy 1.00, on full KV's right cases 1/1, mean kept 0.375, mean TTFT 5.
        check("| promptdistill | 64 | 1.00 | 1.00 (1) | 0.375 | 5 | 2 |" in summary, "per-file summary row:\n" + summary)
        check("| full | - | 0.50 | 1.00 (1) | 1.000 | 10 | 2 |" in summary, "per-file full row:\n" + summary)

        r = run("--grid", d)
        check(r.returncode == 0, f"grid failed: {r.stderr}")
        grid = (d / "grid_summary.md").read_text()
        check("| method | budget | 100 tokens | 200 tokens | all |" in grid, "grid header:\n" + grid)
        check("| full | - | 1/2 | 1/1 | 2/3 |" in grid, "grid full row:\n" + grid)
        check("| promptdistill | 64 | 2/2 (1/1) | - | 2/2 (1/1) |" in grid, "grid PromptDistill row:\n" + grid)
        # Lines without "per" are the default variant, per KV group.
        check("| h2o (per KV group) | 64 | 1/2 (0/1) | 0/1 (0/1) | 1/3 (0/2) |" in grid, "grid H2O row:\n" + grid)
        check("### needle (8 cases)" in grid, "full KV counted once across files:\n" + grid)

        # The same case answered differently in two files is an error, not a silent pick.
        write(d / "needle_c.jsonl", [case("full", None, 100, 0, False)])
        r = run("--grid", d)
        check(r.returncode != 0 and "needle_c.jsonl" in (r.stderr + r.stdout), "conflict not reported")

        # A results folder keeps its raw parts in parts/: --grid merges those, writes next to parts/.
        layout = d / "layout"
        (layout / "parts").mkdir(parents=True)
        per_head = dict(case("snapkv", 64, 100, 0, True), per="head")
        write(layout / "parts" / "needle_a.jsonl", [case("full", None, 100, 0, True), case("snapkv", 64, 100, 0, False)])
        write(layout / "parts" / "needle_b.jsonl", [per_head])  # the same case in the other variant: no conflict
        r = run("--grid", layout)
        check(r.returncode == 0, f"grid over parts/ failed: {r.stderr}")
        merged = (layout / "grid_summary.md").read_text() if (layout / "grid_summary.md").exists() else ""
        check("| snapkv (per KV group) | 64 | 0/1 (0/1) | 0/1 (0/1) |" in merged and "in parts/" in merged, "grid over parts/:\n" + merged)
        check("| snapkv (per head) | 64 | 1/1 (1/1) | 1/1 (1/1) |" in merged, "the per-head variant is its own row:\n" + merged)
        check(merged.index("snapkv (per head)") < merged.index("snapkv (per KV group)"), "published variant first:\n" + merged)

    for f in failures:
        print("FAILED:", f)
    print(f"plot_eval: {checks - len(failures)} of {checks} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
