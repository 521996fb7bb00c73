// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! A small random-weight Llama-style model (6 layers, hidden 64, 4 query / 2 KV heads, head dim
//! 16, vocab 300) and random prompts, for pipeline tests that need no model file.

#include <random>
#include <vector>

#include "promptdistill/model.h"

namespace pdtest {

inline promptdistill::ModelWeights random_model(uint64_t seed, int64_t layers = 6) {
  promptdistill::ModelWeights w;
  promptdistill::ModelConfig& c = w.config;
  c.num_layers = layers, c.hidden = 64, c.num_heads = 4, c.num_kv_heads = 2, c.head_dim = 16;
  c.intermediate = 96, c.vocab = 300, c.max_positions = 4096, c.rms_eps = 1e-5;
  c.rope.theta = 10000;
  c.tied_embeddings = true;
  c.eos_tokens = {2};
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto fill = [&](std::vector<float>& v, std::size_t n, float scale) {
    v.resize(n);
    for (auto& x : v) x = normal(rng) * scale;
  };
  fill(w.embed, std::size_t(c.vocab * c.hidden), 1.0f);
  w.final_norm.assign(std::size_t(c.hidden), 1.0f);
  w.layers.resize(std::size_t(layers));
  for (auto& L : w.layers) {
    L.attn_norm.assign(std::size_t(c.hidden), 1.0f);
    L.mlp_norm.assign(std::size_t(c.hidden), 1.0f);
    fill(L.wq, std::size_t(64 * 64), 0.3f);
    fill(L.wk, std::size_t(32 * 64), 0.3f);
    fill(L.wv, std::size_t(32 * 64), 0.2f);
    fill(L.wo, std::size_t(64 * 64), 0.1f);
    fill(L.w_gate, std::size_t(96 * 64), 0.15f);
    fill(L.w_up, std::size_t(96 * 64), 0.15f);
    fill(L.w_down, std::size_t(64 * 96), 0.1f);
  }
  return w;
}

//! random_model's shape with values that make layer 0's keys and values exact in f32 on any
//! backend: embeddings of +-1 (each row's mean square is 1), unit norm weights and rms_eps below
//! half an ulp of 1 (so RMSNorm multiplies by exactly 1), and small-integer wq/wk/wv (every
//! partial sum of the projections is an integer far below 2^24, whatever the GEMM's order).
//! Later layers see non-integer activations: only layer 0 is exact.
inline promptdistill::ModelWeights integer_model(uint64_t seed, int64_t layers = 6) {
  promptdistill::ModelWeights w = random_model(seed, layers);
  w.config.rms_eps = 1e-9;
  std::mt19937_64 rng(seed ^ 0x5bd1e995u);
  for (auto& x : w.embed) x = (rng() & 1) ? 1.0f : -1.0f;
  auto small_ints = [&](std::vector<float>& v) {
    for (auto& x : v) x = float(int64_t(rng() % 5) - 2);
  };
  for (auto& L : w.layers) {
    small_ints(L.wq);
    small_ints(L.wk);
    small_ints(L.wv);
  }
  return w;
}

inline std::vector<int32_t> random_prompt(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> p(static_cast<std::size_t>(n));
  for (auto& t : p) t = int32_t(3 + rng() % 297);
  return p;
}

}  // namespace pdtest
