// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! The deterministic batched top-k: kernel, launcher, and the body of `cuda::TopK` (`run_topk`;
//! the operation is not a template, so its members are defined in cuda/topk_instances.cu and call
//! it). Pooling and the row-group sums are in pool.cuh.
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

constexpr int kTopKThreads = 1024;
constexpr int kRadixBits = 8;
constexpr int kRadixBins = 1 << kRadixBits;

//! Adds 1 to hist[digit] for every active lane, one atomic per distinct digit in the warp.
__device__ __forceinline__ void warp_aggregated_increment(unsigned* hist, unsigned digit,
                                                          bool active) {
  const unsigned mask = __ballot_sync(0xffffffffu, active);
  if (!active) return;
  const unsigned peers = __match_any_sync(mask, digit);
  const int leader = __ffs(peers) - 1;
  if (int(threadIdx.x % 32) == leader) atomicAdd(&hist[digit], unsigned(__popc(peers)));
}

template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    topk_kernel(TopKArgs a, const DeviceStatusWord* status) {
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
        keep = take_all ||
               (!take_none && (key > threshold || (tie && ties_seen + tie_rank < needed_ties)));
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

struct TopKRequestCheck {
  TopKArgs a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    promptdistill::detail::topk_request_ok(a, b, w);
  }
};

//! One block per row; the kernel loops over rows beyond the grid.
inline Status launch_topk(const TopKArgs& a, const DeviceStatusWord* status, cudaStream_t stream) {
  const int64_t rows = a.scores.extents[0] * a.scores.extents[1];
  if (rows == 0) return Status::ok();
  topk_kernel<kTopKThreads><<<capped_blocks(rows), kTopKThreads, 0, stream>>>(a, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

inline Status run_topk(const TopKArgs& a, Workspace ws, Stream stream) {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_topk(a));
  DeviceStatusWord* status = nullptr;
  PD_RETURN_IF_ERROR(begin_status_only_run(ws, stream, &status));
  PD_RETURN_IF_ERROR(
      launch_validate_requests(TopKRequestCheck{a}, a.scores.extents[0], status, stream));
  return launch_topk(a, status, stream);
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
