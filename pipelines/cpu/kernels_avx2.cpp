// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The CPU kernels (cpu_kernels.h) for AVX2 + FMA: micro-tiles of 6 rows x 16 columns (12 of the
//! 16 ymm registers accumulate), panels 16 wide, K blocks of 256 (a 16 KB weight micro-panel in
//! L1). Only the functions below use AVX2 (target attributes): this file runs everywhere.

#include <cstdint>

#include "pipelines/cpu/cpu_kernels.h"
#include "pipelines/cpu/kernels/kernel_support.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include "pipelines/cpu/simd_avx2.h"

namespace promptdistill {
namespace ref {
namespace kernels {
namespace avx2 {
using namespace pd_simd_avx2;
constexpr int kMR = 6, kNV = 1, kPeakChains = 6;
constexpr int kAttMR = 6, kAttNV = 1;
constexpr int64_t kKC = 384;
#include "pipelines/cpu/kernels/gemm_kernels.inc"       // NOLINT(build/include)
#include "pipelines/cpu/kernels/attention_kernels.inc"  // NOLINT(build/include)
#include "pipelines/cpu/kernels/peak_kernel.inc"        // NOLINT(build/include)
}  // namespace avx2

const Table* avx2_table() noexcept {
  static const Table t = make_table(Isa::kAvx2, avx2::kMR, avx2::kNV * kLanes, avx2::kKC,
                                    &avx2::gemm, &avx2::matvec, &avx2::attention);
  return &t;
}
double avx2_fma_gflops(double seconds) noexcept { return avx2::fma_gflops(seconds); }

}  // namespace kernels
}  // namespace ref
}  // namespace promptdistill

#else
namespace promptdistill {
namespace ref {
namespace kernels {
const Table* avx2_table() noexcept { return nullptr; }
double avx2_fma_gflops(double) noexcept { return 0; }
}  // namespace kernels
}  // namespace ref
}  // namespace promptdistill
#endif
