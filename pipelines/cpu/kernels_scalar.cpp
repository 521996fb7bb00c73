// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The CPU kernels (cpu_kernels.h) in portable C++ (std::fma per lane): what runs where neither
//! AVX2 nor AVX-512 is available, and the definition the vector tables are tested against bit for
//! bit.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "pipelines/cpu/cpu_kernels.h"
#include "pipelines/cpu/kernels/kernel_support.h"
#include "pipelines/cpu/simd_scalar.h"

namespace promptdistill {
namespace ref {
namespace kernels {
namespace scalar {
using namespace pd_simd_scalar;
constexpr int kMR = 4, kNV = 1, kPeakChains = 4;
constexpr int kAttMR = 4, kAttNV = 1;
constexpr int64_t kKC = 384;
#include "pipelines/cpu/kernels/gemm_kernels.inc"       // NOLINT(build/include)
#include "pipelines/cpu/kernels/attention_kernels.inc"  // NOLINT(build/include)
#include "pipelines/cpu/kernels/peak_kernel.inc"        // NOLINT(build/include)
}  // namespace scalar

const Table* scalar_table() noexcept {
  static const Table t = make_table(Isa::kScalar, scalar::kMR, scalar::kNV * kLanes, scalar::kKC,
                                    &scalar::gemm, &scalar::matvec, &scalar::attention);
  return &t;
}
double scalar_fma_gflops(double seconds) noexcept { return scalar::fma_gflops(seconds); }

}  // namespace kernels
}  // namespace ref
}  // namespace promptdistill
