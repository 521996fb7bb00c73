// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Scoring kernels, their launcher, `cuda::Score<T>` and the tensor-parallel
//! `cuda::ScorePartial<T>` (instantiated for float, f16 and bf16 in cuda/score_instances.cu). Every
//! formula and reduction order is the one documented in selector.h and followed by
//! cpu_reference/score_ref.cpp; the scores are compared bit for bit (Tier B).
//!
//! - PromptDistill / GemFilter: one thread per key j computes all H head logits against the
//!   last query (held in shared memory as f32) and reduces over heads sequentially. GQA is
//!   indexing: head h reads KV head h / G, nothing is expanded. The kernel reads layer r's K once
//!   (H_kv heads, the rest of the group hits L1), which is what bounds it.
//! - SnapKV / H2O: pass 1 (`softmax_row_stats_kernel`) gives each query row's max and sum of
//!   exponentials with a 256-thread canonical block reduction; pass 2
//!   (`softmax_column_sums_kernel`) gives each key its accumulated probability over the query rows,
//!   one thread per key, query rows streamed through shared memory in tiles. Logits are recomputed
//!   rather than stored, so no rows x L (for H2O: L x L) matrix ever exists.

#include "promptdistill/cuda/launch.cuh"
#include "promptdistill/cuda/reduce.cuh"

namespace promptdistill {
namespace cuda {
namespace detail {

constexpr int kScoreThreads = 256;
constexpr int kColumnThreads = 128;
constexpr int kQueryTile = 16;

template <class T>
__device__ void load_query_f32(const TensorView<const T, 4>& q, int64_t b, int64_t row, int64_t h0,
                               int64_t heads, float* out) {
  const int64_t D = q.extents[3];
  for (int64_t e = threadIdx.x; e < heads * D; e += blockDim.x)
    out[e] = num::to_f32(q(b, row, h0 + e / D, e % D));
}

//! `partial`: a tensor-parallel rank's sum over its heads, without PromptDistill's final division
//! by the head count (FinishSelect divides by the global count after the all-reduce).
//! `accumulate` (partial only): add the sum to what the scores hold (ScorePartialArgs::accumulate).
template <class T>
__global__ void score_last_token_kernel(ScoreArgs<T> a, float sqrt_d, bool partial, bool accumulate,
                                        const DeviceStatusWord* status) {
  if (status->code != 0) return;
  extern __shared__ float q_shared[];
  const int64_t b = blockIdx.y, H = a.q.extents[2], D = a.q.extents[3], G = H / a.k.num_heads;
  load_query_f32(a.q, b, 0, 0, H, q_shared);
  __syncthreads();
  const int64_t L = a.lengths[b];
  const bool mean = a.method == Method::kPromptDistill;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < L;
       j += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (int64_t h = 0; h < H; ++h) {
      const float logit = dot_row(q_shared + h * D, a.k.token(b, j, h / G), int(D));
      acc = num::add(acc, mean ? num::div(logit, sqrt_d) : logit);
    }
    a.scores(b, 0, j) = mean && !partial ? num::div(acc, float(H))
                        : accumulate     ? num::add(a.scores(b, 0, j), acc)
                                         : acc;
  }
}

//! Position of query row i of request b (SnapKV: the last rows of the prompt; H2O: row i).
__device__ __forceinline__ int64_t query_position(Method m, int64_t L, int64_t rows, int64_t i) {
  return m == Method::kSnapKV ? L - rows + i : i;
}

template <class T>
__global__ void softmax_row_stats_kernel(ScoreArgs<T> a, float sqrt_d, float* row_max,
                                         float* row_sum, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  __shared__ float scratch[kReduceThreads];
  extern __shared__ float q_shared[];
  const int64_t rows = a.q.extents[1], H = a.q.extents[2], D = a.q.extents[3],
                G = H / a.k.num_heads;
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t L = a.lengths[b], pos = query_position(a.method, L, rows, i);
  if (pos < 0 || pos >= L) return;  // not a query of this request
  load_query_f32(a.q, b, i, h, 1, q_shared);
  __syncthreads();
  float m = -num::kInfinity;
  for (int64_t j = threadIdx.x; j <= pos; j += kReduceThreads)
    m = num::max_nan(m, num::div(dot_row(q_shared, a.k.token(b, j, h / G), int(D)), sqrt_d));
  m = block_reduce_canonical<true>(m, scratch);
  float l = 0.0f;
  for (int64_t j = threadIdx.x; j <= pos; j += kReduceThreads) {
    const float z = num::div(dot_row(q_shared, a.k.token(b, j, h / G), int(D)), sqrt_d);
    l = num::add(l, num::exp_f32(num::sub(z, m)));
  }
  l = block_reduce_canonical<false>(l, scratch);
  if (threadIdx.x == 0) {
    row_max[(b * H + h) * rows + i] = m;
    row_sum[(b * H + h) * rows + i] = l;
  }
}

//! Accumulated probability of key j over the query rows, for query head h. Writes the caller's
//! scores (per query head) or `head_scores` (to be averaged per KV group).
template <class T>
__global__ void softmax_column_sums_kernel(ScoreArgs<T> a, float sqrt_d, const float* row_max,
                                           const float* row_sum, float* head_scores,
                                           const DeviceStatusWord* status) {
  if (status->code != 0) return;
  extern __shared__ float tile[];  // kQueryTile * D query values, then max and sum per tile row
  const int64_t rows = a.q.extents[1], H = a.q.extents[2], D = a.q.extents[3],
                G = H / a.k.num_heads;
  const int64_t h = blockIdx.y, b = blockIdx.z, L = a.lengths[b];
  float* tile_max = tile + kQueryTile * D;
  float* tile_sum = tile_max + kQueryTile;
  // Grid-stride over blocks of keys (the grid is capped): j0 is uniform across the block, so the
  // barriers below are reached by every thread.
  for (int64_t j0 = int64_t(blockIdx.x) * blockDim.x; j0 < L;
       j0 += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = j0 + threadIdx.x;
    // First row whose position can reach this block's keys (pos_i >= j0).
    const int64_t first_row =
        a.method == Method::kSnapKV ? (L - rows > j0 ? 0 : j0 - (L - rows)) : j0;
    const int64_t last_row = a.method == Method::kSnapKV ? rows : L;  // exclusive
    float acc = 0.0f;
    for (int64_t t0 = first_row; t0 < last_row; t0 += kQueryTile) {
      const int64_t n = last_row - t0 < kQueryTile ? last_row - t0 : kQueryTile;
      for (int64_t e = threadIdx.x; e < n * D; e += blockDim.x)
        tile[e] = num::to_f32(a.q(b, t0 + e / D, h, e % D));
      if (threadIdx.x < n) {
        tile_max[threadIdx.x] = row_max[(b * H + h) * rows + t0 + threadIdx.x];
        tile_sum[threadIdx.x] = row_sum[(b * H + h) * rows + t0 + threadIdx.x];
      }
      __syncthreads();
      if (j < L) {
        const T* key = a.k.token(b, j, h / G);
        for (int64_t u = 0; u < n; ++u) {
          const int64_t pos = query_position(a.method, L, rows, t0 + u);
          if (pos < j) continue;
          const float z = num::div(dot_row(tile + u * D, key, int(D)), sqrt_d);
          acc = num::add(acc, num::div(num::exp_f32(num::sub(z, tile_max[u])), tile_sum[u]));
        }
      }
      __syncthreads();
    }
    if (j < L) {
      if (a.grouping == HeadGrouping::kPerQueryHead)
        a.scores(b, h, j) = acc;
      else
        head_scores[(b * H + h) * a.scores.extents[2] + j] = acc;
    }
  }
}

//! Per KV group: mean of the group's query-head rows, summed in ascending head order.
template <class T>
__global__ void group_mean_kernel(ScoreArgs<T> a, const float* head_scores,
                                  const DeviceStatusWord* status) {
  if (status->code != 0) return;
  const int64_t H = a.q.extents[2], Hkv = a.k.num_heads, G = H / Hkv, N = a.scores.extents[2];
  const int64_t g = blockIdx.y % Hkv, b = blockIdx.y / Hkv, L = a.lengths[b];
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < L;
       j += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (int64_t h = g * G; h < (g + 1) * G; ++h)
      acc = num::add(acc, head_scores[(b * H + h) * N + j]);
    a.scores(b, g, j) = num::div(acc, float(G));
  }
}

template <class T>
struct ScoreRequestCheck {
  ScoreArgs<T> a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    promptdistill::detail::score_request_ok(a, b, w);
  }
};

//! The launch shapes of the scoring kernels fit the grid: the batch (gridDim.y or z) and, for
//! SnapKV/H2O, the heads (gridDim.y) and batch x KV heads (the group mean's gridDim.y) at most
//! 65535, and the query rows (gridDim.x of the row statistics) at most 2^31 - 1. Keys need no
//! limit (the kernels loop over them). kUnsupported otherwise.
inline Status check_score_grid(Method method, HeadGrouping grouping, int64_t batch,
                               int64_t query_rows, int64_t heads, int64_t kv_heads) {
  if (batch > kMaxGridYZ)
    return Status(StatusCode::kUnsupported, "score: batch %lld exceeds the grid limit %lld",
                  (long long)batch, (long long)kMaxGridYZ);
  if (method != Method::kSnapKV && method != Method::kH2O) return Status::ok();
  if (heads > kMaxGridYZ || query_rows > kMaxGridX)
    return Status(StatusCode::kUnsupported,
                  "score: %lld query heads or %lld query rows exceed the grid limits",
                  (long long)heads, (long long)query_rows);
  if (grouping == HeadGrouping::kPerKvGroup && batch * kv_heads > kMaxGridYZ)
    return Status(StatusCode::kUnsupported,
                  "score: batch x KV heads = %lld exceeds the grid limit %lld",
                  (long long)(batch * kv_heads), (long long)kMaxGridYZ);
  return Status::ok();
}

template <class T>
Status launch_score(const ScoreArgs<T>& a, const promptdistill::detail::ScoreBuffers& buf,
                    const DeviceStatusWord* status, cudaStream_t stream, bool partial = false,
                    bool accumulate = false) {
  const int64_t B = a.q.extents[0], rows = a.q.extents[1], H = a.q.extents[2], D = a.q.extents[3];
  const int64_t N = a.scores.extents[2];
  if (B == 0 || N == 0) return Status::ok();
  PD_RETURN_IF_ERROR(check_score_grid(a.method, a.grouping, B, rows, H, a.k.num_heads));
  const float sqrt_d = num::sqrt(float(D));
  if (a.method == Method::kPromptDistill || a.method == Method::kGemFilter) {
    const dim3 grid(blocks_for(N, kScoreThreads), unsigned(B));
    score_last_token_kernel<<<grid, kScoreThreads, std::size_t(H * D) * sizeof(float), stream>>>(
        a, sqrt_d, partial, accumulate, status);
    PD_CUDA_CHECK_LAUNCH(stream);
    return Status::ok();
  }
  softmax_row_stats_kernel<<<dim3(unsigned(rows), unsigned(H), unsigned(B)), kReduceThreads,
                             std::size_t(D) * sizeof(float), stream>>>(a, sqrt_d, buf.row_max,
                                                                       buf.row_sum, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  const std::size_t tile_bytes = std::size_t(kQueryTile * D + 2 * kQueryTile) * sizeof(float);
  softmax_column_sums_kernel<<<dim3(blocks_for(N, kColumnThreads), unsigned(H), unsigned(B)),
                               kColumnThreads, tile_bytes, stream>>>(
      a, sqrt_d, buf.row_max, buf.row_sum, buf.head_scores, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  if (a.grouping == HeadGrouping::kPerKvGroup) {
    group_mean_kernel<<<dim3(blocks_for(N, kScoreThreads), unsigned(B * a.k.num_heads)),
                        kScoreThreads, 0, stream>>>(a, buf.head_scores, status);
    PD_CUDA_CHECK_LAUNCH(stream);
  }
  return Status::ok();
}

}  // namespace detail

template <class T>
Status Score<T>::can_implement(const ScoreArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_score(a));
  return detail::check_score_grid(a.method, a.grouping, a.q.extents[0], a.q.extents[1],
                                  a.q.extents[2], a.k.num_heads);
}
template <class T>
std::size_t Score<T>::workspace_size(const ScoreArgs<T>& a) noexcept {
  WorkspacePlanner planner;
  promptdistill::detail::take_status(planner);
  promptdistill::detail::plan_score(a, planner);
  return planner.bytes_needed();
}
template <class T>
Status Score<T>::run(const ScoreArgs<T>& a, Workspace ws, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  WorkspacePlanner planner(ws);
  auto* status = promptdistill::detail::take_status(planner);
  const auto buffers = promptdistill::detail::plan_score(a, planner);
  PD_RETURN_IF_ERROR(planner.status());
  PD_RETURN_IF_ERROR(detail::reset_status(status, stream));
  PD_RETURN_IF_ERROR(detail::launch_validate_requests(detail::ScoreRequestCheck<T>{a},
                                                      a.q.extents[0], status, stream));
  return detail::launch_score(a, buffers, status, stream);
}

template <class T>
Status ScorePartial<T>::can_implement(const ScorePartialArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_score_partial(a));
  return detail::check_score_grid(a.method, HeadGrouping::kPerKvGroup, a.q.extents[0], 1,
                                  a.q.extents[2], a.k.num_heads);
}
template <class T>
std::size_t ScorePartial<T>::workspace_size(const ScorePartialArgs<T>&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
template <class T>
Status ScorePartial<T>::run(const ScorePartialArgs<T>& a, Workspace ws, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const ScoreArgs<T> s = promptdistill::detail::partial_as_score(a);
  detail::DeviceStatusWord* status = nullptr;
  PD_RETURN_IF_ERROR(detail::begin_status_only_run(ws, stream, &status));
  PD_RETURN_IF_ERROR(detail::launch_validate_requests(detail::ScoreRequestCheck<T>{s},
                                                      a.q.extents[0], status, stream));
  return detail::launch_score(s, promptdistill::detail::ScoreBuffers{}, status, stream,
                              /*partial=*/true, a.accumulate);
}

}  // namespace cuda
}  // namespace promptdistill
