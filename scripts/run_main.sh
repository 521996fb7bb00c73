#!/usr/bin/env bash
# The main job, from a fresh clone: builds the promptdistill CLI and runs the selector demo on a
# synthetic long prompt with a planted fact, every method side by side (on the GPU as well when
# one is present). Extra arguments go to `promptdistill demo` (e.g. --length 8192 --budget 256).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bash "$ROOT/scripts/install_deps.sh"
mkdir -p "$ROOT/build"
configure "$ROOT/build/default" -DCMAKE_BUILD_TYPE=Release
cmake --build "$ROOT/build/default" -j "$JOBS" --target promptdistill_cli >/dev/null
"$ROOT/build/default/bin/promptdistill" demo "$@"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$ROOT/build/default/bin/promptdistill" demo --backend cuda --dtype bf16 "$@"
fi
