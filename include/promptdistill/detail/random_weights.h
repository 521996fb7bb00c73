// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Random weights of a model's shape, drawn where they are kept (BatchSession::create_random):
//! element i of a tensor is a function of (seed, i) alone, computed with num:: operations, so the
//! CPU and CUDA backends draw the same bits and no host copy of an 8B-parameter model is needed.

#include <cstdint>

#include "promptdistill/detail/config.h"
#include "promptdistill/detail/numerics.h"

namespace promptdistill {
namespace detail {

//! Element `i` of the random tensor `seed`, times `scale`: the sum of two uniforms on [0, 1) from
//! a SplitMix64 hash, centred and scaled to unit variance (triangular on (-2.45, 2.45)).
PD_HOST_DEVICE inline float random_weight(uint64_t i, uint64_t seed, float scale) {
  uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ull ^ (seed * 0xd1b54a32d192ed03ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  const float a = float(uint32_t(z & 0xffffffu)) * (1.0f / 16777216.0f);          // exact
  const float b = float(uint32_t((z >> 24) & 0xffffffu)) * (1.0f / 16777216.0f);  // exact
  return num::mul(num::mul(num::sub(num::add(a, b), 1.0f), 2.449489743f), scale);
}

}  // namespace detail
}  // namespace promptdistill
