// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Matrix-vector products of the CPU decoder's single-token steps (see matvec_ref.h). The f16 and
//! block kernels use AVX2/FMA/F16C where the build targets x86-64-v3 and plain loops elsewhere.

#include "pipelines/cpu/matvec_ref.h"

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
//! sum_j q_j x_j over one block: 32 weights widened to int16 (from bytes, signed or not) times the
//! block's 32 int16 inputs, in int32 (exact: |sum| < 2^31), 8 lanes.
template <bool Unsigned>
__m256i block_dot(__m128i w_lo, __m128i w_hi, const int16_t* x) {
  const auto widen = [](__m128i v) {
    return Unsigned ? _mm256_cvtepu8_epi16(v) : _mm256_cvtepi8_epi16(v);
  };
  const __m256i a =
      _mm256_madd_epi16(widen(w_lo), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
  const __m256i b =
      _mm256_madd_epi16(widen(w_hi), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16)));
  return _mm256_add_epi32(a, b);
}
//! A Q4 block's nibbles: elements 0..15 (low nibbles) and 16..31 (high nibbles) as bytes.
void nibbles(const uint8_t* q, __m128i* lo, __m128i* hi) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)),
                mask = _mm_set1_epi8(0x0f);
  *lo = _mm_and_si128(raw, mask);
  *hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
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

// The block rows below compute d_w d_x sum_j q_j xq_j per block (+ m sum_j x_j for Q4_1, with the
// exact f32 input sums): the weights' own values against the input quantized to int16.

float row_q8_0(const uint8_t* w, const Input16& xq, int64_t blocks) {
#if defined(PD_MATVEC_AVX2)
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, w += kQ8Bytes) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
    const __m256i dot = block_dot<false>(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1),
                                         &xq.q[std::size_t(b * kBlock)]);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w) * xq.d[std::size_t(b)]),
                          _mm256_cvtepi32_ps(dot), acc);
  }
  return hsum(acc);
#else
  float total = 0;
  for (int64_t b = 0; b < blocks; ++b, w += kQ8Bytes) {
    int32_t s = 0;
    for (int64_t j = 0; j < kBlock; ++j)
      s += int32_t(int8_t(w[2 + j])) * xq.q[std::size_t(b * kBlock + j)];
    total += half_to_float(w) * xq.d[std::size_t(b)] * float(s);
  }
  return total;
#endif
}

float row_q4_0(const uint8_t* w, const Input16& xq, int64_t blocks) {
#if defined(PD_MATVEC_AVX2)
  __m256 acc = _mm256_setzero_ps();
  const __m128i eight = _mm_set1_epi8(8);
  for (int64_t b = 0; b < blocks; ++b, w += kQ4_0Bytes) {
    __m128i lo, hi;
    nibbles(w + 2, &lo, &hi);
    const __m256i dot = block_dot<false>(_mm_sub_epi8(lo, eight), _mm_sub_epi8(hi, eight),
                                         &xq.q[std::size_t(b * kBlock)]);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w) * xq.d[std::size_t(b)]),
                          _mm256_cvtepi32_ps(dot), acc);
  }
  return hsum(acc);
#else
  float total = 0;
  for (int64_t b = 0; b < blocks; ++b, w += kQ4_0Bytes) {
    int32_t s = 0;
    for (int64_t j = 0; j < 16; ++j) {
      s += (int32_t(w[2 + j] & 0x0f) - 8) * xq.q[std::size_t(b * kBlock + j)];
      s += (int32_t(w[2 + j] >> 4) - 8) * xq.q[std::size_t(b * kBlock + j + 16)];
    }
    total += half_to_float(w) * xq.d[std::size_t(b)] * float(s);
  }
  return total;
#endif
}

float row_q4_1(const uint8_t* w, const Input16& xq, const float* sums, int64_t blocks) {
  float offsets = 0;
#if defined(PD_MATVEC_AVX2)
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, w += kQ4_1Bytes) {
    __m128i lo, hi;
    nibbles(w + 4, &lo, &hi);
    const __m256i dot = block_dot<true>(lo, hi, &xq.q[std::size_t(b * kBlock)]);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w) * xq.d[std::size_t(b)]),
                          _mm256_cvtepi32_ps(dot), acc);
    offsets += half_to_float(w + 2) * sums[b];
  }
  return hsum(acc) + offsets;
#else
  float total = 0;
  for (int64_t b = 0; b < blocks; ++b, w += kQ4_1Bytes) {
    int32_t s = 0;
    for (int64_t j = 0; j < 16; ++j) {
      s += int32_t(w[4 + j] & 0x0f) * xq.q[std::size_t(b * kBlock + j)];
      s += int32_t(w[4 + j] >> 4) * xq.q[std::size_t(b * kBlock + j + 16)];
    }
    total += half_to_float(w) * xq.d[std::size_t(b)] * float(s);
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

bool is_quantized(Format f) noexcept {
  return f == Format::kQ8_0 || f == Format::kQ4_0 || f == Format::kQ4_1;
}
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

Status Matrix::from_gguf(GgmlType type, std::vector<uint8_t> bytes, int64_t rows, int64_t cols,
                         Matrix* out) {
  Matrix m;
  switch (type) {
    case GgmlType::kF16: m.format_ = Format::kF16; break;
    case GgmlType::kQ8_0: m.format_ = Format::kQ8_0; break;
    case GgmlType::kQ4_0: m.format_ = Format::kQ4_0; break;
    case GgmlType::kQ4_1: m.format_ = Format::kQ4_1; break;
    default:
      return Status(StatusCode::kUnsupported, "decode weights: no kernel for GGUF type %s",
                    promptdistill::to_string(type));
  }
  if (is_quantized(m.format_) && cols % kBlock != 0)
    return Status(StatusCode::kCorruptFile,
                  "decode weights: a %s row of %lld elements is not whole blocks",
                  to_string(m.format_), (long long)cols);
  m.rows_ = rows, m.cols_ = cols, m.row_bytes_ = row_bytes(m.format_, cols);
  if (int64_t(bytes.size()) != rows * m.row_bytes_)
    return Status(StatusCode::kCorruptFile,
                  "decode weights: %zu bytes for a [%lld, %lld] %s matrix", bytes.size(),
                  (long long)rows, (long long)cols, to_string(m.format_));
  m.storage_ = std::move(bytes);
  m.data_ = m.storage_.data();
  *out = std::move(m);
  return Status::ok();
}

void Input16::reserve(int64_t n) {
  if (int64_t(q.size()) < n) q.resize(std::size_t(n));
  if (int64_t(d.size()) < n / kBlock) d.resize(std::size_t(n / kBlock));
}

void quantize_input(const float* x, int64_t n, Input16* out) noexcept {
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* v = x + b * kBlock;
    float amax = 0;
    for (int64_t j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 32767.0f, inv = d != 0.0f ? 1.0f / d : 0.0f;
    for (int64_t j = 0; j < kBlock; ++j)
      out->q[std::size_t(b * kBlock + j)] =
          int16_t(std::max(-32767.0f, std::min(32767.0f, std::nearbyint(v[j] * inv))));
    out->d[std::size_t(b)] = d;
  }
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
      y.noalias() =
          Eigen::Map<const Eigen::RowVectorXf>(p.x, cols) *
          Eigen::Map<const RowMajor>(reinterpret_cast<const float*>(m.row(r0)), r1 - r0, cols)
              .transpose();
      return;
    }
    case Format::kF16:
      for (int64_t r = r0; r < r1; ++r) p.y[r] = row_f16(m.row(r), p.x, cols);
      return;
    case Format::kQ8_0:
      for (int64_t r = r0; r < r1; ++r) p.y[r] = row_q8_0(m.row(r), *p.xq, blocks);
      return;
    case Format::kQ4_0:
      for (int64_t r = r0; r < r1; ++r) p.y[r] = row_q4_0(m.row(r), *p.xq, blocks);
      return;
    case Format::kQ4_1:
      for (int64_t r = r0; r < r1; ++r) p.y[r] = row_q4_1(m.row(r), *p.xq, p.block_sums, blocks);
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
    for (int i = 0; i < n; ++i)
      first_slice[i + 1] = first_slice[i] + (group[i].m->rows() + kRowSlice - 1) / kRowSlice;
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
