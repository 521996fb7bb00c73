// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Builds one logical KV cache ([B][tokens][H_kv][D]) in every engine layout, with random page
//! tables for the paged ones, and reads a cache back into logical order. Tests use it to check
//! that every operation gives the same answer whatever the layout.

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "promptdistill/detail/numerics.h"
#include "promptdistill/kv_cache.h"

namespace pdtest {

enum class Layout { kBSHD, kBHSD, kPagedNHD, kPagedHND, kFlashInferNHD, kFlashInferHND };
constexpr Layout kAllLayouts[] = {Layout::kBSHD,          Layout::kBHSD,
                                  Layout::kPagedNHD,      Layout::kPagedHND,
                                  Layout::kFlashInferNHD, Layout::kFlashInferHND};

inline const char* to_string(Layout l) {
  switch (l) {
    case Layout::kBSHD: return "contiguous [B,S,H,D]";
    case Layout::kBHSD: return "contiguous [B,H,S,D]";
    case Layout::kPagedNHD: return "vLLM paged NHD";
    case Layout::kPagedHND: return "vLLM paged HND";
    case Layout::kFlashInferNHD: return "FlashInfer NHD";
    case Layout::kFlashInferHND: return "FlashInfer HND";
  }
  return "?";
}

template <class T>
struct KvStorage {
  Layout layout;
  std::vector<T> data;
  std::vector<int32_t> block_table, indptr, indices, last_page_len;
  int64_t batch = 0, capacity = 0, heads = 0, dim = 0, block = 0, num_blocks = 0, max_blocks = 0;
  std::vector<int32_t> lengths;

  //! A view over `base` (host data here, or a device mirror) with the given table pointers.
  promptdistill::KvCacheView<T> view_over(T* base, const int32_t* bt, const int32_t* ip,
                                          const int32_t* ix, const int32_t* lp) const {
    using V = promptdistill::KvCacheView<T>;
    switch (layout) {
      case Layout::kBSHD: return V::contiguous_bshd(base, batch, capacity, heads, dim);
      case Layout::kBHSD: return V::contiguous_bhsd(base, batch, capacity, heads, dim);
      case Layout::kPagedNHD:
        return V::paged_nhd(base, num_blocks, block, heads, dim, batch, bt, max_blocks);
      case Layout::kPagedHND:
        return V::paged_hnd(base, num_blocks, block, heads, dim, batch, bt, max_blocks);
      case Layout::kFlashInferNHD:
        return V::flashinfer_nhd(base, num_blocks, block, heads, dim, batch, ip, ix, lp);
      case Layout::kFlashInferHND:
        return V::flashinfer_hnd(base, num_blocks, block, heads, dim, batch, ip, ix, lp);
    }
    return V{};
  }
  promptdistill::KvCacheView<T> view() {
    return view_over(data.data(), block_table.data(), indptr.data(), indices.data(),
                     last_page_len.data());
  }
};

//! `logical[((b * capacity) + t) * heads * dim + h * dim + d]` laid out as `layout`. Paged layouts
//! get `block`-token pages in a random permutation (plus spare pages), capacity rounded up to
//! whole pages; FlashInfer requests own just the pages their lengths need.
template <class T>
KvStorage<T> make_kv(Layout layout, const std::vector<T>& logical,
                     const std::vector<int32_t>& lengths, int64_t capacity, int64_t heads,
                     int64_t dim, int64_t block, uint64_t seed) {
  KvStorage<T> s;
  s.layout = layout;
  s.batch = int64_t(lengths.size());
  s.capacity = capacity;
  s.heads = heads;
  s.dim = dim;
  s.lengths = lengths;
  const bool paged = layout != Layout::kBSHD && layout != Layout::kBHSD;
  std::mt19937_64 rng(seed);
  if (paged) {
    s.block = block;
    s.max_blocks = (capacity + block - 1) / block;
    std::vector<int64_t> pages_of(std::size_t(s.batch));
    for (int64_t b = 0; b < s.batch; ++b)
      pages_of[std::size_t(b)] =
          (layout == Layout::kFlashInferNHD || layout == Layout::kFlashInferHND)
              ? (lengths[std::size_t(b)] + block - 1) / block
              : s.max_blocks;
    const int64_t used = std::accumulate(pages_of.begin(), pages_of.end(), int64_t(0));
    s.num_blocks = used + 3;  // spare pages nobody owns
    std::vector<int32_t> perm(std::size_t(s.num_blocks));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    int64_t next = 0;
    s.indptr.push_back(0);
    for (int64_t b = 0; b < s.batch; ++b) {
      for (int64_t p = 0; p < s.max_blocks; ++p) {
        const bool owned = p < pages_of[std::size_t(b)];
        const int32_t page = owned ? perm[std::size_t(next++)] : -1;
        s.block_table.push_back(page);
        if (owned) s.indices.push_back(page);
      }
      s.indptr.push_back(int32_t(s.indices.size()));
      const int64_t L = lengths[std::size_t(b)];
      s.last_page_len.push_back(L == 0 ? 0 : int32_t(L - (pages_of[std::size_t(b)] - 1) * block));
    }
    s.data.assign(std::size_t(s.num_blocks * block * heads * dim),
                  promptdistill::num::from_f32<T>(-99.0f));
  } else {
    s.data.assign(std::size_t(s.batch * capacity * heads * dim),
                  promptdistill::num::from_f32<T>(-99.0f));
  }
  auto v = s.view();
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t t = 0; t < (paged ? std::min<int64_t>(capacity, v.max_tokens(b)) : capacity); ++t)
      for (int64_t h = 0; h < heads; ++h)
        std::copy_n(&logical[std::size_t(((b * capacity + t) * heads + h) * dim)], dim,
                    v.token(b, t, h));
  return s;
}

//! The first `length[b]` tokens of every request back in logical order.
template <class T>
std::vector<T> read_logical(const promptdistill::KvCacheView<T>& v,
                            const std::vector<int32_t>& lengths, int64_t capacity) {
  std::vector<T> out(std::size_t(v.batch * capacity * v.num_heads * v.head_dim),
                     promptdistill::num::from_f32<T>(0.0f));
  for (int64_t b = 0; b < v.batch; ++b)
    for (int64_t t = 0; t < lengths[std::size_t(b)]; ++t)
      for (int64_t h = 0; h < v.num_heads; ++h)
        std::copy_n(v.token(b, t, h), v.head_dim,
                    &out[std::size_t(((b * capacity + t) * v.num_heads + h) * v.head_dim)]);
  return out;
}

}  // namespace pdtest
