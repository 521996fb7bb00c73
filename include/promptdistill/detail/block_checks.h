// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core.
//! Checks of the decoder block operations: host-side `can_implement` checks (implemented in
//! src/core/block_checks.cpp) and the per-request data checks that the CPU reference runs in loops
//! and the CUDA backend runs in validation kernels (same code, same messages).

#include <cstdint>

#include "promptdistill/blocks.h"
#include "promptdistill/detail/selector_checks.h"

namespace promptdistill {
namespace detail {

template <class T>
Status check_embed(const EmbedArgs<T>& a) noexcept;
template <class T>
Status check_rmsnorm(const RmsNormArgs<T>& a) noexcept;
template <class T>
Status check_rope(const RopeArgs<T>& a) noexcept;
template <class T>
Status check_swiglu(const SwiGluArgs<T>& a) noexcept;
template <class T>
Status check_append_kv(const AppendKvArgs<T>& a) noexcept;
template <class T>
Status check_argmax(const ArgMaxArgs<T>& a) noexcept;
template <class T>
Status check_attention(const AttentionArgs<T>& a) noexcept;
Status check_linear_shape(const LinearShape& s) noexcept;
template <class T>
Status check_linear(const LinearShape& s, const LinearArgs<T>& a) noexcept;

//! Token id of row i inside [0, vocab).
PD_HOST_DEVICE inline bool check_token(int64_t i, int32_t id, int64_t vocab, DeviceStatusWord* w) {
  if (id < 0 || id >= vocab) return record(w, DataCheck::kTokenOutOfVocab, i, id, vocab), false;
  return true;
}

//! Whether value v at index i ranks before the best so far (best at best_i) in ArgMax's order:
//! NaN above every number (the first NaN wins), then larger values, then smaller indices (so +0
//! and -0 tie and the smaller index wins). A strict total order on distinct indices: any
//! reduction tree over a row ends at the element a sequential scan ends at.
PD_HOST_DEVICE inline bool argmax_ranks_before(float v, int64_t i, float best, int64_t best_i) {
  const bool v_nan = v != v, best_nan = best != best;
  if (v_nan || best_nan) return v_nan && (!best_nan || i < best_i);
  return v > best || (v == best && i < best_i);
}

//! New rows and visible keys of request b: 0 <= q_len <= rows, q_len <= kv_len <= max_kv_len,
//! kv_len within what the cache can hold (FlashInfer: what its page list holds) and every page
//! of those tokens mapped inside the pool.
template <class T>
PD_HOST_DEVICE inline bool check_attention_request(int64_t b, int64_t q_len, int64_t kv_len,
                                                   int64_t rows, int64_t max_kv_len,
                                                   const KvCacheView<T>& cache,
                                                   DeviceStatusWord* w) {
  if (q_len < 0) return record(w, DataCheck::kLengthNegative, b, q_len, 0), false;
  if (q_len > rows) return record(w, DataCheck::kRowsBeyondView, b, q_len, rows), false;
  if (kv_len < q_len) return record(w, DataCheck::kKvBelowRows, b, kv_len, q_len), false;
  if (kv_len > max_kv_len)
    return record(w, DataCheck::kLengthBeyondCapacity, b, kv_len, max_kv_len), false;
  int64_t holds = cache.paged() ? 0 : cache.capacity;
  if (cache.layout == KvLayout::kPagedIndptr) {
    if (!flashinfer_length(cache, b, &holds, w)) return false;
  } else if (cache.layout == KvLayout::kPagedBlockTable) {
    holds = cache.max_tokens(b);
  }
  if (kv_len > holds) return record(w, DataCheck::kLengthBeyondCapacity, b, kv_len, holds), false;
  return check_pages(cache, b, kv_len, w);
}

//! The same request checks on both caches (K first; the first failure is recorded).
template <class T>
PD_HOST_DEVICE inline bool check_kv_request(int64_t b, int64_t q_len, int64_t kv_len, int64_t rows,
                                            int64_t max_kv_len, const KvCacheView<T>& k,
                                            const KvCacheView<T>& v, DeviceStatusWord* w) {
  return check_attention_request(b, q_len, kv_len, rows, max_kv_len, k, w) &&
         check_attention_request(b, q_len, kv_len, rows, max_kv_len, v, w);
}

}  // namespace detail
}  // namespace promptdistill
