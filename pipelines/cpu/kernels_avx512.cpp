// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The CPU kernels (cpu_kernels.h) for AVX-512 (F, DQ, BW, VL): micro-tiles of 12 rows x 32
//! columns (24 of the 32 zmm registers accumulate), panels 32 wide, K blocks of 192 (a 24 KB
//! weight micro-panel in L1). Only the functions below use AVX-512 (target attributes).

#include <cstdint>

#include "pipelines/cpu/cpu_kernels.h"
#include "pipelines/cpu/kernels/kernel_support.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include "pipelines/cpu/simd_avx512.h"

// GCC 12 reports the AVX-512 intrinsics' own _mm512_undefined_* placeholders as maybe
// uninitialized once they are inlined here (a known false positive of its headers).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace promptdistill {
namespace ref {
namespace kernels {
namespace avx512 {
using namespace pd_simd_avx512;
constexpr int kMR = 12, kNV = 2, kPeakChains = 12;
constexpr int kAttMR = 6, kAttNV = 4;
constexpr int64_t kKC = 384;
#include "pipelines/cpu/kernels/gemm_kernels.inc"       // NOLINT(build/include)
#include "pipelines/cpu/kernels/attention_kernels.inc"  // NOLINT(build/include)
#include "pipelines/cpu/kernels/peak_kernel.inc"        // NOLINT(build/include)
}  // namespace avx512

const Table* avx512_table() noexcept {
  static const Table t = make_table(Isa::kAvx512, avx512::kMR, avx512::kNV * kLanes, avx512::kKC,
                                    &avx512::gemm, &avx512::matvec, &avx512::attention);
  return &t;
}
double avx512_fma_gflops(double seconds) noexcept { return avx512::fma_gflops(seconds); }

}  // namespace kernels
}  // namespace ref
}  // namespace promptdistill

#else
namespace promptdistill {
namespace ref {
namespace kernels {
const Table* avx512_table() noexcept { return nullptr; }
double avx512_fma_gflops(double) noexcept { return 0; }
}  // namespace kernels
}  // namespace ref
}  // namespace promptdistill
#endif
