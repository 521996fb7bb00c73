// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU decoder: its f32 linear layers on weights packed once for the kernels of
//! cpu_kernels.h. A PackedMatrix holds one or more row-major [rows_i, cols] matrices that read the
//! same input (Q, K and V; gate and up), so one GEMM reads the activations once and writes each
//! part to its own output. Every output is one fma chain over the input in order (cpu_kernels.h):
//! the bits do not depend on the thread count, the ISA or the number of rows, and a one-row
//! product (the decode step's) equals that row of a prefill's.

#include <cstdint>
#include <memory>
#include <vector>

#include "pipelines/cpu/cpu_kernels.h"
#include "promptdistill/status.h"

namespace promptdistill {
namespace ref {
namespace gemm {

//! 64-byte aligned floats (the kernels' full-vector loads of packed panels never split lines).
class AlignedBuffer {
 public:
  Status resize(int64_t floats) noexcept;
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  int64_t size() const { return size_; }

 private:
  struct Free {
    void operator()(float* p) const noexcept;
  };
  std::unique_ptr<float[], Free> data_;
  int64_t size_ = 0;
};

struct Part {
  const float* w = nullptr;  //!< row-major [rows, cols]
  int64_t rows = 0;
};

class PackedMatrix {
 public:
  //! Packs `count` parts (at most kernels::kMaxSegments) of `cols` columns in panels of `nr`
  //! (a multiple of kernels::kLanes), K in blocks of at most `kc` (equal ones); pack_for_active()
  //! takes both from the table in use.
  static Status pack(const Part* parts, int count, int64_t cols, int64_t nr, int64_t kc,
                     PackedMatrix* out) noexcept;
  static Status pack_for_active(const Part* parts, int count, int64_t cols,
                                PackedMatrix* out) noexcept;
  //! The parts rounded to bf16 in AMX tiles (kernels::AmxGemmArgs), for the bf16 prefill; needs
  //! kernels::amx_bf16_available().
  static Status pack_bf16_tiles(const Part* parts, int count, int64_t cols,
                                PackedMatrix* out) noexcept;
  bool bf16_tiles() const { return bf16_; }
  int64_t cols() const { return cols_; }
  int parts() const { return count_; }
  int64_t rows(int part) const { return rows_[part]; }
  int64_t bytes() const { return storage_.size() * int64_t(sizeof(float)); }
  kernels::Panels panels() const;
  int64_t first_panel(int part) const { return first_panel_[part]; }

 private:
  AlignedBuffer storage_;
  int64_t cols_ = 0, nr_ = 0, kc_ = 0, total_panels_ = 0;
  bool bf16_ = false;
  int count_ = 0;
  int64_t rows_[kernels::kMaxSegments] = {}, first_panel_[kernels::kMaxSegments] = {};
};

//! Where part i's outputs go: row r at c + r * ldc (ldc >= the part's rows).
struct Output {
  float* c = nullptr;
  int64_t ldc = 0;
};

//! out_i[m, rows_i] = A[m, cols] * W_i^T for every part (A's row stride lda >= cols), threaded
//! over row blocks and panel groups (OpenMP); m = 1 runs the matrix-vector kernel, which
//! allocates nothing. `outs` holds one Output per part. `scratch`, when given, is grown (never
//! shrunk) and used instead of a fresh allocation.
Status run(const PackedMatrix& w, const float* a, int64_t m, int64_t lda, const Output* outs,
           std::vector<float>* scratch = nullptr) noexcept;

}  // namespace gemm
}  // namespace ref
}  // namespace promptdistill
