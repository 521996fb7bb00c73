// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! CPU reference of the scoring stages (Score, ScorePartial), written from the formulas in
//! selector.h. Pooling and the row-group sums are in pool_ref.cpp, top-k in topk_ref.cpp.

#include <algorithm>
#include <vector>

#include "cpu_reference/eigen_views.h"
#include "promptdistill/detail/selector_checks.h"

namespace promptdistill {
namespace ref {
namespace {

using detail::DeviceStatusWord;

//! Queries of request b as f32: [rows][H][D].
template <class T>
std::vector<Eigen::VectorXf> widen_queries(const TensorView<const T, 4>& q, int64_t b) {
  std::vector<Eigen::VectorXf> out;
  out.reserve(std::size_t(q.extents[1] * q.extents[2]));
  for (int64_t i = 0; i < q.extents[1]; ++i)
    for (int64_t h = 0; h < q.extents[2]; ++h) out.push_back(widen_head(q, b, i, h));
  return out;
}

//! PromptDistill / GemFilter: the sum over q's heads of each key's head terms; PromptDistill's
//! mean divides it by the head count unless `partial` (a tensor-parallel rank's partial sum).
//! `accumulate` (a partial sum only): add the sum to what the scores hold (several layers' partials
//! in one buffer).
template <class T>
void score_last_token(const ScoreArgs<T>& a, int64_t b, float sqrt_d, bool partial,
                      bool accumulate = false) {
  const int64_t H = a.q.extents[2], D = a.q.extents[3], G = H / a.k.num_heads, L = a.lengths[b];
  const bool mean = a.method == Method::kPromptDistill;
  const auto q = widen_queries(a.q, b);
  for (int64_t j = 0; j < L; ++j) {
    float acc = 0.0f;
    for (int64_t h = 0; h < H; ++h) {
      const float logit = num::dot(q[std::size_t(h)].data(), a.k.token(b, j, h / G), int(D));
      acc = num::add(acc, mean ? num::div(logit, sqrt_d) : logit);
    }
    a.scores(b, 0, j) = mean && !partial ? num::div(acc, float(H))
                        : accumulate     ? num::add(a.scores(b, 0, j), acc)
                                         : acc;
  }
}

//! Query rows scored together. Their dot products with one key vectorise across the rows while
//! each keeps the sequential order over d of num::dot, so the bits are unchanged; the block's
//! transposed queries (D x kRowBlock floats) stay in L1.
constexpr int64_t kRowBlock = 32;
//! Rows whose probabilities are held at once (kRowChunk x L floats) before they are added to
//! the column sums in row order, the order the spec fixes.
constexpr int64_t kRowChunk = 256;
static_assert(kRowChunk % kRowBlock == 0, "a chunk holds whole row blocks");

//! Softmax probabilities of n <= kRowBlock query rows of one head, starting at row `first`, row r
//! at sequence position pos0 + r: probs[r * L + j] for j <= pos0 + r. `keys` is [L][D] in f32;
//! `qt` is D x kRowBlock floats of scratch (allocated by the caller, outside the parallel region,
//! where a bad_alloc could not be turned into a Status).
void softmax_rows(const std::vector<Eigen::VectorXf>& q, int64_t H, int64_t h, int64_t first,
                  int64_t n, int64_t pos0, const float* keys, int64_t L, int64_t D, float sqrt_d,
                  float* probs, float* qt) {
  for (int64_t r = 0; r < kRowBlock; ++r)
    for (int64_t d = 0; d < D; ++d)
      qt[d * kRowBlock + r] = r < n ? q[std::size_t((first + r) * H + h)][d] : 0.0f;
  for (int64_t j = 0; j < pos0 + n; ++j) {
    float acc[kRowBlock] = {};
    const float* k = keys + j * D;
    for (int64_t d = 0; d < D; ++d) {
      const float* qd = qt + d * kRowBlock;
      for (int64_t r = 0; r < kRowBlock; ++r) acc[r] = num::add(acc[r], num::mul(qd[r], k[d]));
    }
    for (int64_t r = 0; r < n; ++r) probs[r * L + j] = acc[r];
  }
  for (int64_t r = 0; r < n; ++r) {
    float* row = probs + r * L;
    const int64_t len = pos0 + r + 1;
    for (int64_t j = 0; j < len; ++j) row[j] = num::div(row[j], sqrt_d);
    const float m = num::canonical_max(len, [&](int64_t j) { return row[j]; });
    for (int64_t j = 0; j < len; ++j) row[j] = num::exp_f32(num::sub(row[j], m));
    const float l = num::canonical_sum(len, [&](int64_t j) { return row[j]; });
    for (int64_t j = 0; j < len; ++j) row[j] = num::div(row[j], l);
  }
}

//! SnapKV / H2O: accumulated softmax attention of the query rows, per query head. The rows'
//! probabilities are computed in parallel, chunk by chunk, and added to the sums in row order.
template <class T>
void score_softmax_columns(const ScoreArgs<T>& a, int64_t b, float sqrt_d) {
  const int64_t rows = a.q.extents[1], H = a.q.extents[2], D = a.q.extents[3];
  const int64_t Hkv = a.k.num_heads, G = H / Hkv, L = a.lengths[b];
  // Row i sits at position pos0 + i (SnapKV: the last `rows` positions; H2O: 0..rows-1); rows
  // outside [0, L) attend to nothing.
  const int64_t pos0 = a.method == Method::kSnapKV ? L - rows : 0;
  const int64_t first = std::max<int64_t>(0, -pos0), last = std::min<int64_t>(rows, L - pos0);
  const auto q = widen_queries(a.q, b);
  std::vector<float> keys(static_cast<std::size_t>(L * D));
  std::vector<float> sums(static_cast<std::size_t>(H * L), 0.0f);
  const int64_t chunk_rows = std::min(kRowChunk, std::max<int64_t>(last - first, 0));
  std::vector<float> probs(static_cast<std::size_t>(chunk_rows * L));
  std::vector<float> qt(static_cast<std::size_t>((kRowChunk / kRowBlock) * D * kRowBlock));
  for (int64_t kvh = 0; kvh < Hkv; ++kvh) {
    for (int64_t j = 0; j < L; ++j) {
      const T* k = a.k.token(b, j, kvh);
      for (int64_t d = 0; d < D; ++d) keys[std::size_t(j * D + d)] = num::to_f32(k[d]);
    }
    for (int64_t h = kvh * G; h < (kvh + 1) * G; ++h) {
      float* head = &sums[std::size_t(h * L)];
      for (int64_t c0 = first; c0 < last; c0 += kRowChunk) {
        const int64_t nc = std::min(kRowChunk, last - c0);
#pragma omp parallel for schedule(dynamic)
        for (int64_t r0 = 0; r0 < nc; r0 += kRowBlock)
          softmax_rows(q, H, h, c0 + r0, std::min(kRowBlock, nc - r0), pos0 + c0 + r0, keys.data(),
                       L, D, sqrt_d, probs.data() + r0 * L, qt.data() + r0 * D);
        for (int64_t r = 0; r < nc; ++r) {
          const float* p = probs.data() + r * L;
          for (int64_t j = 0, len = pos0 + c0 + r + 1; j < len; ++j)
            head[j] = num::add(head[j], p[j]);
        }
      }
    }
  }
  for (int64_t h = 0; h < H; ++h) {
    const float* head = &sums[std::size_t(h * L)];
    if (a.grouping == HeadGrouping::kPerQueryHead) {
      for (int64_t j = 0; j < L; ++j) a.scores(b, h, j) = head[j];
    } else if (h % G == G - 1) {
      // Group mean: the heads of the group added in head order, then divided by G.
      for (int64_t j = 0; j < L; ++j) {
        float acc = 0.0f;
        for (int64_t g = h - G + 1; g <= h; ++g) acc = num::add(acc, sums[std::size_t(g * L + j)]);
        a.scores(b, h / G, j) = num::div(acc, float(G));
      }
    }
  }
}

}  // namespace

template <class T>
Status Score<T>::can_implement(const ScoreArgs<T>& a) noexcept {
  return detail::check_score(a);
}
template <class T>
std::size_t Score<T>::workspace_size(const ScoreArgs<T>& a) noexcept {
  WorkspacePlanner planner;
  detail::take_status(planner);
  detail::plan_score(a, planner);
  return planner.bytes_needed();
}
template <class T>
Status Score<T>::run(const ScoreArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  DeviceStatusWord w{};
  for (int64_t b = 0; b < a.q.extents[0]; ++b) detail::score_request_ok(a, b, &w);
  if (w.code != 0) return detail::status_from_word(w);
  const float sqrt_d = num::sqrt(float(a.q.extents[3]));
  try {
    for (int64_t b = 0; b < a.q.extents[0]; ++b) {
      if (a.method == Method::kPromptDistill || a.method == Method::kGemFilter)
        score_last_token(a, b, sqrt_d, /*partial=*/false);
      else
        score_softmax_columns(a, b, sqrt_d);
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "reference scoring ran out of host memory");
  }
  return Status::ok();
}

template <class T>
Status ScorePartial<T>::can_implement(const ScorePartialArgs<T>& a) noexcept {
  return detail::check_score_partial(a);
}
template <class T>
std::size_t ScorePartial<T>::workspace_size(const ScorePartialArgs<T>&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
template <class T>
Status ScorePartial<T>::run(const ScorePartialArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const ScoreArgs<T> s = detail::partial_as_score(a);
  DeviceStatusWord w{};
  for (int64_t b = 0; b < a.q.extents[0]; ++b) detail::score_request_ok(s, b, &w);
  if (w.code != 0) return detail::status_from_word(w);
  try {
    for (int64_t b = 0; b < a.q.extents[0]; ++b)
      score_last_token(s, b, num::sqrt(float(a.q.extents[3])), /*partial=*/true, a.accumulate);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "reference scoring ran out of host memory");
  }
  return Status::ok();
}

template struct Score<float>;
template struct Score<f16>;
template struct Score<bf16>;
template struct ScorePartial<float>;
template struct ScorePartial<f16>;
template struct ScorePartial<bf16>;

}  // namespace ref
}  // namespace promptdistill
