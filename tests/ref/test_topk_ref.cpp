// SPDX-License-Identifier: Apache-2.0
// Top-k reference (Tier A) against a brute-force stable sort, over the sizes that break kernels,
// tie-heavy rows, NaNs, forced positions and ragged batches.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "promptdistill/promptdistill.h"
#include "promptdistill/detail/selector_checks.h"
#include "support/compare.h"
#include "support/generators.h"
#include "support/selector_cases.h"

using namespace promptdistill;

namespace {

//! Brute force: stable sort of candidate indices by value descending (NaN last, -0 == +0), so
//! equal values keep ascending index order; then forced + first k, sorted.
std::vector<int32_t> brute_topk(const std::vector<float>& s, int64_t k, int64_t keep_first,
                                int64_t keep_last) {
  const int64_t n = int64_t(s.size());
  const int64_t last = std::min(keep_last, n), first = std::min(keep_first, n - last);
  std::vector<int32_t> cand;
  for (int64_t j = first; j < n - last; ++j) cand.push_back(int32_t(j));
  std::stable_sort(cand.begin(), cand.end(), [&](int32_t a, int32_t b) {
    const float x = s[std::size_t(a)], y = s[std::size_t(b)];
    if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
    return x > y;
  });
  cand.resize(std::size_t(std::min<int64_t>(k, int64_t(cand.size()))));
  for (int64_t j = 0; j < first; ++j) cand.push_back(int32_t(j));
  for (int64_t j = n - last; j < n; ++j) cand.push_back(int32_t(j));
  std::sort(cand.begin(), cand.end());
  return cand;
}

std::vector<int32_t> ref_topk(const std::vector<float>& s, int64_t k, int32_t keep_first,
                              int32_t keep_last) {
  const int64_t n = int64_t(s.size());
  std::vector<int32_t> idx(std::size_t(std::max<int64_t>(n, 1)), -7), counts(1, -7),
      lengths{int32_t(n)};
  TopKArgs a;
  a.scores = make_view<const float>(s.data(), 1, 1, n);
  a.lengths = lengths.data();
  a.k = k;
  a.keep_first = keep_first;
  a.keep_last = keep_last;
  a.indices = make_view(idx.data(), 1, 1, n);
  a.counts = make_view(counts.data(), 1, 1);
  const Status st = ref::TopK::run(a, Workspace{});
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  idx.resize(std::size_t(counts[0]));
  return idx;
}

}  // namespace

TEST_CASE("topk/ref: hand-checked rows") {
  // Ties go to the smaller index; output ascending.
  CHECK(ref_topk({1, 3, 3, 2, 3}, 2, 0, 0) == std::vector<int32_t>{1, 2});
  CHECK(ref_topk({1, 3, 3, 2, 3}, 3, 0, 0) == std::vector<int32_t>{1, 2, 4});
  // NaN ranks below -inf; -0 ties with +0.
  const float nan = std::nanf("");
  CHECK(ref_topk({nan, -INFINITY, 0.5f}, 2, 0, 0) == std::vector<int32_t>{1, 2});
  CHECK(ref_topk({0.0f, -0.0f, -1.0f}, 1, 0, 0) == std::vector<int32_t>{0});
  CHECK(ref_topk({-0.0f, 0.0f, -1.0f}, 1, 0, 0) == std::vector<int32_t>{0});
  // PromptDistill: last forced, k chosen among the rest.
  CHECK(ref_topk({9, 1, 8, 7, 0}, 2, 0, 1) == std::vector<int32_t>{0, 2, 4});
  // k >= candidates keeps all; k = 0 keeps only the forced ones.
  CHECK(ref_topk({1, 2, 3}, 5, 0, 1) == std::vector<int32_t>{0, 1, 2});
  CHECK(ref_topk({1, 2, 3}, 0, 0, 1) == std::vector<int32_t>{2});
  CHECK(ref_topk({1, 2, 3, 4}, 1, 1, 1) == std::vector<int32_t>{0, 2, 3});
  CHECK(ref_topk({}, 3, 0, 1).empty());
}

TEST_CASE("topk/ref: matches a brute-force stable sort over sizes, k, ties, NaNs and forced sets") {
  for (int64_t n : {1, 2, 5, 31, 32, 33, 1023, 1024, 1025, 4097}) {
    for (std::size_t distinct : {std::size_t(0), std::size_t(1), std::size_t(3)}) {
      for (int32_t keep_last : {0, 1, 32}) {
        for (int64_t k : {int64_t(0), int64_t(1), n - 2, n - 1, n, n + 5}) {
          if (k < 0) continue;
          const uint64_t seed =
              pdtest::mix(pdtest::seed(), uint64_t(n), distinct, uint64_t(keep_last), uint64_t(k));
          auto s = pdtest::tie_scores(std::size_t(n), distinct, seed);
          if (n > 3 && distinct == 0) s[std::size_t(n / 3)] = std::nanf("");
          CAPTURE(n);
          CAPTURE(distinct);
          CAPTURE(keep_last);
          CAPTURE(k);
          CAPTURE(seed);
          CHECK(ref_topk(s, k, 0, keep_last) == brute_topk(s, k, 0, keep_last));
        }
      }
    }
  }
}

TEST_CASE("topk/ref: ragged batch with per-request k, rows per request and k_offset") {
  const int64_t B = 3, R = 2, N = 40;
  std::vector<int32_t> lengths = {40, 7, 1}, kreq = {12, 3, 9};
  std::vector<float> s(std::size_t(B * R * N), 123.0f);
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = float((i * 7919) % 13) - 6.0f;
  std::vector<int32_t> idx(std::size_t(B * R * N), -1), counts(std::size_t(B * R), -1);
  TopKArgs a;
  a.scores = make_view<const float>(s.data(), B, R, N);
  a.lengths = lengths.data();
  a.k_per_request = kreq.data();
  a.k_offset = 2;  // budgets include a 2-token window
  a.keep_last = 2;
  a.indices = make_view(idx.data(), B, R, N);
  a.counts = make_view(counts.data(), B, R);
  REQUIRE(ref::TopK::run(a, Workspace{}).is_ok());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < R; ++r) {
      std::vector<float> row(&s[std::size_t((b * R + r) * N)],
                             &s[std::size_t((b * R + r) * N + lengths[std::size_t(b)])]);
      const auto want = brute_topk(row, kreq[std::size_t(b)] - 2, 0, 2);
      std::vector<int32_t> got(&idx[std::size_t((b * R + r) * N)],
                               &idx[std::size_t((b * R + r) * N + counts[std::size_t(b * R + r)])]);
      CAPTURE(b);
      CAPTURE(r);
      CHECK(got == want);
    }
  // A budget below the window is an error, and nothing is written.
  kreq[1] = 1;
  std::fill(idx.begin(), idx.end(), -5);
  const Status st = ref::TopK::run(a, Workspace{});
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(st.message()).find("below the window") != std::string::npos);
  CHECK(std::all_of(idx.begin(), idx.end(), [](int32_t v) { return v == -5; }));
}

TEST_CASE("topk/ref: the CUDA test's large-n batched case is valid and equals brute force") {
  // The CUDA test compares the device against this reference run, so the case must be one the
  // reference accepts (a budget below the window would fail before any kernel ran).
  using Case = pdtest::LargeTopKCase;
  const Case c(pdtest::seed());
  std::vector<int32_t> idx(std::size_t(Case::kB * Case::kRows * Case::kN), -1),
      counts(std::size_t(Case::kB * Case::kRows), -1);
  const Status st = ref::TopK::run(
      Case::args(c.scores.data(), c.lengths.data(), c.budgets.data(), idx.data(), counts.data()),
      Workspace{});
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  for (int64_t b = 0; b < Case::kB; ++b)
    for (int64_t r = 0; r < Case::kRows; ++r) {
      const std::size_t row = std::size_t(b * Case::kRows + r);
      const auto first = c.scores.begin() + std::ptrdiff_t(row * Case::kN);
      const auto want = brute_topk(std::vector<float>(first, first + c.lengths[std::size_t(b)]),
                                   c.budgets[std::size_t(b)] - Case::kWindow, 0, Case::kWindow);
      const auto got_first = idx.begin() + std::ptrdiff_t(row * Case::kN);
      CAPTURE(b);
      CAPTURE(r);
      CHECK(std::vector<int32_t>(got_first, got_first + counts[row]) == want);
    }
}
