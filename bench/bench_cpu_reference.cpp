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
BENCHMARK(BM_RefTopK)->ArgNames({"n", "k", "ties"})->ArgsProduct({{4096, 32768, 131072}, {1024, 4096}, {0, 1}})->Unit(benchmark::kMicrosecond);

void BM_RefSelect(benchmark::State& state) {
  const int64_t L = state.range(0), H = 9, Hkv = 3, D = 64;
  const auto method = Method(state.range(1));
  const int64_t rows = method == Method::kSnapKV ? 32 : method == Method::kH2O ? L : 1;
  const auto q = pdtest::generate<bf16>(std::size_t(rows * H * D), pdtest::Fill::kNormal, pdtest_seed);
  const auto k = pdtest::generate<bf16>(std::size_t(L * Hkv * D), pdtest::Fill::kNormal, pdtest_seed + 1);
  const int64_t R = score_rows(method, HeadGrouping::kPerKvGroup, H, Hkv);
  std::vector<int32_t> lengths{int32_t(L)}, idx(std::size_t(R * L)), counts(static_cast<std::size_t>(R));
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
  if (!ws.reserve(ref::Select<bf16>::workspace_size(a)).is_ok()) return state.SkipWithError("out of memory");
  const Workspace w = ws.workspace();
  for (auto _ : state) benchmark::DoNotOptimize(ref::Select<bf16>::run(a, w));
  state.SetLabel(to_string(method));
  state.SetItemsProcessed(state.iterations() * L);
}
BENCHMARK(BM_RefSelect)
    ->ArgNames({"L", "method"})
    ->ArgsProduct({{1024, 8192}, {int(Method::kPromptDistill), int(Method::kGemFilter), int(Method::kSnapKV)}})
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

//! SmolLM2-135M prefill (full KV) and PromptDistill (layer 20, k = L/4) tokens per second.
void BM_SmolLM2Prefill(benchmark::State& state) {
  const ModelWeights* w = smollm2();
  if (w == nullptr) return state.SkipWithError("model missing: run scripts/fetch_model.sh");
  const int64_t L = state.range(0);
  std::vector<int32_t> prompt(static_cast<std::size_t>(L));
  for (int64_t i = 0; i < L; ++i) prompt[std::size_t(i)] = int32_t(100 + (i * 37) % 20000);
  PipelineConfig c;
  if (state.range(1)) {
    c.method = PipelineMethod::kPromptDistill;
    c.selection_layers = {20};
    c.n_topks = {L / 4};
    c.cache_truncation_end = 1;
  }
  for (auto _ : state) {
    ref::EigenSession s(w);
    PrefillResult r;
    if (!s.prefill(prompt, c, &r).is_ok()) return state.SkipWithError("prefill failed");
    benchmark::DoNotOptimize(r.first_token);
  }
  state.SetItemsProcessed(state.iterations() * L);
  state.SetLabel(state.range(1) ? "promptdistill r20 k=L/4" : "full");
}
BENCHMARK(BM_SmolLM2Prefill)->ArgNames({"L", "pd"})->ArgsProduct({{256, 1024, 2048}, {0, 1}})->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace
