// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Tensor parallelism simulated in one process: which heads rank r of R holds (Megatron's equal
//! shards in rank order) and views of a rank's heads inside the full q and K, so that every rank
//! runs on exactly the data the unsharded run reads, without a copy.

#include <string>

#include "promptdistill/selector.h"

namespace pdtest {

//! Rank r's query heads [q_first, q_first + q_count) and the KV heads they read
//! [kv_first, kv_first + kv_count): its own H_kv / R heads, or the one head its query heads share
//! when R > H_kv (the KV head is then replicated across ranks, as Megatron does).
struct RankShard {
  int64_t rank = 0, ranks = 1;
  int64_t q_first = 0, q_count = 0, kv_first = 0, kv_count = 0;
  std::string describe() const {
    return "rank " + std::to_string(rank) + " of " + std::to_string(ranks);
  }
};

inline RankShard rank_shard(int64_t H, int64_t Hkv, int64_t ranks, int64_t rank) {
  const int64_t per_rank = H / ranks, group = H / Hkv;
  RankShard s;
  s.rank = rank;
  s.ranks = ranks;
  s.q_first = rank * per_rank;
  s.q_count = per_rank;
  s.kv_first = s.q_first / group;
  s.kv_count = per_rank >= group ? per_rank / group : 1;
  return s;
}

//! The rank's query heads inside a [B, rows, H, D] view.
template <class T>
promptdistill::TensorView<const T, 4> shard_q(promptdistill::TensorView<const T, 4> q,
                                              const RankShard& s) {
  q.data += s.q_first * q.strides[2];
  q.extents[2] = s.q_count;
  return q;
}

//! The rank's KV heads inside a contiguous (or paged) view of every KV head.
template <class T>
promptdistill::KvCacheView<T> shard_k(promptdistill::KvCacheView<T> k, const RankShard& s) {
  k.data += s.kv_first * k.stride_head;
  k.num_heads = s.kv_count;
  return k;
}

}  // namespace pdtest
