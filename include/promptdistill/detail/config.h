// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Portability macros: the only place where the library defines macros for host/device code.

#define PROMPTDISTILL_VERSION_MAJOR 0
#define PROMPTDISTILL_VERSION_MINOR 1
#define PROMPTDISTILL_VERSION_PATCH 0

#if defined(__CUDACC__)
#define PD_HOST_DEVICE __host__ __device__
#define PD_FORCEINLINE __forceinline__
#else
#define PD_HOST_DEVICE
#define PD_FORCEINLINE inline __attribute__((always_inline))
#endif

// Forward declaration of the CUDA stream type, so that public headers can name a stream without
// including the CUDA runtime. `Stream` is the same type as `cudaStream_t`.
struct CUstream_st;

namespace promptdistill {
using Stream = CUstream_st*;
}  // namespace promptdistill
