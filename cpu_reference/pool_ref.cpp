// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! CPU reference of the pooling of score rows (Pool) and of the sums of row groups (SumRows),
//! written from the formulas in selector.h.

#include <algorithm>

#include "cpu_reference/eigen_views.h"
#include "promptdistill/detail/selector_checks.h"

namespace promptdistill {
namespace ref {

using detail::DeviceStatusWord;

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
        // Only the taps inside [0, n): a padding tap adds +0 to a sum that starts at +0 and so
        // is never -0, which leaves its bits unchanged; skipping them keeps a huge kernel (up to
        // 2^31 - 1) from costing its width per position.
        float acc = a.mode == PoolMode::kAvg ? 0.0f : -num::kInfinity;
        for (int64_t jj = std::max<int64_t>(0, j - radius), last = std::min(n - 1, j + radius);
             jj <= last; ++jj)
          acc = a.mode == PoolMode::kAvg ? num::add(acc, x(jj)) : num::max_nan(acc, x(jj));
        a.out(b, r, j) = a.mode == PoolMode::kAvg ? num::div(acc, float(a.kernel)) : acc;
      }
      for (int64_t j = n; j < L; ++j) a.out(b, r, j) = a.in(b, r, j);
    }
  }
  return Status::ok();
}

Status SumRows::can_implement(const SumRowsArgs& a) noexcept { return detail::check_sum_rows(a); }
std::size_t SumRows::workspace_size(const SumRowsArgs&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
Status SumRows::run(const SumRowsArgs& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t B = a.in.extents[0], R = a.out.extents[1];
  DeviceStatusWord w{};
  for (int64_t b = 0; b < B; ++b) detail::sum_rows_request_ok(a, b, &w);
  if (w.code != 0) return detail::status_from_word(w);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < a.lengths[b]; ++j) {
        float acc = 0.0f;
        for (int64_t t = 0; t < a.group; ++t) acc = num::add(acc, a.in(b, r * a.group + t, j));
        a.out(b, r, j) = acc;
      }
  return Status::ok();
}

}  // namespace ref
}  // namespace promptdistill
