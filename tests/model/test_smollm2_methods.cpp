// SPDX-License-Identifier: Apache-2.0
// Every method on SmolLM2 (real weights) against the reference algorithm run on top of
// transformers in f32 (scripts/golden/make_golden.py, docs/algorithms.md §2-§7 as the public code
// runs them; FastKV: make_golden_fastkv.py): the same selected tokens and the same 16 greedy
// tokens. SnapKV/H2O are compared in the reference's per-query-head form. Skipped (exit 77) when
// the model cannot be fetched.
#include <doctest/doctest.h>

#include "golden_support.h"
#include "promptdistill/batch_session.h"
#include "promptdistill/session_ref.h"

using namespace promptdistill;

namespace {

//! One golden case on ref::EigenSession: the prefill of `ids` with the case's configuration and the
//! 16 greedy tokens the goldens hold.
void run_reference_session(const ModelWeights& w, const std::vector<int32_t>& ids,
                           const nlohmann::json& c, PrefillResult* r,
                           std::vector<int32_t>* tokens) {
  ref::EigenSession s(&w);
  REQUIRE(s.prefill(ids, pdtest::golden_method_config(c), r).is_ok());
  double ms = 0;
  REQUIRE(s.generate(r->first_token, 16, {}, tokens, &ms).is_ok());
}

}  // namespace

TEST_CASE(
    "pipeline/smollm2: PromptDistill, GemFilter, SnapKV and H2O match the reference algorithms") {
  ModelWeights w;
  REQUIRE(load_gguf_model(PD_TEST_MODEL, &w).is_ok());
  const auto golden = pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_methods.json");
  const auto ids = golden["ids"].get<std::vector<int32_t>>();
  for (const auto& c : golden["cases"]) {
    const std::string method = c["method"].get<std::string>();
    PrefillResult r;
    std::vector<int32_t> tokens;
    run_reference_session(w, ids, c, &r, &tokens);
    INFO(method << " " << c.dump().substr(0, 80));
    if (c.contains("selected"))
      CHECK(r.selected[0][0] == c["selected"].get<std::vector<int32_t>>());
    // SnapKV/H2O per query head: every head's row of layer 0.
    if (c.contains("layer0_rows"))
      CHECK(r.selected[0] == c["layer0_rows"].get<std::vector<std::vector<int32_t>>>());
    CHECK(tokens == c["greedy"].get<std::vector<int32_t>>());
  }
}

TEST_CASE(
    "pipeline/smollm2: the batch session (block ops) matches the reference algorithms too, alone "
    "and batched") {
  ModelWeights w;
  REQUIRE(load_gguf_model(PD_TEST_MODEL, &w).is_ok());
  const auto golden = pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_methods.json");
  const auto ids = golden["ids"].get<std::vector<int32_t>>();
  std::unique_ptr<ref::BatchSession> s;
  REQUIRE(ref::BatchSession::create(&w, BatchSessionOptions{}, nullptr, &s).is_ok());
  for (const auto& c : golden["cases"]) {
    const PipelineConfig cfg =
        pdtest::golden_method_config(c);  // SnapKV/H2O: per query head, as published
    INFO(c.dump().substr(0, 80));
    // The fixture prompt behind a truncated copy of itself in one ragged batch: the full request
    // starts at a nonzero row offset and must not see its neighbour.
    const std::vector<std::vector<int32_t>> prompts = {
        std::vector<int32_t>(ids.begin(), ids.begin() + 500), ids};
    std::vector<PrefillResult> res;
    REQUIRE(s->prefill(prompts, cfg, &res).is_ok());
    std::vector<std::vector<int32_t>> tokens;
    double ms = 0;
    REQUIRE(s->generate({res[0].first_token, res[1].first_token}, 16, {}, &tokens, &ms).is_ok());
    if (c.contains("selected"))
      CHECK(res[1].selected[0][0] == c["selected"].get<std::vector<int32_t>>());
    if (c.contains("layer0_rows"))
      CHECK(res[1].selected[0] == c["layer0_rows"].get<std::vector<std::vector<int32_t>>>());
    CHECK(tokens[1] == c["greedy"].get<std::vector<int32_t>>());
  }
}

TEST_CASE(
    "pipeline/smollm2: every method's published default equals the reference algorithm on "
    "transformers") {
  // scripts/golden/make_golden.py, write_published_goldens: a 2.4K-token prompt; PromptDistill
  // (layer 13, k 1024, tt 0 and 1), GemFilter (13, 1024), SnapKV per query head as the
  // PromptDistill/GemFilter baselines run it (C 1024, W 32, avg pool 5) and as SnapKV's own
  // LongBench configuration (max pool 7), H2O per query head (C 1024, recent 32). SnapKV/H2O are
  // compared on every head's row of the first, middle and last layers.
  ModelWeights w;
  REQUIRE(load_gguf_model(PD_TEST_MODEL, &w).is_ok());
  const auto golden =
      pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_published.json");
  const auto ids = golden["ids"].get<std::vector<int32_t>>();
  for (const auto& c : golden["cases"]) {
    INFO(c.dump().substr(0, 100));
    PrefillResult r;
    std::vector<int32_t> tokens;
    run_reference_session(w, ids, c, &r, &tokens);
    if (c.contains("selected"))
      CHECK(r.selected[0][0] == c["selected"].get<std::vector<int32_t>>());
    if (c.contains("layer_rows"))
      for (const auto& [layer, rows] : c["layer_rows"].items()) {
        CAPTURE(layer);
        REQUIRE(std::size_t(std::stoi(layer)) < r.selected.size());
        CHECK(r.selected[std::size_t(std::stoi(layer))] ==
              rows.get<std::vector<std::vector<int32_t>>>());
      }
    CHECK(tokens == c["greedy"].get<std::vector<int32_t>>());
  }
}

namespace {

//! FastKV's rows of the layers a golden case recorded, and the positions it propagated.
void check_fastkv(const PrefillResult& r, const nlohmann::json& c) {
  for (const auto& [layer, rows] : c["layer_rows"].items()) {
    CAPTURE(layer);
    REQUIRE(std::size_t(std::stoi(layer)) < r.selected.size());
    CHECK(r.selected[std::size_t(std::stoi(layer))] ==
          rows.get<std::vector<std::vector<int32_t>>>());
  }
  CHECK(r.propagated == c["propagated"].get<std::vector<int32_t>>());
}

}  // namespace

TEST_CASE(
    "pipeline/smollm2: FastKV matches its authors' algorithm on transformers (constant and "
    "proportional)") {
  // scripts/golden/make_golden_fastkv.py: the published default (C 512, window 8, max pool 7, TSP
  // at layer 15 keeping 2048) and the proportional mode (retain_rate 0.1, tsp_rate 0.2) on the
  // 2.4K-token prompt, a small case on the 700-token one; every KV head's row of layers 0, 15, 16
  // and 29, the propagated positions and 16 greedy tokens.
  ModelWeights w;
  REQUIRE(load_gguf_model(PD_TEST_MODEL, &w).is_ok());
  const auto golden = pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_fastkv.json");
  const auto published =
      pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_published.json")["ids"];
  const auto methods =
      pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_methods.json")["ids"];
  for (const auto& c : golden["cases"]) {
    INFO(c["name"].get<std::string>());
    const auto ids = (c["prompt"] == "published" ? published : methods).get<std::vector<int32_t>>();
    PrefillResult r;
    std::vector<int32_t> tokens;
    run_reference_session(w, ids, c, &r, &tokens);
    check_fastkv(r, c);
    CHECK(tokens == c["greedy"].get<std::vector<int32_t>>());
  }
}

TEST_CASE(
    "pipeline/smollm2: the batch session runs FastKV as its authors' algorithm, in a ragged "
    "batch") {
  ModelWeights w;
  REQUIRE(load_gguf_model(PD_TEST_MODEL, &w).is_ok());
  const auto golden = pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_fastkv.json");
  const auto ids =
      pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_methods.json")["ids"]
          .get<std::vector<int32_t>>();
  std::unique_ptr<ref::BatchSession> s;
  REQUIRE(ref::BatchSession::create(&w, BatchSessionOptions{}, nullptr, &s).is_ok());
  for (const auto& c : golden["cases"]) {
    if (c["prompt"] != "methods") continue;
    INFO(c["name"].get<std::string>());
    const std::vector<std::vector<int32_t>> prompts = {
        std::vector<int32_t>(ids.begin(), ids.begin() + 500), ids};
    std::vector<PrefillResult> res;
    REQUIRE(s->prefill(prompts, pdtest::golden_method_config(c), &res).is_ok());
    std::vector<std::vector<int32_t>> tokens;
    double ms = 0;
    REQUIRE(s->generate({res[0].first_token, res[1].first_token}, 16, {}, &tokens, &ms).is_ok());
    check_fastkv(res[1], c);
    CHECK(tokens[1] == c["greedy"].get<std::vector<int32_t>>());
  }
}
