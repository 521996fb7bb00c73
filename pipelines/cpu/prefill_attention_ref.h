// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU decoder: causal GQA attention on the kernels of cpu_kernels.h, for a prefill
//! (tiles of 64 query rows x one KV group's query heads, over key blocks, causal blocks skipped,
//! threaded over (KV head, query tile) tasks, longest first) and for the exact decode step (one
//! row per query head, threaded over KV heads). Both run the same kernel, whose result for a row
//! depends only on the keys it sees (cpu_kernels.h): the decode step equals the prefill's row.

#include <cstdint>
#include <vector>

#include "promptdistill/status.h"

namespace promptdistill {
namespace ref {
namespace attention {

//! Rows of one prefill task (per query head).
constexpr int64_t kQueryTile = 64;

//! The shape of one call: `heads` query heads reading `kv_heads` KV heads (heads a multiple of
//! kv_heads: head h reads KV head h / (heads / kv_heads)), head dim D.
struct Shape {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
};

//! out[n, heads * D] = softmax(q k^T / sqrt(D)) v for n new rows, row i seeing keys [0, past + i]:
//! q [n, heads * D], k and v [past + n, kv_heads, D] (the cache followed by the new rows).
//! Its scratch (the transposed keys, the threads' tiles) is `scratch`, grown when too small
//! (never shrunk), or a fresh allocation.
Status prefill(const Shape& s, const float* q, int64_t n, const float* k, const float* v,
               int64_t past, float* out, std::vector<float>* scratch = nullptr) noexcept;

//! Scratch floats of decode() for `threads` threads.
int64_t decode_scratch_floats(const Shape& s, int threads) noexcept;
//! One row per query head (q [heads * D]) over `total` keys: out [heads * D]. `scratch` holds
//! decode_scratch_floats(s, threads) floats for the current OpenMP thread count; allocates nothing.
Status decode(const Shape& s, const float* q, const float* k, const float* v, int64_t total,
              float* out, float* scratch, int64_t scratch_floats) noexcept;

}  // namespace attention
}  // namespace ref
}  // namespace promptdistill
