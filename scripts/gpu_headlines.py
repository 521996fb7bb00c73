#!/usr/bin/env python3
"""The headline numbers of a GPU run (scripts/gpu_run.sh), from the results folder it fills:
Google Benchmark JSON (bench_*.json) and the end-to-end / PyTorch JSON lines (e2e.jsonl,
torch.jsonl). Prints an indented block for summary.txt; silent about files that are missing.

Usage: python3 scripts/gpu_headlines.py RESULTS_DIR
"""
import json
import pathlib
import sys


def benchmarks(folder):
    lines = []
    for path in sorted(folder.glob("bench_*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:  # a run cut while writing
            lines.append(f"  {path.name}: unreadable ({err})")
            continue
        for b in data.get("benchmarks", []):
            if b.get("run_type") == "aggregate" or "real_time" not in b:
                continue
            name = b["name"].replace("/manual_time", "")
            extra = ""
            if "bytes_per_second" in b:
                extra = f"  {b['bytes_per_second'] / 1e9:7.1f} GB/s"
            lines.append(f"  {name:58s} {b['real_time']:10.2f} {b.get('time_unit', '')}{extra}")
    return lines


def json_lines(path):
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def end_to_end(folder):
    lines = []
    for name in ("e2e.jsonl", "torch.jsonl"):
        for r in json_lines(folder / name):
            label = f"{r.get('shape')} x{r.get('layers')} layers, L={r.get('length')}, {r.get('method')}"
            if "error" in r:
                lines.append(f"  {label:58s} error: {r['error']}")
                continue
            peak = r.get("peak_device_bytes")
            peak_text = f", peak {peak / 2**30:.1f} GiB" if isinstance(peak, (int, float)) else ""
            lines.append(f"  {label:58s} TTFT {r.get('ttft_ms', float('nan')):9.1f} ms, decode "
                         f"{r.get('decode_ms_per_token', float('nan')):7.2f} ms/token{peak_text}")
    return lines


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    folder = pathlib.Path(sys.argv[1])
    lines = benchmarks(folder) + end_to_end(folder)
    print("\n".join(lines) if lines else "  (no benchmark or end-to-end results)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
