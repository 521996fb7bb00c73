// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! CUDA error plumbing: runtime errors become `Status` values (kCudaError with the failing call
//! and the runtime's message); nothing aborts. Define PROMPTDISTILL_DEBUG_SYNC to synchronise
//! after every launch while debugging (CUB's CUB_DEBUG_SYNC idea); never in production builds.

#include <cuda_runtime.h>

#include "promptdistill/status.h"

#define PD_CUDA_TRY(expr)                                                                  \
  do {                                                                                     \
    const cudaError_t pd_err_ = (expr);                                                    \
    if (pd_err_ != cudaSuccess)                                                            \
      return ::promptdistill::Status(::promptdistill::StatusCode::kCudaError, "%s: %s",    \
                                     #expr, cudaGetErrorString(pd_err_));                  \
  } while (0)

#if defined(PROMPTDISTILL_DEBUG_SYNC)
#define PD_CUDA_CHECK_LAUNCH(stream)                   \
  do {                                                 \
    PD_CUDA_TRY(cudaGetLastError());                   \
    PD_CUDA_TRY(cudaStreamSynchronize(stream));        \
  } while (0)
#else
#define PD_CUDA_CHECK_LAUNCH(stream) PD_CUDA_TRY(cudaGetLastError())
#endif

namespace promptdistill {
namespace cuda {
namespace detail {

inline unsigned blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : b > 65535 * 32 ? 65535 * 32 : b);
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
