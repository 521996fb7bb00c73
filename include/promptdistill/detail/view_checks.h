// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core.
//! Host-side checks of views shared by the selector and the decoder block operations.

#include <cstdint>

#include "promptdistill/kv_cache.h"
#include "promptdistill/selector.h"
#include "promptdistill/status.h"
#include "promptdistill/tensor_view.h"

#define PD_REQUIRE(cond, code, ...)                \
  do {                                             \
    if (!(cond)) return Status(code, __VA_ARGS__); \
  } while (0)

namespace promptdistill {
namespace detail {

inline bool overlaps(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  const auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && pa < pb + std::uintptr_t(b_bytes) &&
         pb < pa + std::uintptr_t(a_bytes);
}
template <class T, int R>
inline int64_t span_bytes(const TensorView<T, R>& v) {
  if (v.numel() == 0) return 0;
  int64_t off = 0;
  for (int i = 0; i < R; ++i) off += (v.extents[i] - 1) * v.strides[i];
  return (off + 1) * int64_t(sizeof(T));
}

//! K and V of one cache pair start at the same address, so they share at least their first element:
//! AppendKv would write both into it and CompactKv would move the same memory twice at once.
template <class T>
inline Status check_kv_distinct(const char* op, const KvCacheView<T>& k, const KvCacheView<T>& v) {
  PD_REQUIRE(k.data != v.data || k.batch == 0, StatusCode::kInvalidArgument,
             "%s: k and v are the same buffer (they must not share memory)", op);
  return Status::ok();
}

inline Status check_head_dim(int64_t d) {
  PD_REQUIRE(d >= 8 && d <= kMaxHeadDim && d % 8 == 0, StatusCode::kUnsupported,
             "head_dim %lld is not supported (multiples of 8 up to %lld)", (long long)d,
             (long long)kMaxHeadDim);
  return Status::ok();
}

template <class T>
inline Status check_kv(const char* name, const KvCacheView<T>& v) {
  PD_REQUIRE(v.batch >= 0, StatusCode::kInvalidArgument, "%s: batch %lld is negative", name,
             (long long)v.batch);
  PD_REQUIRE(v.num_heads >= 1, StatusCode::kInvalidArgument, "%s: num_heads must be >= 1", name);
  PD_RETURN_IF_ERROR(check_head_dim(v.head_dim));
  PD_REQUIRE(v.stride_seq >= 0 && v.stride_token >= 0 && v.stride_head >= 0,
             StatusCode::kInvalidArgument, "%s: strides must be >= 0", name);
  PD_REQUIRE(v.capacity >= 0, StatusCode::kInvalidArgument, "%s: capacity is negative", name);
  // Null pointers are refused where they could be read: an empty array (no pages, no tokens, no
  // table columns) may have none (PyTorch gives empty tensors a null data pointer).
  const bool no_storage = v.paged() ? v.num_blocks == 0 : v.capacity == 0;
  PD_REQUIRE(v.data != nullptr || v.batch == 0 || no_storage, StatusCode::kInvalidArgument,
             "%s: null data pointer", name);
  if (v.paged()) {
    PD_REQUIRE(v.capacity >= 1, StatusCode::kInvalidArgument, "%s: block size must be >= 1", name);
    PD_REQUIRE(v.num_blocks >= 0, StatusCode::kInvalidArgument, "%s: num_blocks is negative", name);
    if (v.layout == KvLayout::kPagedBlockTable) {
      PD_REQUIRE(v.block_table != nullptr || v.batch == 0 || v.max_blocks_per_request == 0,
                 StatusCode::kInvalidArgument, "%s: null block table", name);
      PD_REQUIRE(v.max_blocks_per_request >= 0 && v.block_table_stride >= v.max_blocks_per_request,
                 StatusCode::kInvalidArgument,
                 "%s: block table stride %lld < max blocks per request %lld", name,
                 (long long)v.block_table_stride, (long long)v.max_blocks_per_request);
    } else if (v.layout == KvLayout::kPagedIndptr) {
      PD_REQUIRE(v.indptr != nullptr &&
                     (v.indices != nullptr || v.batch == 0 || v.num_indices == 0) &&
                     (v.last_page_len != nullptr || v.batch == 0),
                 StatusCode::kInvalidArgument,
                 "%s: kv_indptr, kv_indices and kv_last_page_len are required", name);
    } else {
      return Status(StatusCode::kInvalidArgument, "%s: unknown layout %d", name, int(v.layout));
    }
  }
  const auto base = reinterpret_cast<std::uintptr_t>(v.data);
  const int64_t es = int64_t(sizeof(T));
  PD_REQUIRE(base % 16 == 0 && (v.stride_seq * es) % 16 == 0 && (v.stride_token * es) % 16 == 0 &&
                 (v.stride_head * es) % 16 == 0,
             StatusCode::kMisaligned,
             "%s: the data pointer and every stride must be 16-byte aligned", name);
  return Status::ok();
}

}  // namespace detail
}  // namespace promptdistill
