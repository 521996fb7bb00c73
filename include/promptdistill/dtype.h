// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core.
//! Element types. `DType` names a runtime type; `bf16` and `f16` are 16-bit *storage* types that
//! compile with g++ alone and are usable in device code (they hold bits; arithmetic happens in
//! f32 after the exact widening conversions of `detail/numerics.h`).

#include <cstddef>
#include <cstdint>

#include "promptdistill/detail/config.h"

namespace promptdistill {

enum class DType : int32_t { kF32 = 0, kF16 = 1, kBF16 = 2, kI32 = 3, kI64 = 4 };

//! Bytes per element.
constexpr std::size_t size_of(DType t) noexcept {
  return t == DType::kF32 ? 4 : t == DType::kF16 ? 2 : t == DType::kBF16 ? 2 : t == DType::kI32 ? 4 : 8;
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

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::kF32; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::kF16; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::kBF16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::kI32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::kI64; };

}  // namespace promptdistill
