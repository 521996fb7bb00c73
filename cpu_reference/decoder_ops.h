// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU decoder (transformer_ref.cpp, decode_ref.cpp): the elementwise and row
//! operations that prefill and decode share, written once so both compute the same bits.

#include <cmath>
#include <cstdint>
#include <vector>

namespace promptdistill {
namespace ref {
namespace ops {

//! HF LlamaRMSNorm in f32: x * 1/sqrt(mean(x^2) + eps) * weight.
inline void rmsnorm(const float* x, int64_t n, int64_t d, const std::vector<float>& weight, double eps, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* r = x + i * d;
    float ss = 0.0f;
    for (int64_t j = 0; j < d; ++j) ss += r[j] * r[j];
    const float inv = 1.0f / std::sqrt(ss / float(d) + float(eps));
    for (int64_t j = 0; j < d; ++j) out[i * d + j] = weight[std::size_t(j)] * (r[j] * inv);
  }
}

//! Half-split RoPE in place on [n, heads, D] with per-token cos/sin rows [n, D/2].
inline void rope(float* x, int64_t n, int64_t heads, int64_t d, const float* cos, const float* sin) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (i * heads + h) * d;
      for (int64_t f = 0; f < half; ++f) {
        const float c = cos[i * half + f], s = sin[i * half + f];
        const float a = v[f], b = v[f + half];
        v[f] = a * c - b * s;
        v[f + half] = b * c + a * s;
      }
    }
}

//! gate[i] = silu(gate[i]) * up[i].
inline void swiglu(float* gate, const float* up, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace ops
}  // namespace ref
}  // namespace promptdistill
