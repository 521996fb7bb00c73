// SPDX-License-Identifier: Apache-2.0
// estimate_prefill_bytes, the one estimate of a prefill's peak that the CLI, BatchSession and
// hf.generate check before any work: it bounds the KV cache the sessions measure, grows as each
// method's memory grows, and refuses with the numbers when the limit is lower.
#include <doctest/doctest.h>

#include <initializer_list>
#include <memory>
#include <string>

#include "promptdistill/batch_session.h"
#include "promptdistill/session_ref.h"
#include "support/random_model.h"
#include "support/session_runs.h"

using namespace promptdistill;

namespace {

PrefillMemory estimate(const ModelConfig& m, const PipelineConfig& c, int64_t n,
                       PrefillMemoryModel how = {}) {
  PipelinePlan plan;
  REQUIRE(plan_pipeline(c, &plan).is_ok());
  return estimate_prefill_bytes(m, plan, n, how);
}

}  // namespace

TEST_CASE("memory: the estimate bounds the KV cache each method's sessions hold, within a factor") {
  const ModelWeights w = pdtest::random_model(3);
  const auto prompt = pdtest::random_prompt(70, 4);
  for (const PipelineConfig& c : pdtest::every_method_small()) {
    const std::string name = std::string(to_string(c.method)) + " per " + to_string(c.grouping) +
                             " tt " + std::to_string(c.cache_truncation_end) + " stages " +
                             std::to_string(c.selection_layers.size());
    CAPTURE(name);
    ref::EigenSession s(&w);
    PrefillResult r;
    REQUIRE(s.prefill(prompt, c, &r).is_ok());
    const PrefillMemory e = estimate(w.config, c, int64_t(prompt.size()));
    CHECK(e.kv_cache >= r.peak_kv_cache_bytes);
    CHECK(e.kv_cache <= 3 * r.peak_kv_cache_bytes);
    CHECK(e.activations > 0);
    CHECK(e.total() == e.activations + e.kv_cache + e.scores);
    // BatchSession (its own reserve and chunking) holds no more than its estimate either.
    PrefillMemoryModel how;
    how.decode_reserve = pdtest::thorough_session_options().decode_reserve;
    how.mlp_chunk_rows = pdtest::thorough_session_options().mlp_chunk_rows;
    const pdtest::SessionRun run = pdtest::run_session<ref::BatchSession>(w, {prompt}, c, 2);
    CHECK(estimate(w.config, c, int64_t(prompt.size()), how).kv_cache >= run.peak_kv);
  }
}

TEST_CASE("memory: the estimate grows with the prompt and as each method's memory grows") {
  ModelConfig m;  // Llama-3.1-8B's shape
  m.num_layers = 32, m.hidden = 4096, m.num_heads = 32, m.num_kv_heads = 8, m.head_dim = 128;
  m.intermediate = 14336, m.vocab = 128256;
  const PipelineConfig full = PipelineConfig::published_default(PipelineMethod::kFull);
  const PipelineConfig pd = PipelineConfig::published_default(PipelineMethod::kPromptDistill);
  PipelineConfig snap = PipelineConfig::published_default(PipelineMethod::kSnapKV);
  PipelineConfig h2o = PipelineConfig::published_default(PipelineMethod::kH2O);
  const int64_t n = 32000;
  for (const PipelineConfig* c :
       std::initializer_list<const PipelineConfig*>{&full, &pd, &snap, &h2o}) {
    CAPTURE(to_string(c->method));
    CHECK(estimate(m, *c, 2 * n).total() > estimate(m, *c, n).total());
  }
  // Full KV at 32K tokens in f32: 32 layers x 32000 tokens x 2 x 8 heads x 128 x 4 bytes.
  CHECK(estimate(m, full, n).kv_cache ==
        int64_t(32) * n * 2 * 8 * 128 * 4 + 33 * 2 * 256);  // + allocation rounding
  CHECK(estimate(m, pd, n).kv_cache < estimate(m, full, n).kv_cache);
  CHECK(estimate(m, snap, n).kv_cache < estimate(m, full, n).kv_cache);
  // Per query head (the published variant) keeps G = 4 times the rows of per KV group.
  snap.grouping = HeadGrouping::kPerKvGroup;
  CHECK(estimate(m, PipelineConfig::published_default(PipelineMethod::kSnapKV), n).kv_cache >
        estimate(m, snap, n).kv_cache);
  // H2O scores with the queries of every prompt token, SnapKV with its window of 32.
  CHECK(estimate(m, h2o, n).scores > 4 * estimate(m, snap, n).scores);
  CHECK(estimate(m, h2o, n).scores >= int64_t(n) * 32 * 128 * 4);  // the queries of all n tokens
  // A budget sweep keeps every layer's full cache besides the compressed ones.
  PrefillMemoryModel sweep;
  sweep.budgets = 5;
  CHECK(estimate(m, snap, n, sweep).kv_cache > estimate(m, full, n).kv_cache);
  // Absurd sizes saturate instead of overflowing.
  CHECK(estimate(m, full, INT64_MAX / 2).total() == INT64_MAX);
}

TEST_CASE(
    "memory: check_prefill_memory refuses with the numbers; available_memory_bytes reads "
    "MemAvailable") {
  PrefillMemory need;
  need.activations = 3 << 20, need.kv_cache = 5 << 20, need.scores = 1 << 20;
  CHECK(check_prefill_memory(need, 9 << 20, "x", "y").is_ok());
  CHECK(check_prefill_memory(need, -1, "x", "y").is_ok());  // unknown: never refused
  const Status s = check_prefill_memory(need, 8 << 20, "a prefill of 100 tokens", "--max-memory");
  CHECK(s.code() == StatusCode::kOutOfMemory);
  CHECK(std::string(s.message()) ==
        "a prefill of 100 tokens needs about 9.0 MiB (activations 3.0, KV cache 5.0, scores 1.0 "
        "MiB) but 8.0 MiB are "
        "available (--max-memory)");
  CHECK(available_memory_bytes() > 0);  // Linux reports MemAvailable
}
