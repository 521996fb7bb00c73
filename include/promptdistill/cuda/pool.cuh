// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Pooling of score rows and the sums of row groups: kernels, launchers, and the bodies of
//! `cuda::Pool` and `cuda::SumRows` (`run_pool`, `run_sum_rows`; the operations are not templates,
//! so their members are defined in cuda/pool_instances.cu and call these).

#include "promptdistill/cuda/launch.cuh"

namespace promptdistill {
namespace cuda {
namespace detail {

constexpr int kPoolThreads = 256;

template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    pool_kernel(PoolArgs a, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  const int64_t R = a.in.extents[1], row = blockIdx.y, b = row / R, r = row % R;
  const int64_t L = a.lengths[b];
  const int64_t n =
      a.mode == PoolMode::kNone ? 0 : (L - a.exclude_tail > 0 ? L - a.exclude_tail : 0);
  const int64_t zero_from = L - a.zero_tail, radius = a.kernel / 2;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < L;
       j += int64_t(gridDim.x) * blockDim.x) {
    if (j >= n) {
      a.out(b, r, j) = a.in(b, r, j);
      continue;
    }
    // Only the taps inside [0, n), as the CPU reference (padding adds +0 to a sum that is never
    // -0: the same bits), so that a huge kernel costs nothing extra.
    float acc = a.mode == PoolMode::kAvg ? 0.0f : -num::kInfinity;
    const int64_t first = j - radius > 0 ? j - radius : 0,
                  last = j + radius < n - 1 ? j + radius : n - 1;
    for (int64_t jj = first; jj <= last; ++jj) {
      const float x = jj < zero_from ? a.in(b, r, jj) : 0.0f;
      acc = a.mode == PoolMode::kAvg ? num::add(acc, x) : num::max_nan(acc, x);
    }
    a.out(b, r, j) = a.mode == PoolMode::kAvg ? num::div(acc, float(a.kernel)) : acc;
  }
}

//! out[b, r, j] = sum over the group's rows in ascending order from +0 (selector.h: SumRowsArgs).
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    sum_rows_kernel(SumRowsArgs a, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  const int64_t R = a.out.extents[1], row = blockIdx.y, b = row / R, r = row % R;
  const int64_t L = a.lengths[b];
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < L;
       j += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (int64_t t = 0; t < a.group; ++t) acc = num::add(acc, a.in(b, r * a.group + t, j));
    a.out(b, r, j) = acc;
  }
}

struct PoolRequestCheck {
  PoolArgs a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    promptdistill::detail::pool_request_ok(a, b, w);
  }
};
struct SumRowsRequestCheck {
  SumRowsArgs a;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    promptdistill::detail::sum_rows_request_ok(a, b, w);
  }
};
//! The pooling grid has one row per (request, score row) along y: at most 65535 of them.
inline Status check_pool_grid(const PoolArgs& a) {
  return check_rows_along_y("pool", a.in.extents[0] * a.in.extents[1]);
}

inline Status launch_pool(const PoolArgs& a, const DeviceStatusWord* status, cudaStream_t stream) {
  const int64_t rows = a.in.extents[0] * a.in.extents[1];
  if (rows == 0 || a.in.extents[2] == 0) return Status::ok();
  PD_RETURN_IF_ERROR(check_pool_grid(a));
  pool_kernel<kPoolThreads><<<dim3(blocks_for(a.in.extents[2], kPoolThreads), unsigned(rows)),
                              kPoolThreads, 0, stream>>>(a, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

//! The group sums' grid has one row per (request, output row) along y, as the pooling's.
inline Status check_sum_rows_grid(const SumRowsArgs& a) {
  return check_rows_along_y("sum_rows", a.out.extents[0] * a.out.extents[1]);
}

inline Status launch_sum_rows(const SumRowsArgs& a, const DeviceStatusWord* status,
                              cudaStream_t stream) {
  const int64_t rows = a.out.extents[0] * a.out.extents[1];
  if (rows == 0 || a.in.extents[2] == 0) return Status::ok();
  PD_RETURN_IF_ERROR(check_sum_rows_grid(a));
  sum_rows_kernel<kPoolThreads><<<dim3(blocks_for(a.in.extents[2], kPoolThreads), unsigned(rows)),
                                  kPoolThreads, 0, stream>>>(a, status);
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
  PD_RETURN_IF_ERROR(
      launch_validate_requests(PoolRequestCheck{a}, a.in.extents[0], status, stream));
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
  PD_RETURN_IF_ERROR(
      launch_validate_requests(SumRowsRequestCheck{a}, a.in.extents[0], status, stream));
  return launch_sum_rows(a, status, stream);
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
