// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core. Checks of the selector operations shared by both backends:
//! the host-side `can_implement` checks (implemented in src/core/selector_checks.cpp) and the
//! checks of per-request data (lengths, k, page tables, selected indices) that the CPU reference
//! runs in loops and the CUDA backend in validation kernels. The planning (workspace plans, top-k
//! geometry, the fused pipeline's stages) is in selector_plan.h.
//!
//! A failed data check fills a `DeviceStatusWord` (detail/status_word.h); `status_from_word()`
//! turns it into the same `Status` (code and message) on both backends.

#include <cstdint>

#include "promptdistill/detail/config.h"
#include "promptdistill/detail/numerics.h"
#include "promptdistill/detail/selector_plan.h"
#include "promptdistill/detail/status_word.h"
#include "promptdistill/selector.h"

namespace promptdistill {
namespace detail {

// ---- per-request checks (host and device)
// ---------------------------------------------------------

//! 0 <= length <= capacity, and length >= 1 when `require_nonempty`.
PD_HOST_DEVICE inline bool check_length(int64_t b, int64_t length, int64_t capacity,
                                        bool require_nonempty, DeviceStatusWord* w) {
  if (length < 0) return record(w, DataCheck::kLengthNegative, b, length, 0), false;
  if (require_nonempty && length == 0) return record(w, DataCheck::kEmptyPrompt, b, 0, 0), false;
  if (length > capacity)
    return record(w, DataCheck::kLengthBeyondCapacity, b, length, capacity), false;
  return true;
}

//! Page-table sanity for request b of a paged view holding `length` tokens: indptr monotone,
//! last_page_len in (0, page] for a non-empty FlashInfer request, and every page that holds one
//! of the first `length` tokens inside [0, num_blocks).
template <class T>
PD_HOST_DEVICE inline bool check_pages(const KvCacheView<T>& v, int64_t b, int64_t length,
                                       DeviceStatusWord* w) {
  if (!v.paged()) return true;
  if (v.layout == KvLayout::kPagedIndptr) {
    if (v.indptr[b + 1] < v.indptr[b])
      return record(w, DataCheck::kBadIndptr, b, v.indptr[b], v.indptr[b + 1]), false;
    // The pages must be entries of `indices`: a negative start or one past its end would read
    // outside it.
    if (v.indptr[b] < 0 || (v.num_indices >= 0 && v.indptr[b + 1] > v.num_indices))
      return record(w, DataCheck::kIndptrOutOfRange, b, v.indptr[b], v.indptr[b + 1]), false;
  }
  const int64_t pages = (length + v.capacity - 1) / v.capacity;
  for (int64_t p = 0; p < pages && p < v.pages_of(b); ++p) {
    const int64_t page = v.page_of(b, p);
    if (page < 0 || page >= v.num_blocks)
      return record(w, DataCheck::kPageOutOfRange, b, page, v.num_blocks), false;
  }
  return true;
}

//! Whether a page is written by one compaction step only: every page holding one of request b's
//! first `length` tokens must belong to b alone, at one position of its table (a page shared with
//! another request, or listed twice, would be moved twice at once). Two passes over every
//! request, after every other check has passed (pages in range), so both backends report the same
//! error: `claim_pages` lowers owner[page] (starting at ~0) to the first claim of it in (request,
//! position) order; `check_page_owner` then records kPageShared for each later claim, and the word
//! keeps the lowest (request, position), the first the CPU's loops meet.
PD_HOST_DEVICE inline uint64_t page_claim(int64_t b, int64_t position) {
  return (uint64_t(b) << 32) | uint64_t(position);
}

template <class T>
PD_HOST_DEVICE inline void claim_pages(const KvCacheView<T>& v, int64_t b, int64_t length,
                                       unsigned long long* owner) {
  if (!v.paged()) return;
  for (int64_t p = 0, pages = (length + v.capacity - 1) / v.capacity; p < pages; ++p) {
    unsigned long long* slot = &owner[v.page_of(b, p)];
#if defined(__CUDA_ARCH__)
    atomicMin(slot, (unsigned long long)page_claim(b, p));
#else
    if (page_claim(b, p) < *slot) *slot = page_claim(b, p);
#endif
  }
}

template <class T>
PD_HOST_DEVICE inline bool check_page_owner(const KvCacheView<T>& v, int64_t b, int64_t length,
                                            const unsigned long long* owner, DeviceStatusWord* w) {
  if (!v.paged()) return true;
  for (int64_t p = 0, pages = (length + v.capacity - 1) / v.capacity; p < pages; ++p) {
    const int64_t page = v.page_of(b, p);
    if (owner[page] != page_claim(b, p))
      return record(w, DataCheck::kPageShared, b, page, int64_t(owner[page] >> 32), p), false;
  }
  return true;
}

//! Tokens a FlashInfer request holds: (pages - 1) * page + last_page_len (0 without pages).
template <class T>
PD_HOST_DEVICE inline bool flashinfer_length(const KvCacheView<T>& v, int64_t b, int64_t* length,
                                             DeviceStatusWord* w) {
  const int64_t pages = int64_t(v.indptr[b + 1]) - v.indptr[b];
  if (pages < 0) return record(w, DataCheck::kBadIndptr, b, v.indptr[b], v.indptr[b + 1]), false;
  if (pages == 0) return *length = 0, true;
  const int64_t last = v.last_page_len[b];
  if (last < 1 || last > v.capacity)
    return record(w, DataCheck::kBadLastPageLen, b, last, v.capacity), false;
  *length = (pages - 1) * v.capacity + last;
  return true;
}

// ---- host-side checks (can_implement)
// -------------------------------------------------------------

template <class T>
Status check_score(const ScoreArgs<T>& a) noexcept;
Status check_pool(const PoolArgs& a) noexcept;
Status check_sum_rows(const SumRowsArgs& a) noexcept;
Status check_topk(const TopKArgs& a) noexcept;
template <class T>
Status check_gather(const GatherArgs<T>& a) noexcept;
Status check_remap(const RemapPositionsArgs& a) noexcept;
template <class T>
Status check_compact(const CompactKvArgs<T>& a) noexcept;
template <class T>
Status check_select(const SelectArgs<T>& a) noexcept;
template <class T>
Status check_score_partial(const ScorePartialArgs<T>& a) noexcept;
Status check_finish_select(const FinishSelectArgs& a) noexcept;

}  // namespace detail
}  // namespace promptdistill

namespace promptdistill {
namespace detail {

// ---- per-request validation, shared by ref:: (loops) and cuda:: (validation kernels) -----------

//! Score: 1 <= L <= min(score row length, K capacity, [H2O] query rows); pages in range.
template <class T>
PD_HOST_DEVICE inline bool score_request_ok(const ScoreArgs<T>& a, int64_t b, DeviceStatusWord* w) {
  const int64_t L = a.lengths[b];
  int64_t cap = a.scores.extents[2];
  const int64_t kv_cap = a.k.max_tokens(b);
  if (kv_cap < cap) cap = kv_cap;
  if (a.method == Method::kH2O && a.q.extents[1] < cap) cap = a.q.extents[1];
  return check_length(b, L, cap, true, w) && check_pages(a.k, b, L, w);
}

PD_HOST_DEVICE inline bool pool_request_ok(const PoolArgs& a, int64_t b, DeviceStatusWord* w) {
  return check_length(b, a.lengths[b], a.in.extents[2], false, w);
}

PD_HOST_DEVICE inline bool sum_rows_request_ok(const SumRowsArgs& a, int64_t b,
                                               DeviceStatusWord* w) {
  return check_length(b, a.lengths[b], a.in.extents[2], false, w);
}

//! The k of request b (per-request k minus the offset, or the scalar k); false if negative.
PD_HOST_DEVICE inline bool topk_k_of(const TopKArgs& a, int64_t b, int64_t* k,
                                     DeviceStatusWord* w) {
  if (a.k_per_request == nullptr) return *k = a.k, true;
  const int64_t given = a.k_per_request[b];
  *k = given - a.k_offset;
  if (*k >= 0) return true;
  if (a.k_offset > 0) return record(w, DataCheck::kBudgetBelowWindow, b, given, a.k_offset), false;
  return record(w, DataCheck::kNegativeK, b, given, 0), false;
}

PD_HOST_DEVICE inline bool topk_request_ok(const TopKArgs& a, int64_t b, DeviceStatusWord* w) {
  const int64_t L = a.lengths[b];
  if (!check_length(b, L, a.scores.extents[2], false, w)) return false;
  int64_t k = 0;
  if (!topk_k_of(a, b, &k, w)) return false;
  const int64_t count = topk_row(L, k, a.keep_first, a.keep_last).count();
  if (count > a.indices.extents[2])
    return record(w, DataCheck::kCountBeyondCapacity, b, count, a.indices.extents[2]), false;
  return true;
}

//! Count of row `row` in [0, capacity].
PD_HOST_DEVICE inline bool count_ok(const TensorView<const int32_t, 2>& counts, int64_t b,
                                    int64_t row, int64_t capacity, DeviceStatusWord* w) {
  const int64_t count = counts(b, row);
  if (count < 0) return record(w, DataCheck::kLengthNegative, b, count, 0), false;
  if (count > capacity)
    return record(w, DataCheck::kCountBeyondCapacity, b, count, capacity), false;
  return true;
}

//! Gather of request b: every row's count within the indices' capacity (every row's indices are
//! validated), and row 0's, the one gathered, also within dst's rows.
template <class T>
PD_HOST_DEVICE inline bool gather_request_ok(const GatherArgs<T>& a, int64_t b,
                                             DeviceStatusWord* w) {
  const int64_t capacity = a.indices.extents[2];
  const int64_t gathered = a.dst.extents[1] < capacity ? a.dst.extents[1] : capacity;
  for (int64_t r = 0; r < a.indices.extents[1]; ++r)
    if (!count_ok(a.counts, b, r, r == 0 ? gathered : capacity, w)) return false;
  return true;
}

//! One selected index: inside [0, length) and, if `strictly_increasing`, above its predecessor.
PD_HOST_DEVICE inline bool index_ok(const TensorView<const int32_t, 3>& idx, int64_t b, int64_t row,
                                    int64_t i, int64_t length, bool strictly_increasing,
                                    DeviceStatusWord* w) {
  const int64_t v = idx(b, row, i);
  const int64_t position = row * idx.extents[2] + i;  // the CPU checks rows, then entries, in order
  if (v < 0 || v >= length)
    return record(w, DataCheck::kIndexOutOfRange, b, v, length, position), false;
  if (strictly_increasing && i > 0 && idx(b, row, i - 1) >= v)
    return record(w, DataCheck::kIndexNotIncreasing, b, i, v, position), false;
  return true;
}

//! Current length of request b in a compaction (seq_lens or the FlashInfer page metadata), with
//! its capacity and page checks; every row's count equal and within the length.
template <class T>
PD_HOST_DEVICE inline bool compact_request_ok(const CompactKvArgs<T>& a, int64_t b, int64_t* length,
                                              DeviceStatusWord* w) {
  if (a.k.layout == KvLayout::kPagedIndptr) {
    if (!flashinfer_length(a.k, b, length, w)) return false;
  } else {
    *length = a.seq_lens[b];
  }
  if (!check_length(b, *length, a.k.max_tokens(b), false, w) || !check_pages(a.k, b, *length, w))
    return false;
  const int64_t rows = a.counts.extents[1];
  if (!count_ok(a.counts, b, 0, *length, w)) return false;
  for (int64_t r = 1; r < rows; ++r)
    if (a.counts(b, r) != a.counts(b, 0))
      return record(w, DataCheck::kCountsDiffer, b, a.counts(b, 0), a.counts(b, r)), false;
  if (a.counts(b, 0) > a.indices.extents[2])
    return record(w, DataCheck::kCountBeyondCapacity, b, a.counts(b, 0), a.indices.extents[2]),
           false;
  return true;
}

//! Kept tokens of request b (its k from the top-k arguments) fit `capacity`.
PD_HOST_DEVICE inline bool kept_fit(const TopKArgs& topk, int64_t b, int64_t L, int64_t capacity,
                                    DeviceStatusWord* w) {
  int64_t k = 0;
  topk_k_of(topk, b, &k, w);
  const int64_t count = topk_row(L, k, topk.keep_first, topk.keep_last).count();
  if (count > capacity)
    return record(w, DataCheck::kCountBeyondCapacity, b, count, capacity), false;
  return true;
}

//! The top-k and positions of request b (prompt length L), as the fused pipeline and the
//! finishing stage run them.
PD_HOST_DEVICE inline bool ranking_request_ok(const TopKArgs& topk, const RemapPositionsArgs& remap,
                                              bool has_positions, int64_t b, int64_t L,
                                              DeviceStatusWord* w) {
  if (!topk_request_ok(topk, b, w)) return false;
  if (has_positions && remap.positions_in.data != nullptr && L > remap.positions_in.extents[1])
    return record(w, DataCheck::kLengthBeyondCapacity, b, L, remap.positions_in.extents[1]), false;
  if (has_positions && remap.positions_out.extents[2] < topk.indices.extents[2])
    return kept_fit(topk, b, L, remap.positions_out.extents[2], w);
  return true;
}

//! Everything the fused pipeline needs of request b, checked before any stage writes.
template <class T>
PD_HOST_DEVICE inline bool select_request_ok(const SelectStages<T>& s, int64_t b,
                                             DeviceStatusWord* w) {
  if (!score_request_ok(s.score, b, w)) return false;
  const int64_t L = s.score.lengths[b];
  if (!ranking_request_ok(s.topk, s.remap, s.has_positions, b, L, w)) return false;
  if (s.has_gather) {
    if (L > s.gather.src.extents[1])
      return record(w, DataCheck::kLengthBeyondCapacity, b, L, s.gather.src.extents[1]), false;
    return kept_fit(s.topk, b, L, s.gather.dst.extents[1], w);
  }
  return true;
}

//! The finishing stage of request b: 1 <= L <= the summed rows' length, then its ranking.
PD_HOST_DEVICE inline bool finish_request_ok(const FinishStages& s, int64_t b,
                                             DeviceStatusWord* w) {
  const int64_t L = s.lengths[b];
  return check_length(b, L, s.summed.extents[2], true, w) &&
         ranking_request_ok(s.topk, s.remap, s.has_positions, b, L, w);
}

}  // namespace detail
}  // namespace promptdistill
