#!/usr/bin/env bash
# The whole GPU check on a workstation with a GPU and the build dependencies
# (scripts/install_deps.sh): the bundle for this machine's GPU, then the staged run over it.
#   scripts/gpu_check.sh [OUT]     (OUT: default gpu_results/<device>-<date>; DEADLINE: seconds,
#                                   default 3600, as no lease limits a workstation)
# On a lent GPU machine with the device tool, build the bundle here instead and send it along:
# see docs/gpu.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-')
out="${1:-$ROOT/gpu_results/${device:-unknown-gpu}-$(date -u +%Y-%m-%d)}"
bash "$ROOT/scripts/gpu_bundle.sh" --arch native --max-mib 0
bash "$ROOT/scripts/gpu_run.sh" "$out" --deadline "${DEADLINE:-3600}"
