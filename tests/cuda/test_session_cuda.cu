// SPDX-License-Identifier: Apache-2.0
// The CUDA session against the CPU batch session (the same pipeline code on the reference ops):
// - f32 (cuda::SessionF32) on a random model, ragged batch, every method: the same first tokens,
//   selections, cache lengths and greedy tokens; caches within 1e-4 of their largest entry
//   (Tier C: cuBLASLt vs Eigen GEMMs, split-KV decode attention);
// - bf16 (cuda::Session): caches within an NMSE of 1e-3 of the f32 reference and PromptDistill
//   with truncation holding less device memory than full KV.
#include <doctest/doctest.h>

#include <cmath>

#include "promptdistill/batch_session.h"
#include "support/generators.h"
#include "support/random_model.h"
#include "support/session_runs.h"

using namespace promptdistill;

namespace {

template <class Session>
pdtest::SessionRun run(const ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig& cfg) {
  return pdtest::run_session<Session>(w, prompts, cfg);
}

}  // namespace

TEST_CASE("cuda/session f32: every method matches the CPU batch session on a ragged batch") {
  const ModelWeights w = pdtest::random_model(pdtest::mix(pdtest::seed(), 1));
  const std::vector<std::vector<int32_t>> prompts = {pdtest::random_prompt(70, pdtest::mix(pdtest::seed(), 2)),
                                                     pdtest::random_prompt(41, pdtest::mix(pdtest::seed(), 3))};
  for (const auto& cfg : pdtest::every_method_small()) {
    CAPTURE(std::string(to_string(cfg.method)));
    const auto want = run<ref::BatchSession>(w, prompts, cfg);
    const auto got = run<cuda::SessionF32>(w, prompts, cfg);
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      CAPTURE(b);
      CHECK(got.prefill[b].first_token == want.prefill[b].first_token);
      CHECK(got.prefill[b].selected == want.prefill[b].selected);
      CHECK(got.prefill[b].cache_lengths == want.prefill[b].cache_lengths);
      CHECK(got.tokens[b] == want.tokens[b]);
    }
    for (std::size_t b = 0; b < want.k.size(); ++b)
      for (std::size_t l = 0; l < want.k[b].size(); ++l) CHECK(pdtest::max_rel_diff(got.k[b][l], want.k[b][l]) <= 1e-4f);
  }
}

TEST_CASE("cuda/session bf16: caches close to f32; PromptDistill holds less device memory than full KV") {
  const ModelWeights w = pdtest::random_model(pdtest::mix(pdtest::seed(), 4));
  const std::vector<std::vector<int32_t>> prompts = {pdtest::random_prompt(300, pdtest::mix(pdtest::seed(), 5))};
  PipelineConfig full;
  const auto want = run<ref::BatchSession>(w, prompts, full);
  const auto got = run<cuda::Session>(w, prompts, full);
  for (std::size_t l = 0; l < want.k[0].size(); ++l) {
    double err = 0, ref = 0;
    for (std::size_t j = 0; j < want.k[0][l].size(); ++j) {
      err += (got.k[0][l][j] - want.k[0][l][j]) * double(got.k[0][l][j] - want.k[0][l][j]);
      ref += double(want.k[0][l][j]) * want.k[0][l][j];
    }
    CHECK(err / ref <= 1e-3);
  }
  PipelineConfig pd;
  pd.method = PipelineMethod::kPromptDistill;
  pd.selection_layers = {1};
  pd.n_topks = {32};
  pd.cache_truncation_end = 1;
  const auto small = run<cuda::Session>(w, prompts, pd);
  CHECK(small.prefill[0].peak_kv_cache_bytes < got.prefill[0].peak_kv_cache_bytes);
  MESSAGE("peak KV bytes (bf16): full " << got.prefill[0].peak_kv_cache_bytes << ", PromptDistill "
                                        << small.prefill[0].peak_kv_cache_bytes);
}
