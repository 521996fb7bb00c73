// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Gather of rows, position remap, and in-place KV-cache compaction (Tier A: pure data movement).
//!
//! In-place compaction without races: within a request and head the kept indices are strictly
//! increasing, so idx[i] >= i. One block owns one (request, head, K-or-V) and walks the kept
//! tokens in chunks of kCompactChunk, ascending. For each chunk it first *reads* all of the
//! chunk's sources into shared memory, synchronises, then *writes* the chunk's destinations
//! [c0, c0 + n). A destination slot s of this chunk can only be the source of an entry i with
//! idx[i] = s >= i, i.e. an entry of this chunk (already read) or of an earlier chunk (already
//! written), never of a later chunk (their sources are >= their own slots > s). Different blocks
//! touch disjoint memory: another head, the other cache, or another request's pages (requests
//! must not share pages; copy-on-write shared prefix pages before compacting).
//!
//! Kernels, launchers, `cuda::Gather<T>` and `cuda::CompactKv<T>` (instantiated in
//! cuda/gather_compact_instances.cu) and the body of `cuda::RemapPositions` (`run_remap`).

#include "promptdistill/cuda/launch.cuh"

namespace promptdistill {
namespace cuda {
namespace detail {

constexpr int kGatherThreads = 128;
constexpr int kCompactThreads = 128;
constexpr int kCompactChunk = 32;

template <class T>
__global__ void gather_rows_kernel(GatherArgs<T> a, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  const int64_t b = blockIdx.y, E = a.src.extents[2], count = a.counts(b, 0);
  for (int64_t i = blockIdx.x; i < count; i += gridDim.x) {
    const int64_t j = a.indices(b, 0, i);
    for (int64_t e = threadIdx.x; e < E; e += blockDim.x) a.dst(b, i, e) = a.src(b, j, e);
  }
}

template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    remap_positions_kernel(RemapPositionsArgs a, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  const int64_t R = a.indices.extents[1], row = blockIdx.y, b = row / R, r = row % R;
  const bool lookup = a.mode == PositionMode::kOriginal && a.positions_in.data != nullptr;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.counts(b, r);
       i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t j = a.indices(b, r, i);
    a.positions_out(b, r, i) = a.mode == PositionMode::kRenumber ? int32_t(i)
                               : lookup                          ? a.positions_in(b, j)
                                                                 : j;
  }
}

template <class T>
__global__ void __launch_bounds__(kCompactThreads)
    compact_kv_kernel(CompactKvArgs<T> a, const int32_t* old_lengths,
                      const DeviceStatusWord* status) {
  if (status->code != 0) return;
  __shared__ T chunk[kCompactChunk * kMaxHeadDim];
  const int64_t H = a.k.num_heads, D = a.k.head_dim, R = a.indices.extents[1];
  const int64_t b = blockIdx.x / H, h = blockIdx.x % H, r = R == 1 ? 0 : h;
  const KvCacheView<T>& cache = blockIdx.y == 0 ? a.k : a.v;
  const int64_t count = a.counts(b, r);
  for (int64_t c0 = 0; c0 < count; c0 += kCompactChunk) {
    const int64_t n = count - c0 < kCompactChunk ? count - c0 : kCompactChunk;
    for (int64_t e = threadIdx.x; e < n * D; e += blockDim.x) {
      const int64_t u = e / D, d = e % D;
      chunk[u * D + d] = cache.token(b, a.indices(b, r, c0 + u), h)[d];
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < n * D; e += blockDim.x) {
      const int64_t u = e / D, d = e % D;
      if (a.indices(b, r, c0 + u) != c0 + u) cache.token(b, c0 + u, h)[d] = chunk[u * D + d];
    }
    __syncthreads();
  }
  if (h == 0 && blockIdx.y == 0 && threadIdx.x == 0) {
    a.new_lengths[b] = int32_t(count);
    if (a.freed_pages != nullptr) {
      const int64_t bs = a.k.capacity, before = old_lengths[b];
      a.freed_pages[b] = a.k.paged() ? int32_t((before + bs - 1) / bs - (count + bs - 1) / bs) : 0;
    }
  }
}

template <class T>
struct GatherRequestCheck {
  GatherArgs<T> a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    promptdistill::detail::gather_request_ok(a, b, w);
  }
};
struct RemapRequestCheck {
  RemapPositionsArgs a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    const int64_t cap = a.indices.extents[2] < a.positions_out.extents[2]
                            ? a.indices.extents[2]
                            : a.positions_out.extents[2];
    for (int64_t r = 0; r < a.indices.extents[1]; ++r)
      if (!promptdistill::detail::count_ok(a.counts, b, r, cap, w)) return;
  }
};
//! Also records each request's current length for the index checks and the freed-page count.
template <class T>
struct CompactRequestCheck {
  CompactKvArgs<T> a;
  int32_t* lengths;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    int64_t length = 0;
    // 0 for a failed request: its index checks then fail too, after its own error (which wins).
    lengths[b] = promptdistill::detail::compact_request_ok(a, b, &length, w) ? int32_t(length) : 0;
  }
};

//! The page check (detail::claim_pages, check_page_owner), after every other check passed: one
//! pass claims, the next reports a page claimed first by another (request, position).
template <class T>
struct ClaimPagesCheck {
  CompactKvArgs<T> a;
  const int32_t* lengths;
  unsigned long long* owner;
  bool report;  //!< false: claim; true: report
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    if (w->code != 0) return;  // lengths, pages or indices failed: their error comes first
    if (report)
      promptdistill::detail::check_page_owner(a.k, b, lengths[b], owner, w);
    else
      promptdistill::detail::claim_pages(a.k, b, lengths[b], owner);
  }
};

//! Grid limits: gather and remap put requests (rows) along y, compaction (request, head) along x.
template <class T>
Status check_gather_grid(const GatherArgs<T>& a) {
  if (a.src.extents[0] > kMaxGridYZ)
    return Status(StatusCode::kUnsupported, "gather: batch %lld exceeds the grid limit %lld",
                  (long long)a.src.extents[0], (long long)kMaxGridYZ);
  return Status::ok();
}
inline Status check_remap_grid(const RemapPositionsArgs& a) {
  return check_rows_along_y("remap", a.indices.extents[0] * a.indices.extents[1]);
}
template <class T>
Status check_compact_grid(const CompactKvArgs<T>& a) {
  if (a.k.batch * a.k.num_heads > kMaxGridX)
    return Status(StatusCode::kUnsupported,
                  "compaction: batch x heads = %lld exceeds the grid limit",
                  (long long)(a.k.batch * a.k.num_heads));
  return Status::ok();
}

template <class T>
Status launch_gather(const GatherArgs<T>& a, const DeviceStatusWord* status, cudaStream_t stream) {
  const int64_t B = a.src.extents[0], cap = a.indices.extents[2];
  if (B == 0 || cap == 0) return Status::ok();
  PD_RETURN_IF_ERROR(check_gather_grid(a));
  gather_rows_kernel<<<dim3(capped_blocks(cap), unsigned(B)), kGatherThreads, 0, stream>>>(a,
                                                                                           status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

inline Status launch_remap(const RemapPositionsArgs& a, const DeviceStatusWord* status,
                           cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t rows = a.indices.extents[0] * a.indices.extents[1];
  if (rows == 0 || a.indices.extents[2] == 0) return Status::ok();
  PD_RETURN_IF_ERROR(check_remap_grid(a));
  remap_positions_kernel<kThreads>
      <<<dim3(blocks_for(a.indices.extents[2], kThreads), unsigned(rows)), kThreads, 0, stream>>>(
          a, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

inline Status can_implement_remap(const RemapPositionsArgs& a) {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_remap(a));
  return check_remap_grid(a);
}
inline Status run_remap(const RemapPositionsArgs& a, Workspace ws, Stream stream) {
  PD_RETURN_IF_ERROR(can_implement_remap(a));
  DeviceStatusWord* status = nullptr;
  PD_RETURN_IF_ERROR(begin_status_only_run(ws, stream, &status));
  PD_RETURN_IF_ERROR(
      launch_validate_requests(RemapRequestCheck{a}, a.indices.extents[0], status, stream));
  if (a.mode == PositionMode::kOriginal) {
    const int64_t limit = a.positions_in.data != nullptr ? a.positions_in.extents[1] : INT32_MAX;
    PD_RETURN_IF_ERROR(
        launch_validate_indices(a.indices, a.counts, nullptr, limit, false, status, stream));
  }
  return launch_remap(a, status, stream);
}

}  // namespace detail

template <class T>
Status Gather<T>::can_implement(const GatherArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_gather(a));
  return detail::check_gather_grid(a);
}
template <class T>
std::size_t Gather<T>::workspace_size(const GatherArgs<T>&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
template <class T>
Status Gather<T>::run(const GatherArgs<T>& a, Workspace ws, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  detail::DeviceStatusWord* status = nullptr;
  PD_RETURN_IF_ERROR(detail::begin_status_only_run(ws, stream, &status));
  PD_RETURN_IF_ERROR(detail::launch_validate_requests(detail::GatherRequestCheck<T>{a},
                                                      a.src.extents[0], status, stream));
  PD_RETURN_IF_ERROR(detail::launch_validate_indices(a.indices, a.counts, nullptr, a.src.extents[1],
                                                     false, status, stream));
  return detail::launch_gather(a, status, stream);
}

template <class T>
Status CompactKv<T>::can_implement(const CompactKvArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_compact(a));
  return detail::check_compact_grid(a);
}
template <class T>
std::size_t CompactKv<T>::workspace_size(const CompactKvArgs<T>& a) noexcept {
  WorkspacePlanner planner;
  promptdistill::detail::take_status(planner);
  planner.take<int32_t>(std::size_t(a.k.batch));
  if (a.k.paged())
    planner.take<unsigned long long>(std::size_t(a.k.num_blocks));  // the page owners
  return planner.bytes_needed();
}
template <class T>
Status CompactKv<T>::run(const CompactKvArgs<T>& a, Workspace ws, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  WorkspacePlanner planner(ws);
  auto* status = promptdistill::detail::take_status(planner);
  int32_t* lengths = planner.take<int32_t>(std::size_t(a.k.batch));
  unsigned long long* owner =
      a.k.paged() ? planner.take<unsigned long long>(std::size_t(a.k.num_blocks)) : nullptr;
  PD_RETURN_IF_ERROR(planner.status());
  const int64_t B = a.k.batch, H = a.k.num_heads;
  PD_RETURN_IF_ERROR(detail::reset_status(status, stream));
  PD_RETURN_IF_ERROR(detail::launch_validate_requests(detail::CompactRequestCheck<T>{a, lengths}, B,
                                                      status, stream));
  PD_RETURN_IF_ERROR(
      detail::launch_validate_indices(a.indices, a.counts, lengths, 0, true, status, stream));
  if (owner != nullptr && a.k.num_blocks > 0) {  // last, as the CPU checks it
    PD_CUDA_TRY(cudaMemsetAsync(owner, 0xFF,
                                std::size_t(a.k.num_blocks) * sizeof(unsigned long long), stream));
    PD_RETURN_IF_ERROR(detail::launch_validate_requests(
        detail::ClaimPagesCheck<T>{a, lengths, owner, false}, B, status, stream));
    PD_RETURN_IF_ERROR(detail::launch_validate_requests(
        detail::ClaimPagesCheck<T>{a, lengths, owner, true}, B, status, stream));
  }
  if (B == 0) return Status::ok();
  detail::compact_kv_kernel<<<dim3(unsigned(B * H), 2), detail::kCompactThreads, 0, stream>>>(
      a, lengths, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

}  // namespace cuda
}  // namespace promptdistill
