// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU decoder: the OpenMP team size and thread number, 1 and 0 in a build
//! without OpenMP, for the kernels that give each thread its own scratch.

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace promptdistill {
namespace ref {
namespace omp_threads {

inline int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline int thread_id() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace omp_threads
}  // namespace ref
}  // namespace promptdistill
