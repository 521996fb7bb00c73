#!/usr/bin/env bash
# For a GPU machine (with the device tool: run scripts/prepare_gpu_debs.sh here first, then
# `run(command='bash scripts/gpu_check.sh "$OUT"', carry=['.debs'])`):
# configure and build, run every test including the CUDA ones, run the CUDA tests again under
# (E2E_LENGTHS="8192 32768 131072" adds the 128K end-to-end case; budget ~10 minutes for it)
# compute-sanitizer (memcheck), run the benchmarks with JSON output, plot them when matplotlib is
# available, and copy everything into OUT_DIR (default: bench/results/<device>-<date>).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# GPU machines reach no registry: use the Debian packages carried in .debs/ (prepare_gpu_debs.sh).
EXTRA=()
if ls "$ROOT"/.debs/*.deb >/dev/null 2>&1; then
  mkdir -p "$ROOT/.debs/root"
  for d in "$ROOT"/.debs/*.deb; do dpkg -x "$d" "$ROOT/.debs/root"; done
  R="$ROOT/.debs/root"
  EXTRA=(-DCMAKE_PREFIX_PATH="$R/usr;$R/usr/lib/x86_64-linux-gnu/cmake;$R/usr/share/eigen3/cmake;$R/usr/lib/cmake"
         -DCMAKE_CXX_FLAGS="-isystem $R/usr/include -isystem $R/usr/include/eigen3"
         -DCMAKE_CUDA_FLAGS="-isystem $R/usr/include")
  export LD_LIBRARY_PATH="$R/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
elif ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  bash "$ROOT/scripts/install_deps.sh"
fi
device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-' )
stamp=$(date -u +%Y-%m-%d)
OUT="${1:-$ROOT/bench/results/${device:-unknown-gpu}-$stamp}"
mkdir -p "$OUT"
status=0
{
  echo "device: ${device:-none}"; echo "date: $stamp"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
  nvcc --version | tail -2
  git -C "$ROOT" rev-parse HEAD 2>/dev/null
} >"$OUT/environment.txt"

configure "$ROOT/build/gpu" -DCMAKE_BUILD_TYPE=Release "${EXTRA[@]}" || exit 1
cmake --build "$ROOT/build/gpu" -j "$JOBS" 2>&1 | tail -3 || exit 1
# Everything; the model tests skip themselves there (the 98 MB model is too big to carry).
(cd "$ROOT/build/gpu" && ctest --output-on-failure -j 4 2>&1 | tee "$OUT/ctest.txt") || status=1
grep -q "tests passed" "$OUT/ctest.txt" || status=1
# The CUDA tests must have run, not skipped (the SmolLM2 one needs the 98 MB model, more than the
# device tool carries; it runs where the model is, e.g. PROMPTDISTILL_MODEL_PATH on a workstation).
(cd "$ROOT/build/gpu" && ctest -L cuda -E smollm2 --output-on-failure 2>&1 | tee "$OUT/ctest_cuda.txt") || status=1
grep -q "Skipped" "$OUT/ctest_cuda.txt" && status=1

sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for t in cuda_numerics cuda_selector cuda_graph_capture cuda_blocks cuda_session; do
  echo "== compute-sanitizer memcheck: $t ==" | tee -a "$OUT/sanitizer.txt"
  "$sanitizer" --tool memcheck --error-exitcode 9 "$ROOT/build/gpu/tests/promptdistill.test.$t" >>"$OUT/sanitizer.txt" 2>&1 \
    || { status=1; echo "FAILED: $t" | tee -a "$OUT/sanitizer.txt"; }
done

"$ROOT/build/gpu/bench/promptdistill.bench.selector" --benchmark_out="$OUT/bench_selector.json" \
  --benchmark_out_format=json 2>&1 | tail -60 || status=1
"$ROOT/build/gpu/bench/promptdistill.bench.blocks" --benchmark_out="$OUT/bench_blocks.json" \
  --benchmark_out_format=json 2>&1 | tail -40 || status=1
# End to end at the paper's model shape (random bf16 weights) and at SmolLM2's shape.
"$ROOT/build/gpu/bench/promptdistill.bench.e2e_shape" --shape smollm2 --lengths 2048 8000 >"$OUT/e2e_smollm2_shape.jsonl" || status=1
"$ROOT/build/gpu/bench/promptdistill.bench.e2e_shape" --shape llama31-8b --lengths ${E2E_LENGTHS:-8192 32768} \
  >"$OUT/e2e_llama31_8b_shape.jsonl" || status=1
# The PyTorch/transformers baseline on the same GPU and shapes (GPU machines have torch).
python3 "$ROOT/bench/torch_baseline.py" --shape llama31-8b --lengths ${E2E_LENGTHS:-8192 32768} \
  >"$OUT/e2e_llama31_8b_shape_torch.jsonl" 2>"$OUT/torch_baseline.log" || echo "torch baseline failed (see log)"
"$ROOT/build/gpu/bench/promptdistill.bench.cpu_reference" --benchmark_out="$OUT/bench_cpu_reference.json" \
  --benchmark_out_format=json --benchmark_min_time=0.05 >/dev/null 2>&1 || status=1
python3 "$ROOT/bench/plot_results.py" "$OUT" 2>&1 | tail -3 || true
echo "results in $OUT (status $status)"
exit $status
