// SPDX-License-Identifier: Apache-2.0
// SmolLM2 on the CUDA session (bf16 weights and activations, f32 accumulation and logits)
// against the fixtures written by transformers in f32 (scripts/golden/make_golden.py): the same
// greedy tokens on the golden prompts, and for PromptDistill and GemFilter the same selected
// tokens and greedy continuation as the reference algorithms. A batch of all golden prompts
// must give every prompt its own answer. Needs a GPU and the model (skipped otherwise).
#include <doctest/doctest.h>

#include "model/golden_support.h"
#include "promptdistill/batch_session.h"

using namespace promptdistill;

namespace {

std::unique_ptr<cuda::BatchSession> make_session(const ModelWeights& w) {
  std::unique_ptr<cuda::BatchSession> s;
  const Status st = cuda::BatchSession::create(&w, BatchSessionOptions{}, nullptr, &s);
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  return s;
}

std::vector<std::vector<int32_t>> greedy(cuda::BatchSession& s,
                                         const std::vector<std::vector<int32_t>>& prompts,
                                         const PipelineConfig& cfg, int64_t n,
                                         std::vector<PrefillResult>* res) {
  REQUIRE(s.prefill(prompts, cfg, res).is_ok());
  std::vector<int32_t> first;
  for (const auto& r : *res) first.push_back(r.first_token);
  std::vector<std::vector<int32_t>> out;
  double ms = 0;
  REQUIRE(s.generate(first, n, {}, &out, &ms).is_ok());
  return out;
}

}  // namespace

TEST_CASE("cuda/session smollm2: greedy tokens of the golden prompts, alone and batched") {
  ModelWeights w;
  REQUIRE(load_gguf_model(PD_TEST_MODEL, &w).is_ok());
  const auto golden = pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_golden.json");
  auto s = make_session(w);
  std::vector<std::vector<int32_t>> prompts, want;
  for (const auto& c : golden["cases"]) {
    prompts.push_back(c["ids"].get<std::vector<int32_t>>());
    want.push_back(c["greedy"].get<std::vector<int32_t>>());
  }
  std::vector<PrefillResult> res;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    CAPTURE(i);
    const auto got = greedy(*s, {prompts[i]}, PipelineConfig{}, int64_t(want[i].size()), &res);
    CHECK(got[0] == want[i]);
  }
  const auto batched = greedy(*s, prompts, PipelineConfig{}, int64_t(want[0].size()), &res);
  for (std::size_t i = 0; i < prompts.size(); ++i)
    CHECK(batched[i] == std::vector<int32_t>(want[i].begin(),
                                             want[i].begin() + std::ptrdiff_t(batched[i].size())));
}

TEST_CASE(
    "cuda/session smollm2: PromptDistill and GemFilter select and continue like the reference "
    "algorithms") {
  ModelWeights w;
  REQUIRE(load_gguf_model(PD_TEST_MODEL, &w).is_ok());
  const auto golden = pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_methods.json");
  const auto ids = golden["ids"].get<std::vector<int32_t>>();
  auto s = make_session(w);
  for (const auto& c : golden["cases"]) {
    if (!c.contains("layer")) continue;  // SnapKV/H2O fixtures are per query head (CPU only)
    const PipelineConfig cfg = pdtest::golden_method_config(c);
    INFO(c.dump().substr(0, 80));
    std::vector<PrefillResult> res;
    const auto tokens = greedy(*s, {ids}, cfg, 16, &res);
    CHECK(res[0].selected[0][0] == c["selected"].get<std::vector<int32_t>>());
    CHECK(tokens[0] == c["greedy"].get<std::vector<int32_t>>());
  }
}
