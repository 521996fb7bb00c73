// SPDX-License-Identifier: Apache-2.0
// The CPU decoder's kernels (pipelines/cpu/cpu_kernels.h, gemm_ref.h, prefill_attention_ref.h).
// Tier C against exact arithmetic, with these checks:
//  - every vector table (AVX2, AVX-512, where this CPU has them) gives the portable scalar table's
//    bits, for every size, stride, panel width and thread count (the bits depend on the data only);
//  - a row of a GEMM equals the one-row product (the decode step's), and an attention row of a
//    prefill equals the decode step that sees the same keys, bit for bit;
//  - GEMMs are exact on small integers and within gamma_K * sum |a w| of the exact sum otherwise
//    (one fma chain per output); attention within kAttentionBound * max |v| of a double-precision
//    softmax, and exact where a row sees one key; the bf16 GEMM on AMX tiles (where the CPU has
//    them) within (2^-17 + gamma_2K) sum |a w16| of the product with the bf16-rounded weights;
//  - bad arguments get a Status.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "pipelines/cpu/cpu_kernels.h"
#include "pipelines/cpu/gemm_ref.h"
#include "pipelines/cpu/prefill_attention_ref.h"
#include "promptdistill/dtype.h"
#include "promptdistill/transformer_ref.h"
#include "support/generators.h"

using namespace promptdistill;
using namespace promptdistill::ref;
using pdtest::Fill;

namespace {

//! The tables this CPU runs, scalar first (the definition the others are compared with).
std::vector<kernels::Isa> isas() {
  std::vector<kernels::Isa> out;
  for (kernels::Isa i : {kernels::Isa::kScalar, kernels::Isa::kAvx2, kernels::Isa::kAvx512})
    if (kernels::table(i) != nullptr) out.push_back(i);
  return out;
}

//! Restores the table in use at the end of a test.
struct KeepActive {
  kernels::Isa isa = kernels::active().isa;
  ~KeepActive() {
    kernels::set_active(isa);
    set_threads(0);
  }
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct GemmCase {
  int64_t m, k;
  std::vector<int64_t> rows;  // per part
};

//! Runs the GEMM of `c` on data from `seed`: A with row stride k + 3, outputs with stride rows + 5
//! (the padding stays untouched), packed in panels of `nr`. Returns every part's output matrix.
std::vector<float> run_gemm(const GemmCase& c, Fill fill, uint64_t seed, int64_t nr, int64_t kc,
                            std::vector<float>* a_out = nullptr,
                            std::vector<std::vector<float>>* w_out = nullptr) {
  const int64_t lda = c.k + 3;
  const auto a = pdtest::generate<float>(std::size_t(c.m * lda), fill, seed);
  std::vector<std::vector<float>> w;
  std::vector<gemm::Part> parts;
  for (std::size_t i = 0; i < c.rows.size(); ++i)
    w.push_back(
        pdtest::generate<float>(std::size_t(c.rows[i] * c.k), fill, pdtest::mix(seed, i + 1)));
  for (std::size_t i = 0; i < c.rows.size(); ++i) parts.push_back({w[i].data(), c.rows[i]});
  gemm::PackedMatrix packed;
  REQUIRE(gemm::PackedMatrix::pack(parts.data(), int(parts.size()), c.k, nr, kc, &packed).is_ok());
  int64_t total = 0;
  for (int64_t r : c.rows) total += c.m * (r + 5);
  std::vector<float> out(std::size_t(total), -7.0f);
  std::vector<gemm::Output> outs;
  int64_t at = 0;
  for (int64_t r : c.rows) {
    outs.push_back({out.data() + at, r + 5});
    at += c.m * (r + 5);
  }
  REQUIRE(gemm::run(packed, a.data(), c.m, lda, outs.data()).is_ok());
  at = 0;
  for (int64_t r : c.rows) {  // the stride's padding is never written
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = r; j < r + 5; ++j) REQUIRE(out[std::size_t(at + i * (r + 5) + j)] == -7.0f);
    at += c.m * (r + 5);
  }
  if (a_out) *a_out = a;
  if (w_out) *w_out = w;
  return out;
}

const std::vector<GemmCase> kGemmCases = {
    {1, 1, {1}},        {1, 33, {17, 33}},      {2, 31, {16, 16, 32}},
    {7, 32, {31}},      {31, 33, {64, 16, 16}}, {32, 300, {48}},
    {33, 577, {1, 47}}, {1023, 31, {33}},       {1024, 64, {32, 16}},
    {1025, 65, {17}},   {200, 1536, {40}}};

}  // namespace

TEST_CASE(
    "cpu kernels/gemm: every table gives the scalar table's bits (sizes, strides, panels, K "
    "blocks, threads)") {
  KeepActive keep;
  for (const GemmCase& c : kGemmCases) {
    const uint64_t seed = pdtest::mix(pdtest::seed(), uint64_t(c.m), uint64_t(c.k));
    CAPTURE(c.m);
    CAPTURE(c.k);
    CAPTURE(seed);
    REQUIRE(kernels::set_active(kernels::Isa::kScalar));
    set_threads(1);
    const auto want = run_gemm(c, Fill::kNormal, seed, 16, 1 << 20);
    for (int64_t nr : {16, 32})
      for (int64_t kc : {int64_t(64), int64_t(384)})
        for (kernels::Isa isa : isas())
          for (int threads : {1, 2}) {
            CAPTURE(nr);
            CAPTURE(kc);
            CAPTURE(kernels::to_string(isa));
            CAPTURE(threads);
            REQUIRE(kernels::set_active(isa));
            set_threads(threads);
            CHECK(same_bits(run_gemm(c, Fill::kNormal, seed, nr, kc), want));
          }
  }
}

TEST_CASE("cpu kernels/gemm: exact on small integers; within gamma_K * sum |a w| otherwise") {
  KeepActive keep;
  for (Fill fill : {Fill::kSmallInt, Fill::kNormal})
    for (const GemmCase& c : kGemmCases) {
      const uint64_t seed = pdtest::mix(pdtest::seed(), uint64_t(c.m), uint64_t(c.k), 99);
      CAPTURE(pdtest::to_string(fill));
      CAPTURE(c.m);
      CAPTURE(c.k);
      CAPTURE(seed);
      std::vector<float> a;
      std::vector<std::vector<float>> w;
      const auto got = run_gemm(c, fill, seed, kernels::active().nr, kernels::active().kc, &a, &w);
      const double u = std::ldexp(1.0, -24), gamma = double(c.k) * u / (1 - double(c.k) * u);
      int64_t at = 0;
      double worst = 0;
      for (std::size_t p = 0; p < c.rows.size(); ++p) {
        const int64_t r = c.rows[p];
        for (int64_t i = 0; i < c.m; ++i)
          for (int64_t j = 0; j < r; ++j) {
            double exact = 0, magnitude = 0;
            for (int64_t k = 0; k < c.k; ++k) {
              const double t = double(a[std::size_t(i * (c.k + 3) + k)]) *
                               double(w[p][std::size_t(j * c.k + k)]);
              exact += t, magnitude += std::fabs(t);
            }
            const double err = std::fabs(double(got[std::size_t(at + i * (r + 5) + j)]) - exact);
            if (fill == Fill::kSmallInt) REQUIRE(err == 0.0);
            REQUIRE(err <= gamma * magnitude);
            worst = std::max(worst, magnitude > 0 ? err / (gamma * magnitude) : 0.0);
          }
        at += c.m * (r + 5);
      }
      if (fill == Fill::kNormal)
        MESSAGE(c.m << "x" << c.k << ": largest error " << worst << " of the bound");
    }
}

TEST_CASE("cpu kernels/gemm: a row of a product equals the one-row product (the decode step's)") {
  KeepActive keep;
  const GemmCase c{37, 300, {40, 16, 16}};
  std::vector<float> a;
  std::vector<std::vector<float>> w;
  const uint64_t seed = pdtest::mix(pdtest::seed(), 5);
  CAPTURE(seed);
  const auto all =
      run_gemm(c, Fill::kNormal, seed, kernels::active().nr, kernels::active().kc, &a, &w);
  std::vector<gemm::Part> parts;
  for (std::size_t i = 0; i < w.size(); ++i) parts.push_back({w[i].data(), c.rows[i]});
  gemm::PackedMatrix packed;
  REQUIRE(gemm::PackedMatrix::pack_for_active(parts.data(), 3, c.k, &packed).is_ok());
  for (int64_t i : {0, 5, 36}) {
    std::vector<float> y0(40), y1(16), y2(16);
    const gemm::Output outs[3] = {{y0.data(), 40}, {y1.data(), 16}, {y2.data(), 16}};
    REQUIRE(gemm::run(packed, a.data() + i * (c.k + 3), 1, c.k, outs).is_ok());
    CHECK(std::memcmp(y0.data(), &all[std::size_t(i * 45)], 40 * 4) == 0);
    CHECK(std::memcmp(y1.data(), &all[std::size_t(37 * 45 + i * 21)], 16 * 4) == 0);
    CHECK(std::memcmp(y2.data(), &all[std::size_t(37 * 45 + 37 * 21 + i * 21)], 16 * 4) == 0);
  }
}

namespace {

//! Relative to max |v|: f32 scores of D-term dot products (|q . k| / sqrt(D) up to about 6 here),
//! the 1.3-ulp exp2 and the f32 sums give about 2e-7 (measured 0.9e-7 to 2.0e-7 over these
//! shapes); the bound leaves a factor of 10.
constexpr double kAttentionBound = 2e-6;

struct AttentionCase {
  int64_t heads, kv_heads, d, n, past;
};

struct AttentionData {
  std::vector<float> q, k, v;
};

AttentionData attention_data(const AttentionCase& c, uint64_t seed) {
  AttentionData x;
  x.q = pdtest::generate<float>(std::size_t(c.n * c.heads * c.d), Fill::kNormal, seed);
  x.k = pdtest::generate<float>(std::size_t((c.past + c.n) * c.kv_heads * c.d), Fill::kNormal,
                                seed + 1);
  x.v = pdtest::generate<float>(std::size_t((c.past + c.n) * c.kv_heads * c.d), Fill::kNormal,
                                seed + 2);
  return x;
}

std::vector<float> run_attention(const AttentionCase& c, const AttentionData& x) {
  std::vector<float> out(std::size_t(c.n * c.heads * c.d), -7.0f);
  attention::Shape s;
  s.heads = c.heads, s.kv_heads = c.kv_heads, s.head_dim = c.d;
  REQUIRE(
      attention::prefill(s, x.q.data(), c.n, x.k.data(), x.v.data(), c.past, out.data()).is_ok());
  return out;
}

const std::vector<AttentionCase> kAttentionCases = {
    {3, 1, 64, 1, 0},   {3, 1, 64, 31, 0},    {3, 1, 64, 65, 0},
    {9, 3, 64, 130, 0}, {4, 2, 16, 33, 5},    {2, 2, 24, 64, 64},
    {1, 1, 96, 63, 1},  {8, 1, 128, 17, 200}, {3, 3, 64, 129, 63}};

}  // namespace

TEST_CASE(
    "cpu kernels/attention: every table gives the scalar bits; a prefill row equals its decode "
    "step") {
  KeepActive keep;
  for (const AttentionCase& c : kAttentionCases) {
    const uint64_t seed = pdtest::mix(pdtest::seed(), uint64_t(c.heads), uint64_t(c.d),
                                      uint64_t(c.n), uint64_t(c.past));
    CAPTURE(c.heads);
    CAPTURE(c.kv_heads);
    CAPTURE(c.d);
    CAPTURE(c.n);
    CAPTURE(c.past);
    CAPTURE(seed);
    const AttentionData x = attention_data(c, seed);
    REQUIRE(kernels::set_active(kernels::Isa::kScalar));
    set_threads(1);
    const auto want = run_attention(c, x);
    for (kernels::Isa isa : isas())
      for (int threads : {1, 2}) {
        CAPTURE(kernels::to_string(isa));
        CAPTURE(threads);
        REQUIRE(kernels::set_active(isa));
        set_threads(threads);
        CHECK(same_bits(run_attention(c, x), want));
        // Rows at tile and key-block edges, decoded alone over the keys they see.
        attention::Shape s;
        s.heads = c.heads, s.kv_heads = c.kv_heads, s.head_dim = c.d;
        std::vector<float> scratch(std::size_t(attention::decode_scratch_floats(s, threads)));
        for (int64_t i : {int64_t(0), c.n / 2, c.n - 1}) {
          std::vector<float> row(std::size_t(c.heads * c.d));
          REQUIRE(attention::decode(s, &x.q[std::size_t(i * c.heads * c.d)], x.k.data(), x.v.data(),
                                    c.past + i + 1, row.data(), scratch.data(),
                                    int64_t(scratch.size()))
                      .is_ok());
          CHECK(std::memcmp(row.data(), &want[std::size_t(i * c.heads * c.d)], row.size() * 4) ==
                0);
        }
      }
  }
}

TEST_CASE(
    "cpu kernels/attention: within the stated bound of a double-precision softmax; one key is "
    "exact") {
  for (const AttentionCase& c : kAttentionCases) {
    const uint64_t seed =
        pdtest::mix(pdtest::seed(), uint64_t(c.heads), uint64_t(c.d), uint64_t(c.n), 7);
    CAPTURE(c.heads);
    CAPTURE(c.d);
    CAPTURE(c.n);
    CAPTURE(c.past);
    CAPTURE(seed);
    const AttentionData x = attention_data(c, seed);
    const auto got = run_attention(c, x);
    const int64_t group = c.heads / c.kv_heads;
    double vmax = 0, worst = 0;
    for (float v : x.v) vmax = std::max(vmax, double(std::fabs(v)));
    for (int64_t i = 0; i < c.n; ++i)
      for (int64_t h = 0; h < c.heads; ++h) {
        const int64_t g = h / group, keys = c.past + i + 1;
        std::vector<double> p(static_cast<std::size_t>(keys));
        double m = -1e300, l = 0;
        for (int64_t t = 0; t < keys; ++t) {
          double s = 0;
          for (int64_t d = 0; d < c.d; ++d)
            s += double(x.q[std::size_t((i * c.heads + h) * c.d + d)]) *
                 double(x.k[std::size_t((t * c.kv_heads + g) * c.d + d)]);
          p[std::size_t(t)] = s / std::sqrt(double(c.d));
          m = std::max(m, p[std::size_t(t)]);
        }
        for (auto& e : p) l += (e = std::exp(e - m));
        for (int64_t d = 0; d < c.d; ++d) {
          double o = 0;
          for (int64_t t = 0; t < keys; ++t)
            o += p[std::size_t(t)] * double(x.v[std::size_t((t * c.kv_heads + g) * c.d + d)]);
          const float value = got[std::size_t((i * c.heads + h) * c.d + d)];
          if (keys == 1) REQUIRE(value == x.v[std::size_t(g * c.d + d)]);  // p = 1, l = 1
          worst = std::max(worst, std::fabs(double(value) - o / l) / vmax);
        }
      }
    MESSAGE("attention " << c.heads << "/" << c.kv_heads << " heads, D " << c.d << ", " << c.n
                         << " rows after " << c.past
                         << ": max |out - exact| / max |v| = " << worst);
    CHECK(worst <= kAttentionBound);
  }
}

TEST_CASE(
    "cpu kernels/gemm bf16 tiles: within (2^-17 + gamma_2K) sum |a w16| of the product with the "
    "bf16 weights") {
  // The AMX path (PrefillWeightFormat::kBf16): weights rounded to bf16 (w16), activations split
  // into hi + lo bf16 terms (within 2^-17 |a|), f32 accumulation of 2K products in the tile
  // unit's order. Where there is no AMX-BF16, packing for it is refused.
  const GemmCase cases[] = {{1, 1, {1}},
                            {33, 100, {17, 33}},
                            {64, 576, {64, 32, 32}},
                            {37, 1536, {48}},
                            {1025, 65, {16}}};
  for (const GemmCase& c : cases) {
    const uint64_t seed = pdtest::mix(pdtest::seed(), uint64_t(c.m), uint64_t(c.k), 16);
    CAPTURE(c.m);
    CAPTURE(c.k);
    CAPTURE(seed);
    const auto a = pdtest::generate<float>(std::size_t(c.m * c.k), Fill::kNormal, seed);
    std::vector<std::vector<float>> w;
    std::vector<gemm::Part> parts;
    for (std::size_t i = 0; i < c.rows.size(); ++i)
      w.push_back(pdtest::generate<float>(std::size_t(c.rows[i] * c.k), Fill::kNormal,
                                          pdtest::mix(seed, i + 1)));
    for (std::size_t i = 0; i < c.rows.size(); ++i) parts.push_back({w[i].data(), c.rows[i]});
    gemm::PackedMatrix packed;
    const Status st =
        gemm::PackedMatrix::pack_bf16_tiles(parts.data(), int(parts.size()), c.k, &packed);
    if (!kernels::amx_bf16_available()) {
      CHECK(st.code() == StatusCode::kUnsupported);
      continue;
    }
    REQUIRE(st.is_ok());
    CHECK(packed.bf16_tiles());
    std::vector<std::vector<float>> out;
    std::vector<gemm::Output> outs;
    for (int64_t r : c.rows) out.emplace_back(std::size_t(c.m * r), -7.0f);
    for (std::size_t i = 0; i < c.rows.size(); ++i) outs.push_back({out[i].data(), c.rows[i]});
    REQUIRE(gemm::run(packed, a.data(), c.m, c.k, outs.data()).is_ok());
    const double u = std::ldexp(1.0, -24),
                 bound = std::ldexp(1.0, -17) + 2.0 * double(c.k) * u / (1 - 2.0 * double(c.k) * u);
    double worst = 0;
    for (std::size_t p = 0; p < c.rows.size(); ++p)
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < c.rows[p]; ++j) {
          double exact = 0, magnitude = 0;
          for (int64_t k = 0; k < c.k; ++k) {
            const double t = double(a[std::size_t(i * c.k + k)]) *
                             double(to_float(to_bf16(w[p][std::size_t(j * c.k + k)])));
            exact += t, magnitude += std::fabs(t);
          }
          const double err = std::fabs(double(out[p][std::size_t(i * c.rows[p] + j)]) - exact);
          REQUIRE(err <= bound * magnitude);
          worst = std::max(worst, magnitude > 0 ? err / magnitude : 0.0);
        }
    MESSAGE(c.m << "x" << c.k << " bf16 tiles: max |c - exact| / sum |a w16| = " << worst
                << " (bound " << bound << ")");
  }
}

TEST_CASE("cpu kernels: bad arguments get a Status; the table in use is one this CPU runs") {
  const std::vector<float> w(64, 1.0f), a(64, 1.0f);
  std::vector<float> y(64);
  gemm::PackedMatrix packed;
  const gemm::Part part{w.data(), 4};
  CHECK(gemm::PackedMatrix::pack(&part, 0, 16, 16, 64, &packed).code() ==
        StatusCode::kInvalidArgument);
  CHECK(gemm::PackedMatrix::pack(&part, 1, 16, 12, 64, &packed).code() ==
        StatusCode::kInvalidArgument);
  CHECK(gemm::PackedMatrix::pack(&part, 1, 16, 16, 0, &packed).code() ==
        StatusCode::kInvalidArgument);
  const gemm::Part empty{w.data(), 0};
  CHECK(gemm::PackedMatrix::pack(&empty, 1, 16, 16, 64, &packed).code() ==
        StatusCode::kInvalidArgument);
  REQUIRE(gemm::PackedMatrix::pack(&part, 1, 16, 16, 64, &packed).is_ok());
  const gemm::Output narrow{y.data(), 3}, fine{y.data(), 4};
  CHECK(gemm::run(packed, a.data(), 2, 16, &narrow).code() == StatusCode::kInvalidArgument);
  CHECK(gemm::run(packed, a.data(), 2, 15, &fine).code() == StatusCode::kInvalidArgument);
  CHECK(gemm::run(packed, a.data(), 2, 16, &fine).is_ok());
  CHECK(y[0] == 16.0f);
  attention::Shape s;
  s.heads = 3, s.kv_heads = 2, s.head_dim = 8;
  CHECK(attention::prefill(s, a.data(), 1, a.data(), a.data(), 0, y.data()).code() ==
        StatusCode::kInvalidArgument);
  s.kv_heads = 1;
  CHECK(attention::decode(s, a.data(), a.data(), a.data(), 1, y.data(), y.data(), 1).code() ==
        StatusCode::kInvalidArgument);
  CHECK(attention::decode(s, a.data(), a.data(), a.data(), 0, y.data(), y.data(), 64).code() ==
        StatusCode::kInvalidArgument);
  const kernels::Table& t = kernels::active();
  CHECK(kernels::table(t.isa) == &t);
  CHECK(kernels::fma_gflops(t.isa, 0.001) > 0);
  MESSAGE("kernels in use: " << std::string(kernels::choice()));
}
