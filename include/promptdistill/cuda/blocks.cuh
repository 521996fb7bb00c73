// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Elementwise and row-wise decoder block kernels: Embed, AppendKv and ArgMax (Tier A), RmsNorm,
//! Rope and SwiGlu (Tier B: the orders of blocks.h, on the shared numerics header; the CPU
//! reference runs the same expressions, so results are bit-identical). The operations are
//! instantiated for float, f16 and bf16 in cuda/blocks_instances.cu.

#include "promptdistill/blocks.h"
#include "promptdistill/cuda/launch.cuh"
#include "promptdistill/cuda/reduce.cuh"
#include "promptdistill/detail/block_checks.h"

namespace promptdistill {
namespace cuda {
namespace detail {

constexpr int kElementwiseThreads = 256;
constexpr int kRowCopyThreads = 128;

template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    check_tokens_kernel(TensorView<const int32_t, 1> ids, int64_t vocab, DeviceStatusWord* status) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < ids.extents[0];
       i += int64_t(gridDim.x) * blockDim.x)
    promptdistill::detail::check_token(i, ids(i), vocab, status);
}

template <class T>
__global__ void embed_kernel(EmbedArgs<T> a, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  for (int64_t i = blockIdx.x; i < a.ids.extents[0]; i += gridDim.x) {
    const int64_t id = a.ids(i);
    for (int64_t e = threadIdx.x; e < a.table.extents[1]; e += blockDim.x)
      a.out(i, e) = a.table(id, e);
  }
}

//! One block of kReduceThreads threads per row: lane t sums x_j^2 for j = t, t + W, ... in
//! ascending order, then the canonical tree (num::canonical_sum's order).
template <class T>
__global__ void __launch_bounds__(detail::kReduceThreads) rmsnorm_kernel(RmsNormArgs<T> a) {
  __shared__ float scratch[detail::kReduceThreads];
  const int64_t d = a.x.extents[1];
  for (int64_t i = blockIdx.x; i < a.x.extents[0]; i += gridDim.x) {
    float partial = 0.0f;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const float x = num::to_f32(a.x(i, j));
      partial = num::add(partial, num::mul(x, x));
    }
    const float ss = detail::block_reduce_canonical<false>(partial, scratch);
    const float inv = num::div(1.0f, num::sqrt(num::add(num::div(ss, float(d)), a.eps)));
    // The block reduction ends with a barrier, so in-place writes cannot race with the reads above.
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const float normed = num::round_through<T>(num::mul(num::to_f32(a.x(i, j)), inv));
      a.out(i, j) = num::from_f32<T>(num::mul(num::to_f32(a.weight(j)), normed));
    }
  }
}

template <class T>
__global__ void rope_kernel(RopeArgs<T> a) {
  const int64_t heads = a.x.extents[1], half = a.x.extents[2] / 2,
                total = a.x.extents[0] * heads * half;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t f = e % half, h = (e / half) % heads, i = e / (half * heads);
    const float c = a.cos(i, f), s = a.sin(i, f);
    const float x0 = num::to_f32(a.x(i, h, f)), x1 = num::to_f32(a.x(i, h, f + half));
    a.x(i, h, f) = num::from_f32<T>(num::sub(num::mul(x0, c), num::mul(x1, s)));
    a.x(i, h, f + half) = num::from_f32<T>(num::add(num::mul(x1, c), num::mul(x0, s)));
  }
}

template <class T>
__global__ void swiglu_kernel(SwiGluArgs<T> a) {
  const int64_t width = a.gate.extents[1], total = a.gate.extents[0] * width;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / width, j = e % width;
    const float g = num::to_f32(a.gate(i, j)), u = num::to_f32(a.up(i, j));
    const float silu = num::round_through<T>(num::div(g, num::add(1.0f, num::exp_f32(-g))));
    a.out(i, j) = num::from_f32<T>(num::mul(silu, u));
  }
}

template <class T>
struct AppendCheck {
  AppendKvArgs<T> a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    const KvCacheView<const T> k = a.k, v = a.v;
    const int64_t n = a.k_new.extents[1];
    promptdistill::detail::check_kv_request(b, a.q_lens[b], a.kv_lens[b], n, INT32_MAX, k, v, w);
  }
};

//! Block per (request, new row); threads over heads x D.
template <class T>
__global__ void append_kv_kernel(AppendKvArgs<T> a, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  const int64_t n = a.k_new.extents[1], H = a.k.num_heads, D = a.k.head_dim;
  for (int64_t row = blockIdx.x; row < a.k_new.extents[0] * n; row += gridDim.x) {
    const int64_t b = row / n, i = row % n;
    if (i >= a.q_lens[b]) continue;
    const int64_t t = a.kv_lens[b] - a.q_lens[b] + i;
    for (int64_t e = threadIdx.x; e < H * D; e += blockDim.x) {
      const int64_t h = e / D, d = e % D;
      a.k.token(b, t, h)[d] = a.k_new(b, i, h, d);
      a.v.token(b, t, h)[d] = a.v_new(b, i, h, d);
    }
  }
}

constexpr int kArgMaxThreads = 512;

//! The better of two (value, index) candidates in ArgMax's total order.
__device__ __forceinline__ void argmax_take(float v, int64_t i, float* best, int64_t* best_i) {
  if (promptdistill::detail::argmax_ranks_before(v, i, *best, *best_i)) *best = v, *best_i = i;
}

//! One block per row (grid-stride over rows): thread t scans j = t, t + 512, ..., then a warp
//! shuffle tree and one across warps. The order is total (argmax_ranks_before), so the tree
//! ends where the CPU's sequential scan does. A thread with no element holds (-inf, n), which
//! every element of the row ranks before (a real -inf by its smaller index).
template <class T>
__global__ void __launch_bounds__(kArgMaxThreads) argmax_kernel(ArgMaxArgs<T> a) {
  __shared__ float warp_best[kArgMaxThreads / 32];
  __shared__ int64_t warp_index[kArgMaxThreads / 32];
  const int64_t n = a.x.extents[1];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t i = blockIdx.x; i < a.x.extents[0]; i += gridDim.x) {
    float best = -INFINITY;
    int64_t best_j = n;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      argmax_take(num::to_f32(a.x(i, j)), j, &best, &best_j);
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float v = __shfl_down_sync(0xffffffffu, best, offset);
      const int64_t j = __shfl_down_sync(0xffffffffu, best_j, offset);
      argmax_take(v, j, &best, &best_j);
    }
    if (lane == 0) warp_best[warp] = best, warp_index[warp] = best_j;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < kArgMaxThreads / 32; ++w)
        argmax_take(warp_best[w], warp_index[w], &best, &best_j);
      a.out(i) = int32_t(best_j);
    }
    __syncthreads();  // the next row reuses the shared candidates
  }
}

//! One thread per element (grid-stride): Rope's and SwiGlu's launch.
template <class Args>
Status launch_elementwise(void (*kernel)(Args), const Args& a, int64_t total, cudaStream_t stream) {
  if (total == 0) return Status::ok();
  kernel<<<blocks_for(total, kElementwiseThreads), kElementwiseThreads, 0, stream>>>(a);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

}  // namespace detail

// The can_implement and workspace_size members both backends define alike.
#include "promptdistill/detail/block_op_checks.inc"

// ---- Embed
// ------------------------------------------------------------------------------------------

template <class T>
std::size_t Embed<T>::workspace_size(const EmbedArgs<T>&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
template <class T>
Status Embed<T>::run(const EmbedArgs<T>& a, Workspace ws, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  detail::DeviceStatusWord* status = nullptr;
  PD_RETURN_IF_ERROR(detail::begin_status_only_run(ws, stream, &status));
  const int64_t n = a.ids.extents[0];
  if (n == 0) return Status::ok();
  constexpr int kThreads = detail::kElementwiseThreads;
  detail::check_tokens_kernel<kThreads>
      <<<detail::blocks_for(n, kThreads), kThreads, 0, stream>>>(a.ids, a.table.extents[0], status);
  PD_CUDA_CHECK_LAUNCH(stream);
  detail::embed_kernel<<<detail::capped_blocks(n), detail::kRowCopyThreads, 0, stream>>>(a, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

// ---- RmsNorm
// ----------------------------------------------------------------------------------------

template <class T>
Status RmsNorm<T>::run(const RmsNormArgs<T>& a, Workspace, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t n = a.x.extents[0];
  if (n == 0) return Status::ok();
  detail::rmsnorm_kernel<<<detail::capped_blocks(n), detail::kReduceThreads, 0, stream>>>(a);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

// ---- Rope
// -------------------------------------------------------------------------------------------

template <class T>
Status Rope<T>::run(const RopeArgs<T>& a, Workspace, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t pairs = a.x.extents[0] * a.x.extents[1] * (a.x.extents[2] / 2);
  return detail::launch_elementwise(detail::rope_kernel<T>, a, pairs, stream);
}

// ---- SwiGlu
// -----------------------------------------------------------------------------------------

template <class T>
Status SwiGlu<T>::run(const SwiGluArgs<T>& a, Workspace, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  return detail::launch_elementwise(detail::swiglu_kernel<T>, a,
                                    a.gate.extents[0] * a.gate.extents[1], stream);
}

// ---- ArgMax
// -----------------------------------------------------------------------------------------

template <class T>
Status ArgMax<T>::run(const ArgMaxArgs<T>& a, Workspace, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t rows = a.x.extents[0];
  if (rows == 0) return Status::ok();
  detail::argmax_kernel<T><<<detail::capped_blocks(rows), detail::kArgMaxThreads, 0, stream>>>(a);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

// ---- AppendKv
// ---------------------------------------------------------------------------------------

template <class T>
std::size_t AppendKv<T>::workspace_size(const AppendKvArgs<T>&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
template <class T>
Status AppendKv<T>::run(const AppendKvArgs<T>& a, Workspace ws, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  detail::DeviceStatusWord* status = nullptr;
  PD_RETURN_IF_ERROR(detail::begin_status_only_run(ws, stream, &status));
  const int64_t B = a.k_new.extents[0], rows = B * a.k_new.extents[1];
  if (rows == 0) return Status::ok();
  PD_RETURN_IF_ERROR(
      detail::launch_validate_requests(detail::AppendCheck<T>{a}, B, status, stream));
  detail::append_kv_kernel<<<detail::capped_blocks(rows), detail::kRowCopyThreads, 0, stream>>>(
      a, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

}  // namespace cuda
}  // namespace promptdistill
