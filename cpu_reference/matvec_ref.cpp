// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Matrix-vector products of the CPU decoder's single-token steps (see matvec_ref.h). The f16 and
//! block kernels use AVX2/FMA/F16C where the build targets x86-64-v3 and plain loops elsewhere.

#include "cpu_reference/matvec_ref.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define PD_MATVEC_AVX2 1
#endif

#include "promptdistill/dtype.h"

namespace promptdistill {
namespace ref {
namespace matvec {
namespace {

float half_to_float(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
#if defined(PD_MATVEC_AVX2)
  return _cvtsh_ss(bits);  // F16C: exact, as to_float, in one instruction (block scales are hot)
#else
  return to_float(f16{bits});
#endif
}
void float_to_half(float x, uint8_t* p) {
  const uint16_t bits = to_f16(x).bits;
  std::memcpy(p, &bits, 2);
}

// Block layouts (GGUF): Q8_0 = f16 d, int8 q[32]; Q4_0 = f16 d, 16 bytes of nibbles (element j
// in the low nibble of byte j, element j + 16 in its high nibble), value (q - 8) d; Q4_1 = f16 d,
// f16 m, nibbles as Q4_0, value q d + m.
constexpr int64_t kQ8Bytes = 34, kQ4_0Bytes = 18, kQ4_1Bytes = 20;

#if defined(PD_MATVEC_AVX2)
float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
//! The 32 nibbles of a Q4 block as bytes 0..15, in element order.
__m256i unpack_nibbles(const uint8_t* q) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0f));
}
//! sum_j q_j x_j over one block of 32 signed (or, with Unsigned, unsigned) bytes, 8 lanes.
template <bool Unsigned>
__m256 block_dot(__m256i q, const float* x) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const auto widen = [](__m128i v) { return _mm256_cvtepi32_ps(Unsigned ? _mm256_cvtepu8_epi32(v) : _mm256_cvtepi8_epi32(v)); };
  __m256 acc = _mm256_mul_ps(widen(lo), _mm256_loadu_ps(x));
  acc = _mm256_fmadd_ps(widen(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(x + 8), acc);
  acc = _mm256_fmadd_ps(widen(hi), _mm256_loadu_ps(x + 16), acc);
  return _mm256_fmadd_ps(widen(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(x + 24), acc);
}
#endif

float row_f16(const uint8_t* w, const float* x, int64_t cols) {
  int64_t j = 0;
  float total = 0;
#if defined(PD_MATVEC_AVX2)
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  const auto half8 = [&](int64_t at) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * at)));
  };
  for (; j + 32 <= cols; j += 32) {
    a0 = _mm256_fmadd_ps(half8(j), _mm256_loadu_ps(x + j), a0);
    a1 = _mm256_fmadd_ps(half8(j + 8), _mm256_loadu_ps(x + j + 8), a1);
    a2 = _mm256_fmadd_ps(half8(j + 16), _mm256_loadu_ps(x + j + 16), a2);
    a3 = _mm256_fmadd_ps(half8(j + 24), _mm256_loadu_ps(x + j + 24), a3);
  }
  for (; j + 8 <= cols; j += 8) a0 = _mm256_fmadd_ps(half8(j), _mm256_loadu_ps(x + j), a0);
  total = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#endif
  for (; j < cols; ++j) total += half_to_float(w + 2 * j) * x[j];
  return total;
}

// The block rows below compute d * sum_j q_j x_j per block (+ m * sum_j x_j for Q4_1): the
// weights' own values in f32 arithmetic, in another order than the dequantized f32 product.

float row_q8_0(const uint8_t* w, const float* x, int64_t blocks) {
#if defined(PD_MATVEC_AVX2)
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, w += kQ8Bytes)
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w)),
                          block_dot<false>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2)), x + b * kBlock), acc);
  return hsum(acc);
#else
  float total = 0;
  for (int64_t b = 0; b < blocks; ++b, w += kQ8Bytes) {
    float s = 0;
    for (int64_t j = 0; j < kBlock; ++j) s += float(int8_t(w[2 + j])) * x[b * kBlock + j];
    total += half_to_float(w) * s;
  }
  return total;
#endif
}

float row_q4_0(const uint8_t* w, const float* x, int64_t blocks) {
#if defined(PD_MATVEC_AVX2)
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, w += kQ4_0Bytes) {
    const __m256i q = _mm256_sub_epi8(unpack_nibbles(w + 2), _mm256_set1_epi8(8));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w)), block_dot<false>(q, x + b * kBlock), acc);
  }
  return hsum(acc);
#else
  float total = 0;
  for (int64_t b = 0; b < blocks; ++b, w += kQ4_0Bytes) {
    float s = 0;
    for (int64_t j = 0; j < 16; ++j) {
      s += float(int(w[2 + j] & 0x0f) - 8) * x[b * kBlock + j];
      s += float(int(w[2 + j] >> 4) - 8) * x[b * kBlock + j + 16];
    }
    total += half_to_float(w) * s;
  }
  return total;
#endif
}

float row_q4_1(const uint8_t* w, const float* x, const float* sums, int64_t blocks) {
  float offsets = 0;
#if defined(PD_MATVEC_AVX2)
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, w += kQ4_1Bytes) {
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w)), block_dot<true>(unpack_nibbles(w + 4), x + b * kBlock), acc);
    offsets += half_to_float(w + 2) * sums[b];
  }
  return hsum(acc) + offsets;
#else
  float total = 0;
  for (int64_t b = 0; b < blocks; ++b, w += kQ4_1Bytes) {
    float s = 0;
    for (int64_t j = 0; j < 16; ++j) {
      s += float(w[4 + j] & 0x0f) * x[b * kBlock + j];
      s += float(w[4 + j] >> 4) * x[b * kBlock + j + 16];
    }
    total += half_to_float(w) * s;
    offsets += half_to_float(w + 2) * sums[b];
  }
  return total + offsets;
#endif
}

}  // namespace

const char* to_string(Format f) noexcept {
  switch (f) {
    case Format::kF32: return "f32";
    case Format::kF16: return "f16";
    case Format::kQ8_0: return "q8_0";
    case Format::kQ4_0: return "q4_0";
    case Format::kQ4_1: return "q4_1";
  }
  return "unknown";
}

bool is_quantized(Format f) noexcept { return f == Format::kQ8_0 || f == Format::kQ4_0 || f == Format::kQ4_1; }
bool needs_block_sums(Format f) noexcept { return f == Format::kQ4_1; }

int64_t row_bytes(Format f, int64_t cols) noexcept {
  switch (f) {
    case Format::kF32: return cols * 4;
    case Format::kF16: return cols * 2;
    case Format::kQ8_0: return cols / kBlock * kQ8Bytes;
    case Format::kQ4_0: return cols / kBlock * kQ4_0Bytes;
    case Format::kQ4_1: return cols / kBlock * kQ4_1Bytes;
  }
  return 0;
}

Matrix& Matrix::operator=(Matrix&& o) noexcept {
  const bool owned = !o.storage_.empty();
  format_ = o.format_, rows_ = o.rows_, cols_ = o.cols_, row_bytes_ = o.row_bytes_;
  storage_ = std::move(o.storage_);
  data_ = owned ? storage_.data() : o.data_;
  o.data_ = nullptr;
  return *this;
}

Matrix Matrix::view_f32(const float* w, int64_t rows, int64_t cols) {
  Matrix m;
  m.format_ = Format::kF32, m.rows_ = rows, m.cols_ = cols, m.row_bytes_ = cols * 4;
  m.data_ = reinterpret_cast<const uint8_t*>(w);
  return m;
}

Status Matrix::from_f32_as_f16(const float* w, int64_t rows, int64_t cols, Matrix* out) {
  Matrix m;
  m.format_ = Format::kF16, m.rows_ = rows, m.cols_ = cols, m.row_bytes_ = cols * 2;
  try {
    m.storage_.resize(std::size_t(rows * cols * 2));
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "decode weights: out of host memory for an f16 matrix");
  }
  for (int64_t i = 0; i < rows * cols; ++i) float_to_half(w[i], &m.storage_[std::size_t(2 * i)]);
  m.data_ = m.storage_.data();
  *out = std::move(m);
  return Status::ok();
}

Status Matrix::from_gguf(GgmlType type, std::vector<uint8_t> bytes, int64_t rows, int64_t cols, Matrix* out) {
  Matrix m;
  switch (type) {
    case GgmlType::kF16: m.format_ = Format::kF16; break;
    case GgmlType::kQ8_0: m.format_ = Format::kQ8_0; break;
    case GgmlType::kQ4_0: m.format_ = Format::kQ4_0; break;
    case GgmlType::kQ4_1: m.format_ = Format::kQ4_1; break;
    default: return Status(StatusCode::kUnsupported, "decode weights: no kernel for GGUF type %s", promptdistill::to_string(type));
  }
  if (is_quantized(m.format_) && cols % kBlock != 0)
    return Status(StatusCode::kCorruptFile, "decode weights: a %s row of %lld elements is not whole blocks", to_string(m.format_),
                  (long long)cols);
  m.rows_ = rows, m.cols_ = cols, m.row_bytes_ = row_bytes(m.format_, cols);
  if (int64_t(bytes.size()) != rows * m.row_bytes_)
    return Status(StatusCode::kCorruptFile, "decode weights: %zu bytes for a [%lld, %lld] %s matrix", bytes.size(), (long long)rows,
                  (long long)cols, to_string(m.format_));
  m.storage_ = std::move(bytes);
  m.data_ = m.storage_.data();
  *out = std::move(m);
  return Status::ok();
}

void block_sums(const float* x, int64_t n, float* sums) noexcept {
  for (int64_t b = 0; b < n / kBlock; ++b) {
    float s = 0;
    for (int64_t j = 0; j < kBlock; ++j) s += x[b * kBlock + j];
    sums[b] = s;
  }
}

void run_rows(const Product& p, int64_t r0, int64_t r1) noexcept {
  const Matrix& m = *p.m;
  const int64_t cols = m.cols(), blocks = cols / kBlock;
  switch (m.format()) {
    case Format::kF32: {
      // Eigen's GEMV on the slice: the same per-row arithmetic as the unsplit product (header).
      using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      Eigen::Map<Eigen::RowVectorXf> y(p.y + r0, r1 - r0);
      y.noalias() = Eigen::Map<const Eigen::RowVectorXf>(p.x, cols) *
                    Eigen::Map<const RowMajor>(reinterpret_cast<const float*>(m.row(r0)), r1 - r0, cols).transpose();
      return;
    }
    case Format::kF16:
      for (int64_t r = r0; r < r1; ++r) p.y[r] = row_f16(m.row(r), p.x, cols);
      return;
    case Format::kQ8_0:
      for (int64_t r = r0; r < r1; ++r) p.y[r] = row_q8_0(m.row(r), p.x, blocks);
      return;
    case Format::kQ4_0:
      for (int64_t r = r0; r < r1; ++r) p.y[r] = row_q4_0(m.row(r), p.x, blocks);
      return;
    case Format::kQ4_1:
      for (int64_t r = r0; r < r1; ++r) p.y[r] = row_q4_1(m.row(r), p.x, p.block_sums, blocks);
      return;
  }
}

void run(const Product* products, int count) noexcept {
  // Slices numbered over the products (a fixed table: no allocation), a few products at a time.
  constexpr int kMaxProducts = 8;
  for (int base = 0; base < count; base += kMaxProducts) {
    const Product* group = products + base;
    const int n = std::min(kMaxProducts, count - base);
    int64_t first_slice[kMaxProducts + 1] = {0};
    for (int i = 0; i < n; ++i) first_slice[i + 1] = first_slice[i] + (group[i].m->rows() + kRowSlice - 1) / kRowSlice;
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < first_slice[n]; ++s) {
      int i = 0;
      while (s >= first_slice[i + 1]) ++i;
      const int64_t r0 = (s - first_slice[i]) * kRowSlice;
      run_rows(group[i], r0, std::min(r0 + kRowSlice, group[i].m->rows()));
    }
  }
}

}  // namespace matvec
}  // namespace ref
}  // namespace promptdistill
