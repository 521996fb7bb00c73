// SPDX-License-Identifier: Apache-2.0
// Scores aggregated over layers (PipelineConfig::score_layers) on the CPU reference: ScorePartial
// accumulating one call per layer into one buffer, then FinishSelect dividing by the head terms'
// count (w layers x H heads). One layer is Select itself, bit for bit on random data (Tier B);
// w layers equal the mean of the w single-layer score vectors computed separately by Select, bit
// for bit on small-integer data where every operation is exact (Tier B), and within the bound of
// docs/algorithms.md §10 on random data.
#include <doctest/doctest.h>

#include <cmath>

#include "promptdistill/promptdistill.h"
#include "support/compare.h"
#include "support/ref_select.h"
#include "support/selector_cases.h"

using namespace promptdistill;
using pdtest::Fill;
using pdtest::Layout;

namespace {

//! One layer's last query and keys: a scoring case of its own seed.
pdtest::ScoreCase<float> layer_case(Method method, int64_t H, int64_t Hkv, int64_t D, Fill fill,
                                    uint64_t seed) {
  return pdtest::make_score_case<float>(method, HeadGrouping::kPerKvGroup, {300, 131}, H, Hkv, D, 0,
                                        fill, seed);
}

//! ScorePartial of every layer into one buffer (the first writes, the others accumulate).
std::vector<float> accumulated(const std::vector<pdtest::ScoreCase<float>>& layers, Method method) {
  const auto& c0 = layers[0];
  std::vector<float> summed(std::size_t(c0.B * c0.N), 0.0f);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const auto& c = layers[l];
    auto kv = pdtest::make_kv<float>(Layout::kBSHD, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 1);
    ScorePartialArgs<float> a;
    a.method = method;
    a.q = c.q_view(c.q.data());
    a.k = kv.view();
    a.lengths = c.lengths.data();
    a.total_heads = c.H;
    a.partial = make_view(summed.data(), c.B, 1, c.N);
    a.accumulate = l > 0;
    HostWorkspace ws;
    REQUIRE(ws.reserve(ref::ScorePartial<float>::workspace_size(a)).is_ok());
    const Status st = ref::ScorePartial<float>::run(a, ws.workspace());
    REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  }
  return summed;
}

pdtest::SelectRun<float> finish(const std::vector<float>& summed, const pdtest::ScoreCase<float>& c,
                                int64_t terms, const MethodConfig& cfg) {
  pdtest::SelectRun<float> s;
  s.indices.assign(std::size_t(c.B * c.N), -1);
  s.counts.assign(std::size_t(c.B), -1);
  s.positions.assign(std::size_t(c.B * c.N), -1);
  s.final_scores.assign(std::size_t(c.B * c.N), 0.0f);
  FinishSelectArgs a;
  a.config = cfg;
  a.summed = make_view(summed.data(), c.B, 1, c.N);
  a.total_heads = terms;
  a.lengths = c.lengths.data();
  a.indices = make_view(s.indices.data(), c.B, 1, c.N);
  a.counts = make_view(s.counts.data(), c.B, 1);
  a.positions = make_view(s.positions.data(), c.B, 1, c.N);
  a.final_scores = make_view(s.final_scores.data(), c.B, 1, c.N);
  HostWorkspace ws;
  REQUIRE(ws.reserve(ref::FinishSelect::workspace_size(a)).is_ok());
  s.status = ref::FinishSelect::run(a, ws.workspace());
  REQUIRE_MESSAGE(s.status.is_ok(), std::string(s.status.message()));
  return s;
}

MethodConfig config_of(Method method, int64_t budget, PoolMode pool) {
  MethodConfig cfg;
  cfg.method = method;
  cfg.budget = budget;
  cfg.pool = pool;
  return cfg;
}

//! Each layer's own score vector, as Select ranks it before pooling (pool none).
std::vector<float> single_layer_scores(const pdtest::ScoreCase<float>& c, Method method) {
  const auto run = pdtest::run_select(c, config_of(method, 8, PoolMode::kNone));
  REQUIRE_MESSAGE(run.status.is_ok(), std::string(run.status.message()));
  return run.final_scores;
}

}  // namespace

TEST_CASE(
    "score layers/ref: one layer through ScorePartial + FinishSelect is Select itself (Tier B, "
    "random data)") {
  for (Method method : {Method::kPromptDistill, Method::kGemFilter})
    for (PoolMode pool : {PoolMode::kAvg, PoolMode::kMax, PoolMode::kNone}) {
      const auto c = layer_case(method, 9, 3, 64, Fill::kNormal,
                                pdtest::mix(pdtest::seed(), 1, uint64_t(method)));
      const MethodConfig cfg = config_of(method, 40, pool);
      CAPTURE(c.describe());
      CAPTURE(to_string(pool));
      const auto want = pdtest::run_select(c, cfg);
      REQUIRE(want.status.is_ok());
      const auto got = finish(accumulated({c}, method), c, c.H, cfg);
      pdtest::check_same_selection(got, want);
    }
}

TEST_CASE(
    "score layers/ref: w layers rank by the mean of the w single-layer scores, bit for bit on "
    "integers (Tier B)") {
  // Small integers, D = 64 (sqrt_d = 8), H = 32 and w a power of two: every head term, sum, mean
  // and division is exact, so the aggregated scores must equal the mean of the layers' own score
  // vectors (each computed by Select alone) exactly, and so must the pooled scores and selection.
  for (Method method : {Method::kPromptDistill, Method::kGemFilter})
    for (int64_t w : {2, 4}) {
      std::vector<pdtest::ScoreCase<float>> layers;
      for (int64_t l = 0; l < w; ++l)
        layers.push_back(layer_case(method, 32, 8, 64, Fill::kSmallInt,
                                    pdtest::mix(pdtest::seed(), 2, uint64_t(l))));
      const auto& c = layers[0];
      // The mean over layers of the single-layer scores (GemFilter's unnormalised sums: the sum).
      std::vector<double> mean(std::size_t(c.B * c.N), 0.0);
      for (const auto& layer : layers) {
        const auto s = single_layer_scores(layer, method);
        for (std::size_t i = 0; i < mean.size(); ++i) mean[i] += double(s[i]);
      }
      std::vector<float> want_summed(mean.size());
      for (std::size_t i = 0; i < mean.size(); ++i)
        want_summed[i] = float(method == Method::kPromptDistill ? mean[i] / double(w) : mean[i]);
      for (PoolMode pool : {PoolMode::kAvg, PoolMode::kMax, PoolMode::kNone}) {
        const MethodConfig cfg = config_of(method, 40, pool);
        CAPTURE(c.describe());
        CAPTURE(w);
        CAPTURE(to_string(pool));
        const auto got = finish(accumulated(layers, method), c, w * c.H, cfg);
        const auto want = finish(want_summed, c, 1, cfg);  // the mean, pooled and ranked as is
        CHECK(got.indices == want.indices);
        CHECK(got.counts == want.counts);
        CHECK(pdtest::bitwise_equal(got.final_scores, want.final_scores));
      }
    }
}

TEST_CASE(
    "score layers/ref: on random data the aggregated scores are within the stated bound of the "
    "exact mean") {
  // Each accumulated sum adds w * H head terms in sequence and is divided once: it differs from
  // the exact mean of the same head terms by at most gamma(wH + 1) * sum|z| / (wH), u = 2^-24.
  for (int64_t w : {1, 3, 6}) {
    std::vector<pdtest::ScoreCase<float>> layers;
    for (int64_t l = 0; l < w; ++l)
      layers.push_back(layer_case(Method::kPromptDistill, 9, 3, 64, Fill::kNormal,
                                  pdtest::mix(pdtest::seed(), 3, uint64_t(l))));
    const auto& c = layers[0];
    const auto got = finish(accumulated(layers, Method::kPromptDistill), c, w * c.H,
                            config_of(Method::kPromptDistill, 40, PoolMode::kNone));
    const float sqrt_d = num::sqrt(float(c.D));
    const int64_t terms = w * c.H, G = c.H / c.Hkv;
    const double u = std::ldexp(1.0, -24),
                 gamma = double(terms + 1) * u / (1.0 - double(terms + 1) * u);
    int64_t checked = 0;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t j = 0; j < c.lengths[std::size_t(b)]; ++j) {
        double exact = 0.0, magnitude = 0.0;
        for (const auto& layer : layers)
          for (int64_t h = 0; h < c.H; ++h) {
            const float* q = &layer.q[std::size_t((b * c.H + h) * layer.head_pitch)];
            const float* k = &layer.k_logical[std::size_t(((b * c.N + j) * c.Hkv + h / G) * c.D)];
            const double z = double(num::div(num::dot(q, k, int(c.D)), sqrt_d));
            exact += z;
            magnitude += std::fabs(z);
          }
        exact /= double(terms);
        const double bound = gamma * magnitude / double(terms);
        CAPTURE(w);
        CAPTURE(b);
        CAPTURE(j);
        CHECK(std::fabs(double(got.final_scores[std::size_t(b * c.N + j)]) - exact) <= bound);
        ++checked;
      }
    CHECK(checked == 300 + 131);
  }
}

TEST_CASE(
    "score layers/ref: accumulate adds to what the buffer holds; refused for snapkv, h2o and "
    "fastkv") {
  const auto c =
      layer_case(Method::kPromptDistill, 9, 3, 64, Fill::kSmallInt, pdtest::mix(pdtest::seed(), 4));
  const auto once = accumulated({c}, Method::kPromptDistill);
  const auto twice = accumulated({c, c}, Method::kPromptDistill);
  for (std::size_t i = 0; i < once.size(); ++i) REQUIRE(twice[i] == num::add(once[i], once[i]));
  auto kv = pdtest::make_kv<float>(Layout::kBSHD, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 1);
  std::vector<float> partial(std::size_t(c.B * c.N), 0.0f);
  ScorePartialArgs<float> a;
  a.q = c.q_view(c.q.data());
  a.k = kv.view();
  a.lengths = c.lengths.data();
  a.total_heads = c.H;
  a.partial = make_view(partial.data(), c.B, 1, c.N);
  a.accumulate = true;
  for (Method method : {Method::kSnapKV, Method::kH2O, Method::kFastKV}) {
    a.method = method;
    const Status st = ref::ScorePartial<float>::can_implement(a);
    CAPTURE(to_string(method));
    CHECK(st.code() == StatusCode::kUnsupported);
  }
}
