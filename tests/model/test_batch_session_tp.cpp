// SPDX-License-Identifier: Apache-2.0
// The batch session under tensor parallelism, simulated in one process on the CPU backend: R ranks
// are R threads with their own sessions (BatchSessionOptions::tp_size / tp_rank) whose all-reduce
// adds the ranks' buffers in rank order (support/thread_ranks.h). On the random model, for every
// method with R = 2 and R = 4 (KV heads replicated): every rank reports the same selections and
// generates the same tokens (Tier A: they finish the same all-reduced sums), equal to the unsharded
// session's; SnapKV/H2O ranks report the unsharded rows of their own KV groups (refused when
// R > H_kv splits a group) or query heads; the logits differ from the unsharded ones only by the
// order of the sharded sums (Tier C, bound below). Bad options fail at create. SmolLM2 with R = 3:
// test_batch_session_tp_smollm2.cpp.
#include <doctest/doctest.h>

#include <algorithm>

#include "promptdistill/batch_session.h"
#include "support/generators.h"
#include "support/random_model.h"
#include "support/session_runs.h"
#include "support/thread_ranks.h"

using namespace promptdistill;
using pdtest::check_ranks;
using pdtest::head_uniform;

TEST_CASE(
    "batch session tp (cpu): every method, R = 2 and 4 ranks of the random model select and "
    "generate like one") {
  const ModelWeights w = pdtest::random_model(pdtest::mix(pdtest::seed(), 61));
  const std::vector<std::vector<int32_t>> prompts = {
      pdtest::random_prompt(48, pdtest::mix(pdtest::seed(), 62)),
      pdtest::random_prompt(41, pdtest::mix(pdtest::seed(), 63))};
  float worst = 0.0f;
  for (const PipelineConfig& cfg : pdtest::every_method_small()) {
    CAPTURE(std::string(to_string(cfg.method)));
    CAPTURE(cfg.cache_truncation_end);
    CAPTURE(pdtest::describe(cfg));
    CAPTURE(std::string(to_string(cfg.grouping)));
    const bool per_group = cfg.grouping == HeadGrouping::kPerKvGroup;
    const auto unsharded = pdtest::run_ranks<ref::BatchSession>(w, 1, prompts, cfg, 6,
                                                                pdtest::thorough_session_options());
    for (int64_t R :
         {2, 4}) {  // 4 ranks of 4 query heads and 2 KV heads: each KV head on two ranks
      CAPTURE(R);
      const auto ranks = pdtest::run_ranks<ref::BatchSession>(w, R, prompts, cfg, 6,
                                                              pdtest::thorough_session_options());
      const bool compresses_every_layer =
          !head_uniform(cfg.method) && cfg.method != PipelineMethod::kFull;
      if (compresses_every_layer && per_group && R > w.config.num_kv_heads) {
        // A KV group's query heads on two ranks: its mean is on no rank. Refused, by every rank.
        for (const pdtest::RankRun& run : ranks) {
          CHECK(run.status.code() == StatusCode::kUnsupported);
          CHECK_MESSAGE(
              std::string(run.status.message()).find("needs whole KV groups on every rank") !=
                  std::string::npos,
              std::string(run.status.message()));
        }
        continue;
      }
      worst = std::max(worst, check_ranks(ranks, unsharded[0], cfg.method, /*same_syncs=*/false));
      if (!compresses_every_layer) continue;
      // SnapKV/H2O: a rank's rows are its own KV groups' or query heads' (the unsharded rows of
      // those heads).
      const int64_t rows_per_rank = (per_group ? w.config.num_kv_heads : w.config.num_heads) / R;
      for (int64_t r = 0; r < R; ++r) {
        for (std::size_t b = 0; b < prompts.size(); ++b) {
          const auto& mine = ranks[std::size_t(r)].prefill[b].selected;
          const auto& all = unsharded[0].prefill[b].selected;
          REQUIRE(mine.size() == all.size());
          for (std::size_t layer = 0; layer < all.size(); ++layer) {
            CAPTURE(r);
            CAPTURE(layer);
            REQUIRE(int64_t(mine[layer].size()) == rows_per_rank);
            CHECK(std::equal(mine[layer].begin(), mine[layer].end(),
                             all[layer].begin() + r * rows_per_rank));
          }
        }
      }
    }
  }
  MESSAGE("largest logit difference from the unsharded session, relative to the largest logit: "
          << worst);
  CHECK(worst <=
        2e-5f);  // Tier C: f32 sums in another order over a 6-layer model (observed: about 3e-6)
}

TEST_CASE("batch session tp (cpu): bad tensor-parallel options fail at create with a message") {
  const ModelWeights w = pdtest::random_model(pdtest::mix(pdtest::seed(), 64));
  pdtest::ThreadAllReduce group(3);
  struct Case {
    const char* what;
    int64_t size, rank;
    bool with_all_reduce;
    StatusCode code;
    const char* words;
  };
  for (const Case& c :
       {Case{"a rank past the group", 2, 2, true, StatusCode::kInvalidArgument,
             "tp_rank 2 must be in [0, tp_size 2)"},
        Case{"no all-reduce", 2, 0, false, StatusCode::kInvalidArgument, "needs an all_reduce"},
        Case{"heads that do not split", 3, 0, true, StatusCode::kUnsupported,
             "do not split over 3 ranks"}}) {
    CAPTURE(c.what);
    BatchSessionOptions options;
    options.tp_size = c.size;
    options.tp_rank = c.rank;
    if (c.with_all_reduce) options.all_reduce = group.for_rank(0);
    std::unique_ptr<ref::BatchSession> s;
    const Status st = ref::BatchSession::create(&w, options, nullptr, &s);
    CHECK(st.code() == c.code);
    CHECK_MESSAGE(std::string(st.message()).find(c.words) != std::string::npos,
                  std::string(st.message()));
    CHECK(s == nullptr);
  }
  BatchSessionOptions options;
  options.tp_size = 2;
  options.all_reduce = group.for_rank(0);
  std::unique_ptr<ref::BatchSession> s;
  const Status st = ref::BatchSession::create_random(w.config, 1, options, nullptr, &s);
  CHECK(st.code() == StatusCode::kUnsupported);
  CHECK_MESSAGE(
      std::string(st.message()).find("create the session from weights") != std::string::npos,
      std::string(st.message()));
}
