// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! doctest main shared by every test binary.
//! - `--seed=N` (or PROMPTDISTILL_SEED=N) replays a run; the seed is printed at start and in every
//!   failure's context (tests CAPTURE it).
//! - Model test binaries (built with PD_TEST_MODEL) are skipped the same way when the model file
//!   is missing.
//! - CUDA test binaries (built with PD_TEST_CUDA) probe for a device once; without one they print
//!   a SKIPPED line and exit with code 77, which CTest reports as "Skipped" (SKIP_RETURN_CODE).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "support/generators.h"

#if defined(PD_TEST_CUDA)
#include <cuda_runtime.h>
#endif

namespace pdtest {
namespace {
uint64_t g_seed = 20261123;
}
uint64_t seed() { return g_seed; }
}  // namespace pdtest

int main(int argc, char** argv) {
  std::vector<char*> args;
  if (const char* env = std::getenv("PROMPTDISTILL_SEED")) pdtest::g_seed = std::strtoull(env, nullptr, 10);
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--seed=", 7) == 0) {
      pdtest::g_seed = std::strtoull(argv[i] + 7, nullptr, 10);
      continue;
    }
    args.push_back(argv[i]);
  }
  std::printf("[promptdistill tests] seed=%llu (replay with --seed=%llu)\n",
              static_cast<unsigned long long>(pdtest::g_seed), static_cast<unsigned long long>(pdtest::g_seed));
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
  doctest::Context context;
  context.applyCommandLine(int(args.size()), args.data());
  return context.run();
}
