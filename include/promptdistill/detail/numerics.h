// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Tier-B numerics shared *verbatim* by the CUDA kernels and the CPU reference.
//!
//! Everything that must give bit-identical results on both sides lives here:
//! - round-to-nearest-even f32 -> bf16/f16 (NaN stays NaN and quiet, infinities and overflow
//!   handled) and the exact widening conversions back;
//! - the elementary operations `add`, `mul`, `div`, `sqrt`: on the device they call the `_rn`
//!   intrinsics, which nvcc never contracts into FMAs; on the host they are plain IEEE operations
//!   and the reference is compiled with `-ffp-contract=off` (never `-march=native`);
//! - `exp_f32`, one exponential implemented with those operations only (no libm, no `__expf`);
//! - the canonical reduction orders: `dot` (sequential over the vector) and `canonical_sum` /
//!   `canonical_max` (kReduceWidth lane-strided partial results, then a halving tree). The CUDA
//!   block reduction in `promptdistill/cuda/reduce.cuh` follows exactly this order with
//!   kReduceWidth threads.

#include <cstdint>
#include <cstring>

#include "promptdistill/detail/config.h"
#include "promptdistill/dtype.h"

#if !defined(__CUDA_ARCH__)
#include <cmath>
#endif

namespace promptdistill {
namespace num {

// ---- conversions (defined in dtype.h, where users get them too)
// ----------------------------------

using promptdistill::to_bf16;
using promptdistill::to_f16;
using promptdistill::detail::bits_of;
using promptdistill::detail::float_of;
PD_HOST_DEVICE PD_FORCEINLINE float to_f32(float x) { return x; }
PD_HOST_DEVICE PD_FORCEINLINE float to_f32(bf16 x) { return to_float(x); }
PD_HOST_DEVICE PD_FORCEINLINE float to_f32(f16 x) { return to_float(x); }
template <class T>
PD_HOST_DEVICE PD_FORCEINLINE T from_f32(float x) {
  return from_float<T>(x);
}

//! Rounds an f32 through the storage type T and back (the identity for T = float).
template <class T>
PD_HOST_DEVICE PD_FORCEINLINE float round_through(float x) {
  return to_f32(from_f32<T>(x));
}

// ---- elementary operations (never contracted) --------------------------------------------------

PD_HOST_DEVICE PD_FORCEINLINE float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
PD_HOST_DEVICE PD_FORCEINLINE float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
PD_HOST_DEVICE PD_FORCEINLINE float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
PD_HOST_DEVICE PD_FORCEINLINE float div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
PD_HOST_DEVICE PD_FORCEINLINE float sqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
PD_HOST_DEVICE PD_FORCEINLINE float floor(float a) {
#if defined(__CUDA_ARCH__)
  return floorf(a);
#else
  return std::floor(a);
#endif
}
PD_HOST_DEVICE PD_FORCEINLINE bool is_nan(float a) { return a != a; }

//! max that propagates NaN; for equal values (including +0/-0) it returns `b`, which makes the
//! result depend only on the order of operands, and that order is part of the spec.
PD_HOST_DEVICE PD_FORCEINLINE float max_nan(float a, float b) {
  if (is_nan(a)) return a;
  if (is_nan(b)) return b;
  return a > b ? a : b;
}

constexpr float kInfinity = __builtin_huge_valf();

//! e^x with the Cephes single-precision polynomial (about 1 ulp), built from `add`/`mul`/`sub`
//! only so that host and device agree bit for bit.
PD_HOST_DEVICE inline float exp_f32(float x) {
  if (is_nan(x)) return x;
  if (x > 88.72283905f) return kInfinity;
  if (x < -103.9720840f) return 0.0f;
  const float n = floor(add(mul(x, 1.44269504088896341f), 0.5f));
  // Cody-Waite: ln 2 = C1 + C2 with C1 exact in few bits, so n * C1 is exact.
  float r = sub(x, mul(n, 0.693359375f));
  r = sub(r, mul(n, -2.12194440e-4f));
  const float r2 = mul(r, r);
  float p = 1.9875691500e-4f;
  p = add(mul(p, r), 1.3981999507e-3f);
  p = add(mul(p, r), 8.3334519073e-3f);
  p = add(mul(p, r), 4.1665795894e-2f);
  p = add(mul(p, r), 1.6666665459e-1f);
  p = add(mul(p, r), 5.0000001201e-1f);
  float y = add(add(mul(p, r2), r), 1.0f);
  // Scale by 2^n in two exactly representable steps so that subnormal results round once.
  const int ni = int(n);
  const int n1 = ni / 2;
  const int n2 = ni - n1;
  y = mul(y, float_of(uint32_t(n1 + 127) << 23));
  return mul(y, float_of(uint32_t(n2 + 127) << 23));
}

// ---- canonical reductions
// ------------------------------------------------------------------------

//! Sequential dot product in f32: acc = add(acc, mul(a[i], b[i])) for i = 0..n-1, from +0.
template <class TA, class TB>
PD_HOST_DEVICE inline float dot(const TA* a, const TB* b, int n) {
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) acc = add(acc, mul(to_f32(a[i]), to_f32(b[i])));
  return acc;
}

//! Width of the canonical reduction: lane t accumulates the terms t, t + W, t + 2W, ... in
//! ascending order; then partial[t] op= partial[t + s] for s = W/2, W/4, ..., 1.
constexpr int kReduceWidth = 256;

// Host-only (no PD_HOST_DEVICE): the device side is promptdistill/cuda/reduce.cuh's block
// reduction.
//! Host emulation of the canonical sum of term(j), j in [0, n).
template <class Term>
inline float canonical_sum(int64_t n, Term&& term) {
  float partial[kReduceWidth];
  for (float& p : partial) p = 0.0f;
  // Lane t takes j = t, t + W, ... in ascending order; written chunk by chunk so that it
  // vectorises.
  for (int64_t base = 0; base < n; base += kReduceWidth) {
    const int width = n - base < kReduceWidth ? int(n - base) : kReduceWidth;
    for (int t = 0; t < width; ++t) partial[t] = add(partial[t], term(base + t));
  }
  for (int s = kReduceWidth / 2; s > 0; s /= 2)
    for (int t = 0; t < s; ++t) partial[t] = add(partial[t], partial[t + s]);
  return partial[0];
}
//! Host emulation of the canonical NaN-propagating max of term(j), j in [0, n); -inf if n == 0.
template <class Term>
inline float canonical_max(int64_t n, Term&& term) {
  float partial[kReduceWidth];
  for (float& p : partial) p = -kInfinity;
  for (int64_t base = 0; base < n; base += kReduceWidth) {
    const int width = n - base < kReduceWidth ? int(n - base) : kReduceWidth;
    for (int t = 0; t < width; ++t) partial[t] = max_nan(partial[t], term(base + t));
  }
  for (int s = kReduceWidth / 2; s > 0; s /= 2)
    for (int t = 0; t < s; ++t) partial[t] = max_nan(partial[t], partial[t + s]);
  return partial[0];
}

}  // namespace num
}  // namespace promptdistill
