// SPDX-License-Identifier: Apache-2.0
// The embedded SmolLM2-135M-Instruct (GGUF Q4_1, real weights) on the CPU reference against
// transformers loading the same GGUF in f32 (tests/golden/smollm2_golden.json): identical
// greedy continuations of 32 tokens for a chat prompt, a plain prompt and a ~2K-token haystack;
// top-20 logits within 5e-4 (Tier C; measured 4e-5 on the 2K prompt). Skipped (exit 77) when the model cannot be fetched.
#include <doctest/doctest.h>

#include "golden_support.h"
#include "promptdistill/model.h"

using namespace promptdistill;

TEST_CASE("model/smollm2: GGUF weights and the CPU reference match transformers") {
  ModelWeights w;
  const Status s = load_gguf_model(PD_TEST_MODEL, &w);
  REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
  CHECK(w.config.num_layers == 30);
  CHECK(w.config.hidden == 576);
  CHECK(w.config.num_heads == 9);
  CHECK(w.config.num_kv_heads == 3);
  CHECK(w.config.tied_embeddings);
  const auto golden = pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_golden.json");
  for (const auto& c : golden["cases"]) pdtest::compare_with_golden(w, c, /*logit_tol=*/5e-4, /*hidden_tol=*/2e-3);
}
