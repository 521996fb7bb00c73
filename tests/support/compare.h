// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Comparators that say why they failed: the mismatch count, the first mismatching index, and
//! both values with their bit patterns. Use as `CHECK(bitwise_equal(got, want))`; doctest prints
//! the report on failure.
//! - bitwise_equal: bit patterns (so +0 != -0 and NaN payloads must match).
//! - max_ulp: ULP distance in f32 (NaN only matches NaN).
//! - nmse: sum((a-b)^2) / sum(b^2) (ggml's metric).

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "promptdistill/detail/numerics.h"

namespace pdtest {

struct CompareResult {
  bool ok = true;
  std::string report;
  explicit operator bool() const { return ok; }
};

template <class T>
uint64_t bits_of(const T& v) {
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <class T>
double value_of(const T& v) {
  if constexpr (std::is_integral_v<T>)
    return double(v);
  else
    return double(promptdistill::num::to_f32(v));
}

template <class T>
std::string describe_pair(std::size_t i, const T& got, const T& want) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "first at [%zu]: got %.9g (0x%0*llx), want %.9g (0x%0*llx)", i,
                value_of(got), int(2 * sizeof(T)), static_cast<unsigned long long>(bits_of(got)),
                value_of(want), int(2 * sizeof(T)), static_cast<unsigned long long>(bits_of(want)));
  return buf;
}

//! Bit-for-bit equality of two equally long sequences.
template <class T>
CompareResult bitwise_equal(const std::vector<T>& got, const std::vector<T>& want) {
  CompareResult r;
  if (got.size() != want.size()) {
    r.ok = false;
    r.report = "sizes differ: " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
    return r;
  }
  std::size_t mismatches = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (bits_of(got[i]) != bits_of(want[i])) {
      if (mismatches++ == 0) first = i;
    }
  if (mismatches) {
    r.ok = false;
    r.report = "bitwise: " + std::to_string(mismatches) + " of " + std::to_string(got.size()) +
               " differ; " + describe_pair(first, got[first], want[first]);
  }
  return r;
}

inline int64_t ulp_distance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : INT64_MAX;
  auto ordered = [](float x) {
    int32_t i;
    std::memcpy(&i, &x, 4);
    return i < 0 ? int64_t(INT32_MIN) - i : int64_t(i);
  };
  const int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

//! Every element within `max_ulps` ULP (in f32) of the reference.
template <class T>
CompareResult max_ulp(const std::vector<T>& got, const std::vector<T>& want, int64_t max_ulps) {
  CompareResult r;
  if (got.size() != want.size()) return {false, "sizes differ"};
  std::size_t mismatches = 0, first = 0;
  int64_t worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const int64_t d = ulp_distance(float(value_of(got[i])), float(value_of(want[i])));
    if (d > worst) worst = d;
    if (d > max_ulps && mismatches++ == 0) first = i;
  }
  if (mismatches) {
    r.ok = false;
    r.report = "max_ulp(" + std::to_string(max_ulps) + "): " + std::to_string(mismatches) + " of " +
               std::to_string(got.size()) + " exceed, worst " + std::to_string(worst) + " ulp; " +
               describe_pair(first, got[first], want[first]);
  }
  return r;
}

//! Normalised mean squared error below `bound`.
template <class T>
CompareResult nmse_below(const std::vector<T>& got, const std::vector<T>& want, double bound) {
  CompareResult r;
  if (got.size() != want.size()) return {false, "sizes differ"};
  double err = 0, ref = 0;
  std::size_t first = got.size();
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = value_of(got[i]) - value_of(want[i]);
    err += d * d;
    ref += value_of(want[i]) * value_of(want[i]);
    if (first == got.size() && d != 0) first = i;
  }
  const double nmse = ref > 0 ? err / ref : err;
  if (!(nmse <= bound)) {
    r.ok = false;
    char buf[96];
    std::snprintf(buf, sizeof buf, "nmse %.3g > bound %.3g; ", nmse, bound);
    r.report =
        buf + (first < got.size() ? describe_pair(first, got[first], want[first]) : std::string());
  }
  return r;
}

//! Two selections (anything with indices, counts, positions and final_scores vectors) are the
//! same: equal indices, counts and positions, final scores bit for bit.
template <class Got, class Want>
void check_same_selection(const Got& got, const Want& want) {
  CHECK(got.indices == want.indices);
  CHECK(got.counts == want.counts);
  CHECK(got.positions == want.positions);
  CHECK(bitwise_equal(got.final_scores, want.final_scores));
}

}  // namespace pdtest

namespace doctest {
template <>
struct StringMaker<pdtest::CompareResult> {
  static String convert(const pdtest::CompareResult& r) {
    return r.ok ? "match" : r.report.c_str();
  }
};
}  // namespace doctest
