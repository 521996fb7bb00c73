// SPDX-License-Identifier: Apache-2.0
// Tier B foundations: the shared numerics header against independent implementations.
// - f16 <-> f32 against GCC's _Float16 conversions (libgcc soft-float), on all 65,536 patterns.
// - bf16 <-> f32 against an arithmetic (double-precision, nearest-then-even) rounding.
// - exp_f32 against std::exp (accuracy bound), and the canonical reduction orders on cases
//   worked out by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <ios>
#include <random>

#include "promptdistill/detail/numerics.h"
#include "support/compare.h"
#include "support/generators.h"

using namespace promptdistill;

namespace {

float f16_independent_to_f32(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return float(h);
}
uint16_t f16_independent_from_f32(float x) {
  const _Float16 h = static_cast<_Float16>(x);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}
double bf16_value(uint16_t bits) {  // exact decode by arithmetic
  const int sign = bits >> 15, exponent = (bits >> 7) & 0xff, mantissa = bits & 0x7f;
  double v = exponent == 0 ? std::ldexp(double(mantissa), -133)
                           : std::ldexp(double(128 + mantissa), exponent - 134);
  return sign ? -v : v;
}
//! Nearest bf16 by comparing distances in double; ties to the even pattern.
uint16_t bf16_independent_from_f32(float x) {
  if (std::isnan(x)) return 0x7fc0;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double ax = std::fabs(double(x));
  if (std::isinf(x)) return uint16_t(sign | 0x7f80);
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint16_t lo = uint16_t((u & 0x7fffffffu) >> 16);  // truncation toward zero
  const uint16_t hi = uint16_t(lo + 1);
  const double vlo = bf16_value(lo);
  const double vhi = hi >= 0x7f80 ? std::ldexp(1.0, 128) : bf16_value(hi);  // inf stands at 2^128
  const double dlo = ax - vlo, dhi = vhi - ax;
  uint16_t pick = dlo < dhi ? lo : dhi < dlo ? hi : ((lo & 1) ? hi : lo);
  return uint16_t(sign | pick);
}

}  // namespace

TEST_CASE("numerics: f16 -> f32 on all 65,536 patterns (vs _Float16)") {
  int mismatches = 0;
  for (uint32_t p = 0; p < 65536; ++p) {
    const float got = num::to_f32(f16{uint16_t(p)});
    const float want = f16_independent_to_f32(uint16_t(p));
    const bool nan_both = std::isnan(got) && std::isnan(want);
    if (!(nan_both ? ((num::bits_of(got) >> 13) & 0x3ff) == (p & 0x3ff)
                   : num::bits_of(got) == num::bits_of(want))) {
      if (mismatches++ < 5) MESSAGE("pattern " << p << " got " << got << " want " << want);
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("numerics: f32 -> f16 around every f16 pattern (vs _Float16)") {
  // For each half h: its exact value, the midpoint to the next half, and one f32 ulp either side
  // of both, so every rounding boundary (ties to even, subnormals, overflow to inf) is hit.
  int mismatches = 0;
  auto check = [&](float x) {
    const uint16_t got = num::to_f16(x).bits, want = f16_independent_from_f32(x);
    const bool ok = std::isnan(x)
                        ? ((got & 0x7c00) == 0x7c00 && (got & 0x3ff) != 0 && (got & 0x200))
                        : got == want;
    if (!ok && mismatches++ < 5)
      MESSAGE("x=" << x << " bits=0x" << std::hex << num::bits_of(x) << " got 0x" << got
                   << " want 0x" << want);
  };
  for (uint32_t p = 0; p < 65536; ++p) {
    const float v = num::to_f32(f16{uint16_t(p)});
    check(v);
    check(std::nextafter(v, 1e30f));
    check(std::nextafter(v, -1e30f));
    if ((p & 0x7fff) < 0x7c00) {
      const float next = num::to_f32(f16{uint16_t(p + 1)});
      const float mid = float(
          (double(v) + double((p & 0x7fff) == 0x7bff ? (p & 0x8000 ? -65536.0 : 65536.0) : next)) /
          2);
      check(mid);
      check(std::nextafter(mid, 1e30f));
      check(std::nextafter(mid, -1e30f));
    }
  }
  std::mt19937 rng(uint32_t(pdtest::seed()));
  for (int i = 0; i < 1000000; ++i) check(num::float_of(rng()));
  CHECK(mismatches == 0);
}

TEST_CASE("numerics: bf16 -> f32 on all 65,536 patterns (vs arithmetic decode)") {
  int mismatches = 0;
  for (uint32_t p = 0; p < 65536; ++p) {
    const float got = num::to_f32(bf16{uint16_t(p)});
    const bool is_nan = ((p >> 7) & 0xff) == 0xff && (p & 0x7f) != 0;
    const bool is_inf = ((p >> 7) & 0xff) == 0xff && (p & 0x7f) == 0;
    bool ok;
    if (is_nan)
      ok = std::isnan(got);
    else if (is_inf)
      ok = std::isinf(got) && (std::signbit(got) == bool(p & 0x8000));
    else
      ok = double(got) == bf16_value(uint16_t(p)) && std::signbit(got) == bool(p & 0x8000);
    if (!ok) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("numerics: f32 -> bf16 around every bf16 pattern (vs nearest-by-distance)") {
  int mismatches = 0;
  auto check = [&](float x) {
    const uint16_t got = num::to_bf16(x).bits;
    bool ok;
    if (std::isnan(x))
      ok = ((got & 0x7f80) == 0x7f80) && (got & 0x40) &&
           (got & 0x8000) == ((num::bits_of(x) >> 16) & 0x8000);
    else
      ok = got == bf16_independent_from_f32(x);
    if (!ok && mismatches++ < 5)
      MESSAGE("x bits 0x" << std::hex << num::bits_of(x) << " got 0x" << got);
  };
  for (uint32_t p = 0; p < 65536; ++p) {
    const uint32_t base = p << 16;
    for (uint32_t low : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu})
      check(num::float_of(base | low));
  }
  std::mt19937 rng(uint32_t(pdtest::seed()) + 1);
  for (int i = 0; i < 1000000; ++i) check(num::float_of(rng()));
  CHECK(mismatches == 0);
  // NaN payload: a signalling NaN becomes quiet, sign kept.
  CHECK(num::to_bf16(num::float_of(0xff800001u)).bits == 0xffc0);
  CHECK(num::to_f16(num::float_of(0x7f800001u)).bits == 0x7e00);
  CHECK(num::to_f16(65519.0f).bits == 0x7bff);
  CHECK(num::to_f16(65520.0f).bits == 0x7c00);
  CHECK(num::to_bf16(3.4e38f).bits == 0x7f80);  // rounds past the largest finite bf16
}

TEST_CASE("numerics: exp_f32 is accurate and handles the edges") {
  CHECK(num::exp_f32(0.0f) == 1.0f);
  CHECK(std::isinf(num::exp_f32(100.0f)));
  CHECK(num::exp_f32(-200.0f) == 0.0f);
  CHECK(num::exp_f32(-num::kInfinity) == 0.0f);
  CHECK(std::isinf(num::exp_f32(num::kInfinity)));
  CHECK(std::isnan(num::exp_f32(std::nanf(""))));
  int64_t worst = 0;
  std::mt19937 rng(uint32_t(pdtest::seed()) + 2);
  std::uniform_real_distribution<float> u(-103.0f, 88.0f);
  for (int i = 0; i < 200000; ++i) {
    const float x = i < 1000 ? -float(i) * 0.087f : u(rng);
    const float want = float(std::exp(double(x)));
    if (want < 1.2e-38f) continue;  // subnormal results: checked separately below
    worst = std::max(worst, pdtest::ulp_distance(num::exp_f32(x), want));
  }
  MESSAGE("exp_f32 worst error on normal results: " << worst << " ulp");
  CHECK(worst <= 2);
  // Subnormal results stay within a few subnormal ulps.
  for (float x = -103.0f; x < -87.5f; x += 0.37f)
    CHECK(std::fabs(num::exp_f32(x) - float(std::exp(double(x)))) <= 4 * std::ldexp(1.0f, -149));
}

TEST_CASE("numerics: canonical sum and max equal the lane formula bit for bit at every length") {
  // The lane formula written out: lane t = x[t] op x[t + W] op ... from the identity, then the
  // tree.
  auto lanes = [](const std::vector<float>& x, int64_t n, bool is_max) {
    std::vector<float> partial(num::kReduceWidth, is_max ? -num::kInfinity : 0.0f);
    for (int64_t j = 0; j < n; ++j) {
      float& p = partial[std::size_t(j % num::kReduceWidth)];
      p = is_max ? num::max_nan(p, x[std::size_t(j)]) : num::add(p, x[std::size_t(j)]);
    }
    for (int s = num::kReduceWidth / 2; s > 0; s /= 2)
      for (int t = 0; t < s; ++t)
        partial[std::size_t(t)] =
            is_max ? num::max_nan(partial[std::size_t(t)], partial[std::size_t(t + s)])
                   : num::add(partial[std::size_t(t)], partial[std::size_t(t + s)]);
    return partial[0];
  };
  for (int64_t n : {1, 31, 255, 256, 257, 511, 1023, 1024, 1025, 4099}) {
    const auto x = pdtest::generate<float>(std::size_t(n), pdtest::Fill::kNormal,
                                           pdtest::mix(pdtest::seed(), uint64_t(n)), 1000.0f);
    auto term = [&](int64_t j) { return x[std::size_t(j)]; };
    CAPTURE(n);
    CHECK(pdtest::bitwise_equal(std::vector<float>{num::canonical_sum(n, term)},
                                std::vector<float>{lanes(x, n, false)}));
    CHECK(pdtest::bitwise_equal(std::vector<float>{num::canonical_max(n, term)},
                                std::vector<float>{lanes(x, n, true)}));
  }
}

TEST_CASE("numerics: canonical reductions follow the documented order") {
  // n <= kReduceWidth: lane t holds x[t], then the halving tree. For n = 3 that is
  // ((x0 + x2) + x1)... evaluate with values where the order is visible in f32.
  const float big = 16777216.0f;  // 2^24: big + 1 == big in f32
  std::vector<float> x = {big, 1.0f, 1.0f};
  // Tree for width 256: partial[0]=big, [1]=1, [2]=1; s=128..4 add zeros; s=2: p0 += p2 -> big+1 =
  // big, p1 += p3 -> 1; s=1: p0 += p1 -> big + 1 = big.
  CHECK(num::canonical_sum(3, [&](int64_t j) { return x[std::size_t(j)]; }) == big);
  // Lane striding: terms j and j + 256 share a lane and are added first.
  std::vector<float> y(257, 0.0f);
  y[0] = big;
  y[256] = 1.0f;
  y[1] = 1.0f;
  CHECK(num::canonical_sum(257, [&](int64_t j) { return y[std::size_t(j)]; }) == big);
  y[0] = 1.0f;
  y[256] = 1.0f;
  y[1] = big;  // lane 0 = 2, lane 1 = big: big + 2 is representable
  CHECK(num::canonical_sum(257, [&](int64_t j) { return y[std::size_t(j)]; }) == big + 2.0f);
  CHECK(num::canonical_sum(0, [&](int64_t) { return 1.0f; }) == 0.0f);
  CHECK(num::canonical_max(0, [&](int64_t) { return 1.0f; }) == -num::kInfinity);
  CHECK(
      std::isnan(num::canonical_max(3, [&](int64_t j) { return j == 1 ? std::nanf("") : 1.0f; })));
  CHECK(num::canonical_max(300, [&](int64_t j) { return float(j % 17); }) == 16.0f);
  // dot is sequential: (2^24 + 1) + 1 = 2^24 in f32, unlike a pairwise order.
  const float a[] = {big, 1.0f, 1.0f}, ones[] = {1.0f, 1.0f, 1.0f};
  CHECK(num::dot(a, ones, 3) == big);
}
