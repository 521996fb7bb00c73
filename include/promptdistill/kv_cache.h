// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core (header only).
//! `KvCacheView<T>`: one layer's K (or V) cache as an engine stores it, described by strides and,
//! for paged caches, by the engine's own page tables. The library never owns or allocates a cache.
//!
//! Supported layouts (all with a contiguous head dimension):
//! | factory               | storage                                     | engines                |
//! |-----------------------|---------------------------------------------|------------------------|
//! | `contiguous_bshd`     | `[B, S, H_kv, D]` (also `[S, H_kv, D]`, B=1) | llama.cpp-like, ours |
//! | `contiguous_bhsd`     | `[B, H_kv, S, D]`                           | HF `DynamicCache`      |
//! | `paged_nhd/_hnd`      | `[num_blocks, block, H_kv, D]` / `[num_blocks, H_kv, block, D]` +
//! `block_table[B, max_blocks]` | vLLM | | `flashinfer_nhd/_hnd` | same storage + `kv_indptr[B+1]`,
//! `kv_indices[nnz]`, `kv_last_page_len[B]` | FlashInfer, SGLang paged |
//!
//! Any other stride pattern (K and V interleaved in one buffer, padded rows) is expressed by
//! editing `stride_*` after a factory call. For `[L, H_kv, D]` and `[H_kv, L, D]` single-request
//! buffers use `contiguous_bshd(p, 1, L, H, D)` and `contiguous_bhsd(p, 1, L, H, D)`.
//!
//! All pointers (data and tables) live where the operation runs: host memory for `ref::`, device
//! memory for `cuda::`.

#include <cstdint>
#include <type_traits>

#include "promptdistill/detail/config.h"

namespace promptdistill {

enum class KvLayout : int32_t {
  kContiguous = 0,       //!< request b, token t at data + b*stride_seq + t*stride_token
  kPagedBlockTable = 1,  //!< vLLM: page = block_table[b*block_table_stride + t/block_size]
  kPagedIndptr = 2,      //!< FlashInfer: page = indices[indptr[b] + t/block_size]
};

template <class T>
struct KvCacheView {
  T* data = nullptr;
  KvLayout layout = KvLayout::kContiguous;
  int64_t batch = 0;      //!< requests
  int64_t num_heads = 0;  //!< H_kv
  int64_t head_dim = 0;   //!< D (stride 1)
  //! Element strides. Contiguous: stride_seq is per request. Paged: stride_seq is per page.
  int64_t stride_seq = 0;
  int64_t stride_token = 0;
  int64_t stride_head = 0;
  //! Contiguous: tokens each request can hold (S). Paged: tokens per page.
  int64_t capacity = 0;
  // Paged only.
  int64_t num_blocks = 0;
  const int32_t* block_table = nullptr;  //!< kPagedBlockTable: [B, max_blocks_per_request]
  int64_t block_table_stride = 0;
  int64_t max_blocks_per_request = 0;
  const int32_t* indptr = nullptr;         //!< kPagedIndptr: [B + 1]
  const int32_t* indices = nullptr;        //!< kPagedIndptr: [indptr[B]]
  const int32_t* last_page_len = nullptr;  //!< kPagedIndptr: [B]
  //! kPagedIndptr: elements `indices` holds, when the caller knows it (the Python bindings pass
  //! the array's length): every request's pages [indptr[b], indptr[b+1]) must lie inside it, which
  //! the data checks verify. -1: unknown (indptr[B] <= the length is the caller's promise).
  int64_t num_indices = -1;

  PD_HOST_DEVICE bool paged() const { return layout != KvLayout::kContiguous; }
  PD_HOST_DEVICE int64_t block_size() const { return capacity; }

  //! Physical page of logical page `page` of request b (paged layouts; no bounds check).
  PD_HOST_DEVICE int64_t page_of(int64_t b, int64_t page) const {
    return layout == KvLayout::kPagedBlockTable ? block_table[b * block_table_stride + page]
                                                : indices[indptr[b] + page];
  }
  //! Pages request b has (paged layouts).
  PD_HOST_DEVICE int64_t pages_of(int64_t b) const {
    return layout == KvLayout::kPagedBlockTable ? max_blocks_per_request
                                                : int64_t(indptr[b + 1]) - indptr[b];
  }
  //! Tokens request b can hold.
  PD_HOST_DEVICE int64_t max_tokens(int64_t b) const {
    return paged() ? pages_of(b) * capacity : capacity;
  }
  //! Pointer to the D elements of (request b, token t, head h). No bounds check.
  PD_HOST_DEVICE T* token(int64_t b, int64_t t, int64_t h) const {
    if (!paged()) return data + b * stride_seq + t * stride_token + h * stride_head;
    const int64_t page = page_of(b, t / capacity);
    return data + page * stride_seq + (t % capacity) * stride_token + h * stride_head;
  }

  //! The same view over `const T`.
  template <class U = T, class = std::enable_if_t<!std::is_const<U>::value>>
  PD_HOST_DEVICE operator KvCacheView<const U>() const {
    KvCacheView<const U> v;
    v.data = data;
    v.layout = layout;
    v.batch = batch;
    v.num_heads = num_heads;
    v.head_dim = head_dim;
    v.stride_seq = stride_seq;
    v.stride_token = stride_token;
    v.stride_head = stride_head;
    v.capacity = capacity;
    v.num_blocks = num_blocks;
    v.block_table = block_table;
    v.block_table_stride = block_table_stride;
    v.max_blocks_per_request = max_blocks_per_request;
    v.indptr = indptr;
    v.indices = indices;
    v.last_page_len = last_page_len;
    v.num_indices = num_indices;
    return v;
  }

  static KvCacheView contiguous_bshd(T* data, int64_t batch, int64_t seq, int64_t heads,
                                     int64_t dim) {
    KvCacheView v = base(data, batch, heads, dim);
    v.capacity = seq;
    v.stride_head = dim;
    v.stride_token = heads * dim;
    v.stride_seq = seq * heads * dim;
    return v;
  }
  static KvCacheView contiguous_bhsd(T* data, int64_t batch, int64_t seq, int64_t heads,
                                     int64_t dim) {
    KvCacheView v = base(data, batch, heads, dim);
    v.capacity = seq;
    v.stride_token = dim;
    v.stride_head = seq * dim;
    v.stride_seq = heads * seq * dim;
    return v;
  }
  static KvCacheView paged_nhd(T* data, int64_t num_blocks, int64_t block_size, int64_t heads,
                               int64_t dim, int64_t batch, const int32_t* block_table,
                               int64_t max_blocks_per_request) {
    KvCacheView v = paged_base(data, num_blocks, block_size, heads, dim, batch);
    v.layout = KvLayout::kPagedBlockTable;
    v.stride_head = dim;
    v.stride_token = heads * dim;
    v.block_table = block_table;
    v.block_table_stride = max_blocks_per_request;
    v.max_blocks_per_request = max_blocks_per_request;
    return v;
  }
  static KvCacheView paged_hnd(T* data, int64_t num_blocks, int64_t block_size, int64_t heads,
                               int64_t dim, int64_t batch, const int32_t* block_table,
                               int64_t max_blocks_per_request) {
    KvCacheView v = paged_nhd(data, num_blocks, block_size, heads, dim, batch, block_table,
                              max_blocks_per_request);
    v.stride_token = dim;
    v.stride_head = block_size * dim;
    return v;
  }
  static KvCacheView flashinfer_nhd(T* data, int64_t num_blocks, int64_t page_size, int64_t heads,
                                    int64_t dim, int64_t batch, const int32_t* kv_indptr,
                                    const int32_t* kv_indices, const int32_t* kv_last_page_len) {
    KvCacheView v = paged_base(data, num_blocks, page_size, heads, dim, batch);
    v.layout = KvLayout::kPagedIndptr;
    v.stride_head = dim;
    v.stride_token = heads * dim;
    v.indptr = kv_indptr;
    v.indices = kv_indices;
    v.last_page_len = kv_last_page_len;
    return v;
  }
  static KvCacheView flashinfer_hnd(T* data, int64_t num_blocks, int64_t page_size, int64_t heads,
                                    int64_t dim, int64_t batch, const int32_t* kv_indptr,
                                    const int32_t* kv_indices, const int32_t* kv_last_page_len) {
    KvCacheView v = flashinfer_nhd(data, num_blocks, page_size, heads, dim, batch, kv_indptr,
                                   kv_indices, kv_last_page_len);
    v.stride_token = dim;
    v.stride_head = page_size * dim;
    return v;
  }

 private:
  static KvCacheView base(T* data, int64_t batch, int64_t heads, int64_t dim) {
    KvCacheView v;
    v.data = data;
    v.batch = batch;
    v.num_heads = heads;
    v.head_dim = dim;
    return v;
  }
  static KvCacheView paged_base(T* data, int64_t num_blocks, int64_t block_size, int64_t heads,
                                int64_t dim, int64_t batch) {
    KvCacheView v = base(data, batch, heads, dim);
    v.capacity = block_size;
    v.num_blocks = num_blocks;
    v.stride_seq = block_size * heads * dim;
    return v;
  }
};

}  // namespace promptdistill
