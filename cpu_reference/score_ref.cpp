// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! CPU reference of the scoring and pooling stages, written from the formulas in selector.h.

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

template <class T>
void score_last_token(const ScoreArgs<T>& a, int64_t b, float sqrt_d) {
  const int64_t H = a.q.extents[2], D = a.q.extents[3], G = H / a.k.num_heads, L = a.lengths[b];
  const auto q = widen_queries(a.q, b);
  for (int64_t j = 0; j < L; ++j) {
    float acc = 0.0f;
    for (int64_t h = 0; h < H; ++h) {
      const float logit = num::dot(q[std::size_t(h)].data(), a.k.token(b, j, h / G), int(D));
      acc = num::add(acc, a.method == Method::kPromptDistill ? num::div(logit, sqrt_d) : logit);
    }
    a.scores(b, 0, j) = a.method == Method::kPromptDistill ? num::div(acc, float(H)) : acc;
  }
}

//! SnapKV / H2O: accumulated softmax attention of the query rows, per query head.
template <class T>
void score_softmax_columns(const ScoreArgs<T>& a, int64_t b, float sqrt_d) {
  const int64_t rows = a.q.extents[1], H = a.q.extents[2], D = a.q.extents[3];
  const int64_t G = H / a.k.num_heads, L = a.lengths[b];
  const auto q = widen_queries(a.q, b);
  std::vector<float> head(static_cast<std::size_t>(L)), z(static_cast<std::size_t>(L));
  std::vector<float> group_acc;
  if (a.grouping == HeadGrouping::kPerKvGroup) group_acc.assign(std::size_t(L), 0.0f);
  for (int64_t h = 0; h < H; ++h) {
    std::fill(head.begin(), head.end(), 0.0f);
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t pos = a.method == Method::kSnapKV ? L - rows + i : i;
      if (pos < 0 || pos >= L) continue;
      const float* qi = q[std::size_t(i * H + h)].data();
      for (int64_t j = 0; j <= pos; ++j)
        z[std::size_t(j)] = num::div(num::dot(qi, a.k.token(b, j, h / G), int(D)), sqrt_d);
      const float m = num::canonical_max(pos + 1, [&](int64_t j) { return z[std::size_t(j)]; });
      const float l = num::canonical_sum(pos + 1, [&](int64_t j) { return num::exp_f32(num::sub(z[std::size_t(j)], m)); });
      for (int64_t j = 0; j <= pos; ++j)
        head[std::size_t(j)] = num::add(head[std::size_t(j)], num::div(num::exp_f32(num::sub(z[std::size_t(j)], m)), l));
    }
    if (a.grouping == HeadGrouping::kPerQueryHead) {
      for (int64_t j = 0; j < L; ++j) a.scores(b, h, j) = head[std::size_t(j)];
    } else {
      for (int64_t j = 0; j < L; ++j) group_acc[std::size_t(j)] = num::add(group_acc[std::size_t(j)], head[std::size_t(j)]);
      if (h % G == G - 1) {
        for (int64_t j = 0; j < L; ++j) {
          a.scores(b, h / G, j) = num::div(group_acc[std::size_t(j)], float(G));
          group_acc[std::size_t(j)] = 0.0f;
        }
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
        score_last_token(a, b, sqrt_d);
      else
        score_softmax_columns(a, b, sqrt_d);
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "reference scoring ran out of host memory");
  }
  return Status::ok();
}

Status Pool::can_implement(const PoolArgs& a) noexcept { return detail::check_pool(a); }
std::size_t Pool::workspace_size(const PoolArgs&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
Status Pool::run(const PoolArgs& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t B = a.in.extents[0], R = a.in.extents[1];
  DeviceStatusWord w{};
  for (int64_t b = 0; b < B; ++b) detail::pool_request_ok(a, b, &w);
  if (w.code != 0) return detail::status_from_word(w);
  const int64_t radius = a.kernel / 2;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = a.lengths[b];
    const int64_t n = a.mode == PoolMode::kNone ? 0 : std::max<int64_t>(0, L - a.exclude_tail);
    const int64_t zero_from = L - a.zero_tail;
    for (int64_t r = 0; r < R; ++r) {
      auto x = [&](int64_t j) { return j < zero_from ? a.in(b, r, j) : 0.0f; };
      for (int64_t j = 0; j < n; ++j) {
        float acc = a.mode == PoolMode::kAvg ? 0.0f : -num::kInfinity;
        for (int64_t t = -radius; t <= radius; ++t) {
          const int64_t jj = j + t;
          const bool inside = jj >= 0 && jj < n;
          if (a.mode == PoolMode::kAvg)
            acc = num::add(acc, inside ? x(jj) : 0.0f);
          else if (inside)
            acc = num::max_nan(acc, x(jj));
        }
        a.out(b, r, j) = a.mode == PoolMode::kAvg ? num::div(acc, float(a.kernel)) : acc;
      }
      for (int64_t j = n; j < L; ++j) a.out(b, r, j) = a.in(b, r, j);
    }
  }
  return Status::ok();
}

template struct Score<float>;
template struct Score<f16>;
template struct Score<bf16>;

}  // namespace ref
}  // namespace promptdistill
