// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to pipelines/cpu/kernels_avx512.cpp: the 16-lane vector of the CPU kernels as one
//! AVX-512 register, with the per-lane operations and reduction tree of simd_avx2.h and
//! simd_scalar.h (the same bits). Only the including translation unit uses AVX-512.

#include <immintrin.h>

#include <cstdint>

#define PD_SIMD_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")))
#define PD_SIMD_INLINE PD_SIMD_TARGET __attribute__((always_inline)) inline

namespace pd_simd_avx512 {

constexpr const char* kName = "avx512";

struct Vec {
  __m512 v;
};

PD_SIMD_INLINE Vec vzero() { return {_mm512_setzero_ps()}; }
PD_SIMD_INLINE Vec vset1(float x) { return {_mm512_set1_ps(x)}; }
PD_SIMD_INLINE Vec vload(const float* p) { return {_mm512_loadu_ps(p)}; }
PD_SIMD_INLINE void vstore(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
PD_SIMD_INLINE __mmask16 lanes(int n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}
PD_SIMD_INLINE Vec vload_n(const float* p, int n, float fill) {
  return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), lanes(n), p)};
}
PD_SIMD_INLINE void vstore_n(float* p, Vec a, int n) { _mm512_mask_storeu_ps(p, lanes(n), a.v); }
PD_SIMD_INLINE Vec vadd(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
PD_SIMD_INLINE Vec vsub(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
PD_SIMD_INLINE Vec vmul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
PD_SIMD_INLINE Vec vmax(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
PD_SIMD_INLINE Vec vfma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
PD_SIMD_INLINE Vec vround(Vec a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
PD_SIMD_INLINE Vec vpow2i(Vec n) {
  const __m512i biased = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(biased, 23))};
}
//! p * 2^n for integer-valued n: exact where the result is normal (vscalefps; the other ISAs
//! multiply by vpow2i(n), the same value).
PD_SIMD_INLINE Vec vldexp(Vec p, Vec n) { return {_mm512_scalef_ps(p.v, n.v)}; }
PD_SIMD_INLINE Vec vzero_below(Vec x, float t, Vec a) {
  const __mmask16 below = _mm512_cmp_ps_mask(x.v, _mm512_set1_ps(t), _CMP_LT_OQ);
  return {_mm512_mask_mov_ps(a.v, below, _mm512_setzero_ps())};
}
PD_SIMD_INLINE float vlane0(Vec a) { return _mm512_cvtss_f32(a.v); }
//! The fixed tree of simd_avx2.h: lanes i + 8, then i + 4, i + 2, i + 1.
PD_SIMD_INLINE float vreduce_add(Vec a) {
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a.v), _mm512_extractf32x8_ps(a.v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
PD_SIMD_INLINE float vreduce_max(Vec a) {
  const __m256 s8 = _mm256_max_ps(_mm512_castps512_ps256(a.v), _mm512_extractf32x8_ps(a.v, 1));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

//! Lane r = vreduce_add(v[r]) (vreduce_max for the max) for 16 vectors at once: a butterfly whose
//! steps pair the same lanes as the tree above (i + 8, i + 4, i + 2, i + 1), so each lane holds
//! the bits vreduce_add gives; the last permute puts row r in lane r.
template <bool kMax>
PD_SIMD_INLINE __m512 combine(__m512 a, __m512 b) {
  return kMax ? _mm512_max_ps(a, b) : _mm512_add_ps(a, b);
}
template <bool kMax>
PD_SIMD_INLINE Vec reduce16(const Vec* v) {
  __m512 w[8], x[4], y[2];
  for (int r = 0; r < 8; ++r)
    w[r] = combine<kMax>(_mm512_shuffle_f32x4(v[2 * r].v, v[2 * r + 1].v, 0x44),
                         _mm512_shuffle_f32x4(v[2 * r].v, v[2 * r + 1].v, 0xee));
  for (int r = 0; r < 4; ++r)
    x[r] = combine<kMax>(_mm512_shuffle_f32x4(w[2 * r], w[2 * r + 1], 0x88),
                         _mm512_shuffle_f32x4(w[2 * r], w[2 * r + 1], 0xdd));
  for (int r = 0; r < 2; ++r)
    y[r] = combine<kMax>(_mm512_shuffle_ps(x[r], x[r + 2], 0x44),
                         _mm512_shuffle_ps(x[r], x[r + 2], 0xee));
  const __m512 z =
      combine<kMax>(_mm512_shuffle_ps(y[0], y[1], 0x88), _mm512_shuffle_ps(y[0], y[1], 0xdd));
  const __m512i rows = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15);
  return {_mm512_permutexvar_ps(rows, z)};
}
PD_SIMD_INLINE Vec vreduce_add16(const Vec* v) { return reduce16<false>(v); }
PD_SIMD_INLINE Vec vreduce_max16(const Vec* v) { return reduce16<true>(v); }

}  // namespace pd_simd_avx512
