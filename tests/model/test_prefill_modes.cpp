// SPDX-License-Identifier: Apache-2.0
// The CPU prefill's weight modes (ref::PrefillWeights) on a random model: a shared f32 packing
// gives the self-packed Transformer's bits; the opt-in bf16 prefill (Tier C) is the exact prefill
// of the bf16-rounded weights (bit for bit without AMX, within a stated bound on AMX tiles) and
// runs every session path; bad names get a Status.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "promptdistill/dtype.h"
#include "promptdistill/session_ref.h"
#include "promptdistill/transformer_ref.h"
#include "support/random_model.h"

using namespace promptdistill;
using namespace promptdistill::ref;

namespace {

//! One prefill of `ids` through every layer: the last row's logits.
std::vector<float> prefill_logits(const Transformer& t, const ModelWeights& w,
                                  const std::vector<int32_t>& ids) {
  std::vector<int32_t> pos(ids.size());
  for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  const int64_t n = int64_t(ids.size());
  std::vector<float> x, logits;
  REQUIRE(t.embed(ids.data(), n, &x).is_ok());
  std::vector<KvLayerCache> caches(std::size_t(w.config.num_layers));
  for (int64_t l = 0; l < w.config.num_layers; ++l)
    REQUIRE(t.layer(l, &x, n, pos.data(), n, &caches[std::size_t(l)], nullptr).is_ok());
  REQUIRE(t.logits(&x[std::size_t((n - 1) * w.config.hidden)], &logits).is_ok());
  return logits;
}

}  // namespace

TEST_CASE("prefill/f32: a shared packing gives the self-packed Transformer's bits") {
  const ModelWeights w = pdtest::random_model(31);
  const auto ids = pdtest::random_prompt(333, 11);
  PrefillWeights packed;
  REQUIRE(PrefillWeights::create(w, PrefillWeightFormat::kF32, &packed).is_ok());
  CHECK(packed.format() == PrefillWeightFormat::kF32);
  CHECK(packed.bytes() >=
        int64_t(sizeof(float)) * 6 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 96 * 64));
  MESSAGE("f32 prefill weights: " << packed.describe() << "; kernels " << cpu_kernels());
  const Transformer shared(&w, &packed), own(&w);
  CHECK(shared.prefill_format() == PrefillWeightFormat::kF32);
  const auto a = prefill_logits(shared, w, ids), b = prefill_logits(own, w, ids);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_CASE(
    "prefill/bf16: the exact prefill of the bf16 weights, within its bound; every session path "
    "runs it") {
  const ModelWeights w = pdtest::random_model(32);
  const auto ids = pdtest::random_prompt(400, 12);
  PrefillWeights bf16;
  REQUIRE(PrefillWeights::create(w, PrefillWeightFormat::kBf16, &bf16).is_ok());
  CHECK(bf16.format() == PrefillWeightFormat::kBf16);
  MESSAGE("bf16 prefill weights: " << bf16.describe());
  // The mode's only weight change: the linear layers' weights rounded to bf16.
  ModelWeights rounded = w;
  for (auto& L : rounded.layers)
    for (auto* v : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      for (float& x : *v) x = to_float(to_bf16(x));
  const Transformer fast(&w, &bf16);
  CHECK(fast.prefill_format() == PrefillWeightFormat::kBf16);
  const auto got = prefill_logits(fast, w, ids);
  const auto want = prefill_logits(Transformer(&rounded), rounded, ids);
  const auto exact = prefill_logits(Transformer(&w), w, ids);
  const auto relative = [](const std::vector<float>& a, const std::vector<float>& b) {
    double scale = 0, diff = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
      scale = std::max(scale, std::fabs(double(b[i])));
      diff = std::max(diff, std::fabs(double(a[i]) - double(b[i])));
    }
    return diff / scale;
  };
  if (bf16.describe().find("AMX") != std::string::npos) {
    // The activations as hi + lo bf16 (within 2^-17) and the tile unit's f32 sums: measured
    // 1.9e-4 of the largest logit through these 6 random layers; the bound leaves a factor of 5.
    MESSAGE("AMX tiles: max |logit - exact of the bf16 weights| / max |logit| = " << relative(
                got, want));
    CHECK(relative(got, want) <= 1e-3);
  } else {  // the bf16 values on the f32 kernels: the exact prefill of the rounded weights
    CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
  }
  // Against the f32 weights, the rounding itself (random layers amplify it: 0.099 of the largest
  // logit here, 0.027 for f16 weights; SmolLM2's goldens bound the real model).
  MESSAGE("bf16 prefill: max |logit - exact| / max |logit| = " << relative(got, exact));
  CHECK(relative(got, exact) > 0);
  // A session prefills with it (PromptDistill, then greedy decode in the exact mode).
  EigenSession s(&w);
  s.set_prefill_weights(&bf16);
  PipelineConfig c;
  c.method = PipelineMethod::kPromptDistill;
  c.selection_layers = {3};
  c.n_topks = {100};
  PrefillResult r;
  REQUIRE(s.prefill(ids, c, &r).is_ok());
  CHECK(r.retained == std::vector<int64_t>{101});
  CHECK(r.selection_ms > 0);
  CHECK(r.selection_ms < r.ttft_ms);
  std::vector<int32_t> out;
  double ms = 0;
  REQUIRE(s.generate(r.first_token, 5, {}, &out, &ms).is_ok());
  CHECK(out.size() == 5);
}

TEST_CASE("prefill: bad format names get a Status") {
  PrefillWeightFormat f;
  CHECK(parse("bf16", &f).is_ok());
  CHECK(f == PrefillWeightFormat::kBf16);
  CHECK(parse("f16", &f).code() == StatusCode::kInvalidArgument);
  CHECK(std::string(to_string(PrefillWeightFormat::kF32)) == "f32");
  PrefillWeights none;
  CHECK(none.bytes() == 0);
  CHECK(none.describe() == "none");
}
