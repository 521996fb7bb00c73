#!/usr/bin/env bash
# One GPU window, fully used: runs the prebuilt bundle (scripts/gpu_bundle.sh) on a GPU machine,
# with no build, and leaves in OUT at most 8 files: run.log (every step's output, written as it
# runs), summary.txt (each step's verdict and the headline numbers, rewritten after every step)
# and results.tgz (every log and JSON, repacked after every step), so a run cut short still
# returns what ran.
#
#   scripts/gpu_run.sh OUT [--deadline SECONDS] [--bundle DIR] [--dry-run]
#
#   --deadline S  the whole run ends within S seconds (default 540: the device tool's 600 s per
#                 command, less a margin); every step has its own timeout, at most what is left
#   --bundle DIR  the bundle (default gpu_bundle/)
#   --dry-run     on any machine: check the bundle and its libraries, then list every step with
#                 why it is skipped (or cut by the deadline), write the summary and the archive
#
# Steps, in the order that decides the verdict first (docs/gpu.md has each one's estimate):
# environment (GPU, driver, toolkit, libraries; the run stops at once if the bundle cannot run)
# -> every CUDA test -> the selector and block benchmarks -> end to end at the SmolLM2 and
# Llama-3.1-8B shapes (8K, 32K, and 128K with every layer) -> the PyTorch baseline at the same
# shapes -> the Python package's CUDA tests with the machine's own PyTorch -> compute-sanitizer
# memcheck and racecheck with whatever time is left, each cut to fit.
#
# Every step ends as passed, failed, timeout (it reached its own time limit), skipped (it cannot
# run here and says why) or cut (the deadline came first).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  echo "usage: $0 OUT [--deadline SECONDS] [--bundle DIR] [--dry-run]" >&2
  exit 2
}
out=""
deadline=540
bundle="$ROOT/gpu_bundle"
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --deadline) [ $# -ge 2 ] || usage; deadline="$2"; shift 2 ;;
    --bundle) [ $# -ge 2 ] || usage; bundle="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -*) usage ;;
    *) [ -z "$out" ] || usage; out="$1"; shift ;;
  esac
done
[ -n "$out" ] || usage
[[ "$deadline" =~ ^[0-9]+$ ]] || { echo "error: --deadline takes whole seconds" >&2; exit 2; }

start=$(date +%s)
reserve=10  # seconds kept back for the last summary and archive
mkdir -p "$out"
out="$(cd "$out" && pwd)"
bundle="$(cd "$bundle" 2>/dev/null && pwd || echo "$bundle")"
work=$(mktemp -d "${TMPDIR:-/tmp}/pd_gpu_run.XXXXXX")
results="$work/results"
mkdir -p "$results"
trap 'rm -rf "$work"' EXIT
run_log="$out/run.log"
: >"$run_log"
steps="$results/steps.tsv"
: >"$steps"

left() { echo $((deadline - ($(date +%s) - start))); }
say() { echo "$*" | tee -a "$run_log"; }
# Every outside program runs under a time limit: a hung driver or file system must not eat the window.
limited() { timeout --kill-after=5 "$@"; }
count() { grep -c $'\t'"$1"$'\t' "$steps"; }

write_summary() {
  {
    echo "promptdistill GPU run, $(date -u +%Y-%m-%dT%H:%M:%SZ)$([ "$dry_run" = 1 ] && echo ' (dry run)')"
    echo "device: ${device_line:-unknown}"
    echo "bundle: $bundle ($(sed -n 's/^commit: //p' "$bundle/MANIFEST.txt" 2>/dev/null | head -1))"
    echo "deadline: ${deadline} s, used $(($(date +%s) - start)) s"
    echo
    printf '%-28s %-8s %7s  %s\n' STEP STATUS SECONDS NOTE
    while IFS=$'\t' read -r name status seconds note; do
      printf '%-28s %-8s %7s  %s\n' "$name" "$status" "$seconds" "$note"
    done <"$steps"
    echo
    echo "headline numbers:"
    limited 30 python3 "$ROOT/scripts/gpu_headlines.py" "$results" 2>&1 || echo "  (could not read the results)"
  } >"$out/summary.txt"
  cp "$out/summary.txt" "$results/summary.txt"
}
pack() {
  limited 60 tar -czf "$out/results.tgz.part" -C "$work" results && mv "$out/results.tgz.part" "$out/results.tgz"
}
record() {  # NAME STATUS SECONDS NOTE
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$steps"
  say "-- $1: $2${4:+ ($4)}"
  write_summary
  pack
}
# The last line: the counts, and failed when a step failed, timeout when one ran out of time.
finish() {
  local verdict=passed
  [ "$(count timeout)" = 0 ] || verdict=timeout
  [ "$(count failed)" = 0 ] || verdict=failed
  record total "$verdict" "$(($(date +%s) - start))" \
    "$(count passed) passed, $(count failed) failed, $(count timeout) timeout, $(count skipped) skipped, $(count cut) cut${1:+; $1}"
  cat "$out/summary.txt"
  [ "$verdict" = passed ]
  exit $?
}
on_signal() {
  record interrupted cut "$(($(date +%s) - start))" "the run was stopped from outside"
  exit 1
}
trap on_signal TERM INT

# ---- what the steps run -------------------------------------------------------------------------

# cuBLASLt comes from the machine: its toolkit, the dynamic linker's cache, or PyTorch's CUDA
# libraries (pip's nvidia-cublas wheel). Prints the folder that holds libcublasLt.so.13.
find_cublaslt() {
  local dir path
  path=$(limited 20 ldconfig -p 2>/dev/null | awk '/libcublasLt\.so\.13 / { print $NF; exit }')
  if [ -n "$path" ]; then dirname "$path"; return 0; fi
  for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 /usr/lib/x86_64-linux-gnu; do
    if [ -e "$dir/libcublasLt.so.13" ]; then echo "$dir"; return 0; fi
  done
  limited 60 python3 - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = set(p for p in site.getsitepackages() + [site.getusersitepackages()] + sys.path if p and os.path.isdir(p))
for root in sorted(roots):
    for pattern in ("nvidia/cublas/lib", "nvidia/cu13/lib", "nvidia/*/lib", "torch/lib"):
        for folder in glob.glob(os.path.join(root, pattern)):
            if glob.glob(os.path.join(folder, "libcublasLt.so.13*")):
                print(folder)
                sys.exit(0)
sys.exit(1)
EOF
}

say "promptdistill GPU run into $out: deadline ${deadline} s$([ "$dry_run" = 1 ] && echo ', dry run')"
if [ ! -f "$bundle/MANIFEST.txt" ] || [ ! -d "$bundle/bin" ]; then
  record bundle failed 0 "no bundle at $bundle: run scripts/gpu_bundle.sh on a build machine and send gpu_bundle/ along"
  finish "the run stopped: no bundle"
fi
# Execute bits may not survive the copy to the GPU machine.
chmod -R a+x "$bundle/bin" 2>/dev/null

cublas_dir=$(find_cublaslt || true)
# A folder with only libcublasLt.so.13.x.y gets the soname as a link in the work folder.
if [ -n "$cublas_dir" ] && [ ! -e "$cublas_dir/libcublasLt.so.13" ]; then
  mkdir -p "$work/lib"
  ln -s "$(ls "$cublas_dir"/libcublasLt.so.13* | head -1)" "$work/lib/libcublasLt.so.13"
  cublas_dir="$work/lib"
fi
export PD_LIBRARY_PATH="$bundle/lib${cublas_dir:+:$cublas_dir}"
export PD_BUNDLE="$bundle" PD_RESULTS="$results" PD_WORK="$work" PD_ROOT="$ROOT" PYTHONUNBUFFERED=1
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer \
  /opt/nvidia/*/*/compute-sanitizer 2>/dev/null | head -1 || true)
device_line=$(limited 20 nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
[ -n "$device_line" ] || device_line="no GPU visible (nvidia-smi: none)"

# Our executables see the bundle's libraries and cuBLASLt; python3 (PyTorch) never does.
with_libs() { LD_LIBRARY_PATH="$PD_LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }
environment_report() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host: $(uname -srm)"
  timeout 20 nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv 2>&1 || echo "nvidia-smi: not available"
  command -v nvcc >/dev/null && timeout 20 nvcc --version | tail -2
  timeout 60 python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())' \
    2>&1 | tail -1
  echo "compute-sanitizer: ${PD_SANITIZER:-not found}"
  echo "library path: $PD_LIBRARY_PATH"
  cat "$PD_BUNDLE/MANIFEST.txt"
  local broken=0 exe rc
  for exe in "$PD_BUNDLE"/bin/*; do
    if [ ! -x "$exe" ]; then
      echo "error: $(basename "$exe") cannot be executed (no execute permission)"
      broken=1
      continue
    fi
    if with_libs timeout 20 ldd "$exe" | grep "not found"; then
      echo "error: $(basename "$exe") misses the libraries above"
      broken=1
    fi
  done
  # Loading for real: the end-to-end bench answers --help with its usage (exit 2) before it
  # looks for a GPU; 126/127 mean it cannot be executed or its libraries cannot be loaded.
  with_libs timeout 20 "$PD_BUNDLE/bin/promptdistill.bench.e2e_shape" --help >/dev/null 2>&1
  rc=$?
  if [ "$rc" = 126 ] || [ "$rc" = 127 ]; then
    echo "error: the bundle's programs cannot run here (promptdistill.bench.e2e_shape --help exited $rc)"
    broken=1
  fi
  [ "$broken" = 0 ] && echo "every bundled executable finds its libraries"
  return $broken
}
# Runs a program whose JSON lines go to the log and to results/FILE.
json_lines() {
  local file=$1
  shift
  "$@" | tee -a "$PD_RESULTS/$file"
  return "${PIPESTATUS[0]}"
}
export -f with_libs environment_report json_lines
export PD_SANITIZER="$sanitizer"

# ---- the step runner ----------------------------------------------------------------------------

# step NAME NEEDS BUDGET COMMAND...: runs COMMAND with a timeout of BUDGET seconds (less if the
# deadline is nearer), when at least NEEDS seconds are left; its output goes to results/NAME.log
# and run.log as it is written. Exit 77 means skipped (the program says why). Sets step_rc.
step_rc=0
step() {
  local name=$1 needs=$2 budget=$3
  shift 3
  step_rc=0
  local remaining=$(($(left) - reserve))
  if [ "$remaining" -lt "$needs" ]; then
    record "$name" cut 0 "deadline: ${remaining} s left, the step needs ${needs} s"
    return
  fi
  if [ "$dry_run" = 1 ]; then
    local command="$*"
    record "$name" skipped 0 "dry run; would run: ${command//$bundle\/bin\//}"
    return
  fi
  local limit=$((budget < remaining ? budget : remaining)) t0
  say "== $name (timeout ${limit} s; $(left) s of the deadline left) =="
  t0=$(date +%s)
  # timeout signals its whole process group, so a step's children stop with it. bash -c reaches
  # the exported helper functions (with_libs, json_lines).
  timeout --kill-after=5 "$limit" bash -c '"$@"' step "$@" 2>&1 | tee "$results/$name.log" >>"$run_log"
  local rc=${PIPESTATUS[0]} took=$(($(date +%s) - t0)) note
  step_rc=$rc
  case "$rc" in
    0) record "$name" passed "$took" "" ;;
    77) record "$name" skipped "$took" "$(grep -m1 -o 'SKIPPED.*' "$results/$name.log" | cut -c1-150)" ;;
    124 | 137)
      if [ "$limit" -lt "$budget" ]; then
        record "$name" cut "$took" "deadline: stopped after ${limit} s"
      else
        record "$name" timeout "$took" "reached its limit of ${limit} s"
      fi ;;
    126 | 127)
      note=$(grep -m1 -E 'error|cannot|not found|No such' "$results/$name.log" | cut -c1-150)
      record "$name" failed "$took" "exit $rc: cannot execute${note:+: $note}"
      finish "the run stopped: the bundle's programs cannot run here (exit $rc)" ;;
    *)
      note=$(grep -m1 -E 'ERROR|FAILED|error:|Error' "$results/$name.log" | cut -c1-150)
      record "$name" failed "$took" "exit $rc${note:+: $note}" ;;
  esac
}

# ---- the run ----------------------------------------------------------------------------------------
bin="$bundle/bin"

# 1. Environment and libraries: runs in a dry run too (it checks the bundle on this machine). If
#    the bundle cannot run here nothing else can: stop at once and keep the window's time.
dry=$dry_run
dry_run=0
step environment 5 60 environment_report
dry_run=$dry
if [ "$step_rc" != 0 ]; then
  say "$(grep -m1 -E '^error' "$results/environment.log" || echo "the environment step failed")"
  finish "the run stopped: the environment step failed"
fi

# 2. Every CUDA test, once.
for test in numerics selector graph_capture tensor_parallel blocks session header_only session_smollm2; do
  budget=30
  case "$test" in selector | blocks | session) budget=100 ;; tensor_parallel) budget=40 ;; esac
  step "test_$test" 10 "$budget" with_libs "$bin/promptdistill.test.cuda_$test"
done

# 3. Benchmarks: the headline figures only, at a short minimum time each.
bench_flags=(--benchmark_min_time=0.01 --benchmark_out_format=json)
step bench_selector 30 90 with_libs "$bin/promptdistill.bench.selector" "${bench_flags[@]}" \
  --benchmark_out="$results/bench_selector.json" \
  '--benchmark_filter=^(BM_TopK/n:131072/|BM_CubSegmentedSortTopK/n:131072/rows:1/|BM_Score/|BM_SelectPromptDistill/L:(32768|131072)/)'
step bench_blocks 30 90 with_libs "$bin/promptdistill.bench.blocks" "${bench_flags[@]}" \
  --benchmark_out="$results/bench_blocks.json" '--benchmark_filter=^(BM_PrefillAttentionFlash|BM_DecodeAttention|BM_Linear)/'

# 4. End to end at the model shapes (weights drawn on the device); 128K with every layer, the
#    headline pair only (PromptDistill first, so its line exists even if full KV runs out of time).
e2e="$bin/promptdistill.bench.e2e_shape"
step e2e_smollm2 20 60 json_lines e2e.jsonl with_libs "$e2e" --shape smollm2 --lengths 2048 8000 --decode 16
step e2e_llama31_8b 40 120 json_lines e2e.jsonl with_libs "$e2e" --shape llama31-8b --lengths 8192 32768 --decode 16
step e2e_llama31_8b_128k 60 150 json_lines e2e.jsonl with_libs "$e2e" --shape llama31-8b --lengths 131072 --decode 8 \
  --methods promptdistill full

# 5. PyTorch/transformers at the same shapes, on the machine's own PyTorch.
torch_baseline="$ROOT/bench/torch_baseline.py"
step torch_llama31_8b 40 120 json_lines torch.jsonl python3 "$torch_baseline" --shape llama31-8b --lengths 8192 32768 --decode 16
step torch_llama31_8b_128k 40 120 json_lines torch.jsonl python3 "$torch_baseline" --shape llama31-8b --lengths 131072 --decode 8
step torch_smollm2 20 60 json_lines torch.jsonl python3 "$torch_baseline" --shape smollm2 --lengths 2048 8000 --decode 16

# 6. The Python package's CUDA tests: its modules built here against the bundle's static
#    libraries for this machine's Python, then python/tests/test_cuda.py with its PyTorch.
step test_python_cuda 60 180 bash "$ROOT/scripts/gpu_python.sh" "$bundle/python/lib" "$work/python" python3

# 7. compute-sanitizer on the selector, graph-capture and block-op tests (the large sweeps left
#    out), with whatever time is left: each starts with at least `needs` seconds and is cut there.
selector_sweeps='*across sizes*'  # doctest filters split at commas
blocks_sweeps='*Linear (cuBLASLt)*,*Attention kExact equals the reference*,*ArgMax equals the reference*'
sanitizer_steps=("memcheck_graph_capture 20 90 memcheck promptdistill.test.cuda_graph_capture"
                 "memcheck_selector 30 150 memcheck promptdistill.test.cuda_selector --test-case-exclude=$selector_sweeps"
                 "memcheck_blocks 30 150 memcheck promptdistill.test.cuda_blocks --test-case-exclude=$blocks_sweeps"
                 "racecheck_graph_capture 20 120 racecheck promptdistill.test.cuda_graph_capture")
refused=""
for entry in "${sanitizer_steps[@]}"; do
  read -r name needs budget tool exe filter <<<"$entry"
  if [ -z "$sanitizer" ]; then
    record "$name" skipped 0 "compute-sanitizer is not installed here"
  elif [ -n "$refused" ]; then
    record "$name" skipped 0 "compute-sanitizer refused this device: $refused"
  else
    # Cut to fit: the budget is at most what is left, and reaching that is `cut`, not `timeout`.
    remaining=$(($(left) - reserve))
    [ "$remaining" -lt "$budget" ] && [ "$remaining" -ge "$needs" ] && budget=$((remaining + 1))
    step "$name" "$needs" "$budget" with_libs "$sanitizer" --tool "$tool" --error-exitcode 9 --print-limit 20 "$bin/$exe" ${filter:+"$filter"}
    # gVisor machines answer "Device not supported": record it once and go on.
    if [ -f "$results/$name.log" ] && grep -qiE 'device not supported|device is not supported' "$results/$name.log"; then
      refused=$(grep -m1 -iE 'device (is )?not supported' "$results/$name.log" | cut -c1-100)
      sed -i '$d' "$steps"
      record "$name" skipped 0 "compute-sanitizer refused this device: $refused"
    fi
  fi
done

finish ""
