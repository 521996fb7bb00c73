// SPDX-License-Identifier: Apache-2.0
// Timings of the CPU reference stages, so that the cost of the test suite stays visible.
#include <benchmark/benchmark.h>

#include <vector>

#include "promptdistill/promptdistill.h"
#include "support/generators.h"

using namespace promptdistill;

namespace {

uint64_t pdtest_seed = 1;

void BM_RefTopK(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  const auto scores = pdtest::tie_scores(std::size_t(n), std::size_t(state.range(2)), 1);
  std::vector<int32_t> lengths{int32_t(n)}, idx(static_cast<std::size_t>(n)), counts(1);
  TopKArgs a;
  a.scores = make_view<const float>(scores.data(), 1, 1, n);
  a.lengths = lengths.data();
  a.k = k;
  a.keep_last = 1;
  a.indices = make_view(idx.data(), 1, 1, n);
  a.counts = make_view(counts.data(), 1, 1);
  for (auto _ : state) benchmark::DoNotOptimize(ref::TopK::run(a, Workspace{}));
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * int64_t(sizeof(float)));
}
BENCHMARK(BM_RefTopK)
    ->ArgNames({"n", "k", "ties"})
    ->ArgsProduct({{4096, 32768, 131072}, {1024, 4096}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

void BM_RefSelect(benchmark::State& state) {
  const int64_t L = state.range(0), H = 9, Hkv = 3, D = 64;
  const auto method = Method(state.range(1));
  const int64_t rows = method == Method::kSnapKV ? 32 : method == Method::kH2O ? L : 1;
  const auto q =
      pdtest::generate<bf16>(std::size_t(rows * H * D), pdtest::Fill::kNormal, pdtest_seed);
  const auto k =
      pdtest::generate<bf16>(std::size_t(L * Hkv * D), pdtest::Fill::kNormal, pdtest_seed + 1);
  const int64_t R = score_rows(method, HeadGrouping::kPerKvGroup, H, Hkv);
  std::vector<int32_t> lengths{int32_t(L)}, idx(std::size_t(R * L)),
      counts(static_cast<std::size_t>(R));
  SelectArgs<bf16> a;
  a.config.method = method;
  a.config.budget = 256;
  a.q = make_view<const bf16>(q.data(), 1, rows, H, D);
  a.k = KvCacheView<const bf16>::contiguous_bshd(k.data(), 1, L, Hkv, D);
  a.lengths = lengths.data();
  a.max_length = L;
  a.indices = make_view(idx.data(), 1, R, L);
  a.counts = make_view(counts.data(), 1, R);
  HostWorkspace ws;
  if (!ws.reserve(ref::Select<bf16>::workspace_size(a)).is_ok())
    return state.SkipWithError("out of memory");
  const Workspace w = ws.workspace();
  for (auto _ : state) benchmark::DoNotOptimize(ref::Select<bf16>::run(a, w));
  state.SetLabel(to_string(method));
  state.SetItemsProcessed(state.iterations() * L);
}
BENCHMARK(BM_RefSelect)
    ->ArgNames({"L", "method"})
    ->ArgsProduct({{1024, 8192},
                   {int(Method::kPromptDistill), int(Method::kGemFilter), int(Method::kSnapKV)}})
    ->Args({1024, int(Method::kH2O)})
    ->Unit(benchmark::kMillisecond);

}  // namespace

namespace pdtest {
uint64_t seed() { return pdtest_seed; }
}  // namespace pdtest

// ---- the CPU reference decoder on the embedded model --------------------------------------------

#include "promptdistill/session_ref.h"

namespace {

const ModelWeights* smollm2() {
  static ModelWeights w;
  static const bool loaded = load_gguf_model(PD_BENCH_MODEL, &w).is_ok();
  return loaded ? &w : nullptr;
}

//! SmolLM2-135M prefill (full KV) and PromptDistill (layer 20, k = L/4) tokens per second, in the
//! exact (f32) and the bf16 prefill mode; the weights are packed once, outside the timing.
void BM_SmolLM2Prefill(benchmark::State& state) {
  const ModelWeights* w = smollm2();
  if (w == nullptr) return state.SkipWithError("model missing: run scripts/fetch_model.sh");
  const int64_t L = state.range(0);
  const auto format =
      state.range(2) ? ref::PrefillWeightFormat::kBf16 : ref::PrefillWeightFormat::kF32;
  static ref::PrefillWeights packed[2];
  ref::PrefillWeights& weights = packed[state.range(2)];
  if (weights.bytes() == 0 && !ref::PrefillWeights::create(*w, format, &weights).is_ok())
    return state.SkipWithError("packing failed");
  std::vector<int32_t> prompt(static_cast<std::size_t>(L));
  for (int64_t i = 0; i < L; ++i) prompt[std::size_t(i)] = int32_t(100 + (i * 37) % 20000);
  PipelineConfig c;
  if (state.range(1)) {
    c.method = PipelineMethod::kPromptDistill;
    c.selection_layers = {20};
    c.n_topks = {L / 4};
    c.cache_truncation_end = 1;
  }
  double selection_ms = 0, ttft_ms = 0;
  for (auto _ : state) {
    ref::EigenSession s(w);
    s.set_prefill_weights(&weights);
    PrefillResult r;
    if (!s.prefill(prompt, c, &r).is_ok()) return state.SkipWithError("prefill failed");
    benchmark::DoNotOptimize(r.first_token);
    selection_ms += r.selection_ms, ttft_ms += r.ttft_ms;
  }
  state.SetItemsProcessed(state.iterations() * L);
  state.counters["selection_share"] = ttft_ms > 0 ? selection_ms / ttft_ms : 0.0;
  state.SetLabel(std::string(state.range(1) ? "promptdistill r20 k=L/4, " : "full, ") +
                 weights.describe());
}
BENCHMARK(BM_SmolLM2Prefill)
    ->ArgNames({"L", "pd", "bf16"})
    ->ArgsProduct({{256, 1024, 2048}, {0, 1}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

}  // namespace

// ---- the CPU decoder's kernels (pipelines/cpu/cpu_kernels.h) at SmolLM2's shapes
// ------------------ CPU time (the thread CPU clock of every thread: on a busy machine it moves
// less than wall time); GFLOPS counts 2 x multiply-adds.

#include "pipelines/cpu/cpu_kernels.h"
#include "pipelines/cpu/gemm_ref.h"
#include "pipelines/cpu/prefill_attention_ref.h"

namespace {

struct GemmShape {
  const char* name;
  int64_t m, k, n;
};
constexpr GemmShape kShapes[] = {{"qkv", 2048, 576, 960},
                                 {"o", 2048, 576, 576},
                                 {"gate_up", 512, 576, 3072},
                                 {"down", 512, 1536, 576},
                                 {"bf16 qkv", 2048, 576, 960}};

//! One of SmolLM2's layer GEMMs (the MLP's in the decoder's 512-row chunks) with the f32 kernels of
//! an ISA (0 avx2, 1 avx512) or, shape 4, the bf16 AMX tiles.
void BM_CpuGemm(benchmark::State& state) {
  const GemmShape& g = kShapes[state.range(0)];
  const bool tiles = state.range(0) == 4;
  const auto isa = state.range(1) ? ref::kernels::Isa::kAvx512 : ref::kernels::Isa::kAvx2;
  if (tiles ? !ref::kernels::amx_bf16_available() : !ref::kernels::set_active(isa))
    return state.SkipWithError("this CPU lacks the instruction set");
  const auto a = pdtest::generate<float>(std::size_t(g.m * g.k), pdtest::Fill::kNormal, 1);
  const auto w = pdtest::generate<float>(std::size_t(g.n * g.k), pdtest::Fill::kNormal, 2);
  std::vector<float> c(std::size_t(g.m * g.n));
  const ref::gemm::Part part{w.data(), g.n};
  ref::gemm::PackedMatrix packed;
  const Status st = tiles ? ref::gemm::PackedMatrix::pack_bf16_tiles(&part, 1, g.k, &packed)
                          : ref::gemm::PackedMatrix::pack_for_active(&part, 1, g.k, &packed);
  if (!st) return state.SkipWithError(st.message());
  const ref::gemm::Output out{c.data(), g.n};
  std::vector<float> scratch;
  for (auto _ : state)
    benchmark::DoNotOptimize(ref::gemm::run(packed, a.data(), g.m, g.k, &out, &scratch));
  state.counters["GFLOPS"] =
      benchmark::Counter(2.0 * double(g.m * g.k * g.n) * double(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
  state.SetLabel(std::string(g.name) + (tiles            ? " (amx bf16)"
                                        : state.range(1) ? " (avx512)"
                                                         : " (avx2)"));
}
BENCHMARK(BM_CpuGemm)
    ->ArgNames({"shape", "avx512"})
    ->ArgsProduct({{0, 1, 2, 3}, {0, 1}})
    ->Args({4, 1})
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);

//! SmolLM2's causal attention (9 query heads over 3 KV heads of 64) of L new rows; GFLOPS counts
//! the visible (causal) products only.
void BM_CpuAttention(benchmark::State& state) {
  const int64_t n = state.range(0), H = 9, Hkv = 3, D = 64;
  const auto isa = state.range(1) ? ref::kernels::Isa::kAvx512 : ref::kernels::Isa::kAvx2;
  if (!ref::kernels::set_active(isa))
    return state.SkipWithError("this CPU lacks the instruction set");
  const auto q = pdtest::generate<float>(std::size_t(n * H * D), pdtest::Fill::kNormal, 3);
  const auto k = pdtest::generate<float>(std::size_t(n * Hkv * D), pdtest::Fill::kNormal, 4);
  const auto v = pdtest::generate<float>(std::size_t(n * Hkv * D), pdtest::Fill::kNormal, 5);
  std::vector<float> out(q.size()), scratch;
  ref::attention::Shape s;
  s.heads = H, s.kv_heads = Hkv, s.head_dim = D;
  for (auto _ : state)
    benchmark::DoNotOptimize(
        ref::attention::prefill(s, q.data(), n, k.data(), v.data(), 0, out.data(), &scratch));
  state.counters["GFLOPS"] = benchmark::Counter(
      2.0 * 2 * double(H * D) * double(n) * double(n + 1) / 2 * double(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
  state.SetLabel(state.range(1) ? "avx512" : "avx2");
}
BENCHMARK(BM_CpuAttention)
    ->ArgNames({"L", "avx512"})
    ->ArgsProduct({{512, 2048, 8192}, {0, 1}})
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
