// SPDX-License-Identifier: Apache-2.0
// The embedded SmolLM2-135M-Instruct (GGUF Q4_1, real weights) on the CPU reference against
// transformers loading the same GGUF in f32 (tests/golden/smollm2_golden.json): identical
// greedy continuations of 32 tokens for a chat prompt, a plain prompt and a ~2K-token haystack;
// top-20 logits within 5e-4 (Tier C; measured 4e-5 on the 2K prompt). The decode path's modes
// from the same prefills: the exact one bit for bit, the fast ones with the same tokens and
// logits within their bounds. Skipped (exit 77) when the model cannot be fetched.
#include <doctest/doctest.h>

#include "golden_support.h"
#include "promptdistill/model.h"
#include "promptdistill/transformer_ref.h"

using namespace promptdistill;

namespace {

//! Greedy decode steps in `options`' mode from the exact prefill's caches: the tokens (the
//! prefill's first) and each step's logits.
struct Decoded {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
};
Decoded decode_from(const ModelWeights& w, std::vector<ref::KvLayerCache> caches, int32_t first, int64_t length, int steps,
                    const ref::DecodeOptions& options) {
  ref::Transformer t(&w);
  ref::DecodeWorkspace ws;
  REQUIRE(ws.reserve(w.config, length + steps).is_ok());
  for (auto& c : caches)
    if (options.kv == ref::KvStorage::kF16) c.to_half();
  Decoded d;
  d.tokens.push_back(first);
  for (int s = 0; s < steps; ++s) {
    int32_t next = 0;
    REQUIRE(t.decode(d.tokens.back(), length + s, &caches, options, &ws, &next).is_ok());
    d.tokens.push_back(next);
    d.logits.push_back(ws.logits());
  }
  return d;
}

}  // namespace

// The exact mode (the prefill's layer forward, step by step) against transformers; then, from the
// same prefill, the decode path in each mode: the exact one gives the same bits (Tier A), the fast
// ones (Tier C) the same greedy tokens with logits within each mode's bound of the exact ones.
TEST_CASE("model/smollm2: GGUF weights and the CPU reference match transformers; every decode mode keeps the greedy tokens") {
  ModelWeights w;
  const Status s = load_gguf_model(PD_TEST_MODEL, &w);
  REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
  CHECK(w.config.num_layers == 30);
  CHECK(w.config.hidden == 576);
  CHECK(w.config.num_heads == 9);
  CHECK(w.config.num_kv_heads == 3);
  CHECK(w.config.tied_embeddings);
  ref::DecodeWeights f16, gguf;
  REQUIRE(ref::DecodeWeights::create(w, ref::DecodeWeightFormat::kF16, "", &f16).is_ok());
  REQUIRE(ref::DecodeWeights::create(w, ref::DecodeWeightFormat::kGguf, PD_TEST_MODEL, &gguf).is_ok());
  CHECK(gguf.describe() == "q4_1 (layers), q8_0 (lm head)");
  CHECK(gguf.bytes() < f16.bytes() / 2);
  struct Mode {
    const char* name;
    ref::DecodeOptions options;
    double bound;  // max |logit - exact| over every step (logits span about 30)
  };
  ref::DecodeOptions weights16, cache16, file, file_cache16;
  weights16.weights = &f16;
  cache16.kv = ref::KvStorage::kF16;
  file.weights = &gguf;
  file_cache16.weights = &gguf, file_cache16.kv = ref::KvStorage::kF16;
  const Mode modes[] = {{"exact", ref::DecodeOptions{}, 0.0},
                        {"f16 weights", weights16, 0.1},
                        {"f16 cache", cache16, 0.05},
                        {"gguf blocks", file, 0.05},
                        {"gguf blocks + f16 cache", file_cache16, 0.05}};
  const auto golden = pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_golden.json");
  for (const auto& c : golden["cases"]) {
    const pdtest::RunResult r = pdtest::compare_with_golden(w, c, /*logit_tol=*/5e-4, /*hidden_tol=*/2e-3);
    const auto want = c["greedy"].get<std::vector<int32_t>>();
    const int64_t n = int64_t(c["ids"].size());
    for (const Mode& m : modes) {
      INFO(c["name"].get<std::string>() << ", " << std::string(m.name));
      const Decoded d = decode_from(w, r.prefill_caches, want[0], n, int(want.size()) - 1, m.options);
      CHECK(d.tokens == want);
      double worst = 0;
      for (std::size_t step = 0; step < d.logits.size(); ++step)
        for (std::size_t v = 0; v < d.logits[step].size(); ++v)
          worst = std::max(worst, std::fabs(double(d.logits[step][v]) - double(r.step_logits[step][v])));
      MESSAGE(std::string(m.name) << ": max |logit - exact| over " << d.logits.size() << " steps = " << worst);
      CHECK(worst <= m.bound);
    }
  }
}

TEST_CASE("model/smollm2: the file's own blocks dequantise to the loaded f32 weights, rows in the same order") {
  ModelWeights w;
  REQUIRE(load_gguf_model(PD_TEST_MODEL, &w).is_ok());
  ModelBlocks blocks;
  REQUIRE(load_gguf_blocks(PD_TEST_MODEL, w.config, &blocks).is_ok());
  REQUIRE(blocks.layers.size() == std::size_t(w.config.num_layers));
  const auto same = [](const BlockMatrix& b, const std::vector<float>& f32) {
    std::vector<float> values(std::size_t(b.rows * b.cols));
    REQUIRE(dequantize_ggml(b.type, b.bytes.data(), b.rows * b.cols, values.data()).is_ok());
    return values == f32;
  };
  for (std::size_t l : {std::size_t(0), std::size_t(29)}) {
    const LayerWeights& L = w.layers[l];
    const LayerBlocks& B = blocks.layers[l];
    CHECK(same(B.wq, L.wq));  // Q and K rows permuted back as load_gguf_model does
    CHECK(same(B.wk, L.wk));
    CHECK(same(B.wv, L.wv));
    CHECK(same(B.w_down, L.w_down));
  }
  CHECK(same(blocks.output, w.output_matrix()));
  ModelBlocks missing;
  CHECK(load_gguf_blocks("/nonexistent.gguf", w.config, &missing).code() == StatusCode::kIoError);
}
