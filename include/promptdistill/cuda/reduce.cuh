// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Block reductions in the canonical order of `detail/numerics.h`: kReduceWidth threads, thread t
//! holds the lane-t partial result (terms t, t + W, ... in ascending order), then the halving tree
//! partial[t] op= partial[t + s] for s = W/2 ... 1. Written with shared memory and a barrier per
//! level so the order is visibly the documented one (a shuffle tree would give the same order).

#include "promptdistill/detail/numerics.h"

namespace promptdistill {
namespace cuda {
namespace detail {

constexpr int kReduceThreads = num::kReduceWidth;

//! Canonical reduction of one value per thread of a kReduceThreads block. Every thread returns
//! the result. `scratch` holds kReduceThreads floats.
template <bool kMax>
__device__ float block_reduce_canonical(float partial, float* scratch) {
  const int t = threadIdx.x;
  scratch[t] = partial;
  __syncthreads();
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (t < s)
      scratch[t] =
          kMax ? num::max_nan(scratch[t], scratch[t + s]) : num::add(scratch[t], scratch[t + s]);
    __syncthreads();
  }
  const float result = scratch[0];
  __syncthreads();
  return result;
}

//! Sequential f32 dot product of an f32 vector (shared memory) with a row of T loaded 16 bytes
//! at a time; the accumulation order is num::dot's (ascending d, from +0).
template <class T>
__device__ __forceinline__ float dot_row(const float* q, const T* __restrict__ k, int dim) {
  constexpr int kVec = 16 / int(sizeof(T));
  float acc = 0.0f;
  for (int d = 0; d < dim; d += kVec) {
    const uint4 raw = *reinterpret_cast<const uint4*>(k + d);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int u = 0; u < kVec; ++u) acc = num::add(acc, num::mul(q[d + u], num::to_f32(e[u])));
  }
  return acc;
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
