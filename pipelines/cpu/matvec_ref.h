// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU decoder: matrix-vector products of single-token steps on weights held in
//! f32 (the exact reference: Eigen's own GEMV on row slices), f16 (with the f32 input), or GGUF
//! quantized blocks (Q8_0, Q4_0, Q4_1) with the input quantized to int16 per block of 32 (scale
//! max|x| / 32767: each input within 2^-16 of its block's largest), dotted in exact int32
//! arithmetic. llama.cpp quantizes the input to int8 instead; that error (256 times larger) moved a
//! greedy token of a golden prompt, int16 keeps them all at nearly the same speed.
//!
//! Threads split the output rows in slices whose starts are multiples of kRowSlice; each output
//! is one dot product computed by one thread in a fixed order, so the result does not depend on
//! the thread count. For f32, Eigen's row-major GEMV computes every row of an 8-, 4-, 2-row group
//! the same way, and slices starting at multiples of 8 give each row the group shape it has in
//! one unsplit call: the bits equal Eigen's single-threaded product.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "promptdistill/gguf.h"
#include "promptdistill/status.h"

namespace promptdistill {
namespace ref {
namespace matvec {

constexpr int64_t kRowSlice = 32;  //!< rows per parallel work item (a multiple of 8: see above)
constexpr int64_t kBlock = 32;     //!< elements per quantized block (Q8_0, Q4_0, Q4_1)

enum class Format : int32_t { kF32, kF16, kQ8_0, kQ4_0, kQ4_1 };
const char* to_string(Format f) noexcept;
//! Bytes of one row of `cols` elements (cols a multiple of kBlock for the block formats).
int64_t row_bytes(Format f, int64_t cols) noexcept;
bool is_quantized(Format f) noexcept;

//! A row-major [rows, cols] matrix in one format. f32 matrices point at the model's weights (no
//! copy); the others own their bytes.
class Matrix {
 public:
  Format format() const { return format_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const uint8_t* row(int64_t r) const { return data_ + r * row_bytes_; }
  int64_t bytes() const { return int64_t(storage_.size()); }

  //! Views f32 weights (not owned; they must outlive the matrix).
  static Matrix view_f32(const float* w, int64_t rows, int64_t cols);
  //! Rounds f32 weights to f16 (nearest even).
  static Status from_f32_as_f16(const float* w, int64_t rows, int64_t cols, Matrix* out);
  //! Takes a GGUF tensor's own bytes (F16, Q8_0, Q4_0, Q4_1; rows of whole blocks).
  static Status from_gguf(GgmlType type, std::vector<uint8_t> bytes, int64_t rows, int64_t cols,
                          Matrix* out);

  Matrix() = default;
  Matrix(Matrix&& o) noexcept { *this = std::move(o); }
  Matrix& operator=(Matrix&& o) noexcept;
  Matrix(const Matrix&) = delete;
  Matrix& operator=(const Matrix&) = delete;

 private:
  Format format_ = Format::kF32;
  int64_t rows_ = 0, cols_ = 0, row_bytes_ = 0;
  const uint8_t* data_ = nullptr;
  std::vector<uint8_t> storage_;
};

bool needs_block_sums(Format f) noexcept;

//! An input vector quantized for the block formats: per block of 32, int16 values and the scale d.
struct Input16 {
  std::vector<int16_t> q;
  std::vector<float> d;
  //! Sizes the buffers for `n` elements (a multiple of kBlock); allocates only when they grow.
  void reserve(int64_t n);
};
//! Quantizes x[n] (n a multiple of kBlock) into `out`, reserved for at least n.
void quantize_input(const float* x, int64_t n, Input16* out) noexcept;
//! sums[b] = sum of x over block b (n a multiple of kBlock): Q4_1's offset term.
void block_sums(const float* x, int64_t n, float* sums) noexcept;

//! One product y[rows] = M x. For block formats, `xq` is x quantized; `block_sums` the block sums
//! of x when needs_block_sums(M's format).
struct Product {
  const Matrix* m = nullptr;
  const float* x = nullptr;
  const Input16* xq = nullptr;
  const float* block_sums = nullptr;
  float* y = nullptr;
};
//! Runs `count` products in one parallel loop over their row slices (one OpenMP region).
void run(const Product* products, int count) noexcept;
//! Rows [r0, r1) of one product, on the calling thread (the kernels; also what tests compare).
void run_rows(const Product& p, int64_t r0, int64_t r1) noexcept;

}  // namespace matvec
}  // namespace ref
}  // namespace promptdistill
