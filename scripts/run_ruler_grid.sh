#!/usr/bin/env bash
# The RULER grid of docs/results.md: `promptdistill eval ruler` on the embedded SmolLM2, every
# method at budgets 128/256/512/1024, one part per (length, method group, sample range), its JSON
# lines into OUT/parts/ (default bench/results/<host>-<date>/ruler) and the commit of each part into
# OUT/parts/eval_commit.txt. The method groups (one eval process each, since their options differ):
#   base    full, snapkv and h2o per query head, fastkv (the published defaults)
#   pd13    promptdistill and gemfilter at layer 13 (published)
#   pd20    promptdistill at layer 20 (the main job's layer for SmolLM2's 30)
#   pdagg   promptdistill at layer 13 ranking by the mean of layers 10-13 (score_layers)
# Usage: LENGTH=1024 METHOD_GROUPS="base pd13" FIRST=0 SAMPLES=25 bash scripts/run_ruler_grid.sh [OUT]
# Decoding reads the GGUF's own blocks with an f16 cache (--decode-weights gguf --kv-cache f16,
# Tier C: the same greedy tokens on the golden prompts); the prefill is the exact f32 path, and each
# line says so. PROMPTDISTILL_CLI picks the binary (default: build/default's, built here).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LENGTH="${LENGTH:-1024}"
METHOD_GROUPS="${METHOD_GROUPS:-base pd13 pd20 pdagg}"
FIRST="${FIRST:-0}"
SAMPLES="${SAMPLES:-25}"
BUDGETS="${BUDGETS:-128 256 512 1024}"
THREADS="${THREADS:-0}"
OUT="${1:-$ROOT/bench/results/$(hostname)-$(date -u +%Y-%m-%d)/ruler}"
bash "$ROOT/scripts/fetch_model.sh" >/dev/null
HAYSTACK="$(bash "$ROOT/scripts/fetch_haystack.sh")"
CLI="${PROMPTDISTILL_CLI:-}"
if [ -z "$CLI" ]; then
  configure "$ROOT/build/default" -DCMAKE_BUILD_TYPE=Release
  cmake --build "$ROOT/build/default" -j "$JOBS" --target promptdistill_cli >/dev/null
  CLI="$ROOT/build/default/bin/promptdistill"
fi
mkdir -p "$OUT/parts"
for group in $METHOD_GROUPS; do
  case "$group" in
    base) options=(--methods full snapkv h2o fastkv) ;;
    pd13) options=(--methods promptdistill gemfilter) ;;
    pd20) options=(--methods promptdistill --selection-layers 20) ;;
    pdagg) options=(--methods promptdistill --score-layers 10 11 12 13) ;;
    *) echo "unknown group $group" >&2; exit 2 ;;
  esac
  part="ruler_${LENGTH}_${group}_${FIRST}-$((FIRST + SAMPLES - 1))"
  # shellcheck disable=SC2086
  "$CLI" eval ruler --lengths "$LENGTH" --first-sample "$FIRST" --samples "$SAMPLES" --budgets $BUDGETS \
    --haystack "$HAYSTACK" --decode-weights gguf --kv-cache f16 --threads "$THREADS" "${options[@]}" \
    --out "$OUT/parts/$part.jsonl.partial"
  mv "$OUT/parts/$part.jsonl.partial" "$OUT/parts/$part.jsonl"
  echo "$part.jsonl: $(head -n 1 "$OUT/parts/$part.jsonl" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["commit"])')" \
    >>"$OUT/parts/eval_commit.txt"
done
