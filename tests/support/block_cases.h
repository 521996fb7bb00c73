// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Attention problems shared by the CPU and CUDA block tests: a ragged batch of requests with
//! `q_lens[b]` new rows at the end of `kv_lens[b]` cached tokens, queries [B, n, H, D] and a
//! logical KV cache [B, capacity, H_kv, D] that kv_layouts.h lays out in every engine layout.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "support/generators.h"
#include "support/kv_layouts.h"

namespace pdtest {

struct AttentionShape {
  int64_t H, Hkv, D;
  std::vector<int32_t> q_lens, kv_lens;
  std::string describe() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "H=%lld Hkv=%lld D=%lld B=%zu", (long long)H, (long long)Hkv, (long long)D, q_lens.size());
    std::string s = buf;
    for (std::size_t b = 0; b < q_lens.size(); ++b) s += " (" + std::to_string(q_lens[b]) + "/" + std::to_string(kv_lens[b]) + ")";
    return s;
  }
  int64_t B() const { return int64_t(q_lens.size()); }
  int64_t rows() const { return std::max<int64_t>(1, *std::max_element(q_lens.begin(), q_lens.end())); }
  int64_t capacity() const { return std::max<int64_t>(1, *std::max_element(kv_lens.begin(), kv_lens.end())); }
};

//! Shapes that break attention kernels: single rows, 31/32/33 and 63/64/65 around warp and tile
//! sizes, decode rows over long caches, prefill chunks after a cached prefix, GQA groups 1..4.
inline std::vector<AttentionShape> attention_shapes() {
  return {
      {2, 2, 16, {1}, {1}},
      {4, 2, 16, {33, 1, 5}, {33, 64, 70}},
      {8, 2, 64, {31, 32, 1}, {31, 40, 1025}},
      {4, 1, 64, {65, 64, 63}, {65, 130, 63}},
      {6, 3, 96, {17, 2}, {17, 300}},
      {2, 1, 128, {1, 1, 1, 1}, {1, 7, 513, 1023}},
  };
}

template <class T>
struct AttentionData {
  std::vector<T> q, k, v;  //!< q [B, n, H, D]; k, v logical [B, capacity, Hkv, D]
};

template <class T>
AttentionData<T> attention_data(const AttentionShape& s, uint64_t seed) {
  AttentionData<T> d;
  d.q = generate<T>(std::size_t(s.B() * s.rows() * s.H * s.D), Fill::kNormal, mix(seed, 1));
  d.k = generate<T>(std::size_t(s.B() * s.capacity() * s.Hkv * s.D), Fill::kNormal, mix(seed, 2));
  d.v = generate<T>(std::size_t(s.B() * s.capacity() * s.Hkv * s.D), Fill::kNormal, mix(seed, 3));
  return d;
}

//! Attention of every valid row in double precision, the definition without any ordering.
template <class T>
std::vector<double> attention_double(const AttentionShape& s, const AttentionData<T>& d) {
  const int64_t n = s.rows(), cap = s.capacity(), G = s.H / s.Hkv;
  std::vector<double> out(d.q.size(), 0.0);
  const double scale = 1.0 / std::sqrt(double(s.D));
  for (int64_t b = 0; b < s.B(); ++b)
    for (int64_t i = 0; i < s.q_lens[std::size_t(b)]; ++i)
      for (int64_t h = 0; h < s.H; ++h) {
        const int64_t last = s.kv_lens[std::size_t(b)] - s.q_lens[std::size_t(b)] + i, g = h / G;
        std::vector<double> z(std::size_t(last + 1));
        double m = -1e300;
        for (int64_t j = 0; j <= last; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < s.D; ++e)
            dot += double(promptdistill::num::to_f32(d.q[std::size_t(((b * n + i) * s.H + h) * s.D + e)])) *
                   double(promptdistill::num::to_f32(d.k[std::size_t(((b * cap + j) * s.Hkv + g) * s.D + e)]));
          z[std::size_t(j)] = dot * scale;
          m = std::max(m, z[std::size_t(j)]);
        }
        double l = 0;
        for (auto& x : z) l += (x = std::exp(x - m));
        for (int64_t e = 0; e < s.D; ++e) {
          double acc = 0;
          for (int64_t j = 0; j <= last; ++j)
            acc += z[std::size_t(j)] / l * double(promptdistill::num::to_f32(d.v[std::size_t(((b * cap + j) * s.Hkv + g) * s.D + e)]));
          out[std::size_t(((b * n + i) * s.H + h) * s.D + e)] = acc;
        }
      }
  return out;
}

}  // namespace pdtest
