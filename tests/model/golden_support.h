// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Runs a model on the CPU reference the way scripts/golden/make_golden.py runs transformers
//! (prefill, then greedy decode with explicit positions) and compares with its fixtures.

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "promptdistill/pipeline.h"
#include "promptdistill/transformer_ref.h"

namespace pdtest {

//! The pipeline configuration of a smollm2_methods.json case (SnapKV/H2O per query head, as the
//! reference code runs them).
inline promptdistill::PipelineConfig golden_method_config(const nlohmann::json& c) {
  using namespace promptdistill;
  PipelineConfig cfg;
  REQUIRE(parse(c["method"].get<std::string>(), &cfg.method).is_ok());
  if (cfg.method == PipelineMethod::kFastKV) {  // scripts/golden/make_golden_fastkv.py
    cfg = PipelineConfig::published_default(PipelineMethod::kFastKV);
    cfg.budget = c["budget"].get<int64_t>();
    cfg.window = c["window"].get<int32_t>();
    REQUIRE(parse(c["pool"].get<std::string>(), &cfg.pool).is_ok());
    cfg.pool_kernel = c["kernel"].get<int32_t>();
    cfg.tsp_layer = c["tsp_layer"].get<int64_t>();
    cfg.tsp_length = c["tsp_len"].get<int64_t>();
    cfg.retain_rate = c.value("retain_rate", 0.0);
    cfg.tsp_rate = c.value("tsp_rate", 0.0);
  } else if (c.contains("layer")) {
    cfg.selection_layers = {c["layer"].get<int64_t>()};
    cfg.n_topks = {c["k"].get<int64_t>()};
    cfg.cache_truncation_end = c.value("tt", 0);
  } else {
    cfg.budget = c["budget"].get<int64_t>();
    cfg.window = c["window"].get<int32_t>();
    cfg.grouping = HeadGrouping::kPerQueryHead;
    if (c.contains("pool")) REQUIRE(parse(c["pool"].get<std::string>(), &cfg.pool).is_ok());
    if (c.contains("pool_kernel")) cfg.pool_kernel = c["pool_kernel"].get<int32_t>();
  }
  return cfg;
}

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

struct RunResult {
  std::vector<float> last_logits;
  std::vector<std::vector<float>> layer_inputs;  //!< hidden states entering each layer
  std::vector<int32_t> greedy;
  std::vector<promptdistill::ref::KvLayerCache> prefill_caches;  //!< as the prefill left them
  std::vector<std::vector<float>> step_logits;                   //!< each decode step's logits
};

inline RunResult run_reference(const promptdistill::ModelWeights& w,
                               const std::vector<int32_t>& ids, int n_greedy) {
  using namespace promptdistill;
  ref::Transformer t(&w);
  const int64_t n = int64_t(ids.size());
  std::vector<ref::KvLayerCache> cache(std::size_t(w.config.num_layers));
  std::vector<int32_t> pos(ids.size());
  for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  RunResult r;
  std::vector<float> x;
  REQUIRE(t.embed(ids.data(), n, &x).is_ok());
  for (int64_t l = 0; l < w.config.num_layers; ++l) {
    r.layer_inputs.push_back(x);
    const Status s = t.layer(l, &x, n, pos.data(), n, &cache[std::size_t(l)], nullptr);
    REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
  }
  REQUIRE(t.logits(&x[std::size_t((n - 1) * w.config.hidden)], &r.last_logits).is_ok());
  r.prefill_caches = cache;
  int32_t next = ref::argmax(r.last_logits);
  std::vector<float> logits;
  for (int step = 0; step < n_greedy; ++step) {
    r.greedy.push_back(next);
    const int32_t p = int32_t(n + step);
    REQUIRE(t.embed(&next, 1, &x).is_ok());
    for (int64_t l = 0; l < w.config.num_layers; ++l)
      REQUIRE(t.layer(l, &x, 1, &p, p + 1, &cache[std::size_t(l)], nullptr).is_ok());
    REQUIRE(t.logits(x.data(), &logits).is_ok());
    if (step + 1 < n_greedy)
      r.step_logits.push_back(logits);  // the steps whose tokens are compared
    next = ref::argmax(logits);
  }
  return r;
}

//! Tier C against transformers (f32 on both sides, different summation orders): the same greedy
//! tokens; the same top-5 logit ids; top-20 logit values within `logit_tol`; hidden-state
//! summaries within `hidden_tol` relative to the row scale.
inline RunResult compare_with_golden(const promptdistill::ModelWeights& w, const nlohmann::json& c,
                                     double logit_tol, double hidden_tol) {
  const auto ids = c["ids"].get<std::vector<int32_t>>();
  const auto want_greedy = c["greedy"].get<std::vector<int32_t>>();
  INFO("case " << c["name"].get<std::string>() << " (" << ids.size() << " tokens)");
  const RunResult r = run_reference(w, ids, int(want_greedy.size()));
  CHECK(r.greedy == want_greedy);
  const auto& top = c["top20"];
  double worst = 0;
  for (std::size_t i = 0; i < top.size(); ++i) {
    const int32_t id = top[i][0].get<int32_t>();
    const double want = top[i][1].get<double>(), got = r.last_logits[std::size_t(id)];
    worst = std::max(worst, std::fabs(got - want));
    if (i < 5) {
      int32_t rank = 0;
      for (float v : r.last_logits) rank += v > r.last_logits[std::size_t(id)];
      CHECK_MESSAGE(rank == int32_t(i),
                    "logit rank of token " << id << " is " << rank << ", transformers has " << i);
    }
  }
  MESSAGE("max |logit - transformers| over the top 20: " << worst);
  CHECK(worst <= logit_tol);
  const auto& hidden = c["hidden"];
  REQUIRE(hidden.size() == r.layer_inputs.size());
  const int64_t H = w.config.hidden, n = int64_t(ids.size());
  for (std::size_t l = 0; l < hidden.size(); ++l) {
    const auto& x = r.layer_inputs[l];
    double mean = 0;
    for (float v : x) mean += v;
    mean /= double(x.size());
    const auto head = hidden[l]["last_row_head"].get<std::vector<double>>();
    double scale = 1e-6;
    for (double v : head) scale = std::max(scale, std::fabs(v));
    for (std::size_t k = 0; k < head.size(); ++k) {
      INFO("layer " << l << " element " << k);
      CHECK(std::fabs(double(x[std::size_t((n - 1) * H) + k]) - head[k]) <= hidden_tol * scale);
    }
    CHECK(std::fabs(mean - hidden[l]["mean"].get<double>()) <=
          hidden_tol * (std::fabs(hidden[l]["std"].get<double>()) + 1e-6));
  }
  return r;
}

}  // namespace pdtest
