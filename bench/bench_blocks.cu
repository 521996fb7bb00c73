// SPDX-License-Identifier: Apache-2.0
// Decoder block ops on the GPU at Llama-3.1-8B shapes (hidden 4096, 32 query / 8 KV heads, head
// dim 128, MLP 14336), bf16, CUDA-event medians with L2 flushed (bench_util.cuh):
//  - Linear (cuBLASLt, pinned algorithm): TFLOP/s for the q/o, k/v, gate/up and down shapes at
//    1 (decode), 8 (batched decode) and 8192 (prefill) rows;
//  - prefill attention, causal, at 2K/8K/32K tokens: the flash kernel (kFast) and, at 2K, the
//    Tier-B kernel (kExact), in TFLOP/s over the causal half (published H100 figures: FA2 ~350,
//    FA3 ~630, cuDNN ~670 TFLOP/s);
//  - decode attention (split-KV) over 8K/32K/128K cached tokens at batch 1 and 8: GB/s of K+V;
//  - RmsNorm, Rope, SwiGlu at 8192 rows: GB/s (bytes read + written).
#include <random>

#include "bench_util.cuh"
#include "promptdistill/blocks.h"
#include "promptdistill/model.h"

using namespace promptdistill;
namespace pdcuda = promptdistill::cuda;  // CCCL defines a global namespace `cuda` too

namespace {

constexpr int64_t kHidden = 4096, kHeads = 32, kKvHeads = 8, kHeadDim = 128, kMlp = 14336;

template <class T>
T* device_random(std::size_t n, float scale, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<T> host(n);
  for (auto& x : host) x = from_float<T>(normal(rng));
  T* p = nullptr;
  cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(T));
  cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  return p;
}
int32_t* device_ints(const std::vector<int32_t>& v) {
  int32_t* p = nullptr;
  cudaMalloc(&p, std::max<std::size_t>(v.size(), 1) * sizeof(int32_t));
  cudaMemcpy(p, v.data(), v.size() * sizeof(int32_t), cudaMemcpyHostToDevice);
  return p;
}
void* device_bytes(std::size_t n) {
  void* p = nullptr;
  cudaMalloc(&p, std::max<std::size_t>(n, 1));
  return p;
}

void BM_Linear(benchmark::State& state) {
  const int64_t rows = state.range(0), in = state.range(1), out = state.range(2);
  bf16* x = device_random<bf16>(std::size_t(rows * in), 1.0f, 1);
  bf16* w = device_random<bf16>(std::size_t(out * in), 0.02f, 2);
  bf16* y = device_random<bf16>(std::size_t(rows * out), 0.0f, 3);
  LinearShape shape;
  shape.rows = rows;
  shape.in = in;
  shape.out = out;
  pdcuda::LinearPlan<bf16> plan;
  const Status s = pdcuda::LinearPlan<bf16>::create(shape, &plan);
  if (!s) return state.SkipWithError(s.message());
  LinearArgs<bf16> a;
  a.x = make_view<const bf16>(x, rows, in);
  a.w = make_view<const bf16>(w, out, in);
  a.y = make_view(y, rows, out);
  void* ws = device_bytes(plan.workspace_size());
  const Workspace work{ws, plan.workspace_size()};
  pdbench::time_median(state, [&](cudaStream_t st) { plan.run(a, work, st); });
  state.counters["TFLOP/s"] =
      benchmark::Counter(2.0 * double(rows * in * out) * double(state.iterations()) * 1e-12,
                         benchmark::Counter::kIsRate);
  state.SetBytesProcessed(state.iterations() * (rows * in + in * out + rows * out) * 2);
  for (void* p : {(void*)x, (void*)w, (void*)y, ws}) cudaFree(p);
}
BENCHMARK(BM_Linear)
    ->ArgNames({"rows", "in", "out"})
    ->ArgsProduct({{1, 8, 8192}, {kHidden}, {kHidden, kKvHeads* kHeadDim, 2 * kMlp}})
    ->Args({1, kMlp, kHidden})
    ->Args({8, kMlp, kHidden})
    ->Args({8192, kMlp, kHidden})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

//! One causal prefill of L tokens (batch 1) or B decode rows over L cached tokens.
void attention_case(benchmark::State& state, int64_t B, int64_t rows, int64_t L,
                    AttentionAlgo algo) {
  bf16* q = device_random<bf16>(std::size_t(B * rows * kHeads * kHeadDim), 1.0f, 4);
  bf16* k = device_random<bf16>(std::size_t(B * L * kKvHeads * kHeadDim), 1.0f, 5);
  bf16* v = device_random<bf16>(std::size_t(B * L * kKvHeads * kHeadDim), 1.0f, 6);
  bf16* o = device_random<bf16>(std::size_t(B * rows * kHeads * kHeadDim), 0.0f, 7);
  int32_t* q_lens = device_ints(std::vector<int32_t>(std::size_t(B), int32_t(rows)));
  int32_t* kv_lens = device_ints(std::vector<int32_t>(std::size_t(B), int32_t(L)));
  AttentionArgs<bf16> a;
  a.algo = algo;
  a.q = make_view<const bf16>(q, B, rows, kHeads, kHeadDim);
  a.k = KvCacheView<const bf16>::contiguous_bshd(k, B, L, kKvHeads, kHeadDim);
  a.v = KvCacheView<const bf16>::contiguous_bshd(v, B, L, kKvHeads, kHeadDim);
  a.q_lens = q_lens;
  a.kv_lens = kv_lens;
  a.max_kv_len = L;
  a.out = make_view(o, B, rows, kHeads, kHeadDim);
  const std::size_t bytes = pdcuda::Attention<bf16>::workspace_size(a);
  void* ws = device_bytes(bytes);
  const Status s = pdcuda::Attention<bf16>::can_implement(a);
  if (!s) return state.SkipWithError(s.message());
  pdbench::time_median(
      state,
      [&](cudaStream_t st) {
        pdcuda::Attention<bf16>::run(a, Workspace{ws, bytes}, st);
      },
      3);
  // Causal prefill: L(L+1)/2 visible pairs; decode: rows x L. 4 flops per pair and dim (QK^T, PV).
  const double pairs = rows == L ? double(L) * double(L + 1) / 2.0 : double(rows) * double(L);
  state.counters["TFLOP/s"] = benchmark::Counter(
      4.0 * pairs * double(B * kHeads * kHeadDim) * double(state.iterations()) * 1e-12,
      benchmark::Counter::kIsRate);
  state.SetBytesProcessed(state.iterations() * B * L * kKvHeads * kHeadDim * 2 * 2);
  for (void* p : {(void*)q, (void*)k, (void*)v, (void*)o, (void*)q_lens, (void*)kv_lens, ws})
    cudaFree(p);
}
void BM_PrefillAttentionFlash(benchmark::State& state) {
  attention_case(state, 1, state.range(0), state.range(0), AttentionAlgo::kFast);
}
BENCHMARK(BM_PrefillAttentionFlash)
    ->ArgNames({"L"})
    ->Arg(2048)
    ->Arg(8192)
    ->Arg(32768)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
void BM_PrefillAttentionExact(benchmark::State& state) {
  attention_case(state, 1, state.range(0), state.range(0), AttentionAlgo::kExact);
}
BENCHMARK(BM_PrefillAttentionExact)
    ->ArgNames({"L"})
    ->Arg(2048)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
void BM_DecodeAttention(benchmark::State& state) {
  attention_case(state, state.range(1), 1, state.range(0), AttentionAlgo::kFast);
}
BENCHMARK(BM_DecodeAttention)
    ->ArgNames({"L", "B"})
    ->ArgsProduct({{8192, 32768, 131072}, {1, 8}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

void BM_RmsNorm(benchmark::State& state) {
  const int64_t rows = state.range(0);
  bf16* x = device_random<bf16>(std::size_t(rows * kHidden), 1.0f, 8);
  bf16* w = device_random<bf16>(std::size_t(kHidden), 1.0f, 9);
  bf16* y = device_random<bf16>(std::size_t(rows * kHidden), 0.0f, 10);
  RmsNormArgs<bf16> a;
  a.x = make_view<const bf16>(x, rows, kHidden);
  a.weight = make_view<const bf16>(w, kHidden);
  a.out = make_view(y, rows, kHidden);
  pdbench::time_median(state,
                       [&](cudaStream_t st) { pdcuda::RmsNorm<bf16>::run(a, Workspace{}, st); });
  state.SetBytesProcessed(state.iterations() * rows * kHidden * 2 * 2);
  for (void* p : {(void*)x, (void*)w, (void*)y}) cudaFree(p);
}
BENCHMARK(BM_RmsNorm)
    ->ArgNames({"rows"})
    ->Arg(1)
    ->Arg(8192)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

void BM_Rope(benchmark::State& state) {
  const int64_t rows = state.range(0);
  bf16* x = device_random<bf16>(std::size_t(rows * kHeads * kHeadDim), 1.0f, 11);
  ModelConfig c;
  c.head_dim = kHeadDim;
  c.rope.theta = 500000.0;
  std::vector<int32_t> pos(static_cast<std::size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) pos[std::size_t(i)] = int32_t(i);
  std::vector<float> cs, sn;
  rope_tables(c, pos.data(), rows, rows, &cs, &sn);
  float *dc = nullptr, *ds = nullptr;
  cudaMalloc(&dc, cs.size() * sizeof(float));
  cudaMalloc(&ds, sn.size() * sizeof(float));
  cudaMemcpy(dc, cs.data(), cs.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(ds, sn.data(), sn.size() * sizeof(float), cudaMemcpyHostToDevice);
  RopeArgs<bf16> a;
  a.x = make_view(x, rows, kHeads, kHeadDim);
  a.cos = make_view<const float>(dc, rows, kHeadDim / 2);
  a.sin = make_view<const float>(ds, rows, kHeadDim / 2);
  pdbench::time_median(state,
                       [&](cudaStream_t st) { pdcuda::Rope<bf16>::run(a, Workspace{}, st); });
  state.SetBytesProcessed(state.iterations() *
                          (rows * kHeads * kHeadDim * 2 * 2 + rows * kHeadDim * 4));
  for (void* p : {(void*)x, (void*)dc, (void*)ds}) cudaFree(p);
}
BENCHMARK(BM_Rope)->ArgNames({"rows"})->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_SwiGlu(benchmark::State& state) {
  const int64_t rows = state.range(0);
  bf16* g = device_random<bf16>(std::size_t(rows * kMlp), 1.0f, 12);
  bf16* u = device_random<bf16>(std::size_t(rows * kMlp), 1.0f, 13);
  SwiGluArgs<bf16> a;
  a.gate = make_view<const bf16>(g, rows, kMlp);
  a.up = make_view<const bf16>(u, rows, kMlp);
  a.out = make_view(g, rows, kMlp);
  pdbench::time_median(state,
                       [&](cudaStream_t st) { pdcuda::SwiGlu<bf16>::run(a, Workspace{}, st); });
  state.SetBytesProcessed(state.iterations() * rows * kMlp * 2 * 3);
  for (void* p : {(void*)g, (void*)u}) cudaFree(p);
}
BENCHMARK(BM_SwiGlu)->ArgNames({"rows"})->Arg(2048)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) { return pdbench::run_gpu_benchmarks(argc, argv); }
