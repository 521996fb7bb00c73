// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to pipelines/cpu/kernels_scalar.cpp: the 16-lane vector of the CPU kernels as plain
//! floats, the portable definition of what simd_avx2.h and simd_avx512.h compute (the same per-lane
//! IEEE operations, std::fma for the fused multiply-add, the same reduction tree). It runs where
//! neither ISA is available and is what the kernel tests compare the vector versions with.

#include <cmath>
#include <cstdint>
#include <cstring>

#define PD_SIMD_TARGET
#define PD_SIMD_INLINE inline

namespace pd_simd_scalar {

constexpr const char* kName = "scalar";

struct Vec {
  float v[16];
};

inline Vec vzero() { return Vec{}; }
inline Vec vset1(float x) {
  Vec r;
  for (float& e : r.v) e = x;
  return r;
}
inline Vec vload(const float* p) {
  Vec r;
  std::memcpy(r.v, p, sizeof r.v);
  return r;
}
inline void vstore(float* p, Vec a) { std::memcpy(p, a.v, sizeof a.v); }
inline Vec vload_n(const float* p, int n, float fill) {
  Vec r;
  for (int i = 0; i < 16; ++i) r.v[i] = i < n ? p[i] : fill;
  return r;
}
inline void vstore_n(float* p, Vec a, int n) {
  for (int i = 0; i < 16 && i < n; ++i) p[i] = a.v[i];
}
#define PD_SCALAR_LANEWISE(name, expr)    \
  inline Vec name(Vec a, Vec b) {         \
    Vec r;                                \
    for (int i = 0; i < 16; ++i) {        \
      const float x = a.v[i], y = b.v[i]; \
      r.v[i] = (expr);                    \
    }                                     \
    return r;                             \
  }
PD_SCALAR_LANEWISE(vadd, x + y)
PD_SCALAR_LANEWISE(vsub, x - y)
PD_SCALAR_LANEWISE(vmul, x* y)
PD_SCALAR_LANEWISE(vmax, x > y ? x : y)  // x86 max: the second operand when equal or unordered
#undef PD_SCALAR_LANEWISE
inline Vec vfma(Vec a, Vec b, Vec c) {
  Vec r;
  for (int i = 0; i < 16; ++i) r.v[i] = std::fma(a.v[i], b.v[i], c.v[i]);
  return r;
}
inline Vec vround(Vec a) {
  Vec r;
  for (int i = 0; i < 16; ++i) r.v[i] = std::nearbyint(a.v[i]);  // ties to even (default mode)
  return r;
}
inline Vec vpow2i(Vec n) {
  Vec r;
  for (int i = 0; i < 16; ++i) {
    const uint32_t bits = uint32_t(int32_t(n.v[i]) + 127) << 23;
    std::memcpy(&r.v[i], &bits, 4);
  }
  return r;
}
inline Vec vldexp(Vec p, Vec n) { return vmul(p, vpow2i(n)); }
inline Vec vzero_below(Vec x, float t, Vec a) {
  for (int i = 0; i < 16; ++i)
    if (x.v[i] < t) a.v[i] = 0.0f;
  return a;
}
inline float vlane0(Vec a) { return a.v[0]; }
//! Lanes i + 8, then i + 4, i + 2, i + 1 (simd_avx2.h's tree).
inline float vreduce_add(Vec a) {
  float s[8];
  for (int i = 0; i < 8; ++i) s[i] = a.v[i] + a.v[i + 8];
  for (int i = 0; i < 4; ++i) s[i] = s[i] + s[i + 4];
  for (int i = 0; i < 2; ++i) s[i] = s[i] + s[i + 2];
  return s[0] + s[1];
}
inline float vreduce_max(Vec a) {
  float s[8];
  for (int i = 0; i < 8; ++i) s[i] = a.v[i] > a.v[i + 8] ? a.v[i] : a.v[i + 8];
  for (int i = 0; i < 4; ++i) s[i] = s[i] > s[i + 4] ? s[i] : s[i + 4];
  for (int i = 0; i < 2; ++i) s[i] = s[i] > s[i + 2] ? s[i] : s[i + 2];
  return s[0] > s[1] ? s[0] : s[1];
}

//! Lane r = vreduce_add(v[r]) / vreduce_max(v[r]) (what the vector versions' butterflies give).
inline Vec vreduce_add16(const Vec* v) {
  Vec r;
  for (int i = 0; i < 16; ++i) r.v[i] = vreduce_add(v[i]);
  return r;
}
inline Vec vreduce_max16(const Vec* v) {
  Vec r;
  for (int i = 0; i < 16; ++i) r.v[i] = vreduce_max(v[i]);
  return r;
}

}  // namespace pd_simd_scalar
