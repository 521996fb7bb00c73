#!/usr/bin/env bash
# The quality grid of the README: passkey and needle on the embedded SmolLM2, every method and
# budget: the raw JSON lines (with per-part heat maps and tables) into OUT/parts/, the merged heat
# maps and table into OUT (default bench/results/<host>-<date>/quality_grid).
# The defaults are the full grid (up to the model's 8K context, budgets 64..1024); on a 2-core CPU
# that takes days (H2O is O(L^2) per layer), so pass a smaller grid there, e.g.
#   LENGTHS="512 1024 2048" BUDGETS="128 512" bash scripts/run_eval_grid.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LENGTHS="${LENGTHS:-1024 2048 4096 8000}"
DEPTHS="${DEPTHS:-0 25 50 75 100}"
BUDGETS="${BUDGETS:-64 128 256 512 1024}"
METHODS="${METHODS:-full promptdistill gemfilter snapkv h2o}"
LAYER="${LAYER:-20}"
OUT="${1:-$ROOT/bench/results/$(hostname)-$(date -u +%Y-%m-%d)/quality_grid}"
bash "$ROOT/scripts/install_deps.sh"
bash "$ROOT/scripts/fetch_model.sh" >/dev/null
bash "$ROOT/scripts/fetch_haystack.sh" >/dev/null
mkdir -p "$ROOT/build" "$OUT/parts"
configure "$ROOT/build/default" -DCMAKE_BUILD_TYPE=Release
cmake --build "$ROOT/build/default" -j "$JOBS" --target promptdistill_cli >/dev/null
for task in passkey needle; do
  # shellcheck disable=SC2086
  "$ROOT/build/default/bin/promptdistill" eval "$task" --lengths $LENGTHS --depths $DEPTHS --budgets $BUDGETS \
    --methods $METHODS --selection-layers "$LAYER" --out "$OUT/parts/$task.jsonl"
done
echo "passkey.jsonl needle.jsonl: $(git -C "$ROOT" rev-parse --short HEAD)" >>"$OUT/parts/eval_commit.txt"
python3 "$ROOT/bench/plot_eval.py" "$OUT/parts/passkey.jsonl" "$OUT/parts/needle.jsonl"
python3 "$ROOT/bench/plot_eval.py" --grid "$OUT"
