// SPDX-License-Identifier: Apache-2.0
// FastKV's selection on the CPU reference (selector.h, docs/algorithms.md §11): SumRows by hand,
// Select(kFastKV) against the formula written out from other operations (SnapKV's per-query-head
// rows pooled, then summed per KV group in a plain loop) bit for bit (Tier B), its budget, window
// and refusals.
#include <doctest/doctest.h>

#include "promptdistill/promptdistill.h"
#include "support/compare.h"
#include "support/ref_select.h"
#include "support/selector_cases.h"

using namespace promptdistill;
using pdtest::Fill;

namespace {

MethodConfig fastkv_config(int64_t budget, int32_t window, PoolMode pool, int32_t kernel) {
  MethodConfig cfg;
  cfg.method = Method::kFastKV;
  cfg.budget = budget;
  cfg.window = window;
  cfg.pool = pool;
  cfg.pool_kernel = kernel;
  return cfg;
}

Status sum_rows(const std::vector<float>& in, int64_t B, int64_t R, int64_t N, int64_t group,
                const std::vector<int32_t>& lengths, std::vector<float>* out) {
  SumRowsArgs a;
  a.group = group;
  a.in = make_view(in.data(), B, R, N);
  a.out = make_view(out->data(), B, R / (group > 0 ? group : 1), N);
  a.lengths = lengths.data();
  HostWorkspace ws;
  PD_RETURN_IF_ERROR(ws.reserve(ref::SumRows::workspace_size(a)));
  return ref::SumRows::run(a, ws.workspace());
}

}  // namespace

TEST_CASE("sum rows/ref: hand-checked group sums in ascending order; past each length untouched") {
  // B = 2, 4 rows, N = 3, group 2: out[b, i, j] = in[b, 2i, j] + in[b, 2i + 1, j].
  const std::vector<float> in = {1,  2,  3,  10,   20,    30, 100, 200, 300, 1000, 2000, 3000,  //
                                 -1, -2, -3, 0.5f, 0.25f, 8,  4,   4,   4,   -4,   -4,   -4};
  const std::vector<int32_t> lengths = {3, 2};
  std::vector<float> out(12, 7.0f);
  REQUIRE(sum_rows(in, 2, 4, 3, 2, lengths, &out).is_ok());
  CHECK(out == std::vector<float>{11, 22, 33, 1100, 2200, 3300, -0.5f, -1.75f, 7, 0, 0, 7});
  std::vector<float> one(6, 0.0f);
  REQUIRE(sum_rows(in, 2, 4, 3, 4, lengths, &one).is_ok());
  CHECK(one == std::vector<float>{1111, 2222, 3333, -0.5f, -1.75f, 0});
  // Refusals name the problem, outputs untouched.
  std::vector<float> untouched(12, 7.0f);
  CHECK(sum_rows(in, 2, 4, 3, 3, lengths, &untouched).code() == StatusCode::kShapeMismatch);
  CHECK(sum_rows(in, 2, 4, 3, 0, lengths, &untouched).code() == StatusCode::kInvalidArgument);
  const std::vector<int32_t> too_long = {4, 1};
  CHECK(sum_rows(in, 2, 4, 3, 2, too_long, &untouched).code() == StatusCode::kCapacityExceeded);
  CHECK(untouched == std::vector<float>(12, 7.0f));
}

TEST_CASE(
    "select/ref: FastKV pools each query head's SnapKV row, then sums per KV group (Tier B)") {
  for (PoolMode pool : {PoolMode::kMax, PoolMode::kAvg})
    for (auto [H, Hkv] : {std::pair<int64_t, int64_t>{9, 3}, {8, 8}, {32, 8}}) {
      const int32_t window = 8;
      auto c = pdtest::make_score_case<float>(
          Method::kFastKV, HeadGrouping::kPerKvGroup, {257, 40, 9}, H, Hkv, 64, window,
          Fill::kNormal, pdtest::mix(pdtest::seed(), 1, uint64_t(H), uint64_t(pool)));
      const MethodConfig cfg = fastkv_config(40, window, pool, 7);
      CAPTURE(c.describe());
      CAPTURE(to_string(pool));
      const auto got = pdtest::run_select(c, cfg);
      REQUIRE_MESSAGE(got.status.is_ok(), std::string(got.status.message()));
      // The formula from other operations: SnapKV per query head, pooled (kernel 7, the window
      // excluded), as Select leaves its ranked rows; then the group sums written out.
      MethodConfig per_head = cfg;
      per_head.method = Method::kSnapKV;
      per_head.grouping = HeadGrouping::kPerQueryHead;
      auto snap = c;
      snap.method = Method::kSnapKV;
      snap.grouping = HeadGrouping::kPerQueryHead;
      const auto heads = pdtest::run_select(snap, per_head);
      REQUIRE(heads.status.is_ok());
      const int64_t G = H / Hkv;
      std::vector<float> want(std::size_t(c.B * Hkv * c.N), 0.0f);
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t g = 0; g < Hkv; ++g)
          for (int64_t j = 0; j < c.lengths[std::size_t(b)]; ++j) {
            float acc = 0.0f;
            for (int64_t h = g * G; h < (g + 1) * G; ++h)
              acc = num::add(acc, heads.final_scores[std::size_t((b * H + h) * c.N + j)]);
            want[std::size_t((b * Hkv + g) * c.N + j)] = acc;
          }
      CHECK(pdtest::bitwise_equal(got.final_scores, want));
      // The kept tokens: per KV head the window and the best C - W candidates, ascending.
      for (int64_t b = 0; b < c.B; ++b) {
        const int64_t L = c.lengths[std::size_t(b)];
        for (int64_t g = 0; g < Hkv; ++g) {
          const int32_t count = got.counts[std::size_t(b * Hkv + g)];
          CHECK(count == std::min<int64_t>(40, L));
          const int32_t* row = &got.indices[std::size_t((b * Hkv + g) * c.N)];
          for (int32_t i = 1; i < count; ++i) CHECK(row[i] > row[i - 1]);
          if (L >= window) CHECK(row[count - window] == L - window);
        }
      }
    }
}

TEST_CASE(
    "select/ref: FastKV with max pooling is not SnapKV per KV group (the sum comes after the "
    "pooling)") {
  // SnapKV per KV group pools the group's mean; FastKV pools each head, then sums: with max pooling
  // the two rank differently on ordinary data (this is why FastKV is its own method here).
  auto c = pdtest::make_score_case<float>(Method::kFastKV, HeadGrouping::kPerKvGroup, {400}, 9, 3,
                                          64, 8, Fill::kNormal, pdtest::mix(pdtest::seed(), 2));
  const auto fastkv = pdtest::run_select(c, fastkv_config(64, 8, PoolMode::kMax, 7));
  MethodConfig snap_cfg = fastkv_config(64, 8, PoolMode::kMax, 7);
  snap_cfg.method = Method::kSnapKV;
  auto snap = c;
  snap.method = Method::kSnapKV;
  const auto snapkv = pdtest::run_select(snap, snap_cfg);
  REQUIRE(fastkv.status.is_ok());
  REQUIRE(snapkv.status.is_ok());
  CHECK(fastkv.indices != snapkv.indices);
}

TEST_CASE(
    "select/ref: FastKV refuses a budget not above its window, rows per query head, no pooling; "
    "Score refuses it") {
  auto c = pdtest::make_score_case<float>(Method::kFastKV, HeadGrouping::kPerKvGroup, {64}, 9, 3,
                                          64, 8, Fill::kNormal, pdtest::mix(pdtest::seed(), 3));
  MethodPlan plan;
  CHECK(plan_method(fastkv_config(8, 8, PoolMode::kMax, 7), &plan).code() ==
        StatusCode::kInvalidArgument);
  CHECK(plan_method(fastkv_config(9, 8, PoolMode::kMax, 7), &plan).is_ok());
  CHECK(plan.k == 1);
  CHECK(plan.keep_last == 8);
  CHECK(plan.exclude_tail == 8);
  MethodConfig per_head = fastkv_config(32, 8, PoolMode::kMax, 7);
  per_head.grouping = HeadGrouping::kPerQueryHead;
  CHECK(plan_method(per_head, &plan).code() == StatusCode::kInvalidArgument);
  CHECK(plan_method(fastkv_config(32, 8, PoolMode::kNone, 7), &plan).code() ==
        StatusCode::kInvalidArgument);
  const auto refused = pdtest::run_select(c, per_head);
  CHECK(refused.status.code() == StatusCode::kInvalidArgument);
  CHECK(refused.indices == std::vector<int32_t>(refused.indices.size(), -1));
  CHECK(score_rows(Method::kFastKV, HeadGrouping::kPerKvGroup, 9, 3) == 3);
  // Score runs the scorings; FastKV is composed by Select.
  auto kv =
      pdtest::make_kv<float>(pdtest::Layout::kBSHD, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 1);
  std::vector<float> scores(std::size_t(3 * c.N), 0.0f);
  ScoreArgs<float> s;
  s.method = Method::kFastKV;
  s.q = c.q_view(c.q.data());
  s.k = kv.view();
  s.lengths = c.lengths.data();
  s.scores = make_view(scores.data(), 1, 3, c.N);
  CHECK(ref::Score<float>::can_implement(s).code() == StatusCode::kInvalidArgument);
}
