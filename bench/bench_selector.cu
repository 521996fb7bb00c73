// SPDX-License-Identifier: Apache-2.0
// Selector stages on the GPU (Google Benchmark, CUDA-event medians, L2 flushed):
//  - top-k batch 1, n in {4K, 32K, 128K, 1M} x k in {1K, 2K, 4K, 8K} x ties {distinct, 16 values};
//  - top-k batched over B x H_kv rows; a CUB segmented radix sort of (score, index) pairs as the
//    baseline a user would otherwise write;
//  - scoring at Llama-3.1-8B shape (32 q heads, 8 KV heads, D 128, bf16) up to 128K;
//  - hidden-state gather, KV compaction, and the whole PromptDistill selection step.
// Targets (H100): top-k <= 20 us batch 1 for n <= 128K, k <= 4096; score, gather, compaction
// >= 80 % of HBM bandwidth; whole selection at 128K <= 150 us.
#include <cub/device/device_segmented_radix_sort.cuh>

#include <numeric>
#include <random>

#include "bench_util.cuh"
#include "promptdistill/promptdistill.h"

using namespace promptdistill;
// CCCL has a global namespace `cuda` too: name our backend unambiguously.
namespace pdcuda = promptdistill::cuda;

namespace {

template <class T>
T* device_fill(std::size_t n, float scale, uint64_t seed, std::size_t distinct = 0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<T> host(n);
  for (auto& x : host) x = from_float<T>(distinct ? float(rng() % distinct) : normal(rng));
  T* p = nullptr;
  cudaMalloc(&p, n * sizeof(T));
  cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  return p;
}
template <class T>
T* device_alloc(std::size_t n) {
  T* p = nullptr;
  cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(T));
  cudaMemset(p, 0, std::max<std::size_t>(n, 1) * sizeof(T));
  return p;
}
int32_t* device_ints(const std::vector<int32_t>& v) {
  int32_t* p = device_alloc<int32_t>(v.size());
  cudaMemcpy(p, v.data(), v.size() * sizeof(int32_t), cudaMemcpyHostToDevice);
  return p;
}

void BM_TopK(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1), rows = state.range(3);
  const std::size_t distinct = state.range(2) ? 16 : 0;
  if (k >= n) return state.SkipWithError("k >= n");
  float* scores = device_fill<float>(std::size_t(rows * n), 1.0f, 1, distinct);
  int32_t* lengths = device_ints(std::vector<int32_t>(std::size_t(rows), int32_t(n)));
  int32_t* idx = device_alloc<int32_t>(std::size_t(rows * k));
  int32_t* counts = device_alloc<int32_t>(std::size_t(rows));
  TopKArgs a;
  a.scores = make_view<const float>(scores, rows, 1, n);
  a.lengths = lengths;
  a.k = k;
  a.indices = make_view(idx, rows, 1, k);
  a.counts = make_view(counts, rows, 1);
  void* ws = device_alloc<unsigned char>(pdcuda::TopK::workspace_size(a));
  const Workspace w{ws, pdcuda::TopK::workspace_size(a)};
  pdbench::time_median(state, [&](cudaStream_t s) { pdcuda::TopK::run(a, w, s); });
  state.SetItemsProcessed(state.iterations() * rows * n);
  state.SetBytesProcessed(state.iterations() * rows * n * int64_t(sizeof(float)));
  state.counters["rows"] = double(rows);
  for (void* p : {(void*)scores, (void*)lengths, (void*)idx, (void*)counts, ws}) cudaFree(p);
}
BENCHMARK(BM_TopK)
    ->ArgNames({"n", "k", "ties", "rows"})
    ->ArgsProduct({{4096, 32768, 131072, 1048576}, {1024, 2048, 4096, 8192}, {0, 1}, {1}})
    ->ArgsProduct({{32768, 131072}, {1024}, {0}, {8, 32, 256}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

//! Baseline: a full segmented descending radix sort of (score, index) pairs (what a top-k built
//! on CUB 3.0.1 without DeviceTopK costs); the first k of each segment are the top-k.
void BM_CubSegmentedSortTopK(benchmark::State& state) {
  const int64_t n = state.range(0), rows = state.range(1);
  float* keys_in = device_fill<float>(std::size_t(rows * n), 1.0f, 2);
  float* keys_out = device_alloc<float>(std::size_t(rows * n));
  std::vector<int32_t> host_idx(std::size_t(rows * n)), offsets(std::size_t(rows + 1));
  for (int64_t i = 0; i < rows * n; ++i) host_idx[std::size_t(i)] = int32_t(i % n);
  for (int64_t r = 0; r <= rows; ++r) offsets[std::size_t(r)] = int32_t(r * n);
  int32_t* vals_in = device_ints(host_idx);
  int32_t* vals_out = device_alloc<int32_t>(std::size_t(rows * n));
  int32_t* d_offsets = device_ints(offsets);
  std::size_t temp_bytes = 0;
  cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, temp_bytes, keys_in, keys_out,
                                                     vals_in, vals_out, int(rows * n), int(rows),
                                                     d_offsets, d_offsets + 1);
  void* temp = device_alloc<unsigned char>(temp_bytes);
  pdbench::time_median(state, [&](cudaStream_t s) {
    std::size_t bytes = temp_bytes;
    cub::DeviceSegmentedRadixSort::SortPairsDescending(temp, bytes, keys_in, keys_out, vals_in,
                                                       vals_out, int(rows * n), int(rows),
                                                       d_offsets, d_offsets + 1, 0, 32, s);
  });
  state.SetItemsProcessed(state.iterations() * rows * n);
  for (void* p :
       {(void*)keys_in, (void*)keys_out, (void*)vals_in, (void*)vals_out, (void*)d_offsets, temp})
    cudaFree(p);
}
BENCHMARK(BM_CubSegmentedSortTopK)
    ->ArgNames({"n", "rows"})
    ->ArgsProduct({{4096, 32768, 131072, 1048576}, {1}})
    ->ArgsProduct({{32768, 131072}, {8, 32, 256}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

//! Scoring at Llama-3.1-8B shape: reads layer r's K once (the byte count reported).
void BM_Score(benchmark::State& state) {
  const auto method = Method(state.range(0));
  const int64_t L = state.range(1), H = 32, Hkv = 8, D = 128;
  const int64_t rows = method == Method::kSnapKV ? 32 : 1;
  bf16* q = device_fill<bf16>(std::size_t(rows * H * D), 0.5f, 3);
  bf16* k = device_fill<bf16>(std::size_t(L * Hkv * D), 0.5f, 4);
  int32_t* lengths = device_ints({int32_t(L)});
  const int64_t R = score_rows(method, HeadGrouping::kPerKvGroup, H, Hkv);
  float* scores = device_alloc<float>(std::size_t(R * L));
  ScoreArgs<bf16> a;
  a.method = method;
  a.q = make_view<const bf16>(q, 1, rows, H, D);
  a.k = KvCacheView<const bf16>::contiguous_bshd(k, 1, L, Hkv, D);
  a.lengths = lengths;
  a.scores = make_view(scores, 1, R, L);
  void* ws = device_alloc<unsigned char>(pdcuda::Score<bf16>::workspace_size(a));
  const Workspace w{ws, pdcuda::Score<bf16>::workspace_size(a)};
  pdbench::time_median(state, [&](cudaStream_t s) { pdcuda::Score<bf16>::run(a, w, s); });
  const int64_t passes = method == Method::kSnapKV ? 3 : 1;  // SnapKV re-reads K in 3 passes
  state.SetBytesProcessed(state.iterations() * (passes * L * Hkv * D * 2 + R * L * 4));
  state.SetLabel(to_string(method));
  for (void* p : {(void*)q, (void*)k, (void*)lengths, (void*)scores, ws}) cudaFree(p);
}
BENCHMARK(BM_Score)
    ->ArgNames({"method", "L"})
    ->ArgsProduct({{int(Method::kPromptDistill)}, {8192, 32768, 131072}})
    ->ArgsProduct({{int(Method::kSnapKV)}, {8192, 32768}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

//! Hidden-state gather of the kept rows (Llama-3.1-8B hidden 4096, bf16).
void BM_Gather(benchmark::State& state) {
  const int64_t L = state.range(0), kept = state.range(1), E = 4096;
  bf16* src = device_fill<bf16>(std::size_t(L * E), 1.0f, 5);
  bf16* dst = device_alloc<bf16>(std::size_t(kept * E));
  std::vector<int32_t> idx(static_cast<std::size_t>(kept));
  for (int64_t i = 0; i < kept; ++i) idx[std::size_t(i)] = int32_t(i * (L / kept));
  int32_t* d_idx = device_ints(idx);
  int32_t* counts = device_ints({int32_t(kept)});
  GatherArgs<bf16> a;
  a.src = make_view<const bf16>(src, 1, L, E);
  a.indices = make_view<const int32_t>(d_idx, 1, 1, kept);
  a.counts = make_view<const int32_t>(counts, 1, 1);
  a.dst = make_view(dst, 1, kept, E);
  void* ws = device_alloc<unsigned char>(pdcuda::Gather<bf16>::workspace_size(a));
  const Workspace w{ws, pdcuda::Gather<bf16>::workspace_size(a)};
  pdbench::time_median(state, [&](cudaStream_t s) { pdcuda::Gather<bf16>::run(a, w, s); });
  state.SetBytesProcessed(state.iterations() * kept * E * 2 * 2);
  for (void* p : {(void*)src, (void*)dst, (void*)d_idx, (void*)counts, ws}) cudaFree(p);
}
BENCHMARK(BM_Gather)
    ->ArgNames({"L", "kept"})
    ->Args({131072, 1025})
    ->Args({131072, 8192})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

//! In-place compaction of one layer's K and V ([B, H_kv, S, D] bf16, Llama-3.1-8B heads).
void BM_CompactKv(benchmark::State& state) {
  const int64_t L = state.range(0), kept = state.range(1), H = 8, D = 128;
  bf16* k = device_fill<bf16>(std::size_t(L * H * D), 1.0f, 6);
  bf16* v = device_fill<bf16>(std::size_t(L * H * D), 1.0f, 7);
  std::vector<int32_t> idx(static_cast<std::size_t>(kept));
  for (int64_t i = 0; i < kept; ++i)
    idx[std::size_t(i)] = int32_t(L - kept + i);  // worst case: everything moves
  int32_t* d_idx = device_ints(idx);
  int32_t* counts = device_ints({int32_t(kept)});
  int32_t* lens = device_ints({int32_t(L)});
  int32_t* new_len = device_alloc<int32_t>(1);
  CompactKvArgs<bf16> a;
  a.k = KvCacheView<bf16>::contiguous_bhsd(k, 1, L, H, D);
  a.v = KvCacheView<bf16>::contiguous_bhsd(v, 1, L, H, D);
  a.seq_lens = lens;
  a.indices = make_view<const int32_t>(d_idx, 1, 1, kept);
  a.counts = make_view<const int32_t>(counts, 1, 1);
  a.new_lengths = new_len;
  void* ws = device_alloc<unsigned char>(pdcuda::CompactKv<bf16>::workspace_size(a));
  const Workspace w{ws, pdcuda::CompactKv<bf16>::workspace_size(a)};
  pdbench::time_median(state, [&](cudaStream_t s) { pdcuda::CompactKv<bf16>::run(a, w, s); });
  state.SetBytesProcessed(state.iterations() * 2 * kept * H * D * 2 * 2);
  for (void* p : {(void*)k, (void*)v, (void*)d_idx, (void*)counts, (void*)lens, (void*)new_len, ws})
    cudaFree(p);
}
BENCHMARK(BM_CompactKv)
    ->ArgNames({"L", "kept"})
    ->Args({131072, 1025})
    ->Args({131072, 8192})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

//! The whole PromptDistill selection step at layer r: score, pool, top-k, positions, gather.
void BM_SelectPromptDistill(benchmark::State& state) {
  const int64_t L = state.range(0), H = 32, Hkv = 8, D = 128, E = 4096, k = 1024;
  bf16* q = device_fill<bf16>(std::size_t(H * D), 0.5f, 8);
  bf16* keys = device_fill<bf16>(std::size_t(L * Hkv * D), 0.5f, 9);
  bf16* hidden = device_fill<bf16>(std::size_t(L * E), 1.0f, 10);
  bf16* kept_hidden = device_alloc<bf16>(std::size_t((k + 1) * E));
  int32_t* lengths = device_ints({int32_t(L)});
  int32_t* idx = device_alloc<int32_t>(std::size_t(k + 1));
  int32_t* counts = device_alloc<int32_t>(1);
  int32_t* pos = device_alloc<int32_t>(std::size_t(k + 1));
  SelectArgs<bf16> a;
  a.config.budget = k;
  a.q = make_view<const bf16>(q, 1, 1, H, D);
  a.k = KvCacheView<const bf16>::contiguous_bshd(keys, 1, L, Hkv, D);
  a.lengths = lengths;
  a.max_length = L;
  a.indices = make_view(idx, 1, 1, k + 1);
  a.counts = make_view(counts, 1, 1);
  a.positions = make_view(pos, 1, 1, k + 1);
  a.hidden_in = make_view<const bf16>(hidden, 1, L, E);
  a.hidden_out = make_view(kept_hidden, 1, k + 1, E);
  void* ws = device_alloc<unsigned char>(pdcuda::Select<bf16>::workspace_size(a));
  const Workspace w{ws, pdcuda::Select<bf16>::workspace_size(a)};
  pdbench::time_median(state, [&](cudaStream_t s) { pdcuda::Select<bf16>::run(a, w, s); });
  state.SetBytesProcessed(state.iterations() * (L * Hkv * D * 2 + 3 * L * 4 + (k + 1) * E * 4));
  for (void* p : {(void*)q, (void*)keys, (void*)hidden, (void*)kept_hidden, (void*)lengths,
                  (void*)idx, (void*)counts, (void*)pos, ws})
    cudaFree(p);
}
BENCHMARK(BM_SelectPromptDistill)
    ->ArgNames({"L"})
    ->Arg(8192)
    ->Arg(32768)
    ->Arg(131072)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) { return pdbench::run_gpu_benchmarks(argc, argv); }
