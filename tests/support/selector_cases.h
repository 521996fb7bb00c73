// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Seeded scoring problems shared by the reference and CUDA tests: q ([B, rows, H, D], optionally
//! with padded, strided heads) and a logical K ([B, N, H_kv, D]) to be laid out in any layout.

#include <string>
#include <vector>

#include "promptdistill/selector.h"
#include "support/generators.h"
#include "support/kv_layouts.h"

namespace pdtest {

template <class T>
struct ScoreCase {
  promptdistill::Method method = promptdistill::Method::kPromptDistill;
  promptdistill::HeadGrouping grouping = promptdistill::HeadGrouping::kPerKvGroup;
  int64_t B = 1, H = 1, Hkv = 1, D = 64, rows = 1, N = 1;
  int64_t head_pitch = 64;  //!< elements between q heads (> D for a strided view)
  std::vector<int32_t> lengths;
  std::vector<T> q;          //!< [B, rows, H, head_pitch]
  std::vector<T> k_logical;  //!< [B, N, H_kv, D]

  int64_t score_rows() const { return promptdistill::score_rows(method, grouping, H, Hkv); }
  promptdistill::TensorView<const T, 4> q_view(const T* base) const {
    return promptdistill::make_strided_view(base, {B, rows, H, D},
                                            {rows * H * head_pitch, H * head_pitch, head_pitch, 1});
  }
  std::string describe() const {
    return std::string(promptdistill::to_string(method)) + "/" +
           promptdistill::to_string(grouping) + " B=" + std::to_string(B) +
           " H=" + std::to_string(H) + " Hkv=" + std::to_string(Hkv) + " D=" + std::to_string(D) +
           " rows=" + std::to_string(rows) + " N=" + std::to_string(N) +
           " pitch=" + std::to_string(head_pitch) +
           " L0=" + std::to_string(lengths.empty() ? 0 : lengths[0]);
  }
};

//! A case with the given lengths; rows = 1 (PD/GF), `window` (SnapKV, FastKV) or N (H2O).
template <class T>
ScoreCase<T> make_score_case(promptdistill::Method method, promptdistill::HeadGrouping grouping,
                             std::vector<int32_t> lengths, int64_t H, int64_t Hkv, int64_t D,
                             int64_t window, Fill fill, uint64_t seed, bool strided_q = false) {
  ScoreCase<T> c;
  c.method = method;
  c.grouping = grouping;
  c.B = int64_t(lengths.size());
  c.H = H;
  c.Hkv = Hkv;
  c.D = D;
  c.lengths = lengths;
  for (int32_t L : lengths) c.N = std::max<int64_t>(c.N, L);
  const bool windowed =
      method == promptdistill::Method::kSnapKV || method == promptdistill::Method::kFastKV;
  c.rows = windowed ? window : method == promptdistill::Method::kH2O ? c.N : 1;
  c.head_pitch = strided_q ? D + 8 : D;
  // Scale keeps logits in a range where softmax is not saturated.
  const float scale = fill == Fill::kSmallInt ? 1.0f : 0.5f;
  c.q = generate<T>(std::size_t(c.B * c.rows * H * c.head_pitch), fill, mix(seed, 1), scale);
  c.k_logical = generate<T>(std::size_t(c.B * c.N * Hkv * D), fill, mix(seed, 2), scale);
  return c;
}

//! The batched top-k case of the CUDA test at large n: 3 requests x 4 rows, ragged lengths
//! (128K + 7, 4097, 1), tie-free and 7-value rows, a window of 32 kept as forced positions and
//! per-request budgets that include it (budget = window + k, so every k is valid: 4096, 1000, 5).
struct LargeTopKCase {
  static constexpr int64_t kB = 3, kRows = 4, kN = 131072 + 7;
  static constexpr int32_t kWindow = 32;
  std::vector<int32_t> lengths = {int32_t(kN), 4097, 1};
  std::vector<int32_t> budgets = {kWindow + 4096, kWindow + 1000, kWindow + 5};
  std::vector<float> scores;  //!< [B, rows, N]

  explicit LargeTopKCase(uint64_t seed) : scores(std::size_t(kB * kRows * kN)) {
    for (int64_t row = 0; row < kB * kRows; ++row) {
      const auto part = tie_scores(std::size_t(kN), row % 2 ? 7 : 0, mix(seed, uint64_t(row)));
      std::copy(part.begin(), part.end(), scores.begin() + row * kN);
    }
  }
  //! The arguments over `scores`, `lengths`, `budgets` and outputs where the backend runs.
  static promptdistill::TopKArgs args(const float* scores, const int32_t* lengths,
                                      const int32_t* budgets, int32_t* indices, int32_t* counts) {
    promptdistill::TopKArgs a;
    a.scores = promptdistill::make_view(scores, kB, kRows, kN);
    a.lengths = lengths;
    a.k_per_request = budgets;
    a.k_offset = kWindow;
    a.keep_last = kWindow;
    a.indices = promptdistill::make_view(indices, kB, kRows, kN);
    a.counts = promptdistill::make_view(counts, kB, kRows);
    return a;
  }
};

}  // namespace pdtest
