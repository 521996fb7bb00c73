#!/usr/bin/env bash
# The GPU window's scripts on a machine without a GPU, so they cannot rot unseen:
# 1. scripts/common.sh's configure writes its log where the build folder's parent does not exist;
# 2. scripts/gpu_bundle.sh packages a build (executables, non-system libraries, MANIFEST) and
#    fails, printing the size, when the bundle is over its limit;
# 3. scripts/gpu_run.sh --dry-run walks the whole control flow: the bundle found and its libraries
#    resolved, every step listed and skipped with its reason, summary and archive written, at most
#    8 files in OUT; with a short deadline the later steps are cut and the run ends in time;
# 4. without --dry-run on this machine (no GPU; a stand-in compute-sanitizer that refuses the
#    device, as on gVisor): every program reports itself skipped, the sanitizer's refusal is
#    recorded once and the rest go on; a missing bundle fails with a clear message.
# Usage: test_gpu_scripts.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -uo pipefail
src=$1
build=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
checks=0
fail() {
  echo "FAILED: $*" >&2
  exit 1
}
expect() {  # DESCRIPTION COMMAND...
  local what=$1
  shift
  "$@" || fail "$what"
  checks=$((checks + 1))
}
has() { grep -qE "$2" "$1"; }
count_files() { find "$1" -type f | wc -l; }

# 1. configure's log folder
mkdir -p "$work/stub"
printf '#!/bin/sh\necho "-- promptdistill: CUDA backend ON"\n' >"$work/stub/cmake"
chmod +x "$work/stub/cmake"
(
  PATH="$work/stub:$PATH"
  source "$src/scripts/common.sh"
  configure "$work/fresh/build/default" >/dev/null
) || fail "configure into a missing build/ folder"
expect "configure's log next to the build folder" test -s "$work/fresh/build/default.configure.log"

# 2. the bundle
bash "$src/scripts/gpu_bundle.sh" --skip-build --build-dir "$build" --out "$work/bundle" >"$work/bundle.log" 2>&1 ||
  { cat "$work/bundle.log"; fail "gpu_bundle.sh --skip-build"; }
expect "bundle manifest" has "$work/bundle/MANIFEST.txt" '^cuda_architectures: '
expect "every CUDA test in the bundle" test -x "$work/bundle/bin/promptdistill.test.cuda_selector"
expect "the benchmarks and the CLI in the bundle" test -x "$work/bundle/bin/promptdistill.bench.e2e_shape" -a -x "$work/bundle/bin/promptdistill"
expect "the CUDA runtime in the bundle" test -f "$work/bundle/lib/libcudart.so.13"
expect "no cuBLASLt in the bundle (the GPU machine has it)" test ! -e "$work/bundle/lib/libcublasLt.so.13"
expect "bundle size printed" has "$work/bundle.log" '^bundle: .* MiB'
if bash "$src/scripts/gpu_bundle.sh" --skip-build --build-dir "$build" --out "$work/small" --max-mib 1 >"$work/small.log" 2>&1; then
  fail "a bundle over --max-mib must fail"
fi
expect "an oversized bundle says its size" has "$work/small.log" 'the bundle is [0-9]+ MiB, over the 1 MiB limit'

# 3. dry runs
bash "$src/scripts/gpu_run.sh" "$work/dry" --dry-run --bundle "$work/bundle" >"$work/dry.log" 2>&1 ||
  { cat "$work/dry.log"; fail "gpu_run.sh --dry-run"; }
summary="$work/dry/summary.txt"
expect "summary written" test -s "$summary"
expect "archive written" tar -tzf "$work/dry/results.tgz" results/summary.txt results/steps.tsv
expect "at most 8 files in OUT" test "$(count_files "$work/dry")" -le 8
expect "bundle libraries resolved" has "$summary" '^environment +passed'
for name in test_numerics test_selector test_graph_capture test_blocks test_session test_header_only test_session_smollm2 \
  memcheck_selector memcheck_graph_capture memcheck_blocks racecheck_graph_capture bench_selector bench_blocks \
  e2e_smollm2 e2e_llama31_8b torch_llama31_8b torch_smollm2 e2e_llama31_8b_128k torch_llama31_8b_128k; do
  expect "step $name listed and skipped with its reason" has "$summary" "^$name +skipped +0 +(dry run; would run: |compute-sanitizer )"
done
expect "the dry run passes" has "$summary" '^total +passed'

start=$(date +%s)
bash "$src/scripts/gpu_run.sh" "$work/short" --dry-run --deadline 40 --bundle "$work/bundle" >"$work/short.log" 2>&1 ||
  { cat "$work/short.log"; fail "gpu_run.sh --dry-run --deadline 40"; }
expect "the run ends within its deadline" test $(($(date +%s) - start)) -le 40
expect "early steps still listed" has "$work/short/summary.txt" '^test_selector +skipped'
expect "later steps cut by the deadline" has "$work/short/summary.txt" '^e2e_llama31_8b +cut +0 +deadline: [0-9]+ s left, the step needs 60 s'
expect "at most 8 files in OUT" test "$(count_files "$work/short")" -le 8

# 4. a real run here, where nothing can run on a GPU
if nvidia-smi -L >/dev/null 2>&1; then
  echo "a GPU is present: the no-GPU run is left to machines without one"
else
  printf '#!/bin/sh\necho "========= Error: Device not supported"\nexit 1\n' >"$work/stub/compute-sanitizer"
  chmod +x "$work/stub/compute-sanitizer"
  PATH="$work/stub:$PATH" bash "$src/scripts/gpu_run.sh" "$work/cpu" --deadline 200 --bundle "$work/bundle" >"$work/cpu.log" 2>&1 ||
    { cat "$work/cpu.log"; fail "gpu_run.sh without a GPU"; }
  summary="$work/cpu/summary.txt"
  expect "tests report themselves skipped" has "$summary" '^test_selector +skipped +[0-9]+ +SKIPPED: no CUDA device'
  expect "benchmarks report themselves skipped" has "$summary" '^bench_blocks +skipped +[0-9]+ +SKIPPED: no CUDA device'
  expect "the end-to-end bench reports itself skipped" has "$summary" '^e2e_smollm2 +skipped +[0-9]+ +SKIPPED'
  expect "the torch baseline reports itself skipped" has "$summary" '^torch_smollm2 +skipped +[0-9]+ +SKIPPED'
  expect "the sanitizer's refusal recorded" has "$summary" '^memcheck_selector +skipped +0 +compute-sanitizer refused this device: .*Device not supported'
  expect "the other sanitizer steps skipped for it" has "$summary" '^racecheck_graph_capture +skipped +0 +compute-sanitizer refused'
  expect "every step's log in the archive" tar -tzf "$work/cpu/results.tgz" results/test_blocks.log results/bench_selector.log
  expect "run.log holds the programs' output" has "$work/cpu/run.log" 'SKIPPED: no CUDA device'
  expect "at most 8 files in OUT" test "$(count_files "$work/cpu")" -le 8
fi
if bash "$src/scripts/gpu_run.sh" "$work/nobundle" --bundle "$work/missing" >"$work/nobundle.log" 2>&1; then
  fail "a missing bundle must fail"
fi
expect "a missing bundle says what to do" has "$work/nobundle/summary.txt" 'run scripts/gpu_bundle.sh'

echo "gpu scripts: $checks checks passed"
rm -rf "$work"
