// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! CPU reference of the deterministic top-k. It ranks with a comparison sort on
//! (rank_key descending, index ascending), an algorithm independent of the CUDA radix select.

#include <algorithm>
#include <vector>

#include "promptdistill/detail/selector_checks.h"

namespace promptdistill {
namespace ref {

Status TopK::can_implement(const TopKArgs& a) noexcept { return detail::check_topk(a); }
std::size_t TopK::workspace_size(const TopKArgs&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}

Status TopK::run(const TopKArgs& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t B = a.scores.extents[0], R = a.scores.extents[1];
  detail::DeviceStatusWord w{};
  for (int64_t b = 0; b < B; ++b) detail::topk_request_ok(a, b, &w);
  if (w.code != 0) return detail::status_from_word(w);
  try {
    std::vector<std::pair<uint32_t, int64_t>> cand;
    std::vector<char> keep;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t L = a.lengths[b];
      int64_t k = 0;
      detail::topk_k_of(a, b, &k, &w);
      const detail::TopKRow row = detail::topk_row(L, k, a.keep_first, a.keep_last);
      for (int64_t r = 0; r < R; ++r) {
        keep.assign(std::size_t(L), 0);
        for (int64_t j = 0; j < row.first; ++j) keep[std::size_t(j)] = 1;
        for (int64_t j = L - row.last; j < L; ++j) keep[std::size_t(j)] = 1;
        cand.clear();
        for (int64_t j = row.first; j < L - row.last; ++j)
          cand.emplace_back(detail::rank_key(a.scores(b, r, j)), j);
        auto better = [](const std::pair<uint32_t, int64_t>& x,
                         const std::pair<uint32_t, int64_t>& y) {
          return x.first != y.first ? x.first > y.first : x.second < y.second;
        };
        std::partial_sort(cand.begin(), cand.begin() + row.chosen, cand.end(), better);
        for (int64_t c = 0; c < row.chosen; ++c) keep[std::size_t(cand[std::size_t(c)].second)] = 1;
        int64_t out = 0;
        for (int64_t j = 0; j < L; ++j)
          if (keep[std::size_t(j)]) a.indices(b, r, out++) = int32_t(j);
        a.counts(b, r) = int32_t(out);
      }
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "reference top-k ran out of host memory");
  }
  return Status::ok();
}

}  // namespace ref
}  // namespace promptdistill
