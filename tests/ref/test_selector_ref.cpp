// SPDX-License-Identifier: Apache-2.0
// Reference scoring, pooling and the fused pipeline: hand-checked cases, layout invariance
// (Tier A/B: bitwise), and the method semantics of docs/algorithms.md.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "promptdistill/promptdistill.h"
#include "support/compare.h"
#include "support/ref_select.h"
#include "support/selector_cases.h"

using namespace promptdistill;
using pdtest::Fill;
using pdtest::Layout;

namespace {

template <class T>
std::vector<float> ref_scores(const pdtest::ScoreCase<T>& c, Layout layout, int64_t block = 16) {
  auto kv = pdtest::make_kv<T>(layout, c.k_logical, c.lengths, c.N, c.Hkv, c.D, block,
                               pdtest::mix(pdtest::seed(), 77));
  std::vector<float> scores(std::size_t(c.B * c.score_rows() * c.N), -1234.5f);
  ScoreArgs<T> a;
  a.method = c.method;
  a.grouping = c.grouping;
  a.q = c.q_view(c.q.data());
  a.k = kv.view();
  a.lengths = c.lengths.data();
  a.scores = make_view(scores.data(), c.B, c.score_rows(), c.N);
  std::vector<unsigned char> ws(ref::Score<T>::workspace_size(a) + 256);
  const Status s = ref::Score<T>::run(a, Workspace{ws.data(), ws.size()});
  REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
  return scores;
}

//! SnapKV / H2O scores written straight from docs/algorithms.md with the numerics.h primitives, one
//! row and one head at a time, on the logical (unpaged, unstrided) data: what the blocked,
//! parallel reference must reproduce bit for bit.
template <class T>
std::vector<float> literal_softmax_scores(const pdtest::ScoreCase<T>& c) {
  const float sqrt_d = num::sqrt(float(c.D));
  const int64_t G = c.H / c.Hkv, R = c.score_rows();
  std::vector<float> out(std::size_t(c.B * R * c.N), -1234.5f);
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t L = c.lengths[std::size_t(b)];
    std::vector<float> z(static_cast<std::size_t>(L)), group(static_cast<std::size_t>(L), 0.0f);
    for (int64_t h = 0; h < c.H; ++h) {
      std::vector<float> head(std::size_t(L), 0.0f);
      for (int64_t i = 0; i < c.rows; ++i) {
        const int64_t pos = c.method == Method::kSnapKV ? L - c.rows + i : i;
        if (pos < 0 || pos >= L) continue;
        const T* q = &c.q[std::size_t(((b * c.rows + i) * c.H + h) * c.head_pitch)];
        for (int64_t j = 0; j <= pos; ++j)
          z[std::size_t(j)] =
              num::div(num::dot(q, &c.k_logical[std::size_t(((b * c.N + j) * c.Hkv + h / G) * c.D)],
                                int(c.D)),
                       sqrt_d);
        const float m = num::canonical_max(pos + 1, [&](int64_t j) { return z[std::size_t(j)]; });
        const float l = num::canonical_sum(
            pos + 1, [&](int64_t j) { return num::exp_f32(num::sub(z[std::size_t(j)], m)); });
        for (int64_t j = 0; j <= pos; ++j)
          head[std::size_t(j)] = num::add(
              head[std::size_t(j)], num::div(num::exp_f32(num::sub(z[std::size_t(j)], m)), l));
      }
      for (int64_t j = 0; j < L; ++j) {
        if (c.grouping == HeadGrouping::kPerQueryHead) {
          out[std::size_t((b * R + h) * c.N + j)] = head[std::size_t(j)];
          continue;
        }
        group[std::size_t(j)] = num::add(group[std::size_t(j)], head[std::size_t(j)]);
        if (h % G == G - 1) {
          out[std::size_t((b * R + h / G) * c.N + j)] = num::div(group[std::size_t(j)], float(G));
          group[std::size_t(j)] = 0.0f;
        }
      }
    }
  }
  return out;
}

std::vector<float> pool(std::vector<float> in, PoolMode mode, int kernel, int zero_tail,
                        int exclude_tail) {
  const int64_t n = int64_t(in.size());
  std::vector<float> out(in.size(), -1.0f);
  std::vector<int32_t> lengths{int32_t(n)};
  PoolArgs a;
  a.mode = mode;
  a.kernel = kernel;
  a.zero_tail = zero_tail;
  a.exclude_tail = exclude_tail;
  a.in = make_view<const float>(in.data(), 1, 1, n);
  a.out = make_view(out.data(), 1, 1, n);
  a.lengths = lengths.data();
  const Status s = ref::Pool::run(a, Workspace{});
  REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
  return out;
}

}  // namespace

TEST_CASE("score/ref: hand-checked PromptDistill and GemFilter (exact integers)") {
  // H = 2 query heads on one KV head, D = 16 (sqrt_d = 4). q0 = e0, q1 = e1, k_j = (j, 2j, 0...).
  for (Method m : {Method::kPromptDistill, Method::kGemFilter}) {
    auto c = pdtest::make_score_case<float>(m, HeadGrouping::kPerKvGroup, {4}, 2, 1, 16, 0,
                                            Fill::kConstant, 1);
    std::fill(c.q.begin(), c.q.end(), 0.0f);
    std::fill(c.k_logical.begin(), c.k_logical.end(), 0.0f);
    c.q[0] = 1.0f;       // head 0, d 0
    c.q[16 + 1] = 1.0f;  // head 1, d 1
    for (int j = 0; j < 4; ++j) {
      c.k_logical[std::size_t(j * 16 + 0)] = float(j);
      c.k_logical[std::size_t(j * 16 + 1)] = float(2 * j);
    }
    const auto s = ref_scores(c, Layout::kBSHD);
    // PD: mean over heads of logit / 4 = (j/4 + 2j/4) / 2; GF: sum of raw logits = 3j.
    const std::vector<float> want = m == Method::kPromptDistill
                                        ? std::vector<float>{0, 0.375f, 0.75f, 1.125f}
                                        : std::vector<float>{0, 3, 6, 9};
    INFO(std::string(to_string(m)));
    CHECK(pdtest::bitwise_equal(s, want));
  }
}

TEST_CASE("score/ref: SnapKV and H2O on uniform attention (hand-checked)") {
  // All keys equal -> every query row attends uniformly over the keys it sees.
  const int L = 5, W = 2;
  auto snap = pdtest::make_score_case<float>(Method::kSnapKV, HeadGrouping::kPerQueryHead, {L}, 1,
                                             1, 8, W, Fill::kNormal, 3);
  std::fill(snap.k_logical.begin(), snap.k_logical.end(), 0.25f);
  const auto s = ref_scores(snap, Layout::kBSHD);
  // Window rows sit at positions 3 and 4: row 3 gives 1/4 to j <= 3, row 4 gives 1/5 to j <= 4.
  for (int j = 0; j < L; ++j) {
    const float want = j <= 3 ? num::add(num::add(0.0f, num::div(1.0f, 4.0f)), num::div(1.0f, 5.0f))
                              : num::add(0.0f, num::div(1.0f, 5.0f));
    CAPTURE(j);
    CHECK(s[std::size_t(j)] == want);
  }
  auto h2o = pdtest::make_score_case<float>(Method::kH2O, HeadGrouping::kPerQueryHead, {L}, 1, 1, 8,
                                            0, Fill::kNormal, 4);
  std::fill(h2o.k_logical.begin(), h2o.k_logical.end(), -0.5f);
  const auto h = ref_scores(h2o, Layout::kBSHD);
  for (int j = 0; j < L; ++j) {
    float want = 0.0f;
    for (int i = j; i < L; ++i) want = num::add(want, num::div(1.0f, float(i + 1)));
    CAPTURE(j);
    CHECK(h[std::size_t(j)] == want);
  }
}

TEST_CASE("score/ref: softmax rows sum to one (SnapKV to W, H2O to L)") {
  for (Method m : {Method::kSnapKV, Method::kH2O}) {
    auto c = pdtest::make_score_case<float>(m, HeadGrouping::kPerQueryHead, {70}, 4, 2, 32, 8,
                                            Fill::kNormal, 5);
    const auto s = ref_scores(c, Layout::kBSHD);
    for (int64_t h = 0; h < 4; ++h) {
      double total = 0;
      for (int64_t j = 0; j < 70; ++j) total += s[std::size_t(h * 70 + j)];
      CAPTURE(h);
      CHECK(total == doctest::Approx(m == Method::kSnapKV ? 8.0 : 70.0).epsilon(1e-5));
    }
  }
}

TEST_CASE("score/ref: every KV layout and a strided q give bit-identical scores (Tier B)") {
  struct Heads {
    int64_t H, Hkv;
  };
  for (Method m : {Method::kPromptDistill, Method::kGemFilter, Method::kSnapKV, Method::kH2O}) {
    for (Heads hh : {Heads{1, 1}, Heads{8, 2}, Heads{9, 3}, Heads{32, 8}, Heads{28, 4}}) {
      for (int64_t D : {64, 96, 128}) {
        // The big head counts only for the cheap last-token methods (the softmax ones cost L^2 H
        // D).
        if (hh.H > 9 && (m == Method::kSnapKV || m == Method::kH2O) && D != 64) continue;
        for (HeadGrouping g : {HeadGrouping::kPerKvGroup, HeadGrouping::kPerQueryHead}) {
          if ((m == Method::kPromptDistill || m == Method::kGemFilter) &&
              g == HeadGrouping::kPerQueryHead)
            continue;
          const std::vector<int32_t> lengths =
              m == Method::kH2O ? std::vector<int32_t>{33, 17} : std::vector<int32_t>{65, 40};
          auto c = pdtest::make_score_case<bf16>(
              m, g, lengths, hh.H, hh.Hkv, D, 8, Fill::kNormal,
              pdtest::mix(pdtest::seed(), uint64_t(m), uint64_t(hh.H), uint64_t(D)));
          const auto want = ref_scores(c, Layout::kBSHD);
          auto strided = c;
          strided.head_pitch = D + 8;
          strided.q.assign(std::size_t(c.B * c.rows * c.H * strided.head_pitch), bf16{0});
          for (int64_t r = 0; r < c.B * c.rows * c.H; ++r)
            std::copy_n(&c.q[std::size_t(r * D)], D,
                        &strided.q[std::size_t(r * strided.head_pitch)]);
          CAPTURE(c.describe());
          CHECK(pdtest::bitwise_equal(ref_scores(strided, Layout::kBSHD), want));
          for (Layout l : pdtest::kAllLayouts) {
            INFO(std::string(pdtest::to_string(l)));
            CHECK(pdtest::bitwise_equal(ref_scores(c, l, 16), want));
          }
        }
      }
    }
  }
}

TEST_CASE("score/ref: SnapKV and H2O equal the literal formula bit for bit (Tier B)") {
  // Lengths around the row block (32), the row chunk and the reduction width (256); ragged batches;
  // SnapKV windows longer than the prompt; strided q; paged keys.
  struct Heads {
    int64_t H, Hkv;
  };
  for (Method m : {Method::kSnapKV, Method::kH2O}) {
    for (std::vector<int32_t> lengths :
         {std::vector<int32_t>{1}, std::vector<int32_t>{31, 33}, std::vector<int32_t>{32, 5},
          std::vector<int32_t>{257, 100}, std::vector<int32_t>{300}}) {
      for (Heads hh : {Heads{9, 3}, Heads{4, 4}}) {
        for (HeadGrouping g : {HeadGrouping::kPerKvGroup, HeadGrouping::kPerQueryHead}) {
          const int64_t window = lengths[0] == 1 ? 8 : 32;
          const uint64_t seed = pdtest::mix(pdtest::seed(), uint64_t(m), uint64_t(lengths[0]),
                                            uint64_t(hh.H), uint64_t(g));
          auto c = pdtest::make_score_case<bf16>(m, g, lengths, hh.H, hh.Hkv, 64, window,
                                                 Fill::kNormal, seed,
                                                 /*strided_q=*/lengths.size() > 1);
          CAPTURE(c.describe());
          CAPTURE(seed);
          const auto want = literal_softmax_scores(c);
          CHECK(pdtest::bitwise_equal(ref_scores(c, Layout::kBSHD), want));
          CHECK(pdtest::bitwise_equal(ref_scores(c, Layout::kPagedHND, 16), want));
        }
      }
    }
  }
}

TEST_CASE(
    "score/ref: GQA by indexing: query head h reads KV head h / G only; groups are head means") {
  auto c = pdtest::make_score_case<float>(Method::kPromptDistill, HeadGrouping::kPerKvGroup, {50},
                                          4, 2, 64, 0, Fill::kNormal, 9);
  for (int64_t h = 0; h < 2; ++h)
    std::fill_n(&c.q[std::size_t(h * 64)], 64, 0.0f);  // heads of group 0 silent
  const auto before = ref_scores(c, Layout::kBSHD);
  for (int64_t j = 0; j < 50; ++j)
    std::fill_n(&c.k_logical[std::size_t((j * 2 + 0) * 64)], 64, 7.0f);  // change KV head 0
  CHECK(pdtest::bitwise_equal(ref_scores(c, Layout::kBSHD), before));

  auto per_head = pdtest::make_score_case<float>(Method::kSnapKV, HeadGrouping::kPerQueryHead, {40},
                                                 6, 2, 32, 8, Fill::kNormal, 10);
  auto per_group = per_head;
  per_group.grouping = HeadGrouping::kPerKvGroup;
  const auto sh = ref_scores(per_head, Layout::kBSHD), sg = ref_scores(per_group, Layout::kBSHD);
  std::vector<float> want(sg.size());
  for (int64_t g = 0; g < 2; ++g)
    for (int64_t j = 0; j < 40; ++j) {
      float acc = 0.0f;
      for (int64_t h = g * 3; h < g * 3 + 3; ++h) acc = num::add(acc, sh[std::size_t(h * 40 + j)]);
      want[std::size_t(g * 40 + j)] = num::div(acc, 3.0f);
    }
  CHECK(pdtest::bitwise_equal(sg, want));
}

TEST_CASE("pool/ref: hand-checked avg and max with zeroed and excluded tails") {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  // PromptDistill: zero the last, avg 5 with zero padding, divide by 5.
  CHECK(pdtest::bitwise_equal(
      pool(x, PoolMode::kAvg, 5, 1, 0),
      std::vector<float>{6.0f / 5, 10.0f / 5, 15.0f / 5, 14.0f / 5, 12.0f / 5, 9.0f / 5}));
  // GemFilter: nothing zeroed.
  CHECK(pdtest::bitwise_equal(
      pool(x, PoolMode::kAvg, 5, 0, 0),
      std::vector<float>{6.0f / 5, 10.0f / 5, 15.0f / 5, 20.0f / 5, 18.0f / 5, 15.0f / 5}));
  // SnapKV: window of 2 excluded from pooling (copied), max pooling ignores padding.
  CHECK(pdtest::bitwise_equal(pool({5, -1, -2, -3, 9, 9}, PoolMode::kMax, 3, 0, 2),
                              std::vector<float>{5, 5, -1, -2, 9, 9}));
  CHECK(pdtest::bitwise_equal(pool(x, PoolMode::kAvg, 1, 0, 0), x));
  CHECK(pdtest::bitwise_equal(pool(x, PoolMode::kNone, 5, 1, 0), x));
  const auto with_nan = pool({1, std::nanf(""), 3, 4}, PoolMode::kMax, 3, 0, 0);
  CHECK(std::isnan(with_nan[0]));
  CHECK(std::isnan(with_nan[2]));
  CHECK(with_nan[3] == 4.0f);
}

using pdtest::run_select;

TEST_CASE(
    "select/ref: PromptDistill keeps min(k, L-1)+1 tokens, the last always, original positions") {
  for (int64_t L : {1, 2, 5, 33, 200}) {
    for (int64_t k : {int64_t(0), int64_t(1), L - 2, L - 1, L, L + 5}) {
      if (k < 0) continue;
      auto c = pdtest::make_score_case<float>(
          Method::kPromptDistill, HeadGrouping::kPerKvGroup, {int32_t(L)}, 8, 2, 64, 0,
          Fill::kNormal, pdtest::mix(pdtest::seed(), uint64_t(L), uint64_t(k)));
      MethodConfig cfg;
      cfg.budget = k;
      auto r = run_select(c, cfg);
      CAPTURE(L);
      CAPTURE(k);
      REQUIRE_MESSAGE(r.status.is_ok(), std::string(r.status.message()));
      const int32_t n = r.counts[0];
      CHECK(n == std::min<int64_t>(k, L - 1) + 1);
      CHECK(r.indices[std::size_t(n - 1)] == L - 1);
      CHECK(std::is_sorted(r.indices.begin(), r.indices.begin() + n));
      CHECK(std::equal(r.indices.begin(), r.indices.begin() + n, r.positions.begin()));
      if (k >= L - 1) {
        std::vector<int32_t> all(static_cast<std::size_t>(L));
        std::iota(all.begin(), all.end(), 0);
        CHECK(std::vector<int32_t>(r.indices.begin(), r.indices.begin() + n) == all);
      }
    }
  }
}

TEST_CASE("select/ref: GemFilter renumbers positions and does not force the last token") {
  auto c = pdtest::make_score_case<float>(Method::kGemFilter, HeadGrouping::kPerKvGroup, {100}, 4,
                                          4, 64, 0, Fill::kNormal, 21);
  MethodConfig cfg;
  cfg.method = Method::kGemFilter;
  cfg.budget = 10;
  auto r = run_select(c, cfg);
  REQUIRE(r.status.is_ok());
  CHECK(r.counts[0] == 10);
  for (int i = 0; i < 10; ++i) CHECK(r.positions[std::size_t(i)] == i);
  // The chosen tokens are the top 10 of the pooled scores (final_scores), ties to the smaller
  // index.
  std::vector<int32_t> order(100);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return r.final_scores[std::size_t(a)] > r.final_scores[std::size_t(b)];
  });
  order.resize(10);
  std::sort(order.begin(), order.end());
  CHECK(std::vector<int32_t>(r.indices.begin(), r.indices.begin() + 10) == order);
}

TEST_CASE(
    "select/ref: a final_scores wider than N (as check_select accepts) ranks the same; columns "
    "past N untouched") {
  // One rule on both backends: can_implement accepts final_scores.extents[2] >= N, so run must
  // too (the pooling stage sees the first N columns). Every method and grouping, ragged lengths.
  for (Method m : {Method::kPromptDistill, Method::kGemFilter, Method::kSnapKV, Method::kH2O}) {
    for (HeadGrouping g : {HeadGrouping::kPerKvGroup, HeadGrouping::kPerQueryHead}) {
      if ((m == Method::kPromptDistill || m == Method::kGemFilter) &&
          g == HeadGrouping::kPerQueryHead)
        continue;
      const uint64_t seed = pdtest::mix(pdtest::seed(), uint64_t(m) * 7 + uint64_t(g));
      auto c = pdtest::make_score_case<float>(m, g, {60, 37}, 4, 2, 32, 8, Fill::kNormal, seed);
      MethodConfig cfg;
      cfg.method = m;
      cfg.grouping = g;
      cfg.budget = 20;
      cfg.window = 8;
      CAPTURE(c.describe());
      CAPTURE(seed);
      const auto narrow = pdtest::run_select(c, cfg);
      REQUIRE_MESSAGE(narrow.status.is_ok(), std::string(narrow.status.message()));
      for (int64_t extra : {1, 5}) {
        CAPTURE(extra);
        const auto wide = pdtest::run_select<float>(c, cfg, nullptr, 0, nullptr, extra);
        REQUIRE_MESSAGE(wide.status.is_ok(), std::string(wide.status.message()));
        CHECK(wide.indices == narrow.indices);
        CHECK(wide.counts == narrow.counts);
        CHECK(wide.positions == narrow.positions);
        const int64_t rows = c.B * c.score_rows(), width = c.N + extra;
        for (int64_t row = 0; row < rows; ++row) {
          const std::vector<float> got(wide.final_scores.begin() + row * width,
                                       wide.final_scores.begin() + row * width + c.N);
          const std::vector<float> want(narrow.final_scores.begin() + row * c.N,
                                        narrow.final_scores.begin() + (row + 1) * c.N);
          CHECK(pdtest::bitwise_equal(got, want));
          for (int64_t j = c.N; j < width; ++j)
            CHECK(wide.final_scores[std::size_t(row * width + j)] == pdtest::kUnwritten);
        }
      }
    }
  }
}

TEST_CASE(
    "select/ref: SnapKV and H2O keep exactly C per row including their windows; all when L < C") {
  for (Method m : {Method::kSnapKV, Method::kH2O}) {
    for (HeadGrouping g : {HeadGrouping::kPerKvGroup, HeadGrouping::kPerQueryHead}) {
      for (int32_t L : {20, 40, 90}) {
        auto c = pdtest::make_score_case<float>(m, g, {L}, 4, 2, 32, 8, Fill::kNormal,
                                                pdtest::mix(pdtest::seed(), uint64_t(L)));
        MethodConfig cfg;
        cfg.method = m;
        cfg.grouping = g;
        cfg.window = 8;
        cfg.budget = 40;
        auto r = run_select(c, cfg);
        INFO(std::string(to_string(m)));
        CAPTURE(L);
        REQUIRE_MESSAGE(r.status.is_ok(), std::string(r.status.message()));
        const int64_t R = score_rows(m, g, 4, 2);
        for (int64_t row = 0; row < R; ++row) {
          const int32_t n = r.counts[std::size_t(row)];
          CHECK(n == std::min(L, 40));
          for (int32_t t = L - 8; t < L; ++t)
            CHECK(std::binary_search(&r.indices[std::size_t(row * c.N)],
                                     &r.indices[std::size_t(row * c.N + n)], t));
        }
      }
    }
  }
}

TEST_CASE("select/ref: the fused pipeline equals its stages; gather and multi-stage composition") {
  auto c = pdtest::make_score_case<bf16>(Method::kPromptDistill, HeadGrouping::kPerKvGroup, {300},
                                         8, 2, 64, 0, Fill::kNormal, 33);
  const int64_t E = 24;
  auto hidden = pdtest::generate<bf16>(std::size_t(300 * E), Fill::kArange, 1, 1.0f);
  MethodConfig cfg;
  cfg.budget = 50;
  auto r = run_select(c, cfg, &hidden, E);
  REQUIRE(r.status.is_ok());
  const int32_t n = r.counts[0];
  CHECK(n == 51);
  for (int32_t i = 0; i < n; ++i)
    for (int64_t e = 0; e < E; ++e)
      CHECK(r.hidden_out[std::size_t(i * E + e)].bits ==
            hidden[std::size_t(r.indices[std::size_t(i)] * E + e)].bits);
  // Stage by stage: score, pool, top-k, bitwise the same as the fused run.
  const auto raw = ref_scores(c, Layout::kBSHD);
  std::vector<float> row(raw.begin(), raw.begin() + 300);
  CHECK(pdtest::bitwise_equal(
      pool(row, PoolMode::kAvg, 5, 1, 0),
      std::vector<float>(r.final_scores.begin(), r.final_scores.begin() + 300)));

  // Stage 2 runs on the survivors with their original positions: positions compose.
  auto c2 = pdtest::make_score_case<bf16>(Method::kPromptDistill, HeadGrouping::kPerKvGroup, {n}, 8,
                                          2, 64, 0, Fill::kNormal, 34);
  std::vector<int32_t> survivors_pos(r.positions.begin(), r.positions.begin() + n);
  MethodConfig cfg2;
  cfg2.budget = 10;
  auto r2 = run_select<bf16>(c2, cfg2, nullptr, 0, &survivors_pos);
  REQUIRE(r2.status.is_ok());
  CHECK(r2.counts[0] == 11);
  for (int i = 0; i < 11; ++i)
    CHECK(r2.positions[std::size_t(i)] == survivors_pos[std::size_t(r2.indices[std::size_t(i)])]);
  CHECK(r2.positions[10] == 299);
}
