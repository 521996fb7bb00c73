// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to pipelines/cpu/kernels_avx2.cpp: the 16-lane vector of the CPU kernels (simd.md in
//! kernels.inc) as two AVX2 registers. Every operation is the per-lane IEEE operation of the
//! scalar and AVX-512 versions, and the reductions use the same fixed tree, so the three give the
//! same bits. Only the translation unit that includes this header is compiled for AVX2 (the
//! functions carry target attributes; nothing here is shared with other translation units).

#include <immintrin.h>

#include <cstdint>

#define PD_SIMD_TARGET __attribute__((target("avx2,fma,f16c")))
#define PD_SIMD_INLINE PD_SIMD_TARGET __attribute__((always_inline)) inline

namespace pd_simd_avx2 {

constexpr const char* kName = "avx2";

struct Vec {
  __m256 lo, hi;  // lanes 0-7, 8-15
};

PD_SIMD_INLINE Vec vzero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
PD_SIMD_INLINE Vec vset1(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
PD_SIMD_INLINE Vec vload(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
PD_SIMD_INLINE void vstore(float* p, Vec a) {
  _mm256_storeu_ps(p, a.lo);
  _mm256_storeu_ps(p + 8, a.hi);
}
//! Lane masks for the first n lanes of each half.
PD_SIMD_INLINE __m256i half_mask(int n) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), iota);
}
//! The first n lanes (0 <= n <= 16) from p, the others `fill`; reads nothing beyond p[n).
PD_SIMD_INLINE Vec vload_n(const float* p, int n, float fill) {
  const __m256i m0 = half_mask(n), m1 = half_mask(n - 8);
  const __m256 f = _mm256_set1_ps(fill);
  return {_mm256_blendv_ps(f, _mm256_maskload_ps(p, m0), _mm256_castsi256_ps(m0)),
          _mm256_blendv_ps(f, _mm256_maskload_ps(p + 8, m1), _mm256_castsi256_ps(m1))};
}
//! Stores the first n lanes (0 <= n <= 16).
PD_SIMD_INLINE void vstore_n(float* p, Vec a, int n) {
  _mm256_maskstore_ps(p, half_mask(n), a.lo);
  _mm256_maskstore_ps(p + 8, half_mask(n - 8), a.hi);
}
PD_SIMD_INLINE Vec vadd(Vec a, Vec b) {
  return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)};
}
PD_SIMD_INLINE Vec vsub(Vec a, Vec b) {
  return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)};
}
PD_SIMD_INLINE Vec vmul(Vec a, Vec b) {
  return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)};
}
//! a > b ? a : b per lane (x86 max semantics: b when equal or unordered).
PD_SIMD_INLINE Vec vmax(Vec a, Vec b) {
  return {_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)};
}
//! a * b + c, one rounding.
PD_SIMD_INLINE Vec vfma(Vec a, Vec b, Vec c) {
  return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
//! Round to nearest integer, ties to even.
PD_SIMD_INLINE Vec vround(Vec a) {
  constexpr int kMode = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  return {_mm256_round_ps(a.lo, kMode), _mm256_round_ps(a.hi, kMode)};
}
//! 2^n for integer-valued n in [-126, 127] (exact).
PD_SIMD_INLINE __m256 pow2i_half(__m256 n) {
  const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23));
}
PD_SIMD_INLINE Vec vpow2i(Vec n) { return {pow2i_half(n.lo), pow2i_half(n.hi)}; }
//! p * 2^n for integer-valued n in [-126, 127], exact where the result is normal.
PD_SIMD_INLINE Vec vldexp(Vec p, Vec n) { return vmul(p, vpow2i(n)); }
//! Lanes where x < t become 0.
PD_SIMD_INLINE Vec vzero_below(Vec x, float t, Vec a) {
  const __m256 tt = _mm256_set1_ps(t);
  return {_mm256_andnot_ps(_mm256_cmp_ps(x.lo, tt, _CMP_LT_OQ), a.lo),
          _mm256_andnot_ps(_mm256_cmp_ps(x.hi, tt, _CMP_LT_OQ), a.hi)};
}
PD_SIMD_INLINE float vlane0(Vec a) { return _mm256_cvtss_f32(a.lo); }
//! The fixed tree: lanes i + 8, then i + 4, i + 2, i + 1.
PD_SIMD_INLINE float vreduce_add(Vec a) {
  const __m256 s8 = _mm256_add_ps(a.lo, a.hi);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
PD_SIMD_INLINE float vreduce_max(Vec a) {
  const __m256 s8 = _mm256_max_ps(a.lo, a.hi);
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

//! Lane r = vreduce_add(v[r]) (vreduce_max for the max) for 16 vectors at once: per row the
//! halves (lanes i + 8), then two 8-row butterflies whose steps pair lanes i + 4, i + 2, i + 1 as
//! the tree above does (the same bits); the last permute puts row r in lane r.
template <bool kMax>
PD_SIMD_INLINE __m256 combine(__m256 a, __m256 b) {
  return kMax ? _mm256_max_ps(a, b) : _mm256_add_ps(a, b);
}
template <bool kMax>
PD_SIMD_INLINE __m256 reduce8(const __m256* p) {
  __m256 x[4], y[2];
  for (int r = 0; r < 4; ++r)
    x[r] = combine<kMax>(_mm256_permute2f128_ps(p[2 * r], p[2 * r + 1], 0x20),
                         _mm256_permute2f128_ps(p[2 * r], p[2 * r + 1], 0x31));
  for (int r = 0; r < 2; ++r)
    y[r] = combine<kMax>(_mm256_shuffle_ps(x[2 * r], x[2 * r + 1], 0x44),
                         _mm256_shuffle_ps(x[2 * r], x[2 * r + 1], 0xee));
  const __m256 z =
      combine<kMax>(_mm256_shuffle_ps(y[0], y[1], 0x88), _mm256_shuffle_ps(y[0], y[1], 0xdd));
  return _mm256_permutevar8x32_ps(z, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
template <bool kMax>
PD_SIMD_INLINE Vec reduce16(const Vec* v) {
  __m256 p[16];
  for (int r = 0; r < 16; ++r) p[r] = combine<kMax>(v[r].lo, v[r].hi);
  return {reduce8<kMax>(p), reduce8<kMax>(p + 8)};
}
PD_SIMD_INLINE Vec vreduce_add16(const Vec* v) { return reduce16<false>(v); }
PD_SIMD_INLINE Vec vreduce_max16(const Vec* v) { return reduce16<true>(v); }

}  // namespace pd_simd_avx2
