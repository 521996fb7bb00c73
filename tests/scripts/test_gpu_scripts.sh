#!/usr/bin/env bash
# The GPU window's scripts on a machine without a GPU, so they cannot rot unseen:
# 1. scripts/common.sh's configure writes its log where the build folder's parent does not exist;
# 2. scripts/gpu_bundle.sh packages a build (executables, non-system libraries, MANIFEST) and
#    fails, printing the size, when the bundle is over its limit;
# 3. scripts/gpu_run.sh --dry-run walks the whole control flow: the bundle found and its libraries
#    resolved, every step listed in the order that decides the verdict first (environment, CUDA
#    tests, benchmarks, end to end, PyTorch, the Python package, sanitizers) and skipped with its
#    reason, the counts in the total line, summary and archive written, at most 8 files in OUT;
#    with a short deadline the later steps are cut and the run ends in time;
# 4. without --dry-run on this machine (no GPU; a stand-in compute-sanitizer that refuses the
#    device, as on gVisor): every program reports itself skipped, the sanitizer's refusal is
#    recorded once and the rest go on; a missing bundle fails with a clear message;
# 5. a stand-in bundle of shell scripts, copied without execute bits: the run makes them
#    executable; a program past its own time limit is `timeout`, one that fails is `failed`, and
#    the total counts each status; a bundle whose programs cannot be loaded (exit 127) stops the
#    run at the environment step, at once, with the message;
# 6. the end-to-end bench on the CPU backend: a line per run, exit 0; a prefill that fails (a
#    memory limit nothing fits) writes its error line and exits 1, so the GPU run reads failed.
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
expect "the benchmarks in the bundle" test -x "$work/bundle/bin/promptdistill.bench.e2e_shape" -a -x "$work/bundle/bin/promptdistill.bench.blocks"
expect "the Python modules' static libraries in the bundle" test -f "$work/bundle/python/lib/libpromptdistill_cuda.a" -a \
  -f "$work/bundle/python/lib/libpromptdistill_core.a"
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
order="environment test_numerics test_selector test_graph_capture test_tensor_parallel test_blocks test_session test_header_only \
test_session_smollm2 bench_selector bench_blocks e2e_smollm2 e2e_llama31_8b e2e_llama31_8b_128k torch_llama31_8b \
torch_llama31_8b_128k torch_smollm2 test_python_cuda memcheck_graph_capture memcheck_selector memcheck_blocks \
racecheck_graph_capture total"
listed=$(sed -n '/^STEP /,/^$/p' "$summary" | awk 'NR > 1 && NF { print $1 }' | tr '\n' ' ' | sed 's/ $//')
[ "$listed" = "$(echo $order)" ] || { echo "listed:   $listed" >&2; echo "expected: $(echo $order)" >&2; fail "the steps in their order"; }
checks=$((checks + 1))
for name in $order; do
  case "$name" in environment | total) continue ;; esac
  expect "step $name listed and skipped with its reason" has "$summary" "^$name +skipped +0 +(dry run; would run: |compute-sanitizer )"
done
expect "the 128K point runs every layer, PromptDistill first" has "$summary" \
  '^e2e_llama31_8b_128k +skipped .*e2e_shape --shape llama31-8b --lengths 131072 --decode 8 --methods promptdistill full$'
expect "the Python step builds against the bundle's static libraries" has "$summary" '^test_python_cuda .*gpu_python.sh .*/python/lib '
expect "the dry run passes, with the counts" has "$summary" '^total +passed +[0-9]+ +1 passed, 0 failed, 0 timeout, 21 skipped, 0 cut$'

start=$(date +%s)
bash "$src/scripts/gpu_run.sh" "$work/short" --dry-run --deadline 40 --bundle "$work/bundle" >"$work/short.log" 2>&1 ||
  { cat "$work/short.log"; fail "gpu_run.sh --dry-run --deadline 40"; }
expect "the run ends within its deadline" test $(($(date +%s) - start)) -le 40
expect "early steps still listed" has "$work/short/summary.txt" '^test_selector +skipped'
expect "later steps cut by the deadline" has "$work/short/summary.txt" '^e2e_llama31_8b +cut +0 +deadline: [0-9]+ s left, the step needs 40 s'
expect "cut steps counted" has "$work/short/summary.txt" '^total +passed .* [1-9][0-9]* cut$'
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
  expect "the Python step reports itself skipped" has "$summary" '^test_python_cuda +skipped +[0-9]+ +SKIPPED'
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

# 5. a stand-in bundle: statuses, execute bits, an environment that cannot run the programs
fake="$work/fake"
mkdir -p "$fake/bin" "$fake/lib"
echo "commit: fake" >"$fake/MANIFEST.txt"
for exe in promptdistill.test.cuda_numerics promptdistill.test.cuda_selector promptdistill.test.cuda_graph_capture \
  promptdistill.test.cuda_tensor_parallel promptdistill.test.cuda_blocks promptdistill.test.cuda_session \
  promptdistill.test.cuda_header_only promptdistill.test.cuda_session_smollm2 promptdistill.bench.selector \
  promptdistill.bench.blocks promptdistill.bench.e2e_shape; do
  printf '#!/bin/sh\necho "SKIPPED: stand-in"\nexit 77\n' >"$fake/bin/$exe"
done
printf '#!/bin/sh\n[ "$1" = --help ] && exit 2\necho "SKIPPED: stand-in"\nexit 77\n' >"$fake/bin/promptdistill.bench.e2e_shape"
printf '#!/bin/sh\nsleep 50\n' >"$fake/bin/promptdistill.test.cuda_numerics"                  # past its 30 s
printf '#!/bin/sh\necho "ERROR: a check failed"\nexit 1\n' >"$fake/bin/promptdistill.test.cuda_selector"
printf '#!/bin/sh\necho "all checks passed"\n' >"$fake/bin/promptdistill.test.cuda_graph_capture"
chmod -R a-x "$fake/bin"  # as after a copy that lost the execute bits
PATH="$work/stub:$PATH" bash "$src/scripts/gpu_run.sh" "$work/statuses" --deadline 150 --bundle "$fake" >"$work/statuses.log" 2>&1 &&
  fail "a run with a failed step must exit non-zero"
summary="$work/statuses/summary.txt"
expect "execute bits restored" test -x "$fake/bin/promptdistill.test.cuda_graph_capture"
expect "a step past its own limit is timeout" has "$summary" '^test_numerics +timeout +3[0-9] +reached its limit of 30 s'
expect "a failing step is failed, with its first error line" has "$summary" '^test_selector +failed +[0-9]+ +exit 1: ERROR: a check failed'
expect "a passing step is passed" has "$summary" '^test_graph_capture +passed'
expect "the total counts each status" has "$summary" '^total +failed +[0-9]+ +2 passed, 1 failed, 1 timeout, [0-9]+ skipped, 0 cut$'

printf '#!/bin/sh\necho "error while loading shared libraries: libstandin.so: cannot open shared object file" >&2\nexit 127\n' \
  >"$fake/bin/promptdistill.bench.e2e_shape"
start=$(date +%s)
bash "$src/scripts/gpu_run.sh" "$work/noload" --bundle "$fake" >"$work/noload.log" 2>&1 && fail "an environment that cannot run the bundle must fail"
summary="$work/noload/summary.txt"
expect "the environment step fails" has "$summary" '^environment +failed'
expect "the run stops at once" test $(($(date +%s) - start)) -le 60
expect "nothing runs after it" test "$(grep -c '^test_' "$summary")" = 0
expect "the stop and its reason in the total" has "$summary" '^total +failed .*the run stopped: the environment step failed'
expect "the loader's message in the log" has "$work/noload.log" 'cannot run here \(promptdistill.bench.e2e_shape --help exited 127\)'

# 6. the end-to-end bench's exit status, on the CPU backend
e2e=("$build/bench/promptdistill.bench.e2e_shape" --backend cpu --shape smollm2 --layers 2 --lengths 48 --decode 3 --methods full)
"${e2e[@]}" >"$work/e2e_ok.jsonl" 2>"$work/e2e_ok.err" || { cat "$work/e2e_ok.err"; fail "e2e_shape on the CPU backend"; }
expect "a JSON line per run" has "$work/e2e_ok.jsonl" '^\{"device":"cpu","shape":"smollm2","layers":2,.*"length":48,"method":"full","ttft_ms"'
if "${e2e[@]}" --memory-limit-mib 1 >"$work/e2e_fail.jsonl" 2>"$work/e2e_fail.err"; then
  fail "a failed prefill must make e2e_shape exit non-zero"
fi
expect "the failed prefill's line" has "$work/e2e_fail.jsonl" '"method":"full","error":"prefill: prefill of 1 x 48 tokens needs'
expect "unknown methods are a usage error" test "$("$build/bench/promptdistill.bench.e2e_shape" --methods nonsense >/dev/null 2>&1; echo $?)" = 2

echo "gpu scripts: $checks checks passed"
rm -rf "$work"
