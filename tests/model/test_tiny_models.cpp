// SPDX-License-Identifier: Apache-2.0
// Tiny random-weight checkpoints written by transformers (tests/golden/tiny_*): the HF folder
// loader (bf16 / sharded f16 / f32 safetensors, Llama-3.1 llama3 RoPE scaling, Qwen2 qkv bias,
// Phi-3.5 LongRoPE with fused qkv and gate_up) and the CPU reference decoder against
// transformers' outputs (Tier C: same greedy tokens, logits within a stated bound).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "golden_support.h"
#include "promptdistill/detail/numerics.h"
#include "promptdistill/model.h"
#include "support/temp_dir.h"

using namespace promptdistill;

TEST_CASE("model/tiny: Llama-3.1, Qwen2 and Phi-3.5 checkpoints match transformers") {
  for (const char* name : {"tiny_llama31", "tiny_qwen2", "tiny_phi35"}) {
    const std::string dir = std::string(PD_GOLDEN_DIR) + "/" + name;
    INFO(std::string(name));
    ModelWeights w;
    const Status s = load_hf_model(dir, &w);
    REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
    const auto golden = pdtest::read_json_file(dir + "/golden.json");
    for (const auto& c : golden["cases"])
      pdtest::compare_with_golden(w, c, /*logit_tol=*/2e-5, /*hidden_tol=*/1e-4);
  }
}

TEST_CASE("model/hf: bad folders give clear errors") {
  ModelWeights w;
  CHECK(load_hf_model("/nonexistent", &w).code() == StatusCode::kIoError);
  const pdtest::TempDir dir("hf");
  const std::string tmp = dir.root();
  { std::ofstream(tmp + "/config.json") << R"({"architectures": ["GPT2LMHeadModel"]})"; }
  Status s = load_hf_model(tmp, &w);
  CHECK(s.code() == StatusCode::kUnsupported);
  {
    std::ofstream(tmp + "/config.json")
        << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})";
  }
  s = load_hf_model(tmp, &w);
  CHECK(s.code() == StatusCode::kCorruptFile);
  CHECK(std::string(s.message()).find("intermediate_size") != std::string::npos);
  // A valid config with truncated weights.
  std::filesystem::copy_file(std::string(PD_GOLDEN_DIR) + "/tiny_llama31/config.json",
                             tmp + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  {
    std::ifstream whole(std::string(PD_GOLDEN_DIR) + "/tiny_llama31/model.safetensors",
                        std::ios::binary);
    std::string head(5000, '\0');
    whole.read(&head[0], std::streamsize(head.size()));
    REQUIRE(whole.gcount() == 5000);
    std::ofstream(tmp + "/model.safetensors", std::ios::binary) << head;
  }
  s = load_hf_model(tmp, &w);
  CHECK(s.code() == StatusCode::kCorruptFile);
  MESSAGE("truncated: " << s.message());
  { std::ofstream(tmp + "/config.json") << "{not json"; }
  CHECK(load_hf_model(tmp, &w).code() == StatusCode::kCorruptFile);
}

TEST_CASE("model: round_weights keeps exactly the 16-bit values a 16-bit backend stores") {
  ModelWeights w;
  REQUIRE(load_hf_model(std::string(PD_GOLDEN_DIR) + "/tiny_qwen2", &w).is_ok());
  const ModelWeights original = w;
  REQUIRE(round_weights(&w, DType::kBF16).is_ok());
  for (std::size_t i = 0; i < w.embed.size(); ++i)
    CHECK(w.embed[i] == num::round_through<bf16>(original.embed[i]));
  for (std::size_t i = 0; i < w.layers[0].bq.size(); ++i)
    CHECK(w.layers[0].bq[i] == num::round_through<bf16>(original.layers[0].bq[i]));
  ModelWeights h = original;
  REQUIRE(round_weights(&h, DType::kF16).is_ok());
  CHECK(h.layers[0].w_down[3] == num::round_through<f16>(original.layers[0].w_down[3]));
  ModelWeights same = original;
  REQUIRE(round_weights(&same, DType::kF32).is_ok());
  CHECK(same.layers[0].wq == original.layers[0].wq);
  CHECK(round_weights(&same, DType::kI32).code() == StatusCode::kInvalidArgument);
}
