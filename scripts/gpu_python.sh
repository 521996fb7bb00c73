#!/usr/bin/env bash
# The Python package's CUDA tests (python/tests/test_cuda.py) with a machine's own Python and
# PyTorch: builds promptdistill._core and ._cuda against prebuilt static libraries (a GPU bundle's
# python/lib, or a build folder) with python/bundle/CMakeLists.txt, puts them beside the package's
# Python files in WORK/site, and runs pytest there. scripts/gpu_run.sh runs it on the GPU machine.
#
#   scripts/gpu_python.sh LIBS WORK [PYTHON]
#
# Exit 0: the tests passed; 77 with "SKIPPED: why" when they cannot run here (no compiler, CMake,
# nanobind or PyTorch for PYTHON, no static libraries, or every test skipped: no CUDA device); 1
# otherwise (a build or a test failed).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 2 ] || { echo "usage: $0 LIBS WORK [PYTHON]" >&2; exit 2; }
libs=$(realpath -m "$1")
work=$(realpath -m "$2")
python=${3:-python3}
skip() { echo "SKIPPED: $*"; exit 77; }

[ -f "$libs/libpromptdistill_cuda.a" ] || skip "no static libraries for the Python modules in $libs"
for tool in cmake c++; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed here"
done
python=$(command -v "$python") || skip "no $python here"
python=$(realpath -s "$python")  # absolute, not resolved: a virtual environment's python stays its own
timeout 120 "$python" -c 'import nanobind, numpy, pytest, torch' 2>/dev/null ||
  skip "$python lacks nanobind, numpy, pytest or torch"

mkdir -p "$work"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
launchers=()
command -v ccache >/dev/null 2>&1 && launchers=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
echo "== building the modules for $("$python" --version 2>&1) against $libs =="
timeout 120 cmake -S "$ROOT/python/bundle" -B "$work/build" "${generator[@]}" "${launchers[@]}" -DCMAKE_BUILD_TYPE=Release \
  "-DPROMPTDISTILL_LIBS=$libs" "-DPython_EXECUTABLE=$python" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; echo "error: configuring the Python modules failed"; exit 1; }
timeout 600 cmake --build "$work/build" -j "$(nproc)" 2>&1 | tail -5
[ "${PIPESTATUS[0]}" = 0 ] || { echo "error: building the Python modules failed"; exit 1; }
rm -rf "$work/site"
mkdir -p "$work/site/promptdistill"
cp "$ROOT"/python/promptdistill/*.py "$work/site/promptdistill/"
cp "$work"/build/_core*.so "$work"/build/_cuda*.so "$work/site/promptdistill/" ||
  { echo "error: the build made no modules"; exit 1; }

echo "== python/tests/test_cuda.py =="
# From WORK, with the modules first on the path; no bytecode or cache next to the tests.
(cd "$work" && PYTHONPATH="$work/site" PYTHONDONTWRITEBYTECODE=1 "$python" -m pytest -p no:cacheprovider -rs \
  "$ROOT/python/tests/test_cuda.py") 2>&1 | tee "$work/pytest.log"
rc=${PIPESTATUS[0]}
summary=$(tail -1 "$work/pytest.log")
if [ "$rc" = 0 ] && ! grep -qE '[0-9]+ passed' <<<"$summary"; then
  reason=$(grep -m1 -E '^SKIPPED \[[0-9]+\] ' "$work/pytest.log" | sed -E 's/^SKIPPED \[[0-9]+\] [^ ]*: //' | cut -c1-120)
  skip "every test of test_cuda.py skipped: $reason"
fi
exit "$rc"
