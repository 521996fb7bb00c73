// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! GQA causal attention over a KV cache view (contiguous or paged), three kernels:
//! - exact (Tier B): one block per query row and head, the order of blocks.h, bit-identical to
//!   ref::Attention. Slow on long rows (three passes over the keys); the oracle and the fallback.
//! - flash (Tier C): tensor-core (WMMA bf16/f16, f32 accumulation) flash attention for prefill,
//!   64 query rows x 64 keys per step (32 where a block's shared memory is 99 KiB: see
//!   attention_tiles.h), online softmax in f32, O kept in shared memory so the per-row rescale
//!   needs no knowledge of the fragment layout.
//! - split-KV (Tier C): decode rows (few queries, long caches) split into 512-key chunks, f32 on
//!   CUDA cores, partial (max, sum, o) combined by a second kernel (flash-decoding).
//! Every kernel returns at once when the status word holds an error, so a bad request leaves the
//! output untouched. `cuda::Attention<T>` is instantiated in cuda/attention_instances.cu (Tier C
//! kernels, fused multiply-adds allowed) and its exact launcher in
//! cuda/attention_exact_instances.cu (Tier B, compiled with --fmad=false).

#include <mma.h>

#include <type_traits>

#include "promptdistill/blocks.h"
#include "promptdistill/cuda/attention_tiles.h"
#include "promptdistill/cuda/launch.cuh"
#include "promptdistill/cuda/reduce.cuh"
#include "promptdistill/detail/block_checks.h"

namespace promptdistill {
namespace cuda {
namespace detail {

constexpr int64_t kDecodeRows = 8;  //!< kFast uses split-KV up to this many rows per request
constexpr int kSplitKeys = 512;     //!< keys per split-KV chunk
constexpr int kSplitThreads = 128;

__device__ __forceinline__ float attention_scale(float scale, int64_t D) {
  return scale > 0.0f ? scale : num::div(1.0f, num::sqrt(float(D)));
}

template <class T>
struct AttentionCheck {
  AttentionArgs<T> a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    const int64_t n = a.q.extents[1];
    promptdistill::detail::check_kv_request(b, a.q_lens[b], a.kv_lens[b], n, a.max_kv_len, a.k, a.v,
                                            w);
  }
};

// ---- exact (Tier B)
// ---------------------------------------------------------------------------------

template <class T>
__global__ void __launch_bounds__(detail::kReduceThreads)
    attention_exact_kernel(AttentionArgs<T> a, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  __shared__ float q[kMaxHeadDim];
  __shared__ float scratch[detail::kReduceThreads];
  __shared__ float p[detail::kReduceThreads];
  const int64_t n = a.q.extents[1], H = a.q.extents[2], D = a.q.extents[3],
                group = H / a.k.num_heads;
  const float scale = attention_scale(a.scale, D);
  for (int64_t row = blockIdx.x; row < a.q.extents[0] * n * H; row += gridDim.x) {
    const int64_t h = row % H, i = (row / H) % n, b = row / (H * n);
    const int64_t q_len = a.q_lens[b];
    if (i >= q_len) continue;  // uniform across the block
    const int64_t g = h / group, last = a.kv_lens[b] - q_len + i;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) q[d] = num::to_f32(a.q(b, i, h, d));
    __syncthreads();
    float partial = -num::kInfinity;
    for (int64_t j = threadIdx.x; j <= last; j += blockDim.x)
      partial =
          num::max_nan(partial, num::mul(detail::dot_row(q, a.k.token(b, j, g), int(D)), scale));
    const float m = detail::block_reduce_canonical<true>(partial, scratch);
    partial = 0.0f;
    for (int64_t j = threadIdx.x; j <= last; j += blockDim.x)
      partial = num::add(partial,
                         num::exp_f32(num::sub(
                             num::mul(detail::dot_row(q, a.k.token(b, j, g), int(D)), scale), m)));
    const float l = detail::block_reduce_canonical<false>(partial, scratch);
    float acc = 0.0f;  // thread d < D owns output element d
    for (int64_t c0 = 0; c0 <= last; c0 += blockDim.x) {
      const int64_t j = c0 + threadIdx.x;
      if (j <= last)
        p[threadIdx.x] =
            num::div(num::exp_f32(num::sub(
                         num::mul(detail::dot_row(q, a.k.token(b, j, g), int(D)), scale), m)),
                     l);
      __syncthreads();
      const int64_t chunk =
          last - c0 + 1 < int64_t(blockDim.x) ? last - c0 + 1 : int64_t(blockDim.x);
      if (threadIdx.x < D)
        for (int64_t u = 0; u < chunk; ++u)
          acc = num::add(acc, num::mul(p[u], num::to_f32(a.v.token(b, c0 + u, g)[threadIdx.x])));
      __syncthreads();
    }
    if (threadIdx.x < D) a.out(b, i, h, threadIdx.x) = num::from_f32<T>(acc);
    __syncthreads();  // q is rewritten by the next row
  }
}

// ---- split-KV decode (Tier C)
// -------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
//! Block-wide sum or max of kSplitThreads values (every thread gets the result).
template <bool kMax>
__device__ float block_combine(float x, float* shared4) {
  x = kMax ? warp_max(x) : warp_sum(x);
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) shared4[warp] = x;
  __syncthreads();
  float r = shared4[0];
  for (int w = 1; w < kSplitThreads / 32; ++w) r = kMax ? fmaxf(r, shared4[w]) : r + shared4[w];
  __syncthreads();
  return r;
}

struct SplitBuffers {
  float* o = nullptr;  //!< [B, n, H, splits, D]
  float* m = nullptr;  //!< [B, n, H, splits]
  float* l = nullptr;  //!< [B, n, H, splits]
};

template <class T>
__global__ void __launch_bounds__(kSplitThreads)
    attention_split_kernel(AttentionArgs<T> a, SplitBuffers buf, int64_t splits,
                           const DeviceStatusWord* status) {
  if (status->code != 0) return;
  __shared__ float q[kMaxHeadDim];
  __shared__ float z[kSplitKeys];
  __shared__ float red[kSplitThreads / 32];
  const int64_t n = a.q.extents[1], H = a.q.extents[2], D = a.q.extents[3],
                group = H / a.k.num_heads;
  const int64_t s = blockIdx.x, h = blockIdx.y % H, i = blockIdx.y / H, b = blockIdx.z;
  const int64_t q_len = a.q_lens[b];
  if (i >= q_len) return;
  const int64_t g = h / group, last = a.kv_lens[b] - q_len + i;
  const int64_t start = s * kSplitKeys,
                end = last + 1 < start + kSplitKeys ? last + 1 : start + kSplitKeys;
  const int64_t slot = ((b * n + i) * H + h) * splits + s;
  if (start >= end) {  // this chunk lies beyond the row's keys: an empty partial
    if (threadIdx.x == 0) {
      buf.m[slot] = -num::kInfinity;
      buf.l[slot] = 0.0f;
    }
    return;
  }
  const float scale = attention_scale(a.scale, D);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) q[d] = num::to_f32(a.q(b, i, h, d));
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t j = start + warp; j < end;
       j += kSplitThreads / 32) {  // a warp per key, lanes over D
    const T* k = a.k.token(b, j, g);
    float dot = 0.0f;
    for (int64_t d = lane; d < D; d += 32) dot += q[d] * num::to_f32(k[d]);
    dot = warp_sum(dot);
    if (lane == 0) z[j - start] = dot * scale;
  }
  __syncthreads();
  float local = -num::kInfinity;
  for (int64_t u = threadIdx.x; u < end - start; u += blockDim.x) local = fmaxf(local, z[u]);
  const float m = block_combine<true>(local, red);
  float sum = 0.0f;
  for (int64_t u = threadIdx.x; u < end - start; u += blockDim.x) {
    const float e = __expf(z[u] - m);
    z[u] = e;
    sum += e;
  }
  const float l = block_combine<false>(sum, red);  // its barrier also publishes z
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t u = 0; u < end - start; ++u)
      acc += z[u] * num::to_f32(a.v.token(b, start + u, g)[d]);
    buf.o[slot * D + d] = acc;
  }
  if (threadIdx.x == 0) {
    buf.m[slot] = m;
    buf.l[slot] = l;
  }
}

template <class T>
__global__ void attention_combine_kernel(AttentionArgs<T> a, SplitBuffers buf, int64_t splits,
                                         const DeviceStatusWord* status) {
  if (status->code != 0) return;
  const int64_t n = a.q.extents[1], H = a.q.extents[2], D = a.q.extents[3];
  const int64_t h = blockIdx.x % H, i = blockIdx.x / H, b = blockIdx.y;
  if (i >= a.q_lens[b]) return;
  const int64_t base = ((b * n + i) * H + h) * splits;
  float m = -num::kInfinity;
  for (int64_t s = 0; s < splits; ++s) m = fmaxf(m, buf.m[base + s]);
  float l = 0.0f;
  for (int64_t s = 0; s < splits; ++s)
    if (buf.l[base + s] > 0.0f) l += buf.l[base + s] * __expf(buf.m[base + s] - m);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t s = 0; s < splits; ++s)
      if (buf.l[base + s] > 0.0f) acc += buf.o[(base + s) * D + d] * __expf(buf.m[base + s] - m);
    a.out(b, i, h, d) = num::from_f32<T>(acc / l);
  }
}

// ---- flash prefill (Tier C, tensor cores)
// ---------------------------------------------------------------

template <class T>
struct WmmaType;
template <>
struct WmmaType<bf16> {
  using type = __nv_bfloat16;
};
template <>
struct WmmaType<f16> {
  using type = __half;
};

//! Shared-memory layout of a flash block at head dim D, stepping kKeys keys (attention_tiles.h).
template <int D, int kKeys>
struct FlashSmem {
  static constexpr int kLdT = D + 8;      //!< row pitch of Q/K/V tiles (elements)
  static constexpr int kLdS = kKeys + 4;  //!< f32 scores
  static constexpr int kLdP = kKeys + 8;  //!< probabilities in T
  static constexpr int kLdO = D + 4;      //!< f32 output accumulator
  static constexpr std::size_t kTileQ =
      std::size_t(kFlashRows) * kLdT * 2;                                //!< bytes of the Q tile
  static constexpr std::size_t kTileKV = std::size_t(kKeys) * kLdT * 2;  //!< bytes of a K or V tile
  static constexpr std::size_t kS = std::size_t(kFlashWarps) * 16 * kLdS * 4;
  static constexpr std::size_t kP = std::size_t(kFlashWarps) * 16 * kLdP * 2;
  static constexpr std::size_t kO = std::size_t(kFlashWarps) * 16 * kLdO * 4;
  static constexpr std::size_t kBytes = kTileQ + 2 * kTileKV + kS + kP + kO;
  static_assert(kBytes == flash_smem_bytes(D, kKeys),
                "attention_tiles.h must describe this layout");
};

//! Copies `kRows` rows starting at `first` (D elements of T each, 16-byte aligned) into a tile,
//! 16 bytes per thread step; rows past `valid` become zeros.
template <class T, int D, int kRows, class RowPtr>
__device__ void load_tile(T* tile, int64_t first, int64_t valid, RowPtr row_ptr) {
  constexpr int kVec = 8;  // 16-bit elements per 16 bytes
  for (int e = threadIdx.x; e < kRows * (D / kVec); e += blockDim.x) {
    const int r = e / (D / kVec), c = (e % (D / kVec)) * kVec;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (first + r < valid) value = *reinterpret_cast<const uint4*>(row_ptr(first + r) + c);
    *reinterpret_cast<uint4*>(tile + r * (D + 8) + c) = value;
  }
}

template <class T, int D, int kKeys>
__global__ void __launch_bounds__(kFlashThreads)
    attention_flash_kernel(AttentionArgs<T> a, const DeviceStatusWord* status) {
  using namespace nvcuda;
  using W = typename WmmaType<T>::type;
  using Smem = FlashSmem<D, kKeys>;
  constexpr int kHalf = kKeys / 2;  // columns of the step each lane of a pair owns
  if (status->code != 0) return;
  extern __shared__ __align__(128) unsigned char smem[];  // WMMA pointers need 32-byte alignment
  T* qs = reinterpret_cast<T*>(smem);
  T* ks = reinterpret_cast<T*>(smem + Smem::kTileQ);
  T* vs = reinterpret_cast<T*>(smem + Smem::kTileQ + Smem::kTileKV);
  unsigned char* warp_area = smem + Smem::kTileQ + 2 * Smem::kTileKV;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* s_w = reinterpret_cast<float*>(warp_area) + warp * 16 * Smem::kLdS;
  T* p_w = reinterpret_cast<T*>(warp_area + Smem::kS) + warp * 16 * Smem::kLdP;
  float* o_w = reinterpret_cast<float*>(warp_area + Smem::kS + Smem::kP) + warp * 16 * Smem::kLdO;

  const int64_t H = a.q.extents[2], group = H / a.k.num_heads;
  const int64_t b = blockIdx.z, h = blockIdx.y, g = h / group,
                row0 = int64_t(blockIdx.x) * kFlashRows;
  const int64_t q_len = a.q_lens[b];
  if (row0 >= q_len) return;
  const int64_t offset = a.kv_lens[b] - q_len;  // key position of new row 0
  const int64_t rows_here = q_len - row0 < kFlashRows ? q_len - row0 : kFlashRows;
  const int64_t kv_end = offset + row0 + rows_here;  // keys this block needs
  const float scale = attention_scale(a.scale, D);
  constexpr float kLog2e = 1.4426950408889634f;

  load_tile<T, D, kFlashRows>(qs, row0, q_len, [&](int64_t i) { return &a.q(b, i, h, 0); });
  for (int e = lane; e < 16 * Smem::kLdO; e += 32) o_w[e] = 0.0f;
  // Lane pair (2r, 2r+1) owns row r of the warp's 16 rows, columns [kHalf * (lane & 1), +kHalf).
  const int r = lane / 2, half = lane % 2;
  const int64_t my_row = row0 + warp * 16 + r;
  const int64_t my_last = offset + my_row;  // last key this row sees
  float m_run = -num::kInfinity, l_run = 0.0f;

  for (int64_t t0 = 0; t0 < kv_end; t0 += kKeys) {
    __syncthreads();  // the previous step is done with ks/vs
    load_tile<T, D, kKeys>(ks, t0, kv_end, [&](int64_t j) { return a.k.token(b, j, g); });
    load_tile<T, D, kKeys>(vs, t0, kv_end, [&](int64_t j) { return a.v.token(b, j, g); });
    __syncthreads();

    // S = Q_w K^T for this warp's 16 rows and the step's keys.
    for (int nt = 0; nt < kKeys / 16; ++nt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, W, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, W, wmma::col_major> fb;
        wmma::load_matrix_sync(
            fa, reinterpret_cast<const W*>(qs + (warp * 16) * Smem::kLdT + kk * 16), Smem::kLdT);
        wmma::load_matrix_sync(
            fb, reinterpret_cast<const W*>(ks + (nt * 16) * Smem::kLdT + kk * 16), Smem::kLdT);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(s_w + nt * 16, acc, Smem::kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax for row r over this lane's columns, combined with the partner lane.
    float tile_max = -num::kInfinity;
    for (int c = half * kHalf; c < half * kHalf + kHalf; ++c) {
      const int64_t j = t0 + c;
      const bool visible = my_row < q_len && j <= my_last;
      const float x = visible ? s_w[r * Smem::kLdS + c] * scale : -num::kInfinity;
      s_w[r * Smem::kLdS + c] = x;
      tile_max = fmaxf(tile_max, x);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m_run, tile_max);
    const bool none = m_new == -num::kInfinity;  // nothing visible yet: keep everything at zero
    const float alpha = none ? 1.0f : exp2f((m_run - m_new) * kLog2e);
    float sum = 0.0f;
    for (int c = half * kHalf; c < half * kHalf + kHalf; ++c) {
      const float e = none ? 0.0f : exp2f((s_w[r * Smem::kLdS + c] - m_new) * kLog2e);
      const T pe = num::from_f32<T>(e);
      p_w[r * Smem::kLdP + c] = pe;
      sum += num::to_f32(pe);  // the normaliser sums what the tensor cores multiply
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l_run = l_run * alpha + sum;
    m_run = m_new;
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); ++d) o_w[r * Smem::kLdO + d] *= alpha;
    __syncwarp();

    // O_w += P_w V.
    for (int dt = 0; dt < D / 16; ++dt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, o_w + dt * 16, Smem::kLdO, wmma::mem_row_major);
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, W, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, W, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, reinterpret_cast<const W*>(p_w + kk * 16), Smem::kLdP);
        wmma::load_matrix_sync(
            fb, reinterpret_cast<const W*>(vs + (kk * 16) * Smem::kLdT + dt * 16), Smem::kLdT);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(o_w + dt * 16, acc, Smem::kLdO, wmma::mem_row_major);
    }
    __syncwarp();
  }
  if (my_row < q_len)
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); ++d)
      a.out(b, my_row, h, d) = num::from_f32<T>(o_w[r * Smem::kLdO + d] / l_run);
}

template <class T, int D, int kKeys>
Status launch_flash(const AttentionArgs<T>& a, const DeviceStatusWord* status,
                    cudaStream_t stream) {
  constexpr std::size_t bytes = FlashSmem<D, kKeys>::kBytes;
  PD_CUDA_TRY(cudaFuncSetAttribute(attention_flash_kernel<T, D, kKeys>,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  const dim3 grid(unsigned((a.q.extents[1] + kFlashRows - 1) / kFlashRows),
                  unsigned(a.q.extents[2]), unsigned(a.q.extents[0]));
  attention_flash_kernel<T, D, kKeys><<<grid, kFlashThreads, bytes, stream>>>(a, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

template <class T>
Status launch_attention_flash(const AttentionArgs<T>& a, int keys, const DeviceStatusWord* status,
                              cudaStream_t stream) {
  if constexpr (std::is_same<T, float>::value) {
    return Status(StatusCode::kInternal, "attention: no flash kernel for f32");
  } else {
    const int64_t D = a.q.extents[3];
    if (keys == 64) {
      if (D == 64) return launch_flash<T, 64, 64>(a, status, stream);
      if (D == 96) return launch_flash<T, 96, 64>(a, status, stream);
      return launch_flash<T, 128, 64>(a, status, stream);
    }
    if (D == 64) return launch_flash<T, 64, 32>(a, status, stream);
    if (D == 96) return launch_flash<T, 96, 32>(a, status, stream);
    return launch_flash<T, 128, 32>(a, status, stream);
  }
}

//! The Tier B kernel: one block per (request, row, head), the rows looped over a capped grid.
template <class T>
Status launch_attention_exact(const AttentionArgs<T>& a, const DeviceStatusWord* status,
                              cudaStream_t stream) {
  const int64_t rows = a.q.extents[0] * a.q.extents[1] * a.q.extents[2];
  attention_exact_kernel<T><<<capped_blocks(rows), kReduceThreads, 0, stream>>>(a, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

enum class AttentionKernel { kExact, kSplit, kFlash };

//! Which kernel runs `a` on the current device, and the flash tile's keys per step.
struct AttentionPlan {
  AttentionKernel kernel = AttentionKernel::kExact;
  int flash_keys = 0;
};

//! kFast with at most kDecodeRows rows: split-KV (needs no device query).
template <class T>
bool uses_split_kv(const AttentionArgs<T>& a) {
  return a.algo == AttentionAlgo::kFast && a.q.extents[1] <= kDecodeRows;
}

//! kFast prefill of bf16/f16 at head dims 64, 96, 128 runs the flash kernel when one of its tiles
//! fits the shared memory a block of the current device may opt into; otherwise (f32, other head
//! dims, no tile fits) the exact kernel.
template <class T>
Status plan_attention_kernel(const AttentionArgs<T>& a, AttentionPlan* plan) {
  *plan = AttentionPlan{};
  if (a.algo == AttentionAlgo::kExact) return Status::ok();
  if (uses_split_kv(a)) {
    plan->kernel = AttentionKernel::kSplit;
    return Status::ok();
  }
  const int64_t D = a.q.extents[3];
  if (std::is_same<T, float>::value || (D != 64 && D != 96 && D != 128)) return Status::ok();
  int device = 0, optin = 0;
  PD_CUDA_TRY(cudaGetDevice(&device));
  PD_CUDA_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  plan->flash_keys = flash_keys_for(int(D), std::size_t(optin));
  if (plan->flash_keys > 0) plan->kernel = AttentionKernel::kFlash;
  return Status::ok();
}

inline int64_t split_count(int64_t max_kv_len) {
  return max_kv_len < 1 ? 1 : (max_kv_len + kSplitKeys - 1) / kSplitKeys;
}

template <class T>
SplitBuffers plan_split_buffers(const AttentionArgs<T>& a, WorkspacePlanner& planner) {
  SplitBuffers buf;
  if (!uses_split_kv(a)) return buf;
  const int64_t rows = a.q.extents[0] * a.q.extents[1] * a.q.extents[2] * split_count(a.max_kv_len);
  buf.o = planner.take<float>(std::size_t(rows * a.q.extents[3]));
  buf.m = planner.take<float>(std::size_t(rows));
  buf.l = planner.take<float>(std::size_t(rows));
  return buf;
}

template <class T>
Status launch_attention_split(const AttentionArgs<T>& a, const SplitBuffers& buf,
                              const DeviceStatusWord* status, cudaStream_t stream) {
  const int64_t B = a.q.extents[0], n = a.q.extents[1], H = a.q.extents[2],
                splits = split_count(a.max_kv_len);
  attention_split_kernel<T>
      <<<dim3(unsigned(splits), unsigned(n * H), unsigned(B)), kSplitThreads, 0, stream>>>(
          a, buf, splits, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  attention_combine_kernel<T>
      <<<dim3(unsigned(n * H), unsigned(B)), 128, 0, stream>>>(a, buf, splits, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

//! Grid limits of the kernel `plan` chose.
template <class T>
Status check_attention_grid(const AttentionArgs<T>& a, const AttentionPlan& plan) {
  const int64_t B = a.q.extents[0], rows_heads = a.q.extents[1] * a.q.extents[2];
  if (B > kMaxGridYZ || (plan.kernel == AttentionKernel::kSplit && rows_heads > kMaxGridYZ) ||
      (plan.kernel == AttentionKernel::kFlash && a.q.extents[2] > kMaxGridYZ))
    return Status(StatusCode::kUnsupported,
                  "attention: batch %lld or rows x heads %lld exceed the grid limits", (long long)B,
                  (long long)rows_heads);
  return Status::ok();
}

}  // namespace detail

template <class T>
Status Attention<T>::can_implement(const AttentionArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_attention(a));
  detail::AttentionPlan plan;
  PD_RETURN_IF_ERROR(detail::plan_attention_kernel(a, &plan));
  return detail::check_attention_grid(a, plan);
}

template <class T>
std::size_t Attention<T>::workspace_size(const AttentionArgs<T>& a) noexcept {
  WorkspacePlanner planner;
  promptdistill::detail::take_status(planner);
  detail::plan_split_buffers(a, planner);
  return planner.bytes_needed();
}

template <class T>
Status Attention<T>::run(const AttentionArgs<T>& a, Workspace ws, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_attention(a));
  detail::AttentionPlan plan;
  PD_RETURN_IF_ERROR(detail::plan_attention_kernel(a, &plan));
  PD_RETURN_IF_ERROR(detail::check_attention_grid(a, plan));
  WorkspacePlanner planner(ws);
  detail::DeviceStatusWord* status = promptdistill::detail::take_status(planner);
  const detail::SplitBuffers buf = detail::plan_split_buffers(a, planner);
  PD_RETURN_IF_ERROR(planner.status());
  PD_RETURN_IF_ERROR(detail::reset_status(status, stream));
  const int64_t B = a.q.extents[0], n = a.q.extents[1], H = a.q.extents[2];
  if (B * n * H == 0) return Status::ok();
  PD_RETURN_IF_ERROR(
      detail::launch_validate_requests(detail::AttentionCheck<T>{a}, B, status, stream));
  switch (plan.kernel) {
    case detail::AttentionKernel::kExact: return detail::launch_attention_exact(a, status, stream);
    case detail::AttentionKernel::kSplit:
      return detail::launch_attention_split(a, buf, status, stream);
    case detail::AttentionKernel::kFlash:
      return detail::launch_attention_flash(a, plan.flash_keys, status, stream);
  }
  return Status(StatusCode::kInternal, "attention: no kernel chosen");
}

}  // namespace cuda
}  // namespace promptdistill
