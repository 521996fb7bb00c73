// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! What a test binary needs before its tests can run, checked by the shared doctest main
//! (support/test_main.cpp). This file is compiled into each binary with that binary's definitions:
//! - PD_TEST_MODEL (a model file's path): skipped when the file is missing;
//! - PD_TEST_CUDA: skipped without a CUDA device, and the device is printed when there is one.
//! It is small on purpose: the doctest main itself is compiled once for every binary.
#include <cstdio>

#if defined(PD_TEST_CUDA)
#include <cuda_runtime.h>
#endif

namespace pdtest {

//! 0 when the binary can run; 77 (CTest's SKIP_RETURN_CODE) after a SKIPPED line when it cannot.
int check_requirements() {
#if defined(PD_TEST_MODEL)
  if (FILE* f = std::fopen(PD_TEST_MODEL, "rb")) {
    std::fclose(f);
  } else {
    std::printf("SKIPPED: model file %s is missing (run scripts/fetch_model.sh)\n", PD_TEST_MODEL);
    return 77;
  }
#endif
#if defined(PD_TEST_CUDA)
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device (%s); CUDA tests need a GPU\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("[promptdistill tests] device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
#endif
  return 0;
}

}  // namespace pdtest
