// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Google Benchmark helpers for device code: every iteration times `kRepeats` launches with CUDA
//! events, each after flushing L2 from a buffer allocated once, and reports the median as the
//! iteration's manual time. Workspaces and inputs are allocated outside the timed region.

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace pdbench {

class L2Flush {
 public:
  L2Flush() {
    int device = 0, l2 = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device);
    bytes_ = std::size_t(l2) * 2;
    if (bytes_ > 0) cudaMalloc(&buffer_, bytes_);
  }
  ~L2Flush() {
    if (buffer_) cudaFree(buffer_);
  }
  void flush(cudaStream_t stream) {
    if (buffer_) cudaMemsetAsync(buffer_, 0, bytes_, stream);
  }

 private:
  void* buffer_ = nullptr;
  std::size_t bytes_ = 0;
};

//! Times `launch(stream)` with events: median of `repeats` runs, L2 flushed before each.
template <class Launch>
void time_median(benchmark::State& state, Launch&& launch, int repeats = 7) {
  static L2Flush flush;
  cudaStream_t stream = nullptr;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  launch(stream);  // warm-up (and first-launch module loading)
  cudaStreamSynchronize(stream);
  std::vector<float> ms(static_cast<std::size_t>(repeats));
  for (auto _ : state) {
    for (int r = 0; r < repeats; ++r) {
      flush.flush(stream);
      cudaEventRecord(start, stream);
      launch(stream);
      cudaEventRecord(stop, stream);
      cudaEventSynchronize(stop);
      cudaEventElapsedTime(ms.data() + r, start, stop);
    }
    std::nth_element(ms.begin(), ms.begin() + repeats / 2, ms.end());
    state.SetIterationTime(double(ms[std::size_t(repeats / 2)]) * 1e-3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (cudaGetLastError() != cudaSuccess) state.SkipWithError("CUDA error during the benchmark");
}

//! Exit code of a GPU program that found no device (as the CUDA tests: scripts/gpu_run.sh and
//! CTest report it as skipped).
constexpr int kSkipped = 77;

//! main() of the GPU benchmark binaries: without a device, say so and exit kSkipped; otherwise
//! record the device in the JSON context and run.
inline int run_gpu_benchmarks(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device; GPU benchmarks need a GPU\n");
    return kSkipped;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  benchmark::AddCustomContext("device", prop.name);
  benchmark::AddCustomContext("sm", std::to_string(prop.major * 10 + prop.minor));
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace pdbench
