#!/usr/bin/env bash
# Long property-based fuzzing of the Python API (python/tests/test_fuzz_*.py, Hypothesis): the
# same properties as the test suite's fixed-seed run, with SCALE times its examples and a random
# seed. Every failing example (its shrunk spec, the last one recorded per test) is appended to
# python/tests/fuzz_regressions/<test>.jsonl, which every test run replays: a bug found once
# stays a test. Needs the virtual environment scripts/run_python_tests.sh makes (build/python-venv,
# with the package installed from this checkout).
# Usage: bash scripts/fuzz_python.sh [SCALE, default 20] [SEED, default random]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SCALE="${1:-20}"
SEED="${2:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
VENV="${PROMPTDISTILL_VENV:-$ROOT/build/python-venv}"
[ -x "$VENV/bin/python" ] || { echo "no $VENV: run scripts/run_python_tests.sh first"; exit 2; }
WORK="$ROOT/build/fuzz-python"
mkdir -p "$WORK"
record="$WORK/record-$SEED.jsonl"
rm -f "$record"
echo "== fuzzing the Python API: scale $SCALE, seed $SEED (replay: bash scripts/fuzz_python.sh $SCALE $SEED) =="
status=0
(cd "$ROOT/build" && PYTHONDONTWRITEBYTECODE=1 PROMPTDISTILL_FUZZ_SCALE="$SCALE" PROMPTDISTILL_FUZZ_SEED="$SEED" \
  PROMPTDISTILL_FUZZ_RECORD="$record" "$VENV/bin/python" -m pytest -p no:cacheprovider -q -W ignore::UserWarning \
  --hypothesis-show-statistics -k "fuzz and not regressions" "$ROOT"/python/tests/test_fuzz_*.py) || status=$?
if [ -s "$record" ]; then
  # The last spec recorded per test is the one Hypothesis shrank to (it replays it last).
  "$VENV/bin/python" - "$record" "$ROOT/python/tests/fuzz_regressions" <<'PY'
import json, pathlib, sys
last = {}
for line in open(sys.argv[1]):
    entry = json.loads(line)
    last[entry["test"]] = entry["spec"]
for test, spec in last.items():
    path = pathlib.Path(sys.argv[2]) / f"{test}.jsonl"
    known = path.read_text().splitlines() if path.exists() else []
    line = json.dumps(spec)
    if line not in known:
        with open(path, "a") as f:
            f.write(line + "\n")
        print(f"kept a failing example of {test} in {path}")
PY
fi
exit "$status"
