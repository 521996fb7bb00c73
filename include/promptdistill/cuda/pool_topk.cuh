// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Pooling, the sums of row groups and the deterministic batched top-k: kernels, launchers, and
//! the bodies of `cuda::Pool`, `cuda::SumRows` and `cuda::TopK` (`run_pool`, `run_sum_rows`,
//! `run_topk`; the operations are not templates, so their members are defined in
//! cuda/pool_topk_instances.cu and call these).
//!
//! Top-k is our own radix select (the toolkit's CCCL 3.0.1 has no cub::DeviceTopK): one
//! 1024-thread block per row (request x head), per-row length and k read on the device.
//! 1. Scores become 32-bit rank keys (detail::rank_key: larger key ranks higher, NaN lowest,
//!    -0 == +0). Four 8-bit passes over the candidates find the exact threshold key T of the
//!    k-th best candidate and how many of the candidates equal to T are needed.
//! 2. One ordered pass over the row writes the kept indices: forced positions, candidates with
//!    key > T, and the first `needed` candidates with key == T in index order (so ties go to the
//!    smaller index). Block-wide exclusive scans give both the tie rank and the output slot,
//!    which makes the output sorted ascending with no sort at all.
//! Histograms use warp-aggregated shared atomics, so rows that are all ties do not serialise
//! on one counter. Integer counting only: the result is deterministic and equals the reference's
//! comparison sort exactly (Tier A).

#include <cub/block/block_scan.cuh>

#include "promptdistill/cuda/launch.cuh"

namespace promptdistill {
namespace cuda {
namespace detail {

constexpr int kPoolThreads = 256;
constexpr int kTopKThreads = 1024;
constexpr int kRadixBits = 8;
constexpr int kRadixBins = 1 << kRadixBits;

template <int kThreads>
__global__ void __launch_bounds__(kThreads) pool_kernel(PoolArgs a, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  const int64_t R = a.in.extents[1], row = blockIdx.y, b = row / R, r = row % R;
  const int64_t L = a.lengths[b];
  const int64_t n = a.mode == PoolMode::kNone ? 0 : (L - a.exclude_tail > 0 ? L - a.exclude_tail : 0);
  const int64_t zero_from = L - a.zero_tail, radius = a.kernel / 2;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < L; j += int64_t(gridDim.x) * blockDim.x) {
    if (j >= n) {
      a.out(b, r, j) = a.in(b, r, j);
      continue;
    }
    // Only the taps inside [0, n), as the CPU reference (padding adds +0 to a sum that is never
    // -0: the same bits), so that a huge kernel costs nothing extra.
    float acc = a.mode == PoolMode::kAvg ? 0.0f : -num::kInfinity;
    const int64_t first = j - radius > 0 ? j - radius : 0, last = j + radius < n - 1 ? j + radius : n - 1;
    for (int64_t jj = first; jj <= last; ++jj) {
      const float x = jj < zero_from ? a.in(b, r, jj) : 0.0f;
      acc = a.mode == PoolMode::kAvg ? num::add(acc, x) : num::max_nan(acc, x);
    }
    a.out(b, r, j) = a.mode == PoolMode::kAvg ? num::div(acc, float(a.kernel)) : acc;
  }
}

//! out[b, r, j] = sum over the group's rows in ascending order from +0 (selector.h: SumRowsArgs).
template <int kThreads>
__global__ void __launch_bounds__(kThreads) sum_rows_kernel(SumRowsArgs a, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  const int64_t R = a.out.extents[1], row = blockIdx.y, b = row / R, r = row % R;
  const int64_t L = a.lengths[b];
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < L; j += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (int64_t t = 0; t < a.group; ++t) acc = num::add(acc, a.in(b, r * a.group + t, j));
    a.out(b, r, j) = acc;
  }
}

//! Adds 1 to hist[digit] for every active lane, one atomic per distinct digit in the warp.
__device__ __forceinline__ void warp_aggregated_increment(unsigned* hist, unsigned digit, bool active) {
  const unsigned mask = __ballot_sync(0xffffffffu, active);
  if (!active) return;
  const unsigned peers = __match_any_sync(mask, digit);
  const int leader = __ffs(peers) - 1;
  if (int(threadIdx.x % 32) == leader) atomicAdd(&hist[digit], unsigned(__popc(peers)));
}

template <int kThreads>
__global__ void __launch_bounds__(kThreads) topk_kernel(TopKArgs a, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ unsigned hist[kRadixBins];
  __shared__ uint32_t prefix_shared;
  __shared__ int64_t remaining_shared;

  const int64_t R = a.scores.extents[1];
  for (int64_t row = blockIdx.x; row < a.scores.extents[0] * R; row += gridDim.x) {
    const int64_t b = row / R, r = row % R, L = a.lengths[b];
    int64_t k = 0;
    promptdistill::detail::topk_k_of(a, b, &k, nullptr);  // validated before this kernel
    const auto geo = promptdistill::detail::topk_row(L, k, a.keep_first, a.keep_last);
    const int64_t c0 = geo.first, c1 = L - geo.last;
    const bool take_all = geo.chosen == c1 - c0, take_none = geo.chosen == 0;
    auto key_at = [&](int64_t j) { return promptdistill::detail::rank_key(a.scores(b, r, j)); };

    uint32_t threshold = 0;
    int64_t needed_ties = 0;
    if (!take_all && !take_none) {
      if (threadIdx.x == 0) {
        prefix_shared = 0;
        remaining_shared = geo.chosen;
      }
      uint32_t mask = 0;
      for (int shift = 32 - kRadixBits; shift >= 0; shift -= kRadixBits) {
        for (int i = threadIdx.x; i < kRadixBins; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        const uint32_t prefix = prefix_shared;
        // Whole warps iterate together so the aggregated atomics see a full mask.
        for (int64_t base = c0; base < c1; base += blockDim.x) {
          const int64_t j = base + threadIdx.x;
          const uint32_t key = j < c1 ? key_at(j) : 0u;
          const bool active = j < c1 && (key & mask) == prefix;
          warp_aggregated_increment(hist, (key >> shift) & (kRadixBins - 1), active);
        }
        __syncthreads();
        if (threadIdx.x < 32) {
          // Lane l owns bins 255 - 8l ... 248 - 8l (descending key order). Every lane reads the
          // count still to place into a register before any lane of the warp can overwrite it
          // below (lanes of a warp are not in lockstep: the barrier orders the read first).
          const int lane = threadIdx.x;
          const int64_t rem = remaining_shared;
          __syncwarp();
          unsigned own = 0;
          for (int q = 0; q < 8; ++q) own += hist[kRadixBins - 1 - lane * 8 - q];
          unsigned inclusive = own;
          for (int s = 1; s < 32; s <<= 1) {
            const unsigned other = __shfl_up_sync(0xffffffffu, inclusive, s);
            if (lane >= s) inclusive += other;
          }
          const unsigned before = inclusive - own;
          if (int64_t(before) < rem && rem <= int64_t(inclusive)) {
            unsigned cum = before;
            for (int q = 0; q < 8; ++q) {
              const int digit = kRadixBins - 1 - lane * 8 - q;
              if (rem <= int64_t(cum + hist[digit])) {
                prefix_shared = prefix | (uint32_t(digit) << shift);
                remaining_shared = rem - cum;
                break;
              }
              cum += hist[digit];
            }
          }
        }
        mask |= uint32_t(kRadixBins - 1) << shift;
        __syncthreads();
      }
      threshold = prefix_shared;
      needed_ties = remaining_shared;
    }

    // Ordered output pass.
    int64_t written = 0, ties_seen = 0;
    for (int64_t base = 0; base < L; base += blockDim.x) {
      const int64_t j = base + threadIdx.x;
      const bool in_row = j < L;
      const bool candidate = in_row && j >= c0 && j < c1;
      const uint32_t key = candidate && !take_all && !take_none ? key_at(j) : 0u;
      const bool tie = candidate && !take_all && !take_none && key == threshold;
      int tie_rank = 0, tie_total = 0;
      Scan(scan_storage).ExclusiveSum(int(tie), tie_rank, tie_total);
      __syncthreads();
      bool keep = in_row && !candidate;
      if (candidate) {
        keep = take_all || (!take_none && (key > threshold || (tie && ties_seen + tie_rank < needed_ties)));
      }
      int slot = 0, kept_total = 0;
      Scan(scan_storage).ExclusiveSum(int(keep), slot, kept_total);
      __syncthreads();
      if (keep) a.indices(b, r, written + slot) = int32_t(j);
      written += kept_total;
      ties_seen += tie_total;
    }
    if (threadIdx.x == 0) a.counts(b, r) = int32_t(written);
    __syncthreads();
  }
}

struct PoolRequestCheck {
  PoolArgs a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const { promptdistill::detail::pool_request_ok(a, b, w); }
};
struct SumRowsRequestCheck {
  SumRowsArgs a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const { promptdistill::detail::sum_rows_request_ok(a, b, w); }
};
struct TopKRequestCheck {
  TopKArgs a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const { promptdistill::detail::topk_request_ok(a, b, w); }
};

//! The pooling grid has one row per (request, score row) along y: at most 65535 of them.
inline Status check_pool_grid(const PoolArgs& a) {
  const int64_t rows = a.in.extents[0] * a.in.extents[1];
  if (rows > kMaxGridYZ)
    return Status(StatusCode::kUnsupported, "pool: %lld rows exceed the grid limit %lld", (long long)rows,
                  (long long)kMaxGridYZ);
  return Status::ok();
}

inline Status launch_pool(const PoolArgs& a, const DeviceStatusWord* status, cudaStream_t stream) {
  const int64_t rows = a.in.extents[0] * a.in.extents[1];
  if (rows == 0 || a.in.extents[2] == 0) return Status::ok();
  PD_RETURN_IF_ERROR(check_pool_grid(a));
  pool_kernel<kPoolThreads>
      <<<dim3(blocks_for(a.in.extents[2], kPoolThreads), unsigned(rows)), kPoolThreads, 0, stream>>>(a, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

//! The group sums' grid has one row per (request, output row) along y, as the pooling's.
inline Status check_sum_rows_grid(const SumRowsArgs& a) {
  const int64_t rows = a.out.extents[0] * a.out.extents[1];
  if (rows > kMaxGridYZ)
    return Status(StatusCode::kUnsupported, "sum_rows: %lld rows exceed the grid limit %lld", (long long)rows,
                  (long long)kMaxGridYZ);
  return Status::ok();
}

inline Status launch_sum_rows(const SumRowsArgs& a, const DeviceStatusWord* status, cudaStream_t stream) {
  const int64_t rows = a.out.extents[0] * a.out.extents[1];
  if (rows == 0 || a.in.extents[2] == 0) return Status::ok();
  PD_RETURN_IF_ERROR(check_sum_rows_grid(a));
  sum_rows_kernel<kPoolThreads>
      <<<dim3(blocks_for(a.in.extents[2], kPoolThreads), unsigned(rows)), kPoolThreads, 0, stream>>>(a, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

//! One block per row; the kernel loops over rows beyond the grid.
inline Status launch_topk(const TopKArgs& a, const DeviceStatusWord* status, cudaStream_t stream) {
  const int64_t rows = a.scores.extents[0] * a.scores.extents[1];
  if (rows == 0) return Status::ok();
  topk_kernel<kTopKThreads><<<capped_blocks(rows), kTopKThreads, 0, stream>>>(a, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

inline Status can_implement_pool(const PoolArgs& a) {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_pool(a));
  return check_pool_grid(a);
}
inline Status run_pool(const PoolArgs& a, Workspace ws, Stream stream) {
  PD_RETURN_IF_ERROR(can_implement_pool(a));
  DeviceStatusWord* status = nullptr;
  PD_RETURN_IF_ERROR(begin_status_only_run(ws, stream, &status));
  PD_RETURN_IF_ERROR(launch_validate_requests(PoolRequestCheck{a}, a.in.extents[0], status, stream));
  return launch_pool(a, status, stream);
}

inline Status can_implement_sum_rows(const SumRowsArgs& a) {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_sum_rows(a));
  return check_sum_rows_grid(a);
}
inline Status run_sum_rows(const SumRowsArgs& a, Workspace ws, Stream stream) {
  PD_RETURN_IF_ERROR(can_implement_sum_rows(a));
  DeviceStatusWord* status = nullptr;
  PD_RETURN_IF_ERROR(begin_status_only_run(ws, stream, &status));
  PD_RETURN_IF_ERROR(launch_validate_requests(SumRowsRequestCheck{a}, a.in.extents[0], status, stream));
  return launch_sum_rows(a, status, stream);
}

inline Status run_topk(const TopKArgs& a, Workspace ws, Stream stream) {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_topk(a));
  DeviceStatusWord* status = nullptr;
  PD_RETURN_IF_ERROR(begin_status_only_run(ws, stream, &status));
  PD_RETURN_IF_ERROR(launch_validate_requests(TopKRequestCheck{a}, a.scores.extents[0], status, stream));
  return launch_topk(a, status, stream);
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
