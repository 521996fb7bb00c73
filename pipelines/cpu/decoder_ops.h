// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU decoder (transformer_ref.cpp, decode_ref.cpp): its element-wise parts are
//! the block operations (`ref::RmsNorm`, `ref::Rope`, `ref::SwiGlu`, Tier B), called on the
//! decoder's packed f32 rows. So prefill, decode, the batch session and the CUDA kernels compute
//! these parts with one definition each, and a model feature lands in one place.

#include <cstdint>
#include <vector>

#include "promptdistill/blocks.h"

namespace promptdistill {
namespace ref {
namespace ops {

//! RMSNorm of n packed rows of width d (out may be x).
inline Status rmsnorm(const float* x, int64_t n, int64_t d, const std::vector<float>& weight,
                      double eps, float* out) {
  RmsNormArgs<float> a;
  a.x = make_view<const float>(x, n, d);
  a.weight = make_view<const float>(weight.data(), d);
  a.eps = float(eps);
  a.out = make_view(out, n, d);
  return RmsNorm<float>::run(a, Workspace{}, nullptr);
}

//! Half-split RoPE in place on packed [n, heads, D] with per-token cos/sin rows [n, D/2].
inline Status rope(float* x, int64_t n, int64_t heads, int64_t d, const float* cos,
                   const float* sin) {
  RopeArgs<float> a;
  a.x = make_view(x, n, heads, d);
  a.cos = make_view<const float>(cos, n, d / 2);
  a.sin = make_view<const float>(sin, n, d / 2);
  return Rope<float>::run(a, Workspace{}, nullptr);
}

//! gate[i] = silu(gate[i]) * up[i] over `count` packed values.
inline Status swiglu(float* gate, const float* up, int64_t count) {
  SwiGluArgs<float> a;
  a.gate = make_view<const float>(gate, 1, count);
  a.up = make_view<const float>(up, 1, count);
  a.out = make_view(gate, 1, count);
  return SwiGlu<float>::run(a, Workspace{}, nullptr);
}

}  // namespace ops
}  // namespace ref
}  // namespace promptdistill
