// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the kernels_<isa>.cpp files: what they share that is not ISA code (compiled without
//! target attributes, so nothing here can carry one ISA's instructions into another's callers).

#include <cstdint>

#include "pipelines/cpu/cpu_kernels.h"

namespace promptdistill {
namespace ref {
namespace kernels {

//! The calling thread's CPU time in seconds (the FMA probe's clock).
double thread_seconds() noexcept;
//! Consumes a value so that the computation behind it is kept.
void sink(float value) noexcept;

inline Table make_table(Isa isa, int mr, int nr, int64_t kc, void (*gemm)(const GemmArgs&),
                        void (*matvec)(const MatvecArgs&),
                        void (*attention)(const AttentionArgs&)) {
  Table t;
  t.isa = isa, t.mr = mr, t.nr = nr, t.kc = kc;
  t.gemm = gemm, t.matvec = matvec, t.attention = attention;
  return t;
}

const Table* scalar_table() noexcept;
const Table* avx2_table() noexcept;
const Table* avx512_table() noexcept;
double scalar_fma_gflops(double seconds) noexcept;
double avx2_fma_gflops(double seconds) noexcept;
double avx512_fma_gflops(double seconds) noexcept;

}  // namespace kernels
}  // namespace ref
}  // namespace promptdistill
