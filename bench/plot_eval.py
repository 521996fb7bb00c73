#!/usr/bin/env python3
"""Needle/passkey heat maps and a summary table from `promptdistill eval` JSON lines.

Usage: python3 bench/plot_eval.py RESULTS.jsonl [...]
       python3 bench/plot_eval.py --grid DIR
Writes next to each input: <stem>.png (one heat map per method and budget: context length x
insertion depth, green = correct) and <stem>_summary.md (accuracy per method and budget, the
accuracy on the cases full KV answers correctly, mean kept ratio, mean TTFT).
--grid merges every passkey*.jsonl and needle*.jsonl of DIR/parts/ (or of DIR itself when it has no
parts/ folder: runs of one grid made in parts) into DIR/grid_<task>.png (the heat maps over every
length) and DIR/grid_summary.md (correct answers per method, budget and length). A case run twice
(full KV is in every part) must agree, or it fails.
"""
import collections
import json
import pathlib
import sys


def load(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def label(r):
    """The method as the tables name it: SnapKV and H2O with their row grouping, the published
    variant ("per head") or the engine-friendly one ("per KV group", the CLI's default, also of the
    lines written before the field existed)."""
    if r["method"] not in ("snapkv", "h2o"):
        return r["method"]
    return f"{r['method']} (per {'head' if r.get('per', 'kv-group') == 'head' else 'KV group'})"


def summary(rows):
    full_ok = {(r["length"], r["depth"]) for r in rows if r["method"] == "full" and r["correct"]}
    groups = collections.OrderedDict()
    for r in rows:
        groups.setdefault((label(r), r["budget"]), []).append(r)
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


def heatmaps(rows, out, title, by_method=False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(collections.OrderedDict(((label(r), r["budget"]), None) for r in rows))
    lengths = sorted({r["length"] for r in rows})
    depths = sorted({r["depth"] for r in rows})
    if by_method:
        # One row per method, one column per budget (full KV, which has none, in the first).
        methods = list(collections.OrderedDict((m, None) for m, _ in keys))
        budgets = sorted({b for _, b in keys if b is not None}) or [None]
        nrows, cols = len(methods), len(budgets)
        place = {(m, b): methods.index(m) * cols + (budgets.index(b) if b is not None else 0) for m, b in keys}
    else:
        cols = min(len(keys), 5)
        nrows = (len(keys) + cols - 1) // cols
        place = {key: i for i, key in enumerate(keys)}
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for method, budget in keys:
        ax = axes.flat[place[(method, budget)]]
        grid = np.full((len(depths), len(lengths)), np.nan)
        for r in rows:
            if (label(r), r["budget"]) == (method, budget):
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


METHOD_ORDER = ["full", "promptdistill", "gemfilter", "snapkv (per head)", "snapkv (per KV group)", "h2o (per head)",
                "h2o (per KV group)"]


def merge(paths):
    cases = {}
    for p in paths:
        for r in load(p):
            key = (label(r), r["budget"], r["length"], r["depth"])
            if key in cases and cases[key]["correct"] != r["correct"]:
                sys.exit(f"{p}: {key} is {'right' if r['correct'] else 'wrong'} here and not in an earlier file")
            cases.setdefault(key, r)
    order = lambda r: (METHOD_ORDER.index(label(r)), r["budget"] or 0, r["length"], r["depth"])
    return sorted(cases.values(), key=order)


def grid_table(rows):
    full_ok = {(r["length"], r["depth"]) for r in rows if r["method"] == "full" and r["correct"]}
    lengths = sorted({r["length"] for r in rows})
    lines = ["| method | budget | " + " | ".join(f"{n} tokens" for n in lengths) + " | all |",
             "|---|---|" + "---|" * (len(lengths) + 1)]
    for method, budget in collections.OrderedDict(((label(r), r["budget"]), None) for r in rows):
        cells = []
        for n in lengths + [None]:
            rs = [r for r in rows if (label(r), r["budget"]) == (method, budget) and n in (None, r["length"])]
            if not rs:
                cells.append("-")
                continue
            sub = [r for r in rs if (r["length"], r["depth"]) in full_ok]
            cell = f"{sum(r['correct'] for r in rs)}/{len(rs)}"
            if method != "full":
                cell += f" ({sum(r['correct'] for r in sub)}/{len(sub)})"
            cells.append(cell)
        lines.append(f"| {method} | {budget if budget is not None else '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def grid(directory):
    directory = pathlib.Path(directory)
    parts = directory / "parts" if (directory / "parts").is_dir() else directory
    text = ["Correct answers / cases per context length (depths 0-100 %); in parentheses, on the cases",
            f"full KV answers correctly. Merged from the JSON lines in {'parts/' if parts != directory else 'this folder'}"
            " by `bench/plot_eval.py --grid`.", ""]
    for task in ("passkey", "needle"):
        paths = sorted(parts.glob(f"{task}*.jsonl"))
        if not paths:
            continue
        rows = merge(paths)
        text += [f"### {task} ({len(rows)} cases)", "", grid_table(rows)]
        try:
            heatmaps(rows, directory / f"grid_{task}.png", f"{task}: SmolLM2-135M, green = correct, red = wrong, white = not run",
                     by_method=True)
        except ImportError:
            print("matplotlib missing: no heat maps")
    (directory / "grid_summary.md").write_text("\n".join(text))
    print("\n".join(text))


def main(paths):
    if paths[:1] == ["--grid"] and len(paths) == 2:
        return grid(paths[1])
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
