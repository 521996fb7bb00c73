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
Decoded decode_from(const ModelWeights& w, std::vector<ref::KvLayerCache> caches, int32_t first,
                    int64_t length, int steps, const ref::DecodeOptions& options) {
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
TEST_CASE(
    "model/smollm2: GGUF weights and the CPU reference match transformers; every decode mode keeps "
    "the greedy tokens") {
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
  REQUIRE(
      ref::DecodeWeights::create(w, ref::DecodeWeightFormat::kGguf, PD_TEST_MODEL, &gguf).is_ok());
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
    const pdtest::RunResult r =
        pdtest::compare_with_golden(w, c, /*logit_tol=*/5e-4, /*hidden_tol=*/2e-3);
    const auto want = c["greedy"].get<std::vector<int32_t>>();
    const int64_t n = int64_t(c["ids"].size());
    for (const Mode& m : modes) {
      INFO(c["name"].get<std::string>() << ", " << std::string(m.name));
      const Decoded d =
          decode_from(w, r.prefill_caches, want[0], n, int(want.size()) - 1, m.options);
      CHECK(d.tokens == want);
      double worst = 0;
      for (std::size_t step = 0; step < d.logits.size(); ++step)
        for (std::size_t v = 0; v < d.logits[step].size(); ++v)
          worst = std::max(worst,
                           std::fabs(double(d.logits[step][v]) - double(r.step_logits[step][v])));
      MESSAGE(std::string(m.name) << ": max |logit - exact| over " << d.logits.size()
                                  << " steps = " << worst);
      CHECK(worst <= m.bound);
    }
  }
}

// The opt-in bf16 prefill (--prefill-weights bf16: the linear layers' weights rounded to bf16,
// AMX tiles where the CPU has them), then the exact decode from its caches: the same greedy
// tokens as transformers on every golden prompt, the first token's top-20 logits within 0.15 of
// transformers' (Tier C; measured 0.030 to 0.078; the exact prefill is within 5e-4).
TEST_CASE(
    "model/smollm2: the bf16 prefill keeps transformers' greedy tokens on every golden prompt") {
  ModelWeights w;
  REQUIRE(load_gguf_model(PD_TEST_MODEL, &w).is_ok());
  ref::PrefillWeights bf16;
  REQUIRE(ref::PrefillWeights::create(w, ref::PrefillWeightFormat::kBf16, &bf16).is_ok());
  MESSAGE("bf16 prefill: " << bf16.describe());
  const ref::Transformer t(&w, &bf16);
  const auto golden = pdtest::read_json_file(std::string(PD_GOLDEN_DIR) + "/smollm2_golden.json");
  for (const auto& c : golden["cases"]) {
    INFO(c["name"].get<std::string>());
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const auto want = c["greedy"].get<std::vector<int32_t>>();
    const int64_t n = int64_t(ids.size());
    std::vector<int32_t> pos(ids.size());
    for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
    std::vector<ref::KvLayerCache> caches(std::size_t(w.config.num_layers));
    std::vector<float> x, logits;
    REQUIRE(t.embed(ids.data(), n, &x).is_ok());
    for (int64_t l = 0; l < w.config.num_layers; ++l)
      REQUIRE(t.layer(l, &x, n, pos.data(), n, &caches[std::size_t(l)], nullptr).is_ok());
    REQUIRE(t.logits(&x[std::size_t((n - 1) * w.config.hidden)], &logits).is_ok());
    double worst = 0;
    for (const auto& top : c["top20"])
      worst = std::max(worst,
                       std::fabs(double(logits[top[0].get<std::size_t>()]) - top[1].get<double>()));
    MESSAGE(c["name"].get<std::string>()
            << ": bf16 prefill, max |logit - transformers| over the top 20 = " << worst);
    CHECK(worst <= 0.15);
    const Decoded d =
        decode_from(w, caches, ref::argmax(logits), n, int(want.size()) - 1, ref::DecodeOptions{});
    CHECK(d.tokens == want);
  }
}

TEST_CASE(
    "model/smollm2: the file's own blocks dequantise to the loaded f32 weights, rows in the same "
    "order") {
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
