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
# Steps, in order of value: environment (GPU, driver, toolkit, libraries) -> every CUDA test ->
# compute-sanitizer memcheck (selector, graph capture, block ops; large sweeps filtered out) and
# racecheck (graph capture) -> benchmarks (headline filters, short min time) -> end-to-end shape
# benchmark (SmolLM2 2K/8K, Llama-3.1-8B 8K/32K) -> PyTorch baseline at the same shapes -> the
# 128K case of both, with fewer layers (E2E_128K_LAYERS, default 16), while the deadline allows.
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
work=$(mktemp -d "${TMPDIR:-/tmp}/pd_gpu_run.XXXXXX")
results="$work/results"
mkdir -p "$results"
trap 'rm -rf "$work"' EXIT
run_log="$out/run.log"
: >"$run_log"
steps="$results/steps.tsv"
: >"$steps"
failed=0

left() { echo $((deadline - ($(date +%s) - start))); }
say() { echo "$*" | tee -a "$run_log"; }

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
    python3 "$ROOT/scripts/gpu_headlines.py" "$results" 2>&1 || echo "  (could not read the results)"
  } >"$out/summary.txt"
  cp "$out/summary.txt" "$results/summary.txt"
}
pack() {
  tar -czf "$out/results.tgz.part" -C "$work" results && mv "$out/results.tgz.part" "$out/results.tgz"
}
record() {  # NAME STATUS SECONDS NOTE
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$steps"
  [ "$2" = failed ] && failed=1
  say "-- $1: $2${4:+ ($4)}"
  write_summary
  pack
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
  path=$(ldconfig -p 2>/dev/null | awk '/libcublasLt\.so\.13 / { print $NF; exit }')
  if [ -n "$path" ]; then dirname "$path"; return 0; fi
  for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 /usr/lib/x86_64-linux-gnu; do
    if [ -e "$dir/libcublasLt.so.13" ]; then echo "$dir"; return 0; fi
  done
  timeout 60 python3 - <<'EOF' 2>/dev/null
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

cublas_dir=$(find_cublaslt || true)
# A folder with only libcublasLt.so.13.x.y gets the soname as a link in the work folder.
if [ -n "$cublas_dir" ] && [ ! -e "$cublas_dir/libcublasLt.so.13" ]; then
  mkdir -p "$work/lib"
  ln -s "$(ls "$cublas_dir"/libcublasLt.so.13* | head -1)" "$work/lib/libcublasLt.so.13"
  cublas_dir="$work/lib"
fi
export PD_LIBRARY_PATH="$bundle/lib${cublas_dir:+:$cublas_dir}"
export PD_BUNDLE="$bundle" PD_RESULTS="$results" PYTHONUNBUFFERED=1
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer \
  /opt/nvidia/*/*/compute-sanitizer 2>/dev/null | head -1 || true)
device_line=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
[ -n "$device_line" ] || device_line="no GPU visible (nvidia-smi: none)"

# Our executables see the bundle's libraries and cuBLASLt; python3 (PyTorch) never does.
with_libs() { LD_LIBRARY_PATH="$PD_LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }
environment_report() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host: $(uname -srm)"
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv 2>&1 || echo "nvidia-smi: not available"
  command -v nvcc >/dev/null && nvcc --version | tail -2
  timeout 60 python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())' \
    2>&1 | tail -1
  echo "compute-sanitizer: ${PD_SANITIZER:-not found}"
  echo "library path: $PD_LIBRARY_PATH"
  cat "$PD_BUNDLE/MANIFEST.txt"
  local missing=0 exe
  for exe in "$PD_BUNDLE"/bin/*; do
    if with_libs ldd "$exe" | grep "not found"; then
      echo "error: $(basename "$exe") misses the libraries above"
      missing=1
    fi
  done
  [ "$missing" = 0 ] && echo "every bundled executable finds its libraries"
  return $missing
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
# and run.log as it is written. Exit 77 means skipped (the program says why).
step() {
  local name=$1 needs=$2 budget=$3
  shift 3
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
  case "$rc" in
    0) record "$name" passed "$took" "" ;;
    77) record "$name" skipped "$took" "$(grep -m1 -o 'SKIPPED.*' "$results/$name.log" | cut -c1-150)" ;;
    124 | 137)
      if [ "$limit" -lt "$budget" ]; then
        record "$name" cut "$took" "deadline: stopped after ${limit} s"
      else
        record "$name" failed "$took" "timed out after ${limit} s"
      fi ;;
    *)
      note=$(grep -m1 -E 'ERROR|FAILED|error:|Error' "$results/$name.log" | cut -c1-150)
      record "$name" failed "$took" "exit $rc${note:+: $note}" ;;
  esac
}

# ---- the run ----------------------------------------------------------------------------------------

say "promptdistill GPU run into $out: deadline ${deadline} s$([ "$dry_run" = 1 ] && echo ', dry run')"
if [ ! -f "$bundle/MANIFEST.txt" ] || [ ! -d "$bundle/bin" ]; then
  record bundle failed 0 "no bundle at $bundle: run scripts/gpu_bundle.sh on a build machine and send gpu_bundle/ along"
  cat "$out/summary.txt"
  exit 1
fi
bin="$bundle/bin"

# 1. Environment and libraries: runs in a dry run too (it checks the bundle on this machine).
dry=$dry_run
dry_run=0
step environment 5 90 environment_report
dry_run=$dry

# 2. Every CUDA test, once.
for test in numerics selector graph_capture tensor_parallel blocks session header_only session_smollm2; do
  budget=60
  case "$test" in selector | blocks) budget=150 ;; session) budget=120 ;; esac
  step "test_$test" 10 "$budget" with_libs "$bin/promptdistill.test.cuda_$test"
done

# 3. compute-sanitizer on the selector, graph-capture and block-op tests, the large sweeps left out.
selector_sweeps='*across sizes*'  # doctest filters split at commas
blocks_sweeps='*Linear (cuBLASLt)*,*Attention kExact equals the reference*'
sanitizer_steps=("memcheck_selector 30 150 memcheck promptdistill.test.cuda_selector --test-case-exclude=$selector_sweeps"
                 "memcheck_graph_capture 20 90 memcheck promptdistill.test.cuda_graph_capture"
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
    step "$name" "$needs" "$budget" with_libs "$sanitizer" --tool "$tool" --error-exitcode 9 --print-limit 20 "$bin/$exe" ${filter:+"$filter"}
    # gVisor machines answer "Device not supported": record it once and go on.
    if [ -f "$results/$name.log" ] && grep -qiE 'device not supported|device is not supported' "$results/$name.log"; then
      refused=$(grep -m1 -iE 'device (is )?not supported' "$results/$name.log" | cut -c1-100)
      sed -i '$d' "$steps"
      record "$name" skipped 0 "compute-sanitizer refused this device: $refused"
      failed=0
      grep -q $'\tfailed\t' "$steps" && failed=1
    fi
  fi
done

# 4. Benchmarks: the headline figures only, at a short minimum time each.
bench_flags=(--benchmark_min_time=0.01 --benchmark_out_format=json)
step bench_selector 40 150 with_libs "$bin/promptdistill.bench.selector" "${bench_flags[@]}" \
  --benchmark_out="$results/bench_selector.json" \
  '--benchmark_filter=^(BM_TopK/n:131072/|BM_CubSegmentedSortTopK/n:131072/rows:1/|BM_Score/|BM_SelectPromptDistill/L:(32768|131072)/)'
step bench_blocks 40 150 with_libs "$bin/promptdistill.bench.blocks" "${bench_flags[@]}" \
  --benchmark_out="$results/bench_blocks.json" '--benchmark_filter=^(BM_PrefillAttentionFlash|BM_DecodeAttention|BM_Linear)/'

# 5./6. End to end at the model shapes (weights drawn on the device), then PyTorch at the same.
e2e="$bin/promptdistill.bench.e2e_shape"
torch_baseline="$ROOT/bench/torch_baseline.py"
step e2e_smollm2 30 120 json_lines e2e.jsonl with_libs "$e2e" --shape smollm2 --lengths 2048 8000 --decode 16
step e2e_llama31_8b 60 240 json_lines e2e.jsonl with_libs "$e2e" --shape llama31-8b --lengths 8192 32768 --decode 16
step torch_llama31_8b 60 180 json_lines torch.jsonl python3 "$torch_baseline" --shape llama31-8b --lengths 8192 32768 --decode 16
step torch_smollm2 30 90 json_lines torch.jsonl python3 "$torch_baseline" --shape smollm2 --lengths 2048 8000 --decode 16
layers_128k="${E2E_128K_LAYERS:-16}"
step e2e_llama31_8b_128k 90 400 json_lines e2e.jsonl with_libs "$e2e" --shape llama31-8b --layers "$layers_128k" \
  --lengths 131072 --decode 8
step torch_llama31_8b_128k 90 400 json_lines torch.jsonl python3 "$torch_baseline" --shape llama31-8b --layers "$layers_128k" \
  --lengths 131072 --decode 8

record total "$([ "$failed" = 0 ] && echo passed || echo failed)" "$(($(date +%s) - start))" \
  "$(grep -c $'\tpassed\t' "$steps") passed, $(grep -c $'\tskipped\t' "$steps") skipped, $(grep -c $'\tcut\t' "$steps") cut"
cat "$out/summary.txt"
exit $failed
