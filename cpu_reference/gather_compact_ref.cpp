// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! CPU reference of gather, position remap and in-place KV compaction. The fused selection
//! (Select) and the tensor-parallel finishing stage (FinishSelect) are in select_ref.cpp.

#include <cstring>
#include <vector>

#include "cpu_reference/eigen_views.h"
#include "promptdistill/detail/selector_checks.h"

namespace promptdistill {
namespace ref {

using detail::DeviceStatusWord;

// ---- gather -------------------------------------------------------------------------------------

template <class T>
Status Gather<T>::can_implement(const GatherArgs<T>& a) noexcept {
  return detail::check_gather(a);
}
template <class T>
std::size_t Gather<T>::workspace_size(const GatherArgs<T>&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
template <class T>
Status Gather<T>::run(const GatherArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  DeviceStatusWord w{};
  const int64_t B = a.src.extents[0];
  for (int64_t b = 0; b < B && w.code == 0; ++b) {
    if (!detail::gather_request_ok(a, b, &w)) break;
    for (int64_t r = 0; r < a.indices.extents[1] && w.code == 0; ++r)
      for (int64_t i = 0; i < a.counts(b, r); ++i)
        if (!detail::index_ok(a.indices, b, r, i, a.src.extents[1], false, &w)) break;
  }
  if (w.code != 0) return detail::status_from_word(w);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < a.counts(b, 0); ++i) {
      const int64_t j = a.indices(b, 0, i);
      for (int64_t e = 0; e < a.src.extents[2]; ++e) a.dst(b, i, e) = a.src(b, j, e);
    }
  return Status::ok();
}

// ---- positions ----------------------------------------------------------------------------------

Status RemapPositions::can_implement(const RemapPositionsArgs& a) noexcept {
  return detail::check_remap(a);
}
std::size_t RemapPositions::workspace_size(const RemapPositionsArgs&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
Status RemapPositions::run(const RemapPositionsArgs& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  DeviceStatusWord w{};
  const int64_t B = a.indices.extents[0], R = a.indices.extents[1];
  const bool lookup = a.mode == PositionMode::kOriginal && a.positions_in.data != nullptr;
  const int64_t limit = lookup ? a.positions_in.extents[1] : INT32_MAX;
  // Per request, every row's count first, then its indices (the order DeviceStatusWord keeps).
  const int64_t cap = std::min(a.indices.extents[2], a.positions_out.extents[2]);
  for (int64_t b = 0; b < B && w.code == 0; ++b) {
    for (int64_t r = 0; r < R && w.code == 0; ++r) detail::count_ok(a.counts, b, r, cap, &w);
    if (a.mode == PositionMode::kOriginal)
      for (int64_t r = 0; r < R && w.code == 0; ++r)
        for (int64_t i = 0; i < a.counts(b, r); ++i)
          if (!detail::index_ok(a.indices, b, r, i, limit, false, &w)) break;
  }
  if (w.code != 0) return detail::status_from_word(w);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < a.counts(b, r); ++i) {
        const int32_t j = a.indices(b, r, i);
        a.positions_out(b, r, i) = a.mode == PositionMode::kRenumber ? int32_t(i)
                                   : lookup                          ? a.positions_in(b, j)
                                                                     : j;
      }
  return Status::ok();
}

// ---- KV compaction ------------------------------------------------------------------------------

template <class T>
Status CompactKv<T>::can_implement(const CompactKvArgs<T>& a) noexcept {
  return detail::check_compact(a);
}
template <class T>
std::size_t CompactKv<T>::workspace_size(const CompactKvArgs<T>&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
template <class T>
Status CompactKv<T>::run(const CompactKvArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t B = a.k.batch, R = a.indices.extents[1], H = a.k.num_heads, D = a.k.head_dim;
  DeviceStatusWord w{};
  for (int64_t b = 0; b < B && w.code == 0; ++b) {
    int64_t length = 0;
    if (!detail::compact_request_ok(a, b, &length, &w)) break;
    for (int64_t r = 0; r < R && w.code == 0; ++r)
      for (int64_t i = 0; i < a.counts(b, r); ++i)
        if (!detail::index_ok(a.indices, b, r, i, length, true, &w)) break;
  }
  if (w.code != 0) return detail::status_from_word(w);
  if (a.k.paged()) {  // every page written belongs to one request, once
    try {
      std::vector<unsigned long long> owner(std::size_t(a.k.num_blocks), ~0ull);
      std::vector<int64_t> lengths(static_cast<std::size_t>(B));
      for (int64_t b = 0; b < B; ++b) {
        detail::compact_request_ok(a, b, &lengths[std::size_t(b)], &w);
        detail::claim_pages(a.k, b, lengths[std::size_t(b)], owner.data());
      }
      for (int64_t b = 0; b < B && w.code == 0; ++b)
        detail::check_page_owner(a.k, b, lengths[std::size_t(b)], owner.data(), &w);
    } catch (const std::bad_alloc&) {
      return Status(StatusCode::kOutOfMemory, "compaction: out of host memory for the page check");
    }
    if (w.code != 0) return detail::status_from_word(w);
  }
  for (int64_t b = 0; b < B; ++b) {
    int64_t length = 0;
    detail::compact_request_ok(a, b, &length, &w);
    const int64_t count = a.counts(b, 0);
    // Ascending i is race-free in place: indices are strictly increasing, so idx[i] >= i and
    // slot idx[i] is read before any later step writes it (later steps write slots > i only
    // after reading slots > those).
    for (int64_t h = 0; h < H; ++h) {
      const int64_t r = R == 1 ? 0 : h;
      for (int64_t i = 0; i < count; ++i) {
        const int64_t j = a.indices(b, r, i);
        if (j == i) continue;
        std::memcpy(a.k.token(b, i, h), a.k.token(b, j, h), std::size_t(D) * sizeof(T));
        std::memcpy(a.v.token(b, i, h), a.v.token(b, j, h), std::size_t(D) * sizeof(T));
      }
    }
    a.new_lengths[b] = int32_t(count);
    if (a.freed_pages != nullptr) {
      const int64_t bs = a.k.capacity;
      a.freed_pages[b] = a.k.paged() ? int32_t((length + bs - 1) / bs - (count + bs - 1) / bs) : 0;
    }
  }
  return Status::ok();
}

template struct Gather<float>;
template struct Gather<f16>;
template struct Gather<bf16>;
template struct Gather<int32_t>;
template struct CompactKv<float>;
template struct CompactKv<f16>;
template struct CompactKv<bf16>;

}  // namespace ref
}  // namespace promptdistill
