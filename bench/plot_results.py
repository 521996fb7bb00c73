#!/usr/bin/env python3
"""Turns Google Benchmark JSON files (bench_*.json in a results folder) into PNG plots.

One figure per JSON file, one panel per benchmark family; x is the first named argument
(log scale), one line per combination of the other arguments; y is the reported time.
Usage: python3 bench/plot_results.py RESULTS_DIR
"""
import collections
import json
import pathlib
import sys


def parse_name(name):
    # "BM_TopK/n:4096/k:1024/ties:0/rows:1/manual_time" -> ("BM_TopK", [("n", "4096"), ...])
    parts = name.split("/")
    args = []
    for p in parts[1:]:
        if ":" in p:
            k, v = p.split(":", 1)
            args.append((k, v))
        elif p.isdigit():
            args.append((f"arg{len(args)}", p))
    return parts[0], args


def main(folder):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = pathlib.Path(folder)
    for path in sorted(folder.glob("bench_*.json")):
        data = json.loads(path.read_text())
        ctx = data.get("context", {})
        families = collections.defaultdict(lambda: collections.defaultdict(list))
        unit = {}
        for b in data.get("benchmarks", []):
            if b.get("run_type") == "aggregate" or b.get("error_occurred"):
                continue
            family, args = parse_name(b["name"])
            if not args:
                continue
            x = float(args[0][1])
            label = ", ".join(f"{k}={v}" for k, v in args[1:]) or family
            if b.get("label"):
                label = f"{b['label']} {label}"
            families[family][label].append((x, b["real_time"]))
            unit[family] = b.get("time_unit", "ns")
        if not families:
            continue
        n = len(families)
        fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.5), squeeze=False)
        for ax, (family, lines) in zip(axes[0], sorted(families.items())):
            for label, pts in sorted(lines.items()):
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(family)
            ax.set_xlabel(parse_name(next(b["name"] for b in data["benchmarks"] if b["name"].startswith(family + "/")))[1][0][0])
            ax.set_ylabel(f"time ({unit[family]})")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
        device = ctx.get("device", ctx.get("host_name", "cpu"))
        fig.suptitle(f"{path.stem} on {device} ({ctx.get('date', '')})", fontsize=9)
        fig.tight_layout()
        out = path.with_suffix(".png")
        fig.savefig(out, dpi=110)
        print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
