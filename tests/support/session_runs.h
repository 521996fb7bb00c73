// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! One prefill + greedy decode on any BatchSession instantiation, with the caches read back,
//! for tests that compare sessions (CPU vs CPU reference decoder, CUDA vs CPU).

#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "promptdistill/batch_session.h"

namespace pdtest {

struct SessionRun {
  std::vector<promptdistill::PrefillResult> prefill;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<std::vector<float>>> k;  //!< [request][layer], f32
  std::vector<std::vector<std::vector<float>>> v;  //!< [request][layer], f32
  int64_t peak_kv = 0, peak_memory = 0;
};

//! Options that exercise more code than the defaults: a status check after every op, a small
//! decode reserve (so decoding grows caches) and several MLP chunks per layer.
inline promptdistill::BatchSessionOptions thorough_session_options() {
  promptdistill::BatchSessionOptions o;
  o.check_every_op = true;
  o.decode_reserve = 3;
  o.mlp_chunk_rows = 40;
  return o;
}

template <class Session>
SessionRun run_session(
    const promptdistill::ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts,
    const promptdistill::PipelineConfig& cfg, int64_t new_tokens = 6,
    const promptdistill::BatchSessionOptions& options = thorough_session_options()) {
  using namespace promptdistill;
  std::unique_ptr<Session> s;
  Status st = Session::create(&w, options, nullptr, &s);
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  SessionRun r;
  st = s->prefill(prompts, cfg, &r.prefill);
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  r.peak_kv = r.prefill[0].peak_kv_cache_bytes;
  r.peak_memory = s->peak_memory_bytes();
  r.k.resize(prompts.size());
  r.v.resize(prompts.size());
  for (std::size_t b = 0; b < prompts.size(); ++b)
    for (int64_t l = 0; l < w.config.num_layers; ++l) {
      std::vector<float> k, v;
      REQUIRE(s->read_cache(l, int64_t(b), &k, &v).is_ok());
      r.k[b].push_back(k);
      r.v[b].push_back(v);
    }
  std::vector<int32_t> first;
  for (const auto& p : r.prefill) first.push_back(p.first_token);
  double ms = 0;
  st = s->generate(first, new_tokens, {}, &r.tokens, &ms);
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  return r;
}

//! A configuration in one line, for failure messages.
inline std::string describe(const promptdistill::PipelineConfig& c) {
  std::string text = std::string(promptdistill::to_string(c.method)) + " tt " +
                     std::to_string(c.cache_truncation_end) + " per " +
                     promptdistill::to_string(c.grouping);
  if (!c.score_layers.empty()) text += " score layers " + std::to_string(c.score_layers.size());
  if (c.method == promptdistill::PipelineMethod::kFastKV)
    text += " budget " + std::to_string(c.budget) + " retain_rate " + std::to_string(c.retain_rate);
  return text;
}

//! Every method with budgets that cut the random model's prompts of 30-70 tokens: full,
//! PromptDistill single-stage (tt 1) and two-stage (tt 0, 1, -1), each also with scores
//! aggregated over layers, GemFilter (also aggregated), SnapKV, H2O, FastKV in its constant and
//! proportional modes.
inline std::vector<promptdistill::PipelineConfig> every_method_small() {
  std::vector<promptdistill::PipelineConfig> cs;
  promptdistill::PipelineConfig c;
  c.method = promptdistill::PipelineMethod::kFull;
  cs.push_back(c);
  c.method = promptdistill::PipelineMethod::kPromptDistill;
  c.selection_layers = {2};
  c.n_topks = {20};
  c.cache_truncation_end = 1;
  cs.push_back(c);
  c.selection_layers = {1, 3};
  c.n_topks = {30, 12};
  for (int64_t tt : {0, 1, -1}) {
    c.cache_truncation_end = tt;
    cs.push_back(c);
  }
  // Scores aggregated over layers: stage 0 over layers 0-1, stage 1 over 2-3; one stage over 0-2.
  c.score_layers = {0, 1, 2, 3};
  cs.push_back(c);
  c.selection_layers = {2};
  c.n_topks = {20};
  c.cache_truncation_end = 1;
  c.score_layers = {0, 1, 2};
  cs.push_back(c);
  c = promptdistill::PipelineConfig{};
  c.method = promptdistill::PipelineMethod::kGemFilter;
  c.selection_layers = {2};
  c.n_topks = {25};
  cs.push_back(c);
  c.score_layers = {1, 2};
  cs.push_back(c);
  c = promptdistill::PipelineConfig{};
  c.method = promptdistill::PipelineMethod::kSnapKV;
  c.budget = 40;
  c.window = 8;
  cs.push_back(c);
  c.method = promptdistill::PipelineMethod::kH2O;
  cs.push_back(c);
  // The published variants: one selection per query head, GQA-expanded caches.
  c.grouping = promptdistill::HeadGrouping::kPerQueryHead;
  cs.push_back(c);
  c.method = promptdistill::PipelineMethod::kSnapKV;
  cs.push_back(c);
  // FastKV: its TSP at layer 2 propagating 30 tokens, budget 20 of every layer, window 4 and max
  // pooling 3; then its proportional mode (budgets int(L / 2), then int(0.83 n); propagation 0.6
  // L).
  c = promptdistill::PipelineConfig::published_default(promptdistill::PipelineMethod::kFastKV);
  c.budget = 20;
  c.window = 4;
  c.pool_kernel = 3;
  c.tsp_layer = 2;
  c.tsp_length = 30;
  cs.push_back(c);
  c.retain_rate = 0.5;
  c.tsp_rate = 0.6;
  cs.push_back(c);
  return cs;
}

//! max |a - b| / max(1, max |b|): caches of random models reach magnitudes of ~10.
inline float max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float m = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return m / scale;
}

}  // namespace pdtest
