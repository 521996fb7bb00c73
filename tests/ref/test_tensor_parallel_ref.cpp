// SPDX-License-Identifier: Apache-2.0
// Tensor parallelism simulated in one process on the CPU reference: R ranks of H/R query heads
// (H / H_kv = 32/8 and 64/8, R in {1, 2, 4, 8}, plus R = 16 with replicated KV heads) score their
// own heads with ScorePartial, the partials are added in rank order (the all-reduce), and every
// rank's FinishSelect is compared with the unsharded Select: bit for bit on integer-valued data
// and for R = 1 (Tier B), within the bound of selector.h / docs/algorithms.md §9 on random data.
// SnapKV/H2O: a rank's own Select gives the unsharded rows of its heads bit for bit (Tier B).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <iterator>
#include <tuple>

#include "promptdistill/promptdistill.h"
#include "support/compare.h"
#include "support/ref_select.h"
#include "support/selector_cases.h"
#include "support/tensor_parallel.h"

using namespace promptdistill;
using pdtest::Fill;
using pdtest::Layout;

namespace {

using Selected = pdtest::SelectRun<float>;

//! The unsharded selection (Select on every head), which must succeed.
template <class T>
pdtest::SelectRun<T> unsharded(const pdtest::ScoreCase<T>& c, const MethodConfig& cfg) {
  pdtest::SelectRun<T> s = pdtest::run_select(c, cfg);
  REQUIRE_MESSAGE(s.status.is_ok(), std::string(s.status.message()));
  return s;
}

//! Rank `shard`'s partial scores [B, 1, N] (zeros past each length).
template <class T>
std::vector<float> partial_of(const pdtest::ScoreCase<T>& c, Method method,
                              const pdtest::RankShard& shard) {
  auto kv = pdtest::make_kv<T>(Layout::kBSHD, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 1);
  std::vector<float> partial(std::size_t(c.B * c.N), 0.0f);
  ScorePartialArgs<T> a;
  a.method = method;
  a.q = pdtest::shard_q(c.q_view(c.q.data()), shard);
  a.k = pdtest::shard_k(KvCacheView<const T>(kv.view()), shard);
  a.lengths = c.lengths.data();
  a.head_offset = shard.q_first;
  a.total_heads = c.H;
  a.partial = make_view(partial.data(), c.B, 1, c.N);
  HostWorkspace ws;
  REQUIRE(ws.reserve(ref::ScorePartial<T>::workspace_size(a)).is_ok());
  const Status st = ref::ScorePartial<T>::run(a, ws.workspace());
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  return partial;
}

//! FinishSelect over `summed`; `extra` widens final_scores to [B, 1, N + extra] (what
//! check_finish_select accepts), its extra columns starting at pdtest::kUnwritten.
Selected finish(const std::vector<float>& summed, const std::vector<int32_t>& lengths, int64_t N,
                int64_t total_heads, const MethodConfig& cfg, int64_t extra = 0) {
  const int64_t B = int64_t(lengths.size());
  Selected s;
  s.indices.assign(std::size_t(B * N), -1);
  s.counts.assign(std::size_t(B), -1);
  s.positions.assign(std::size_t(B * N), -1);
  s.final_scores.assign(std::size_t(B * (N + extra)), 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = N; j < N + extra; ++j)
      s.final_scores[std::size_t(b * (N + extra) + j)] = pdtest::kUnwritten;
  FinishSelectArgs a;
  a.config = cfg;
  a.summed = make_view(summed.data(), B, 1, N);
  a.total_heads = total_heads;
  a.lengths = lengths.data();
  a.indices = make_view(s.indices.data(), B, 1, N);
  a.counts = make_view(s.counts.data(), B, 1);
  a.positions = make_view(s.positions.data(), B, 1, N);
  a.final_scores = make_view(s.final_scores.data(), B, 1, N + extra);
  HostWorkspace ws;
  REQUIRE(ws.reserve(ref::FinishSelect::workspace_size(a)).is_ok());
  const Status st = ref::FinishSelect::run(a, ws.workspace());
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  return s;
}

//! Every rank's partials, their sum in rank order (the simulated all-reduce), and the selection
//! each rank finishes; the ranks' selections must be identical (they finish the same bits).
template <class T>
Selected sharded(const pdtest::ScoreCase<T>& c, const MethodConfig& cfg, int64_t ranks) {
  std::vector<float> summed;
  for (int64_t r = 0; r < ranks; ++r) {
    const auto partial = partial_of(c, cfg.method, pdtest::rank_shard(c.H, c.Hkv, ranks, r));
    if (r == 0) {
      summed = partial;
      continue;
    }
    for (std::size_t i = 0; i < summed.size(); ++i) summed[i] = num::add(summed[i], partial[i]);
  }
  const Selected first = finish(summed, c.lengths, c.N, c.H, cfg);
  for (int64_t r = 1; r < ranks; ++r) {
    const Selected again = finish(summed, c.lengths, c.N, c.H, cfg);
    CAPTURE(r);
    CHECK(again.indices == first.indices);
    CHECK(pdtest::bitwise_equal(again.final_scores, first.final_scores));
  }
  return first;
}

MethodConfig config_of(Method method, int64_t budget, PoolMode pool) {
  MethodConfig cfg;
  cfg.method = method;
  cfg.budget = budget;
  cfg.pool = pool;
  return cfg;
}

//! delta[b, j] of docs/algorithms.md §9: 2 gamma(H + K) A[j], A the pool over the taps it reads of
//! (1/H) sum_h |z_h| (GemFilter: no 1/H), z_h the head terms computed exactly as the library does.
template <class T>
std::vector<double> score_bound(const pdtest::ScoreCase<T>& c, const MethodConfig& cfg) {
  const float sqrt_d = num::sqrt(float(c.D));
  const int64_t G = c.H / c.Hkv;
  const bool pd = cfg.method == Method::kPromptDistill;
  const int64_t K = cfg.pool == PoolMode::kNone ? 1 : cfg.pool_kernel;
  const double u = std::ldexp(1.0, -24), m = double(c.H + K), gamma = m * u / (1.0 - m * u);
  std::vector<double> bound(std::size_t(c.B * c.N), 0.0);
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t L = c.lengths[std::size_t(b)];
    std::vector<double> magnitude(std::size_t(L), 0.0);
    for (int64_t j = 0; j < L; ++j) {
      for (int64_t h = 0; h < c.H; ++h) {
        const T* q = &c.q[std::size_t((b * c.H + h) * c.head_pitch)];
        const float dot =
            num::dot(q, &c.k_logical[std::size_t(((b * c.N + j) * c.Hkv + h / G) * c.D)], int(c.D));
        magnitude[std::size_t(j)] += std::fabs(double(pd ? num::div(dot, sqrt_d) : dot));
      }
      if (pd) magnitude[std::size_t(j)] /= double(c.H);
    }
    const int64_t zero_from = pd ? L - 1 : L, radius = K / 2;
    for (int64_t j = 0; j < L; ++j) {
      double a = cfg.pool == PoolMode::kNone ? magnitude[std::size_t(j)] : 0.0;
      for (int64_t t = -radius; cfg.pool != PoolMode::kNone && t <= radius; ++t) {
        const int64_t jj = j + t;
        const double x = jj >= 0 && jj < zero_from ? magnitude[std::size_t(jj)] : 0.0;
        a = cfg.pool == PoolMode::kAvg ? a + x / double(K) : std::max(a, x);
      }
      bound[std::size_t(b * c.N + j)] = 2.0 * gamma * a;
    }
  }
  return bound;
}

}  // namespace

TEST_CASE("tensor parallel/ref: R = 1 is Select itself, on random data (Tier B)") {
  for (Method method : {Method::kPromptDistill, Method::kGemFilter}) {
    auto c = pdtest::make_score_case<float>(method, HeadGrouping::kPerKvGroup, {200, 77, 1}, 32, 8,
                                            128, 0, Fill::kNormal,
                                            pdtest::mix(pdtest::seed(), 1, uint64_t(method)));
    const MethodConfig cfg = config_of(method, 24, PoolMode::kAvg);
    CAPTURE(c.describe());
    const auto want = unsharded(c, cfg), got = sharded(c, cfg, 1);
    pdtest::check_same_selection(got, want);
  }
}

TEST_CASE(
    "tensor parallel/ref: FinishSelect takes a final_scores wider than N, as check_finish_select "
    "does") {
  // The same rule as Select: the first N columns hold the ranked scores, the rest stay untouched.
  for (Method method : {Method::kPromptDistill, Method::kGemFilter}) {
    const uint64_t seed = pdtest::mix(pdtest::seed(), 9, uint64_t(method));
    auto c = pdtest::make_score_case<float>(method, HeadGrouping::kPerKvGroup, {90, 41}, 8, 2, 64,
                                            0, Fill::kNormal, seed);
    CAPTURE(c.describe());
    CAPTURE(seed);
    const MethodConfig cfg = config_of(method, 16, PoolMode::kMax);
    const std::vector<float> summed = partial_of(c, method, pdtest::rank_shard(c.H, c.Hkv, 1, 0));
    const Selected narrow = finish(summed, c.lengths, c.N, c.H, cfg);
    const Selected wide = finish(summed, c.lengths, c.N, c.H, cfg, 3);
    CHECK(wide.indices == narrow.indices);
    CHECK(wide.counts == narrow.counts);
    CHECK(wide.positions == narrow.positions);
    for (int64_t b = 0; b < c.B; ++b) {
      const std::vector<float> got(wide.final_scores.begin() + b * (c.N + 3),
                                   wide.final_scores.begin() + b * (c.N + 3) + c.N);
      const std::vector<float> want(narrow.final_scores.begin() + b * c.N,
                                    narrow.final_scores.begin() + (b + 1) * c.N);
      CHECK(pdtest::bitwise_equal(got, want));
      for (int64_t j = c.N; j < c.N + 3; ++j)
        CHECK(wide.final_scores[std::size_t(b * (c.N + 3) + j)] == pdtest::kUnwritten);
    }
  }
}

TEST_CASE_TEMPLATE(
    "tensor parallel/ref: partials in rank order give the unsharded selection on integer data "
    "(Tier B)",
    T, float, bf16) {
  // Integer q and k, D = 64 (sqrt_d = 8) and H a power of two: every head term, partial and sum is
  // exact, so only the order of the sum differs and it cannot change a bit. Small integers tie a
  // lot, which also checks that the ranks break ties as Select does.
  for (auto [H, Hkv] : {std::pair<int64_t, int64_t>{32, 8}, {64, 8}}) {
    for (Method method : {Method::kPromptDistill, Method::kGemFilter}) {
      auto c = pdtest::make_score_case<T>(
          method, HeadGrouping::kPerKvGroup, {300, 257, 1}, H, Hkv, 64, 0, Fill::kSmallInt,
          pdtest::mix(pdtest::seed(), 2, uint64_t(H), uint64_t(method)));
      for (PoolMode pool : {PoolMode::kAvg, PoolMode::kMax, PoolMode::kNone}) {
        const MethodConfig cfg = config_of(method, 40, pool);
        const auto want = unsharded(c, cfg);
        for (int64_t ranks :
             {1, 2, 4, 8, 16}) {  // 16 over 32/8: two query heads a rank, KV heads replicated
          if (H / ranks < 1 || (ranks == 16 && H != 32)) continue;
          CAPTURE(c.describe());
          CAPTURE(to_string(pool));
          CAPTURE(ranks);
          const Selected got = sharded(c, cfg, ranks);
          pdtest::check_same_selection(got, want);
        }
      }
    }
  }
}

TEST_CASE(
    "tensor parallel/ref: on random data the scores stay within the stated bound, selections "
    "differ only in near ties") {
  // D = 128 (sqrt_d inexact) and normal data: the rank-order sums round differently from the
  // head-order ones. Every pooled score must be within delta[j] of the unsharded one, and a token
  // kept by one selection but not the other must score within 2 max(delta) of the unsharded k-th.
  int64_t differing_scores = 0, differing_selections = 0;
  double worst_ratio = 0.0;
  for (auto [H, Hkv] : {std::pair<int64_t, int64_t>{32, 8}, {64, 8}}) {
    for (Method method : {Method::kPromptDistill, Method::kGemFilter}) {
      const uint64_t seed = pdtest::mix(pdtest::seed(), 3, uint64_t(H), uint64_t(method));
      auto c = pdtest::make_score_case<float>(method, HeadGrouping::kPerKvGroup, {512, 300}, H, Hkv,
                                              128, 0, Fill::kNormal, seed);
      const MethodConfig cfg = config_of(method, 64, PoolMode::kAvg);
      const auto want = unsharded(c, cfg);
      const std::vector<double> bound = score_bound(c, cfg);
      for (int64_t ranks : {2, 4, 8}) {
        CAPTURE(c.describe());
        CAPTURE(ranks);
        const Selected got = sharded(c, cfg, ranks);
        for (int64_t b = 0; b < c.B; ++b) {
          const int64_t L = c.lengths[std::size_t(b)];
          double max_bound = 0.0;
          for (int64_t j = 0; j < L; ++j) {
            const std::size_t i = std::size_t(b * c.N + j);
            const double diff =
                std::fabs(double(got.final_scores[i]) - double(want.final_scores[i]));
            CAPTURE(j);
            REQUIRE(diff <= bound[i]);
            differing_scores += diff > 0;
            if (bound[i] > 0) worst_ratio = std::max(worst_ratio, diff / bound[i]);
            max_bound = std::max(max_bound, bound[i]);
          }
          // The unsharded k-th best candidate score (PromptDistill: the last token is forced).
          const int64_t candidates = method == Method::kPromptDistill ? L - 1 : L;
          std::vector<float> ranked(want.final_scores.begin() + b * c.N,
                                    want.final_scores.begin() + b * c.N + candidates);
          const int64_t k = std::min<int64_t>(cfg.budget, candidates);
          std::nth_element(ranked.begin(), ranked.begin() + (k - 1), ranked.end(),
                           std::greater<float>());
          const double kth = ranked[std::size_t(k - 1)];
          const int32_t n = want.counts[std::size_t(b)];
          REQUIRE(got.counts[std::size_t(b)] == n);
          std::vector<int32_t> a(want.indices.begin() + b * c.N,
                                 want.indices.begin() + b * c.N + n),
              g(got.indices.begin() + b * c.N, got.indices.begin() + b * c.N + n), only;
          std::set_symmetric_difference(a.begin(), a.end(), g.begin(), g.end(),
                                        std::back_inserter(only));
          differing_selections += !only.empty();
          for (int32_t j : only) {
            CAPTURE(j);
            CHECK(std::fabs(double(want.final_scores[std::size_t(b * c.N + j)]) - kth) <=
                  2.0 * max_bound);
          }
        }
      }
    }
  }
  MESSAGE("pooled scores that differ from the unsharded ones: "
          << differing_scores << ", worst |diff| / bound " << worst_ratio
          << ", selections that differ: " << differing_selections);
  CHECK(differing_scores >
        0);  // the case exercises rounding; otherwise it would prove nothing beyond the exact test
}

TEST_CASE(
    "tensor parallel/ref: SnapKV and H2O per KV group and per head: a rank's Select is the "
    "unsharded rows of its heads (Tier B)") {
  for (auto [H, Hkv] : {std::pair<int64_t, int64_t>{32, 8}, {64, 8}}) {
    for (Method method : {Method::kSnapKV, Method::kH2O}) {
      for (HeadGrouping grouping : {HeadGrouping::kPerKvGroup, HeadGrouping::kPerQueryHead}) {
        const uint64_t seed =
            pdtest::mix(pdtest::seed(), 4, uint64_t(H), uint64_t(method), uint64_t(grouping));
        auto c = pdtest::make_score_case<float>(method, grouping, {64, 45}, H, Hkv, 64, 8,
                                                Fill::kNormal, seed);
        MethodConfig cfg = config_of(method, 40, PoolMode::kAvg);
        cfg.window = 8;
        cfg.grouping = grouping;
        const int64_t rows = score_rows(method, grouping, H, Hkv);
        const auto want = unsharded(c, cfg);
        for (int64_t ranks : {1, 2, 4, 8}) {
          CAPTURE(c.describe());
          CAPTURE(ranks);
          for (int64_t r = 0; r < ranks; ++r) {
            const pdtest::RankShard shard = pdtest::rank_shard(H, Hkv, ranks, r);
            CAPTURE(shard.describe());
            // The rank's own problem: its heads only, as its engine holds them.
            pdtest::ScoreCase<float> mine = c;
            mine.H = shard.q_count;
            mine.Hkv = shard.kv_count;
            mine.q.clear();
            mine.k_logical.clear();
            for (int64_t i = 0; i < c.B * c.rows; ++i)
              mine.q.insert(mine.q.end(), c.q.begin() + (i * H + shard.q_first) * c.D,
                            c.q.begin() + (i * H + shard.q_first + shard.q_count) * c.D);
            for (int64_t i = 0; i < c.B * c.N; ++i)
              mine.k_logical.insert(
                  mine.k_logical.end(), c.k_logical.begin() + (i * Hkv + shard.kv_first) * c.D,
                  c.k_logical.begin() + (i * Hkv + shard.kv_first + shard.kv_count) * c.D);
            const auto got = unsharded(mine, cfg);
            const int64_t my_rows = score_rows(method, grouping, mine.H, mine.Hkv);
            const int64_t first_row =
                grouping == HeadGrouping::kPerKvGroup ? shard.kv_first : shard.q_first;
            for (int64_t b = 0; b < c.B; ++b) {
              for (int64_t row = 0; row < my_rows; ++row) {
                const int64_t at = (b * rows + first_row + row), mine_at = b * my_rows + row;
                CHECK(got.counts[std::size_t(mine_at)] == want.counts[std::size_t(at)]);
                CHECK(std::equal(got.indices.begin() + mine_at * c.N,
                                 got.indices.begin() + (mine_at + 1) * c.N,
                                 want.indices.begin() + at * c.N));
                const std::vector<float> a(got.final_scores.begin() + mine_at * c.N,
                                           got.final_scores.begin() + (mine_at + 1) * c.N),
                    w(want.final_scores.begin() + at * c.N,
                      want.final_scores.begin() + (at + 1) * c.N);
                CHECK(pdtest::bitwise_equal(a, w));
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("tensor parallel/ref: bad arguments give a clear Status and write nothing") {
  auto c =
      pdtest::make_score_case<float>(Method::kPromptDistill, HeadGrouping::kPerKvGroup, {40}, 8, 2,
                                     64, 0, Fill::kNormal, pdtest::mix(pdtest::seed(), 5));
  auto kv = pdtest::make_kv<float>(Layout::kBSHD, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 1);
  const pdtest::RankShard shard = pdtest::rank_shard(8, 2, 2, 1);
  std::vector<float> partial(std::size_t(c.N), -7.0f);
  auto partial_args = [&] {
    ScorePartialArgs<float> a;
    a.q = pdtest::shard_q(c.q_view(c.q.data()), shard);
    a.k = pdtest::shard_k(KvCacheView<const float>(kv.view()), shard);
    a.lengths = c.lengths.data();
    a.head_offset = 4;
    a.total_heads = 8;
    a.partial = make_view(partial.data(), 1, 1, c.N);
    return a;
  };
  HostWorkspace ws;
  REQUIRE(ws.reserve(1 << 16).is_ok());
  REQUIRE(ref::ScorePartial<float>::run(partial_args(), ws.workspace()).is_ok());
  std::fill(partial.begin(), partial.end(), -7.0f);
  struct Case {
    const char* what;
    std::function<void(ScorePartialArgs<float>&)> edit;
    StatusCode code;
    const char* words;
  };
  const int32_t too_long[] = {int32_t(c.N + 1)};
  const std::vector<Case> cases = {
      {"SnapKV needs no partial scores", [](auto& a) { a.method = Method::kSnapKV; },
       StatusCode::kUnsupported, "Select on the rank's own heads"},
      {"the rank's head count as total_heads", [](auto& a) { a.total_heads = 4 - 1; },
       StatusCode::kInvalidArgument, "not the rank's"},
      {"total_heads not a multiple", [](auto& a) { a.total_heads = 10; },
       StatusCode::kInvalidArgument, "equal shards"},
      {"head_offset inside a shard", [](auto& a) { a.head_offset = 2; },
       StatusCode::kInvalidArgument, "rank * 4"},
      {"head_offset past the heads", [](auto& a) { a.head_offset = 8; },
       StatusCode::kInvalidArgument, "inside [0, 8)"},
      {"two partial rows", [&](auto& a) { a.partial = make_view(partial.data(), 1, 2, c.N / 2); },
       StatusCode::kShapeMismatch, "rows"},
      {"a length past the rows", [&](auto& a) { a.lengths = too_long; },
       StatusCode::kCapacityExceeded, "exceeds the capacity"},
  };
  for (const Case& k : cases) {
    CAPTURE(k.what);
    auto a = partial_args();
    k.edit(a);
    const Status s = ref::ScorePartial<float>::run(a, ws.workspace());
    CHECK(s.code() == k.code);
    CHECK_MESSAGE(std::string(s.message()).find(k.words) != std::string::npos,
                  std::string(s.message()));
    CHECK(std::all_of(partial.begin(), partial.end(), [](float x) { return x == -7.0f; }));
  }

  std::vector<float> summed(std::size_t(c.N), 1.0f), scores(std::size_t(c.N), -7.0f);
  std::vector<int32_t> indices(std::size_t(c.N), -7), counts(1, -7);
  auto finish_args = [&] {
    FinishSelectArgs a;
    a.config = config_of(Method::kPromptDistill, 8, PoolMode::kAvg);
    a.summed = make_view(summed.data(), 1, 1, c.N);
    a.total_heads = 8;
    a.lengths = c.lengths.data();
    a.indices = make_view(indices.data(), 1, 1, c.N);
    a.counts = make_view(counts.data(), 1, 1);
    a.final_scores = make_view(scores.data(), 1, 1, c.N);
    return a;
  };
  const int32_t empty[] = {0};
  const std::vector<
      std::tuple<const char*, std::function<void(FinishSelectArgs&)>, StatusCode, const char*>>
      finish_cases = {
          {"H2O finishes nothing",
           [](auto& a) {
             a.config.method = Method::kH2O;
             a.config.budget = 40;
           },
           StatusCode::kUnsupported, "Select on the rank's own heads"},
          {"no head count", [](auto& a) { a.total_heads = 0; }, StatusCode::kInvalidArgument,
           "total_heads"},
          {"two rows", [&](auto& a) { a.summed = make_view(summed.data(), 1, 2, c.N / 2); },
           StatusCode::kShapeMismatch, "[B, 1, N]"},
          {"an even pool kernel", [](auto& a) { a.config.pool_kernel = 4; },
           StatusCode::kInvalidArgument, "odd"},
          {"an empty prompt", [&](auto& a) { a.lengths = empty; }, StatusCode::kInvalidArgument,
           "empty prompt"},
          {"a length past the rows", [&](auto& a) { a.lengths = too_long; },
           StatusCode::kCapacityExceeded, "exceeds the capacity"},
          {"final_scores too short",
           [&](auto& a) { a.final_scores = make_view(scores.data(), 1, 1, c.N - 1); },
           StatusCode::kShapeMismatch, "final_scores"},
      };
  for (const auto& [what, edit, code, words] : finish_cases) {
    CAPTURE(what);
    auto a = finish_args();
    edit(a);
    const Status s = ref::FinishSelect::run(a, ws.workspace());
    CHECK(s.code() == code);
    CHECK_MESSAGE(std::string(s.message()).find(words) != std::string::npos,
                  std::string(s.message()));
    CHECK(std::all_of(indices.begin(), indices.end(), [](int32_t x) { return x == -7; }));
    CHECK(counts[0] == -7);
    CHECK(std::all_of(scores.begin(), scores.end(), [](float x) { return x == -7.0f; }));
  }
}
