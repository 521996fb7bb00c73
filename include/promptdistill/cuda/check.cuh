// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! CUDA error plumbing: runtime and cuBLASLt errors become `Status` values (kCudaError /
//! kCublasError with the failing call and the library's message); nothing aborts. Define
//! PROMPTDISTILL_DEBUG_SYNC to synchronise after every launch while debugging (CUB's
//! CUB_DEBUG_SYNC idea); never in production builds. Also the grid limits every launcher uses.
//! For CUDA translation units only (it includes the CUDA runtime).

#include <cuda_runtime.h>

#include <cstdint>

#include "promptdistill/status.h"

#define PD_CUDA_TRY(expr)                                                                      \
  do {                                                                                         \
    const cudaError_t pd_err_ = (expr);                                                        \
    if (pd_err_ != cudaSuccess)                                                                \
      return ::promptdistill::Status(::promptdistill::StatusCode::kCudaError, "%s: %s", #expr, \
                                     cudaGetErrorString(pd_err_));                             \
  } while (0)

//! The cuBLASLt counterpart of PD_CUDA_TRY; where it is used, include <cublasLt.h> (kept out of
//! this header so that kernels need no cuBLAS headers).
#define PD_CUBLAS_TRY(expr)                                                                    \
  do {                                                                                         \
    const cublasStatus_t pd_st_ = (expr);                                                      \
    if (pd_st_ != CUBLAS_STATUS_SUCCESS)                                                       \
      return ::promptdistill::Status(::promptdistill::StatusCode::kCublasError, "%s: %s (%d)", \
                                     #expr, cublasLtGetStatusString(pd_st_), int(pd_st_));     \
  } while (0)

#if defined(PROMPTDISTILL_DEBUG_SYNC)
#define PD_CUDA_CHECK_LAUNCH(stream)            \
  do {                                          \
    PD_CUDA_TRY(cudaGetLastError());            \
    PD_CUDA_TRY(cudaStreamSynchronize(stream)); \
  } while (0)
#else
#define PD_CUDA_CHECK_LAUNCH(stream) PD_CUDA_TRY(cudaGetLastError())
#endif

namespace promptdistill {
namespace cuda {
namespace detail {

//! gridDim.y and gridDim.z of every CUDA device are at most this.
constexpr int64_t kMaxGridYZ = 65535;
//! gridDim.x limit of every CUDA device.
constexpr int64_t kMaxGridX = 2147483647;
//! Blocks a grid-stride launch uses at most along x. About 2M blocks fill every GPU many times
//! over; each kernel loops over the rest of its work, so the cap never drops any.
constexpr int64_t kGridStrideBlocks = kMaxGridYZ * 32;

//! A launch with `rows` rows (request x row) along y fits the grid: the check of every op whose
//! grid puts its rows there (pool, row sums, remap), with one message.
inline Status check_rows_along_y(const char* op, int64_t rows) {
  if (rows > kMaxGridYZ)
    return Status(StatusCode::kUnsupported, "%s: %lld rows exceed the grid limit %lld", op,
                  (long long)rows, (long long)kMaxGridYZ);
  return Status::ok();
}

//! Blocks for `n` items at `threads` per block, between 1 and kGridStrideBlocks (for kernels that
//! loop with a grid stride).
inline unsigned blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : b > kGridStrideBlocks ? kGridStrideBlocks : b);
}
//! min(n, cap) blocks (at least 1) for a kernel that loops over `n` rows with a grid stride.
inline unsigned capped_blocks(int64_t n, int64_t cap = kGridStrideBlocks) {
  return unsigned(n < 1 ? 1 : n > cap ? cap : n);
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
