// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Seeded test data. Every generator writes values that are exactly representable in the target
//! storage type T (it rounds through T), so the reference and the kernel see the same inputs.
//! Kinds: normal, uniform, small integers (exact GEMM-like mode), constant (all ties), arange.

#include <cstdint>
#include <random>
#include <vector>

#include "promptdistill/detail/numerics.h"

namespace pdtest {

//! The run's base seed (--seed=N). Derive per-case seeds with `mix(seed(), a, b, ...)`.
uint64_t seed();

inline uint64_t mix(uint64_t h) { return h; }
template <class... Rest>
uint64_t mix(uint64_t h, uint64_t v, Rest... rest) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return mix(h, uint64_t(rest)...);
}

enum class Fill { kNormal, kUniform, kSmallInt, kConstant, kArange };

inline const char* to_string(Fill f) {
  switch (f) {
    case Fill::kNormal: return "normal";
    case Fill::kUniform: return "uniform";
    case Fill::kSmallInt: return "small-int";
    case Fill::kConstant: return "constant";
    case Fill::kArange: return "arange";
  }
  return "?";
}

//! n values of storage type T.
template <class T>
std::vector<T> generate(std::size_t n, Fill fill, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::uniform_real_distribution<float> uniform(-scale, scale);
  std::uniform_int_distribution<int> small(-4, 4);
  std::vector<T> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    float v = 0.0f;
    switch (fill) {
      case Fill::kNormal: v = normal(rng); break;
      case Fill::kUniform: v = uniform(rng); break;
      case Fill::kSmallInt: v = float(small(rng)); break;
      case Fill::kConstant: v = scale; break;
      case Fill::kArange: v = float(i % 2048) * scale; break;
    }
    out[i] = promptdistill::num::from_f32<T>(v);
  }
  return out;
}

//! f32 scores with a controlled share of ties: `distinct` different values (0 = all distinct).
inline std::vector<float> tie_scores(std::size_t n, std::size_t distinct, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> out(n);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<std::size_t> pick(0, distinct == 0 ? 0 : distinct - 1);
  for (auto& v : out) v = distinct == 0 ? normal(rng) : float(pick(rng)) * 0.25f;
  return out;
}

}  // namespace pdtest
