// SPDX-License-Identifier: Apache-2.0
// The CPU pipelines against the semantics of docs/algorithms.md, on a random 6-layer model:
// PromptDistill with k >= L-1 is exactly full KV; multi-stage cache lengths for every tt;
// truncation at the selection point equals the reference's truncation after the last layer;
// GemFilter's pass 2 equals a full prefill of the selected ids; SnapKV/H2O cache sizes and
// windows; bad configurations fail before any work. Exact (same code path, same data): bitwise.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "promptdistill/session_ref.h"
#include "support/eigen_runs.h"
#include "support/generators.h"
#include "support/random_model.h"

using namespace promptdistill;

namespace {

using pdtest::random_model;
using pdtest::random_prompt;

using pdtest::Run;
using pdtest::run;
using pdtest::same_caches;

PipelineConfig pd(std::vector<int64_t> layers, std::vector<int64_t> ks, int64_t tt) {
  PipelineConfig c;
  c.method = PipelineMethod::kPromptDistill;
  c.selection_layers = std::move(layers);
  c.n_topks = std::move(ks);
  c.cache_truncation_end = tt;
  return c;
}

}  // namespace

TEST_CASE("pipeline/promptdistill: k >= L-1 gives exactly the full-KV tokens and caches") {
  const auto w = random_model(1);
  for (int64_t L : {1, 2, 9, 40}) {
    const auto prompt = random_prompt(L, uint64_t(L));
    PipelineConfig full;
    const Run want = run(w, prompt, full);
    for (int64_t tt : {0, 1}) {
      const Run got = run(w, prompt, pd({2}, {L - 1 > 0 ? L - 1 : 1}, tt));
      CAPTURE(L);
      CAPTURE(tt);
      CHECK(got.prefill.retained == std::vector<int64_t>{L});
      CHECK(got.tokens == want.tokens);
      CHECK(same_caches(got.caches, want.caches));
      CHECK(got.prefill.next_position == L);
    }
  }
}

TEST_CASE(
    "pipeline/promptdistill: multi-stage cache lengths for every tt (docs/algorithms.md §3 "
    "table)") {
  const auto w = random_model(2);
  const int64_t L = 60;
  const auto prompt = random_prompt(L, 7);
  const int64_t n0 = 20 + 1, n1 = 8 + 1;  // min(k, n-1) + 1 at each stage
  struct Want {
    int64_t tt, up_to_r0, between, after;
  };
  for (Want want :
       {Want{0, L, n0, n1}, Want{1, n0, n0, n1}, Want{2, n1, n1, n1}, Want{-1, n1, n1, n1}}) {
    const Run r = run(w, prompt, pd({1, 3}, {20, 8}, want.tt));
    CAPTURE(want.tt);
    CHECK(r.prefill.retained == std::vector<int64_t>{n0, n1});
    const std::vector<int64_t> expected = {want.up_to_r0, want.up_to_r0, want.between,
                                           want.between,  want.after,    want.after};
    CHECK(r.prefill.cache_lengths == expected);
    // Stage 2 keeps a subset of stage 1, both ascending, the last token always.
    const auto& s0 = r.prefill.selected[0][0];
    const auto& s1 = r.prefill.selected[1][0];
    CHECK(std::is_sorted(s0.begin(), s0.end()));
    CHECK(std::includes(s0.begin(), s0.end(), s1.begin(), s1.end()));
    CHECK(s1.back() == L - 1);
    CHECK(r.prefill.next_position == L);
  }
}

TEST_CASE(
    "pipeline/promptdistill: truncating at the selection point equals truncating after the last "
    "layer") {
  const auto w = random_model(3);
  const auto prompt = random_prompt(50, 9);
  for (int64_t tt : {1, 2, -1}) {
    PipelineConfig early = pd({1, 3}, {25, 10}, tt), late = early;
    late.truncate_after_last_layer = true;
    const Run a = run(w, prompt, early), b = run(w, prompt, late);
    CAPTURE(tt);
    CHECK(a.tokens == b.tokens);
    CHECK(same_caches(a.caches, b.caches));
    CHECK(a.prefill.peak_kv_cache_bytes <= b.prefill.peak_kv_cache_bytes);
  }
}

TEST_CASE(
    "pipeline/gemfilter: pass 2 equals a full prefill of the selected ids at positions 0..k-1") {
  const auto w = random_model(4);
  const auto prompt = random_prompt(70, 11);
  PipelineConfig c;
  c.method = PipelineMethod::kGemFilter;
  c.selection_layers = {2};
  c.n_topks = {16};
  const Run gf = run(w, prompt, c);
  REQUIRE(gf.prefill.retained == std::vector<int64_t>{16});
  std::vector<int32_t> kept;
  for (int32_t i : gf.prefill.selected[0][0]) kept.push_back(prompt[std::size_t(i)]);
  const Run full = run(w, kept, PipelineConfig{});
  CHECK(gf.tokens == full.tokens);
  CHECK(same_caches(gf.caches, full.caches));
  CHECK(gf.prefill.next_position == 16);
}

TEST_CASE(
    "pipeline/snapkv and h2o: every layer holds exactly C entries with its window, or L when L < "
    "C") {
  const auto w = random_model(5);
  for (PipelineMethod m : {PipelineMethod::kSnapKV, PipelineMethod::kH2O}) {
    for (HeadGrouping g : {HeadGrouping::kPerKvGroup, HeadGrouping::kPerQueryHead}) {
      for (int64_t L : {30, 90}) {
        PipelineConfig c;
        c.method = m;
        c.budget = 40;
        c.window = 8;
        c.grouping = g;
        const Run r = run(w, random_prompt(L, uint64_t(L) + 1), c);
        INFO(std::string(to_string(m)));
        CAPTURE(L);
        const int64_t want = std::min<int64_t>(L, 40);
        for (const auto& cache : r.caches) {
          CHECK(cache.length == want);  // right after the prefill
          CHECK(cache.heads == (g == HeadGrouping::kPerQueryHead && L >= 40 ? 4 : 2));
        }
        for (const auto& layer_rows : r.prefill.selected) {
          CHECK(int64_t(layer_rows.size()) ==
                (g == HeadGrouping::kPerQueryHead ? 4 : 2));  // every row is reported
          for (const auto& sel : layer_rows) {
            CHECK(int64_t(sel.size()) == want);
            for (int64_t t = L - 8; t < L; ++t)
              CHECK(std::binary_search(sel.begin(), sel.end(), int32_t(t)));
          }
        }
        CHECK(r.prefill.next_position == L);
      }
    }
  }
}

TEST_CASE("pipeline: bad configurations fail before any work") {
  const auto w = random_model(6);
  const auto prompt = random_prompt(20, 1);
  struct Bad {
    const char* what;
    PipelineConfig c;
    std::vector<int32_t> prompt;
    const char* message;
  };
  PipelineConfig too_long;
  const Bad cases[] = {
      {"unsorted layers", pd({3, 1}, {4, 4}, 0), prompt, "strictly increasing"},
      {"duplicate layers", pd({2, 2}, {4, 4}, 0), prompt, "strictly increasing"},
      {"layer out of range", pd({9}, {4}, 0), prompt, "outside"},
      {"last layer", pd({5}, {4}, 0), prompt, "last layer"},
      {"mismatched lists", pd({1, 2}, {4}, 0), prompt, "n_topks"},
      {"k <= 0", pd({1}, {0}, 0), prompt, "must be > 0"},
      {"bad tt", pd({1}, {4}, -3), prompt, "cache_truncation_end"},
      {"empty prompt", pd({1}, {4}, 0), {}, "empty prompt"},
      {"token outside vocab", PipelineConfig{}, {1, 2, 999}, "outside the vocabulary"},
      {"longer than context", PipelineConfig{}, std::vector<int32_t>(5000, 5),
       "exceeds the model's context"},
  };
  for (const Bad& b : cases) {
    ref::EigenSession s(&w);
    PrefillResult r;
    const Status st = s.prefill(b.prompt, b.c, &r);
    INFO(std::string(b.what) << ": " << st.message());
    CHECK(st.code() == StatusCode::kInvalidArgument);
    CHECK(std::string(st.message()).find(b.message) != std::string::npos);
    CHECK(r.first_token == -1);
  }
  PipelineConfig snap;
  snap.method = PipelineMethod::kSnapKV;
  snap.budget = 16;
  snap.window = 32;
  ref::EigenSession s(&w);
  PrefillResult r;
  CHECK(s.prefill(prompt, snap, &r).code() == StatusCode::kInvalidArgument);
  int32_t next;
  ref::EigenSession fresh(&w);
  CHECK(fresh.decode_step(5, &next).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("pipeline: progress reports every layer forward of the prefill") {
  const auto w = random_model(7);
  for (PipelineMethod m :
       {PipelineMethod::kFull, PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter}) {
    PipelineConfig c;
    c.method = m;
    c.selection_layers = {2};
    c.n_topks = {5};
    ref::EigenSession s(&w);
    std::vector<std::pair<int64_t, int64_t>> calls;
    s.set_progress([&](int64_t done, int64_t total) { calls.emplace_back(done, total); });
    PrefillResult r;
    REQUIRE(s.prefill(random_prompt(30, 3), c, &r).is_ok());
    const int64_t total = m == PipelineMethod::kGemFilter
                              ? 6 + 3
                              : 6;  // GemFilter's filter pass runs layers 0..2 first
    INFO(std::string(to_string(m)));
    REQUIRE(int64_t(calls.size()) == total);
    CHECK(calls.back() == std::make_pair(total, total));
  }
}

TEST_CASE("pipeline/plan: every method's plan, as both executors read it") {
  PipelinePlan plan;
  PipelineConfig full;
  REQUIRE(plan_pipeline(full, &plan).is_ok());
  CHECK(plan.stages.empty());
  CHECK_FALSE(plan.compresses(100000));

  PipelineConfig multi = pd({2, 4}, {16, 8}, 1);
  multi.pool = PoolMode::kMax;
  multi.pool_kernel = 7;
  REQUIRE(plan_pipeline(multi, &plan).is_ok());
  REQUIRE(plan.stages.size() == 2);
  CHECK(plan.stages[0].layer == 2);
  CHECK(plan.stages[1].layer == 4);
  CHECK(plan.stages[0].select.method == Method::kPromptDistill);
  CHECK(plan.stages[1].select.budget == 8);
  CHECK(plan.stages[1].select.pool == PoolMode::kMax);  // --pool applies to every selecting method
  CHECK(plan.stages[1].select.pool_kernel == 7);
  CHECK(plan.stages[0].truncates_cache);        // stage 0 < tt = 1
  CHECK_FALSE(plan.stages[1].truncates_cache);  // stage 1 >= tt
  CHECK(plan.segment_first_layer(0) == 0);
  CHECK(plan.segment_first_layer(1) == 3);
  REQUIRE(plan_pipeline(pd({2, 4}, {16, 8}, -1), &plan).is_ok());
  CHECK((plan.stages[0].truncates_cache && plan.stages[1].truncates_cache));

  PipelineConfig gem = pd({3}, {10}, -1);
  gem.method = PipelineMethod::kGemFilter;
  REQUIRE(plan_pipeline(gem, &plan).is_ok());
  REQUIRE(plan.stages.size() == 1);
  CHECK(plan.stages[0].select.method == Method::kGemFilter);
  CHECK_FALSE(
      plan.stages[0].truncates_cache);  // GemFilter re-prefills; there is nothing to truncate

  PipelineConfig h2o;
  h2o.method = PipelineMethod::kH2O;
  h2o.budget = 64;
  h2o.window = 8;
  h2o.grouping = HeadGrouping::kPerQueryHead;
  REQUIRE(plan_pipeline(h2o, &plan).is_ok());
  CHECK(plan.compression.method == Method::kH2O);
  CHECK(plan.compression.budget == 64);
  CHECK(plan.compression.window == 8);
  CHECK(plan.compression.grouping == HeadGrouping::kPerQueryHead);
  CHECK(plan.compresses(64));
  CHECK_FALSE(plan.compresses(63));  // L < C keeps every token
  h2o.pool = PoolMode::kMax;         // H2O never pools: rejected, not ignored
  const Status st = plan_pipeline(h2o, &plan);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(st.message()).find("without pooling") != std::string::npos);
}

TEST_CASE("pipeline/plan: kept_tokens of a stage's plan is what the selection keeps (Tier A)") {
  // The counts of docs/algorithms.md: PromptDistill min(k, n-1) + 1, GemFilter min(k, n),
  // SnapKV/H2O min(C, n); and what a prefill actually keeps equals them.
  PipelinePlan plan;
  REQUIRE(plan_pipeline(pd({2, 4}, {16, 8}, 0), &plan).is_ok());
  for (int64_t n : {0, 1, 2, 8, 9, 16, 17, 18, 33, 1025}) {
    CAPTURE(n);
    CHECK(kept_tokens(plan.stages[0].plan, n) == (n == 0 ? 0 : std::min<int64_t>(16, n - 1) + 1));
    CHECK(kept_tokens(plan.stages[1].plan, n) == (n == 0 ? 0 : std::min<int64_t>(8, n - 1) + 1));
  }
  PipelineConfig gem = pd({3}, {10}, 0);
  gem.method = PipelineMethod::kGemFilter;
  REQUIRE(plan_pipeline(gem, &plan).is_ok());
  for (int64_t n : {1, 9, 10, 11, 500})
    CHECK(kept_tokens(plan.stages[0].plan, n) == std::min<int64_t>(10, n));
  for (PipelineMethod m : {PipelineMethod::kSnapKV, PipelineMethod::kH2O}) {
    PipelineConfig c;
    c.method = m;
    c.budget = 40;
    c.window = 8;
    c.pool = PoolMode::kAvg;
    c.pool_kernel = 5;
    REQUIRE(plan_pipeline(c, &plan).is_ok());
    for (int64_t n : {1, 7, 8, 9, 39, 40, 41, 300}) {
      CAPTURE(n);
      CHECK(kept_tokens(plan.compression_plan, n) == std::min<int64_t>(40, n));
    }
  }
  const ModelWeights w = random_model(37);
  const std::vector<int32_t> prompt = random_prompt(45, 5);
  const Run r = run(w, prompt, pd({1, 3}, {20, 6}, 0), 1);
  REQUIRE(plan_pipeline(pd({1, 3}, {20, 6}, 0), &plan).is_ok());
  CHECK(r.prefill.retained == std::vector<int64_t>{kept_tokens(plan.stages[0].plan, 45),
                                                   kept_tokens(plan.stages[1].plan, 21)});
}

TEST_CASE(
    "pipeline/plan: compose_stage_maps walks the last stage's kept tokens back to each stage's "
    "input") {
  // Stage 0 keeps 5 of 10 tokens, stage 1 keeps 3 of those 5, stage 2 keeps 2 of those 3.
  const std::vector<std::vector<int32_t>> maps = {{0, 2, 5, 7, 9}, {1, 3, 4}, {0, 2}};
  const auto composed = compose_stage_maps(maps);
  REQUIRE(composed.size() == 3);
  // Stage 2's kept set {0, 2} of stage 2's input {1, 3, 4} (indices into stage 1's input) is
  // {1, 4} there, which is {2, 9} in stage 0's input.
  CHECK(composed[0] == std::vector<int32_t>{2, 9});
  CHECK(composed[1] == std::vector<int32_t>{1, 4});
  CHECK(composed[2] == std::vector<int32_t>{0, 2});
  CHECK(compose_stage_maps({}).empty());
  CHECK(compose_stage_maps({{4, 6}}) == std::vector<std::vector<int32_t>>{{4, 6}});
}

TEST_CASE(
    "pipeline/sweep: one prefill for every budget gives what each prefill gives, bit for bit") {
  const auto w = random_model(6);
  const auto prompt = random_prompt(50, 11);
  struct Sweep {
    PipelineConfig config;
    std::vector<int64_t> budgets;
  };
  std::vector<Sweep> sweeps;
  for (int64_t tt : {0, 1, -1})
    sweeps.push_back({pd({2}, {1}, tt), {4, 9, 20, 100}});  // 100 >= L - 1 keeps everything
  PipelineConfig after_last = pd({2}, {1}, 1);
  after_last.truncate_after_last_layer = true;
  sweeps.push_back({after_last, {6, 15}});
  PipelineConfig gem = pd({3}, {1}, 0);
  gem.method = PipelineMethod::kGemFilter;
  sweeps.push_back({gem, {5, 12, 100}});
  for (PipelineMethod m : {PipelineMethod::kSnapKV, PipelineMethod::kH2O})
    for (HeadGrouping g : {HeadGrouping::kPerKvGroup, HeadGrouping::kPerQueryHead}) {
      PipelineConfig c;
      c.method = m;
      c.window = 8;
      c.grouping = g;
      c.pool = m == PipelineMethod::kSnapKV ? PoolMode::kMax : PoolMode::kAvg;
      sweeps.push_back({c, {16, 24, 40, 200}});  // 200 > L: nothing is evicted
    }
  for (const Sweep& sweep : sweeps) {
    ref::EigenSession session(&w);
    std::size_t visited = 0;
    const Status st = session.prefill_sweep(
        prompt, sweep.config, sweep.budgets, [&](std::size_t i, const PrefillResult& got) {
          ++visited;
          PipelineConfig expected_config = sweep.config;  // the single prefill of this budget
          if (expected_config.method == PipelineMethod::kSnapKV ||
              expected_config.method == PipelineMethod::kH2O)
            expected_config.budget = sweep.budgets[i];
          else
            expected_config.n_topks = {sweep.budgets[i]};
          INFO(std::string(to_string(expected_config.method))
               << " budget " << sweep.budgets[i] << " tt " << expected_config.cache_truncation_end
               << " per " << std::string(to_string(expected_config.grouping)));
          const Run want = run(w, prompt, expected_config);
          CHECK(got.first_token == want.prefill.first_token);
          CHECK(got.retained == want.prefill.retained);
          CHECK(got.selected == want.prefill.selected);
          CHECK(got.cache_lengths == want.prefill.cache_lengths);
          CHECK(got.next_position == want.prefill.next_position);
          CHECK(got.peak_kv_cache_bytes == want.prefill.peak_kv_cache_bytes);
          CHECK(same_caches(session.caches(), want.caches));
          std::vector<int32_t> tokens;
          double ms = 0;
          REQUIRE(session.generate(got.first_token, 6, {}, &tokens, &ms).is_ok());
          CHECK(tokens ==
                want.tokens);  // decoding continues from exactly the single prefill's state
          return Status::ok();
        });
    REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
    CHECK(visited == sweep.budgets.size());
  }
  // Every budget is checked before any work, and a visitor's error ends the sweep.
  ref::EigenSession session(&w);
  int calls = 0;
  const Status bad = session.prefill_sweep(prompt, pd({2}, {1}, 1), {4, 0},
                                           [&](std::size_t, const PrefillResult&) {
                                             ++calls;
                                             return Status::ok();
                                           });
  CHECK(bad.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(bad.message()).find("budget 0") != std::string::npos);
  CHECK(calls == 0);
  const Status stopped = session.prefill_sweep(prompt, pd({2}, {1}, 1), {4, 6},
                                               [&](std::size_t, const PrefillResult&) {
                                                 ++calls;
                                                 return Status(StatusCode::kInternal, "stop here");
                                               });
  CHECK(stopped.code() == StatusCode::kInternal);
  CHECK(calls == 1);
  // A sweep varies one budget: several stages (several budgets) and full KV (none) are refused.
  CHECK(session
            .prefill_sweep(prompt, pd({1, 3}, {30, 10}, -1), {5, 12},
                           [&](std::size_t, const PrefillResult&) { return Status::ok(); })
            .code() == StatusCode::kInvalidArgument);
  CHECK(session
            .prefill_sweep(prompt, PipelineConfig{}, {5},
                           [&](std::size_t, const PrefillResult&) { return Status::ok(); })
            .code() == StatusCode::kInvalidArgument);
}
