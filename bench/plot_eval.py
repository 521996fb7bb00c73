#!/usr/bin/env python3
"""Needle/passkey heat maps and a summary table from `promptdistill eval` JSON lines.

Usage: python3 bench/plot_eval.py RESULTS.jsonl [...]
Writes next to each input: <stem>.png (one heat map per method and budget: context length x
insertion depth, green = correct) and <stem>_summary.md (accuracy per method and budget, the
accuracy on the cases full KV answers correctly, mean kept ratio, mean TTFT).
"""
import collections
import json
import pathlib
import sys


def load(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def summary(rows):
    full_ok = {(r["length"], r["depth"]) for r in rows if r["method"] == "full" and r["correct"]}
    groups = collections.OrderedDict()
    for r in rows:
        groups.setdefault((r["method"], r["budget"]), []).append(r)
    lines = ["| method | budget | accuracy | accuracy where full KV is right | mean kept ratio | mean TTFT (ms) | cases |",
             "|---|---|---|---|---|---|---|"]
    for (method, budget), rs in groups.items():
        acc = sum(r["correct"] for r in rs) / len(rs)
        sub = [r for r in rs if (r["length"], r["depth"]) in full_ok]
        acc_full = f"{sum(r['correct'] for r in sub) / len(sub):.2f} ({len(sub)})" if sub else "-"
        kept = sum(r["kept_ratio"] for r in rs) / len(rs)
        ttft = sum(r["ttft_ms"] for r in rs) / len(rs)
        lines.append(f"| {method} | {budget if budget is not None else '-'} | {acc:.2f} | {acc_full} | {kept:.3f} | {ttft:.0f} | {len(rs)} |")
    return "\n".join(lines) + "\n"


def heatmaps(rows, out, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(collections.OrderedDict(((r["method"], r["budget"]), None) for r in rows))
    lengths = sorted({r["length"] for r in rows})
    depths = sorted({r["depth"] for r in rows})
    cols = min(len(keys), 5)
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (method, budget) in zip(axes.flat, keys):
        grid = np.full((len(depths), len(lengths)), np.nan)
        for r in rows:
            if (r["method"], r["budget"]) == (method, budget):
                grid[depths.index(r["depth"]), lengths.index(r["length"])] = 1.0 if r["correct"] else 0.0
        ax.axis("on")
        ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(lengths)), [str(l) for l in lengths], fontsize=7)
        ax.set_yticks(range(len(depths)), [f"{d}%" for d in depths], fontsize=7)
        ax.set_title(f"{method}" + (f" ({budget})" if budget is not None else ""), fontsize=9)
        ax.set_xlabel("context tokens", fontsize=7)
        ax.set_ylabel("depth", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(paths):
    for p in paths:
        p = pathlib.Path(p)
        rows = load(p)
        if not rows:
            continue
        task = rows[0].get("task", p.stem)
        table = summary(rows)
        (p.parent / f"{p.stem}_summary.md").write_text(f"### {task} ({len(rows)} cases)\n\n{table}")
        print(table)
        try:
            heatmaps(rows, p.with_suffix(".png"), f"{task}: SmolLM2-135M, green = correct")
        except ImportError:
            print("matplotlib missing: no heat maps")


if __name__ == "__main__":
    main(sys.argv[1:])
