// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CUDA backend's linear layers (cuda/linear.cu), host code only, so that the
//! mapping is testable on machines without a GPU (tests/api/test_cuda_host.cpp).

#include <cublasLt.h>

#include "promptdistill/cuda/check.cuh"

namespace promptdistill {
namespace cuda {
namespace detail {

//! The outcome of a cuBLASLt heuristic query for one problem: `call` is what
//! cublasLtMatmulAlgoGetHeuristic returned, `found` how many algorithms it wrote and `state` the
//! first one's state. cuBLASLt having no algorithm for the problem (it says
//! CUBLAS_STATUS_NOT_SUPPORTED, or returns none, or none usable) is kUnsupported, like any other
//! shape a backend cannot run; every other failure is kCublasError.
inline Status heuristic_status(cublasStatus_t call, int found, cublasStatus_t state, long long rows,
                               long long in, long long out) {
  const bool no_algorithm =
      call == CUBLAS_STATUS_NOT_SUPPORTED ||
      (call == CUBLAS_STATUS_SUCCESS && (found < 1 || state != CUBLAS_STATUS_SUCCESS));
  if (no_algorithm)
    return Status(StatusCode::kUnsupported,
                  "linear: cuBLASLt has no algorithm for rows %lld, in %lld, out %lld", rows, in,
                  out);
  PD_CUBLAS_TRY(call);
  return Status::ok();
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
