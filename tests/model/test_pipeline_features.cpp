// SPDX-License-Identifier: Apache-2.0
// The two selection features against the semantics of docs/algorithms.md, on the random 6-layer
// model and ref::EigenSession:
// - scores aggregated over layers (PipelineConfig::score_layers): one listed layer equals the
//   published single-layer selection bit for bit (another code path: ScorePartial + FinishSelect
//   instead of Select); w layers select what the mean of the w single-layer score vectors, each
//   computed separately from the layer's own query and keys, selects (near ties apart, on random
//   data: the bound of §10); the plan's stage split and refusals;
// - FastKV (docs/algorithms.md §11): per-layer budgets and caches, the propagated tokens (window
// included, sorted,
//   original positions), both modes, the prompts its code leaves alone, refusals;
// - budget sweeps of both equal one prefill per budget, bit for bit.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "promptdistill/session_ref.h"
#include "support/eigen_runs.h"
#include "support/generators.h"
#include "support/random_model.h"

using namespace promptdistill;
using pdtest::random_model;
using pdtest::random_prompt;

namespace {

using pdtest::Run;
using pdtest::run;
using pdtest::same_caches;

PipelineConfig staged(PipelineMethod method, std::vector<int64_t> layers, std::vector<int64_t> ks,
                      int64_t tt, std::vector<int64_t> score_layers = {}) {
  PipelineConfig c;
  c.method = method;
  c.selection_layers = std::move(layers);
  c.n_topks = std::move(ks);
  c.cache_truncation_end = tt;
  c.score_layers = std::move(score_layers);
  return c;
}

PipelineConfig fastkv(int64_t budget, int64_t tsp_layer, int64_t tsp_length) {
  PipelineConfig c = PipelineConfig::published_default(PipelineMethod::kFastKV);
  c.budget = budget;
  c.window = 4;
  c.pool_kernel = 3;
  c.tsp_layer = tsp_layer;
  c.tsp_length = tsp_length;
  return c;
}

//! Each layer's single-layer PromptDistill scores (Select, no pooling) of the last query against
//! the layer's keys, from a forward over every token (the layers a selection at `last` runs first).
std::vector<std::vector<float>> single_layer_scores(const ModelWeights& w,
                                                    const std::vector<int32_t>& prompt,
                                                    int64_t last) {
  const ModelConfig& mc = w.config;
  const int64_t L = int64_t(prompt.size());
  ref::Transformer model(&w);
  std::vector<float> x;
  REQUIRE(model.embed(prompt.data(), L, &x).is_ok());
  std::vector<int32_t> positions(static_cast<std::size_t>(L));
  for (int64_t i = 0; i < L; ++i) positions[std::size_t(i)] = int32_t(i);
  std::vector<std::vector<float>> out;
  for (int64_t l = 0; l <= last; ++l) {
    ref::LayerTaps taps;
    taps.q_rows = 1;
    taps.want_keys = true;
    ref::KvLayerCache cache;
    REQUIRE(model.layer(l, &x, L, positions.data(), L, &cache, &taps).is_ok());
    std::vector<int32_t> lengths{int32_t(L)}, idx(static_cast<std::size_t>(L)), counts(1);
    std::vector<float> scores(static_cast<std::size_t>(L), 0.0f);
    SelectArgs<float> a;
    a.config.method = Method::kPromptDistill;
    a.config.budget = 1;
    a.config.pool = PoolMode::kNone;
    a.q = make_view<const float>(taps.q.data(), 1, 1, mc.num_heads, mc.head_dim);
    a.k = KvCacheView<const float>::contiguous_bshd(taps.keys.data(), 1, L, mc.num_kv_heads,
                                                    mc.head_dim);
    a.lengths = lengths.data();
    a.max_length = L;
    a.indices = make_view(idx.data(), 1, 1, L);
    a.counts = make_view(counts.data(), 1, 1);
    a.final_scores = make_view(scores.data(), 1, 1, L);
    HostWorkspace ws;
    REQUIRE(ws.reserve(ref::Select<float>::workspace_size(a)).is_ok());
    REQUIRE(ref::Select<float>::run(a, ws.workspace()).is_ok());
    out.push_back(scores);
  }
  return out;
}

//! A configuration the EigenSession must refuse before any work, and a part of its message.
struct Bad {
  const char* what;
  PipelineConfig c;
  const char* message;
};

void check_refused(const ModelWeights& w, const std::vector<int32_t>& prompt, const Bad& b) {
  ref::EigenSession s(&w);
  PrefillResult r;
  const Status st = s.prefill(prompt, b.c, &r);
  INFO(std::string(b.what) << ": " << st.message());
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(st.message()).find(b.message) != std::string::npos);
  CHECK(r.first_token == -1);
}

}  // namespace

TEST_CASE("pipeline/score layers: one listed layer is the published selection, bit for bit") {
  const auto w = random_model(pdtest::mix(pdtest::seed(), 1));
  for (int64_t L : {40, 71}) {
    const auto prompt = random_prompt(L, pdtest::mix(pdtest::seed(), 2, uint64_t(L)));
    for (PipelineMethod m : {PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter})
      for (int64_t tt : {0, 1}) {
        CAPTURE(L);
        CAPTURE(std::string(to_string(m)));
        CAPTURE(tt);
        const Run want = run(w, prompt, staged(m, {3}, {12}, tt));
        const Run got = run(w, prompt, staged(m, {3}, {12}, tt, {3}));
        CHECK(got.prefill.selected == want.prefill.selected);
        CHECK(got.prefill.first_token == want.prefill.first_token);
        CHECK(same_caches(got.caches, want.caches));
        CHECK(got.tokens == want.tokens);
      }
  }
}

TEST_CASE(
    "pipeline/score layers: w layers select by the mean of the w single-layer score vectors") {
  // The mean of each layer's own scores (computed here in double from Select's f32 vectors) and the
  // aggregated sums (w * H head terms, one division) round differently; the selections must agree
  // except on tokens whose mean pooled score lies within 1e-5 of the k-th best (near ties).
  const auto w = random_model(pdtest::mix(pdtest::seed(), 3));
  const int64_t L = 71, k = 20, r = 4;
  const auto prompt = random_prompt(L, pdtest::mix(pdtest::seed(), 4));
  const auto singles = single_layer_scores(w, prompt, r);
  for (int64_t first : {4, 2, 0}) {
    std::vector<int64_t> layers;
    for (int64_t l = first; l <= r; ++l) layers.push_back(l);
    CAPTURE(first);
    const Run got = run(w, prompt, staged(PipelineMethod::kPromptDistill, {r}, {k}, 0, layers));
    // The mean, zeroed at the last token and pooled (avg 5, count_include_pad), ranked: §2 on it.
    std::vector<double> mean(static_cast<std::size_t>(L), 0.0),
        pooled(static_cast<std::size_t>(L - 1), 0.0);
    for (int64_t l : layers)
      for (int64_t j = 0; j < L - 1; ++j)
        mean[std::size_t(j)] +=
            double(singles[std::size_t(l)][std::size_t(j)]) / double(layers.size());
    for (int64_t j = 0; j < L - 1; ++j)
      for (int64_t t = -2; t <= 2; ++t)
        if (j + t >= 0 && j + t < L - 1) pooled[std::size_t(j)] += mean[std::size_t(j + t)] / 5.0;
    std::vector<int32_t> order(static_cast<std::size_t>(L - 1));
    for (int64_t j = 0; j < L - 1; ++j) order[std::size_t(j)] = int32_t(j);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return pooled[std::size_t(a)] > pooled[std::size_t(b)];
    });
    const double kth = pooled[std::size_t(order[std::size_t(k - 1)])];
    std::vector<int32_t> want(order.begin(), order.begin() + k);
    want.push_back(int32_t(L - 1));
    std::sort(want.begin(), want.end());
    const std::vector<int32_t>& kept = got.prefill.selected[0][0];
    REQUIRE(kept.size() == want.size());
    int64_t differing = 0;
    for (int32_t j : kept)
      if (!std::binary_search(want.begin(), want.end(), j)) {
        ++differing;
        CHECK(std::fabs(pooled[std::size_t(j)] - kth) <= 1e-5 * std::max(1.0, std::fabs(kth)));
      }
    MESSAGE("layers " << first << "-" << r << ": " << differing
                      << " kept tokens differ from the double-precision mean's");
    if (first < r) {
      const Run single = run(w, prompt, staged(PipelineMethod::kPromptDistill, {r}, {k}, 0));
      CHECK(single.prefill.selected != got.prefill.selected);  // aggregation changed what was kept
    }
  }
}

TEST_CASE(
    "pipeline/score layers: each stage takes its own layers; bad lists are refused before any "
    "work") {
  PipelinePlan plan;
  REQUIRE(plan_pipeline(staged(PipelineMethod::kPromptDistill, {1, 4}, {30, 10}, -1, {0, 1, 3, 4}),
                        &plan)
              .is_ok());
  CHECK(plan.stages[0].score_layers == std::vector<int64_t>{0, 1});
  CHECK(plan.stages[1].score_layers == std::vector<int64_t>{3, 4});
  REQUIRE(plan_pipeline(staged(PipelineMethod::kPromptDistill, {4}, {10}, 1), &plan).is_ok());
  CHECK_FALSE(plan.stages[0].aggregates());
  const auto w = random_model(pdtest::mix(pdtest::seed(), 5));
  const auto prompt = random_prompt(30, 1);
  PipelineConfig snap;
  snap.method = PipelineMethod::kSnapKV;
  snap.score_layers = {2};
  const Bad cases[] = {
      {"unsorted", staged(PipelineMethod::kPromptDistill, {3}, {8}, 1, {2, 1, 3}),
       "strictly increasing"},
      {"negative", staged(PipelineMethod::kPromptDistill, {3}, {8}, 1, {-1, 3}), "negative"},
      {"after the last stage", staged(PipelineMethod::kPromptDistill, {3}, {8}, 1, {3, 4}),
       "after the last selection"},
      {"stage layer missing", staged(PipelineMethod::kGemFilter, {3}, {8}, 1, {1, 2}),
       "must list the selection layer 3"},
      {"a stage without its layer",
       staged(PipelineMethod::kPromptDistill, {1, 3}, {20, 8}, 1, {0, 1, 2}),
       "must list the selection layer 3"},
      {"not a staged method", snap, "apply to promptdistill and gemfilter"},
  };
  for (const Bad& b : cases) check_refused(w, prompt, b);
}

TEST_CASE(
    "pipeline/fastkv: every layer keeps its budget per KV group; the TSP layer propagates "
    "tsp_length tokens") {
  const auto w = random_model(pdtest::mix(pdtest::seed(), 6));
  const int64_t N = w.config.num_layers, Hkv = w.config.num_kv_heads, W = 4;
  const auto prompt = random_prompt(71, pdtest::mix(pdtest::seed(), 7));
  const Run got = run(w, prompt, fastkv(20, 2, 30));
  REQUIRE(int64_t(got.prefill.selected.size()) == N);
  for (int64_t l = 0; l < N; ++l) {
    CAPTURE(l);
    CHECK(got.prefill.cache_lengths[std::size_t(l)] == 20);
    CHECK(got.prefill.retained[std::size_t(l)] == 20);
    REQUIRE(int64_t(got.prefill.selected[std::size_t(l)].size()) == Hkv);
    for (const auto& row : got.prefill.selected[std::size_t(l)]) {
      REQUIRE(row.size() == 20);
      CHECK(std::is_sorted(row.begin(), row.end()));
      // The window: the last W tokens this layer ran on (of the prompt before the TSP layer; of the
      // propagated tokens, which end with the prompt's own last W, after it).
      for (int64_t i = 0; i < W; ++i) CHECK(row[std::size_t(20 - W + i)] == 71 - W + i);
      if (l > 2)
        for (int32_t p : row)
          CHECK(
              std::binary_search(got.prefill.propagated.begin(), got.prefill.propagated.end(), p));
    }
  }
  REQUIRE(got.prefill.propagated.size() == 30);
  CHECK(std::is_sorted(got.prefill.propagated.begin(), got.prefill.propagated.end()));
  for (int64_t i = 0; i < W; ++i)
    CHECK(got.prefill.propagated[std::size_t(30 - W + i)] == 71 - W + i);
  CHECK(got.prefill.next_position == 71);
  // A prompt no longer than tsp_length is not propagated; one below the budget keeps everything.
  const Run short_prompt = run(w, random_prompt(30, 8), fastkv(20, 2, 30));
  CHECK(short_prompt.prefill.propagated.empty());
  CHECK(short_prompt.prefill.cache_lengths == std::vector<int64_t>(std::size_t(N), 20));
  const Run below = run(w, random_prompt(19, 9), fastkv(20, 2, 10));
  CHECK(below.prefill.propagated.empty());
  CHECK(below.prefill.cache_lengths == std::vector<int64_t>(std::size_t(N), 19));
  // The proportional mode: int(L * 0.5) = 35 up to the TSP layer, int(0.6 L) = 42 propagated, then
  // int(42 * (0.5 / 0.6)) = 35 (the double product is exactly 35, as in Python).
  PipelineConfig proportional = fastkv(20, 2, 30);
  proportional.retain_rate = 0.5;
  proportional.tsp_rate = 0.6;
  const Run p = run(w, prompt, proportional);
  CHECK(p.prefill.cache_lengths == std::vector<int64_t>(std::size_t(N), 35));
  CHECK(p.prefill.propagated.size() == 42);
}

TEST_CASE("pipeline/fastkv: bad configurations fail before any work") {
  const auto w = random_model(pdtest::mix(pdtest::seed(), 10));
  const auto prompt = random_prompt(40, 1);
  std::vector<Bad> cases;
  cases.push_back({"budget at the window", fastkv(4, 2, 30), "must exceed the window"});
  cases.push_back(
      {"tsp_length at the window", fastkv(20, 2, 4), "tsp_length 4 must exceed the window"});
  cases.push_back({"tsp layer out of range", fastkv(20, 6, 30), "tsp_layer 6 is outside"});
  PipelineConfig c = fastkv(20, 2, 30);
  c.retain_rate = 0.1;
  cases.push_back({"one rate only", c, "proportional mode needs retain_rate and tsp_rate"});
  c.tsp_rate = 1.5;
  cases.push_back({"rate above 1", c, "proportional mode needs retain_rate and tsp_rate"});
  c.tsp_rate = 0.2;
  cases.push_back({"too short for the rates", c, "too short"});
  c = fastkv(20, 2, 30);
  c.grouping = HeadGrouping::kPerQueryHead;
  cases.push_back({"per query head", c, "per KV group"});
  c = fastkv(20, 2, 30);
  c.pool = PoolMode::kNone;
  cases.push_back({"no pooling", c, "fastkv pools"});
  c = fastkv(20, 2, 30);
  c.score_layers = {2};
  cases.push_back({"score layers", c, "apply to promptdistill and gemfilter"});
  for (const Bad& b : cases) check_refused(w, prompt, b);
}

TEST_CASE(
    "pipeline/sweep: FastKV and aggregated scores share one prefill and give what each prefill "
    "gives") {
  const auto w = random_model(pdtest::mix(pdtest::seed(), 11));
  const auto prompt = random_prompt(50, pdtest::mix(pdtest::seed(), 12));
  struct Sweep {
    PipelineConfig config;
    std::vector<int64_t> budgets;
  };
  const std::vector<Sweep> sweeps = {
      {fastkv(20, 2, 30),
       {8, 16, 30, 60}},  // 60 > L: no compression, no propagation (its own prefill)
      {staged(PipelineMethod::kPromptDistill, {3}, {1}, 1, {1, 2, 3}), {4, 9, 100}},
      {staged(PipelineMethod::kGemFilter, {3}, {1}, 0, {2, 3}), {5, 12}},
  };
  for (const Sweep& sweep : sweeps) {
    ref::EigenSession session(&w);
    std::size_t visited = 0;
    const Status st = session.prefill_sweep(
        prompt, sweep.config, sweep.budgets, [&](std::size_t i, const PrefillResult& got) {
          ++visited;
          PipelineConfig expected = sweep.config;
          if (expected.method == PipelineMethod::kFastKV)
            expected.budget = sweep.budgets[i];
          else
            expected.n_topks = {sweep.budgets[i]};
          INFO(std::string(to_string(expected.method)) << " budget " << sweep.budgets[i]);
          const Run want = run(w, prompt, expected);
          CHECK(got.first_token == want.prefill.first_token);
          CHECK(got.retained == want.prefill.retained);
          CHECK(got.selected == want.prefill.selected);
          CHECK(got.propagated == want.prefill.propagated);
          CHECK(got.cache_lengths == want.prefill.cache_lengths);
          CHECK(got.peak_kv_cache_bytes == want.prefill.peak_kv_cache_bytes);
          CHECK(same_caches(session.caches(), want.caches));
          std::vector<int32_t> tokens;
          double ms = 0;
          REQUIRE(session.generate(got.first_token, 6, {}, &tokens, &ms).is_ok());
          CHECK(tokens == want.tokens);
          return Status::ok();
        });
    REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
    CHECK(visited == sweep.budgets.size());
  }
  PipelineConfig proportional = fastkv(20, 2, 30);
  proportional.retain_rate = 0.5;
  proportional.tsp_rate = 0.6;
  ref::EigenSession session(&w);
  CHECK(session
            .prefill_sweep(prompt, proportional, {20},
                           [](std::size_t, const PrefillResult&) { return Status::ok(); })
            .code() == StatusCode::kInvalidArgument);
}
