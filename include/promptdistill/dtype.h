// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core.
//! Element types. `DType` names a runtime type; `bf16` and `f16` are 16-bit *storage* types that
//! compile with g++ alone and are usable in device code (they hold bits; arithmetic happens in
//! f32 after the exact widening conversions below), and the conversions between them and f32:
//! `to_float` (exact), `to_bf16` / `to_f16` (round to nearest even, NaN stays a quiet NaN,
//! overflow gives infinity), `from_float<T>`. They are the ones the kernels and the CPU reference
//! use (Tier B), so data rounded with them is what the library computes with.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "promptdistill/detail/config.h"

namespace promptdistill {

enum class DType : int32_t { kF32 = 0, kF16 = 1, kBF16 = 2, kI32 = 3, kI64 = 4 };

//! Bytes per element.
constexpr std::size_t size_of(DType t) noexcept {
  return t == DType::kF32    ? 4
         : t == DType::kF16  ? 2
         : t == DType::kBF16 ? 2
         : t == DType::kI32  ? 4
                             : 8;
}

//! "f32", "f16", "bf16", "i32", "i64".
constexpr const char* to_string(DType t) noexcept {
  return t == DType::kF32    ? "f32"
         : t == DType::kF16  ? "f16"
         : t == DType::kBF16 ? "bf16"
         : t == DType::kI32  ? "i32"
                             : "i64";
}

//! IEEE binary16 storage (1 sign, 5 exponent, 10 mantissa bits).
struct f16 {
  uint16_t bits;
};
//! bfloat16 storage (the upper half of an IEEE binary32).
struct bf16 {
  uint16_t bits;
};

namespace detail {
PD_HOST_DEVICE PD_FORCEINLINE uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
PD_HOST_DEVICE PD_FORCEINLINE float float_of(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
}  // namespace detail

//! Exact widening to f32 (f16 subnormals, infinities and NaN payloads kept).
PD_HOST_DEVICE PD_FORCEINLINE float to_float(float x) { return x; }
PD_HOST_DEVICE PD_FORCEINLINE float to_float(bf16 x) {
  return detail::float_of(uint32_t(x.bits) << 16);
}
PD_HOST_DEVICE inline float to_float(f16 x) {
  const uint32_t sign = uint32_t(x.bits & 0x8000u) << 16;
  uint32_t exponent = (x.bits >> 10) & 0x1fu;
  uint32_t mantissa = x.bits & 0x3ffu;
  if (exponent == 0x1f)
    return detail::float_of(sign | 0x7f800000u | (mantissa << 13));  // inf / NaN
  if (exponent == 0) {
    if (mantissa == 0) return detail::float_of(sign);  // +-0
    // Subnormal half: normalise the mantissa into an f32 normal.
    exponent = 1;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    mantissa &= 0x3ffu;
  }
  return detail::float_of(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

//! f32 -> bf16, round to nearest even. NaNs become quiet NaNs with the same sign and top payload.
PD_HOST_DEVICE PD_FORCEINLINE bf16 to_bf16(float x) {
  uint32_t u = detail::bits_of(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x0040u)};
  u += 0x7fffu + ((u >> 16) & 1u);  // carries into the exponent give +-inf on overflow
  return bf16{uint16_t(u >> 16)};
}

//! f32 -> f16, round to nearest even, including subnormal results; overflow gives +-inf.
PD_HOST_DEVICE inline f16 to_f16(float x) {
  const uint32_t u = detail::bits_of(x);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t ax = u & 0x7fffffffu;
  if (ax > 0x7f800000u) return f16{uint16_t(sign | 0x7e00u | ((ax >> 13) & 0x3ffu))};  // NaN
  if (ax >= 0x477ff000u) return f16{uint16_t(sign | 0x7c00u)};  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                                       // below 2^-14: subnormal or 0
    const uint32_t exponent = ax >> 23;
    if (exponent < 102) return f16{uint16_t(sign)};  // below 2^-25: rounds to zero
    const uint32_t mantissa = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exponent;  // in [14, 24]
    uint32_t r = mantissa >> shift;
    const uint32_t rem = mantissa & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;  // may carry into the smallest normal
    return f16{uint16_t(sign | r)};
  }
  uint32_t v = ax - 0x38000000u;  // rebias the exponent from 127 to 15
  v += 0xfffu + ((v >> 13) & 1u);
  return f16{uint16_t(sign | (v >> 13))};
}

//! f32 -> T, rounded to nearest even for the 16-bit types (the identity for float).
template <class T>
PD_HOST_DEVICE PD_FORCEINLINE T from_float(float x);
template <>
PD_HOST_DEVICE PD_FORCEINLINE float from_float<float>(float x) {
  return x;
}
template <>
PD_HOST_DEVICE PD_FORCEINLINE bf16 from_float<bf16>(float x) {
  return to_bf16(x);
}
template <>
PD_HOST_DEVICE PD_FORCEINLINE f16 from_float<f16>(float x) {
  return to_f16(x);
}

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::kF32;
};
template <>
struct dtype_of<f16> {
  static constexpr DType value = DType::kF16;
};
template <>
struct dtype_of<bf16> {
  static constexpr DType value = DType::kBF16;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::kI32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::kI64;
};

}  // namespace promptdistill
