#!/usr/bin/env bash
# The Python package's tests: creates a virtual environment under build/ (ignored), installs the
# test dependencies (python/requirements-test.txt) and the package itself with `pip install .`
# (the same command a user runs), then runs pytest. Called by run_tests.sh after ctest; the CLI
# it compares with is the one that build made (PROMPTDISTILL_CLI overrides it).
#
# PyPI's torch wheel brings several GB of CUDA libraries. Downloaded wheels are kept in a
# wheelhouse outside the repository (PROMPTDISTILL_WHEELHOUSE, default ~/.cache/promptdistill/wheels),
# so that later runs, fresh clones included, install offline from it. `--prefetch` only fills the
# wheelhouse (run_tests.sh runs it in the background during the C++ build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
VENV="${PROMPTDISTILL_VENV:-$ROOT/build/python-venv}"
WHEELS="${PROMPTDISTILL_WHEELHOUSE:-$HOME/.cache/promptdistill/wheels}"
export PROMPTDISTILL_CLI="${PROMPTDISTILL_CLI:-$ROOT/build/default/bin/promptdistill}"
log="$ROOT/build/python-install.log"
mkdir -p "$ROOT/build" "$WHEELS"

start=$(date +%s)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
# The build requirements come from pyproject.toml (one place pins them); the build runs without
# isolation so that its folder (build/python) and ccache make rebuilds incremental.
mapfile -t build_requires < <(python3 -c 'import tomllib, sys
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' "$ROOT/pyproject.toml")
requirements=(-r "$ROOT/python/requirements-test.txt" "${build_requires[@]}")
if [ "${1:-}" = "--prefetch" ]; then
  # run_tests.sh starts this while it builds: the download (mostly network time) overlaps the
  # compilation instead of following it. Wheels already in the wheelhouse are not fetched again.
  "${pip[@]}" download --dest "$WHEELS" --find-links "$WHEELS" "${requirements[@]}" >"$log.prefetch" 2>&1 \
    || { tail -20 "$log.prefetch"; exit 1; }
  echo "python: test dependencies fetched into $WHEELS in $(($(date +%s) - start)) s"
  exit 0
fi
if ! "${pip[@]}" install --no-index --find-links "$WHEELS" "${requirements[@]}" >"$log" 2>&1; then
  echo "downloading the test dependencies into $WHEELS (torch with its CUDA libraries: several GB)"
  "${pip[@]}" download --dest "$WHEELS" "${requirements[@]}" >>"$log" 2>&1 || { tail -20 "$log"; exit 1; }
  "${pip[@]}" install --no-index --find-links "$WHEELS" "${requirements[@]}" >>"$log" 2>&1 || { tail -20 "$log"; exit 1; }
fi
deps=$(date +%s)
# The same CUDA architectures as the C++ test build (common.sh), not the install's five.
cmake_defines=(-C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$TEST_CUDA_ARCHITECTURES")
if command -v ccache >/dev/null 2>&1; then
  cmake_defines+=(-C cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache -C cmake.define.CMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
"${pip[@]}" install --no-index --no-build-isolation -C build-dir="$ROOT/build/python" "${cmake_defines[@]}" "$ROOT" >>"$log" 2>&1 \
  || { tail -40 "$log"; exit 1; }
echo "python: dependencies in $((deps - start)) s, package built and installed in $(($(date +%s) - deps)) s ($VENV)"
# From outside the source tree, so that `import promptdistill` is the installed package; no
# bytecode or pytest cache is written next to the tests.
cd "$ROOT/build"
export PYTHONDONTWRITEBYTECODE=1
"$VENV/bin/python" -c 'import promptdistill, sys; print("promptdistill", promptdistill.__version__, "from", promptdistill.__file__)'
"$VENV/bin/python" -m pytest -p no:cacheprovider -rs --durations=8 "$ROOT/python/tests"
