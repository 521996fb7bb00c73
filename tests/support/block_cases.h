// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Attention problems shared by the CPU and CUDA block tests: a ragged batch of requests with
//! `q_lens[b]` new rows at the end of `kv_lens[b]` cached tokens, queries [B, n, H, D] and a
//! logical KV cache [B, capacity, H_kv, D] that kv_layouts.h lays out in every engine layout;
//! and ArgMax rows (ties, NaN, signed zeros) with the plainly written answer.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
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
    std::snprintf(buf, sizeof buf, "H=%lld Hkv=%lld D=%lld B=%zu", (long long)H, (long long)Hkv,
                  (long long)D, q_lens.size());
    std::string s = buf;
    for (std::size_t b = 0; b < q_lens.size(); ++b)
      s += " (" + std::to_string(q_lens[b]) + "/" + std::to_string(kv_lens[b]) + ")";
    return s;
  }
  int64_t B() const { return int64_t(q_lens.size()); }
  int64_t rows() const {
    return std::max<int64_t>(1, *std::max_element(q_lens.begin(), q_lens.end()));
  }
  int64_t capacity() const {
    return std::max<int64_t>(1, *std::max_element(kv_lens.begin(), kv_lens.end()));
  }
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
            dot += double(promptdistill::num::to_f32(
                       d.q[std::size_t(((b * n + i) * s.H + h) * s.D + e)])) *
                   double(promptdistill::num::to_f32(
                       d.k[std::size_t(((b * cap + j) * s.Hkv + g) * s.D + e)]));
          z[std::size_t(j)] = dot * scale;
          m = std::max(m, z[std::size_t(j)]);
        }
        double l = 0;
        for (auto& x : z) l += (x = std::exp(x - m));
        for (int64_t e = 0; e < s.D; ++e) {
          double acc = 0;
          for (int64_t j = 0; j <= last; ++j)
            acc += z[std::size_t(j)] / l *
                   double(promptdistill::num::to_f32(
                       d.v[std::size_t(((b * cap + j) * s.Hkv + g) * s.D + e)]));
          out[std::size_t(((b * n + i) * s.H + h) * s.D + e)] = acc;
        }
      }
  return out;
}

// ---- ArgMax
// ------------------------------------------------------------------------------------------

//! What a row of an ArgMax case holds besides random values.
enum class ArgMaxRow { kNormal, kTiedMax, kAllEqual, kNaN, kSignedZeros, kAllMinusInf };

inline const char* to_string(ArgMaxRow r) {
  switch (r) {
    case ArgMaxRow::kNormal: return "normal";
    case ArgMaxRow::kTiedMax: return "tied max";
    case ArgMaxRow::kAllEqual: return "all equal";
    case ArgMaxRow::kNaN: return "NaN";
    case ArgMaxRow::kSignedZeros: return "signed zeros";
    case ArgMaxRow::kAllMinusInf: return "all -inf";
  }
  return "?";
}

//! rows x n values (row pitch `pitch` >= n), rounded to T, with `kind` planted in every row at
//! seeded places: the maximum repeated (ties), NaN at several places, only +0/-0, only -inf.
template <class T>
std::vector<T> argmax_case(int64_t rows, int64_t n, int64_t pitch, ArgMaxRow kind, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<T> x(std::size_t(rows * pitch), promptdistill::num::from_f32<T>(-99.0f));
  const auto values = generate<T>(std::size_t(rows * n), Fill::kNormal, seed, 4.0f);
  for (int64_t i = 0; i < rows; ++i) {
    T* row = &x[std::size_t(i * pitch)];
    for (int64_t j = 0; j < n; ++j) row[j] = values[std::size_t(i * n + j)];
    const auto place = [&] { return int64_t(rng() % uint64_t(n)); };
    switch (kind) {
      case ArgMaxRow::kNormal: break;
      case ArgMaxRow::kTiedMax:
        for (int t = 0; t < 4; ++t) row[place()] = promptdistill::num::from_f32<T>(100.0f);
        row[n - 1] = promptdistill::num::from_f32<T>(100.0f);
        break;
      case ArgMaxRow::kAllEqual:
        for (int64_t j = 0; j < n; ++j) row[j] = promptdistill::num::from_f32<T>(1.5f);
        break;
      case ArgMaxRow::kNaN:
        row[place()] =
            promptdistill::num::from_f32<T>(1e30f);  // a huge number still ranks below NaN
        for (int t = 0; t < 3; ++t) row[place()] = promptdistill::num::from_f32<T>(std::nanf(""));
        break;
      case ArgMaxRow::kSignedZeros:
        for (int64_t j = 0; j < n; ++j)
          row[j] = promptdistill::num::from_f32<T>(rng() % 2 ? 0.0f : -0.0f);
        break;
      case ArgMaxRow::kAllMinusInf:
        for (int64_t j = 0; j < n; ++j) row[j] = promptdistill::num::from_f32<T>(-INFINITY);
        break;
    }
  }
  return x;
}

//! ArgMax's answer written plainly, as the documentation states it: the first NaN if there is
//! one, else the first index whose value equals the row's maximum (+0 == -0).
template <class T>
std::vector<int32_t> argmax_oracle(const std::vector<T>& x, int64_t rows, int64_t n,
                                   int64_t pitch) {
  std::vector<int32_t> out;
  for (int64_t i = 0; i < rows; ++i) {
    std::vector<float> row(static_cast<std::size_t>(n));
    for (int64_t j = 0; j < n; ++j)
      row[std::size_t(j)] = promptdistill::num::to_f32(x[std::size_t(i * pitch + j)]);
    const auto nan = std::find_if(row.begin(), row.end(), [](float v) { return std::isnan(v); });
    if (nan != row.end()) {
      out.push_back(int32_t(nan - row.begin()));
      continue;
    }
    const float top = *std::max_element(row.begin(), row.end());
    out.push_back(int32_t(std::find(row.begin(), row.end(), top) - row.begin()));
  }
  return out;
}

//! The sizes the ArgMax tests sweep: warp and block edges, a 1024-thread block's edges, and
//! SmolLM2's vocabulary.
inline std::vector<int64_t> argmax_sizes() {
  return {1, 2, 31, 32, 33, 511, 512, 513, 1023, 1024, 1025, 49152};
}

}  // namespace pdtest
