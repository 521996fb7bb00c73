// SPDX-License-Identifier: Apache-2.0
// The CPU reference decoder block ops (ref::), the oracle of the CUDA kernels:
// - Tier B ops (RmsNorm, Rope, SwiGlu, Attention kExact) against double-precision definitions
//   within a few f32 ulps, and bitwise invariance under strides, in-place use and cache layout;
// - Tier A ops (Embed, AppendKv) exact in every layout;
// - Linear (Tier C) exact on small integers, with bias, residual and in-place residual;
// - ArgMax (Tier A) against its documented rule written plainly: sizes at warp and block edges,
//   ties, NaN, signed zeros, strided rows;
// - bad input: a Status with a message, outputs untouched.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "promptdistill/blocks.h"
#include "promptdistill/model.h"
#include "support/block_cases.h"
#include "support/compare.h"

using namespace promptdistill;
using pdtest::Fill;
using pdtest::Layout;

namespace {

double rel_err(double got, double want) {
  return std::fabs(got - want) / std::max(1e-30, std::fabs(want));
}

template <class Args, class Op>
Status run_ref(const Args& a) {
  return Op::run(a, Workspace{}, nullptr);
}

}  // namespace

TEST_CASE(
    "blocks/ref: RmsNorm (Tier B) against the double definition; in place equals out of place") {
  for (int64_t d : {1, 31, 32, 33, 255, 256, 257, 576, 1025})
    for (int64_t n : {1, 3}) {
      CAPTURE(d);
      CAPTURE(n);
      const auto x = pdtest::generate<float>(std::size_t(n * d), Fill::kNormal,
                                             pdtest::mix(pdtest::seed(), 1, uint64_t(d)), 2.0f);
      const auto wt = pdtest::generate<float>(std::size_t(d), Fill::kUniform,
                                              pdtest::mix(pdtest::seed(), 2, uint64_t(d)));
      std::vector<float> out(x.size(), -7.0f), inplace = x;
      RmsNormArgs<float> a;
      a.x = make_view<const float>(x.data(), n, d);
      a.weight = make_view<const float>(wt.data(), d);
      a.eps = 1e-5f;
      a.out = make_view(out.data(), n, d);
      REQUIRE(ref::RmsNorm<float>::run(a, Workspace{}).is_ok());
      for (int64_t i = 0; i < n; ++i) {
        double ss = 0;
        for (int64_t j = 0; j < d; ++j)
          ss += double(x[std::size_t(i * d + j)]) * x[std::size_t(i * d + j)];
        const double inv = 1.0 / std::sqrt(ss / double(d) + 1e-5);
        for (int64_t j = 0; j < d; ++j)
          CHECK(std::fabs(out[std::size_t(i * d + j)] -
                          double(wt[std::size_t(j)]) * x[std::size_t(i * d + j)] * inv) <=
                4e-7 * std::fabs(double(x[std::size_t(i * d + j)]) * inv) + 1e-30);
      }
      a.x = make_view<const float>(inplace.data(), n, d);
      a.out = make_view(inplace.data(), n, d);
      REQUIRE(ref::RmsNorm<float>::run(a, Workspace{}).is_ok());
      CHECK(pdtest::bitwise_equal(inplace, out));
    }
}

TEST_CASE(
    "blocks/ref: Rope (Tier B) against the double definition at positions with gaps; strided == "
    "packed") {
  ModelConfig c;
  c.head_dim = 64;
  c.rope.theta = 100000.0;
  for (int64_t D : {16, 64, 96, 128}) {
    c.head_dim = D;
    const std::vector<int32_t> pos = {0, 1, 5, 6, 100, 4095, 7000};
    const int64_t n = int64_t(pos.size()), heads = 3;
    std::vector<float> cs, sn;
    REQUIRE(rope_tables(c, pos.data(), n, 8192, &cs, &sn).is_ok());
    const auto x = pdtest::generate<float>(std::size_t(n * heads * D), Fill::kNormal,
                                           pdtest::mix(pdtest::seed(), 3, uint64_t(D)));
    std::vector<float> packed = x;
    RopeArgs<float> a;
    a.x = make_view(packed.data(), n, heads, D);
    a.cos = make_view<const float>(cs.data(), n, D / 2);
    a.sin = make_view<const float>(sn.data(), n, D / 2);
    REQUIRE(ref::Rope<float>::run(a, Workspace{}).is_ok());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t f = 0; f < D / 2; ++f) {
          const double th =
              double(pos[std::size_t(i)]) * std::pow(100000.0, -2.0 * double(f) / double(D));
          const double x0 = x[std::size_t((i * heads + h) * D + f)],
                       x1 = x[std::size_t((i * heads + h) * D + f + D / 2)];
          const double y0 = x0 * std::cos(th) - x1 * std::sin(th),
                       y1 = x1 * std::cos(th) + x0 * std::sin(th);
          // The f32 tables carry the rounding of a large angle (position 7000): a few 1e-4
          // absolute.
          CHECK(std::fabs(packed[std::size_t((i * heads + h) * D + f)] - y0) <=
                2e-3 * (std::fabs(x0) + std::fabs(x1)) + 1e-6);
          CHECK(std::fabs(packed[std::size_t((i * heads + h) * D + f + D / 2)] - y1) <=
                2e-3 * (std::fabs(x0) + std::fabs(x1)) + 1e-6);
        }
    // The same heads inside a wider (fused QKV-like) row: row stride 5 heads.
    std::vector<float> fused(std::size_t(n * 5 * D), 9.0f);
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(&x[std::size_t(i * heads * D)], heads * D, &fused[std::size_t(i * 5 * D + D)]);
    a.x = make_strided_view(fused.data() + D, {n, heads, D}, {5 * D, D, 1});
    REQUIRE(ref::Rope<float>::run(a, Workspace{}).is_ok());
    std::vector<float> back;
    for (int64_t i = 0; i < n; ++i)
      back.insert(back.end(), fused.begin() + (i * 5 * D + D),
                  fused.begin() + (i * 5 * D + D + heads * D));
    CHECK(pdtest::bitwise_equal(back, packed));
    CHECK(fused[0] == 9.0f);  // columns outside the view untouched
  }
}

TEST_CASE(
    "blocks/ref: SwiGlu (Tier B) against the double definition; halves of a fused gate_up row") {
  const int64_t n = 5, I = 33;
  const auto gu = pdtest::generate<float>(std::size_t(n * 2 * I), Fill::kNormal,
                                          pdtest::mix(pdtest::seed(), 4), 3.0f);
  std::vector<float> out(std::size_t(n * I));
  SwiGluArgs<float> a;
  a.gate = make_strided_view<const float>(gu.data(), {n, I}, {2 * I, 1});
  a.up = make_strided_view<const float>(gu.data() + I, {n, I}, {2 * I, 1});
  a.out = make_view(out.data(), n, I);
  REQUIRE(ref::SwiGlu<float>::run(a, Workspace{}).is_ok());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < I; ++j) {
      const double g = gu[std::size_t(i * 2 * I + j)], u = gu[std::size_t(i * 2 * I + I + j)];
      CHECK(rel_err(out[std::size_t(i * I + j)], g / (1.0 + std::exp(-g)) * u) <= 1e-6);
    }
  // bf16: the SiLU is rounded to bf16 before the product (Hugging Face's act_fn(gate) * up).
  std::vector<bf16> g16 = {num::to_bf16(1.5f)}, u16 = {num::to_bf16(3.0f)}, o16(1);
  SwiGluArgs<bf16> b;
  b.gate = make_view<const bf16>(g16.data(), 1, 1);
  b.up = make_view<const bf16>(u16.data(), 1, 1);
  b.out = make_view(o16.data(), 1, 1);
  REQUIRE(ref::SwiGlu<bf16>::run(b, Workspace{}).is_ok());
  const float silu = num::round_through<bf16>(num::div(1.5f, num::add(1.0f, num::exp_f32(-1.5f))));
  CHECK(o16[0].bits == num::to_bf16(num::mul(silu, 3.0f)).bits);
}

TEST_CASE("blocks/ref: Embed copies rows and rejects ids outside the vocabulary without writing") {
  const int64_t V = 10, E = 8;
  const auto table = pdtest::generate<bf16>(std::size_t(V * E), Fill::kArange, 1);
  std::vector<int32_t> ids = {3, 0, 9, 3};
  std::vector<bf16> out(std::size_t(4 * E));
  EmbedArgs<bf16> a;
  a.table = make_view<const bf16>(table.data(), V, E);
  a.ids = make_view<const int32_t>(ids.data(), 4);
  a.out = make_view(out.data(), 4, E);
  REQUIRE(ref::Embed<bf16>::run(a, Workspace{}).is_ok());
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t e = 0; e < E; ++e)
      CHECK(out[std::size_t(i * E + e)].bits ==
            table[std::size_t(ids[std::size_t(i)] * E + e)].bits);
  const auto before = out;
  ids[2] = 10;
  const Status s = ref::Embed<bf16>::run(a, Workspace{});
  CHECK(s.code() == StatusCode::kOutOfRange);
  CHECK(std::string(s.message()).find("vocabulary") != std::string::npos);
  CHECK(pdtest::bitwise_equal(out, before));
  a.out = make_view(out.data(), 3, E);
  CHECK(ref::Embed<bf16>::run(a, Workspace{}).code() == StatusCode::kShapeMismatch);
}

TEST_CASE(
    "blocks/ref: Attention kExact against double, bit-identical in every KV layout; rows past "
    "q_len untouched") {
  for (const auto& shape : pdtest::attention_shapes()) {
    CAPTURE(shape.describe());
    const auto data =
        pdtest::attention_data<float>(shape, pdtest::mix(pdtest::seed(), 5, uint64_t(shape.D)));
    const auto want = pdtest::attention_double(shape, data);
    std::vector<float> first;
    for (Layout layout : pdtest::kAllLayouts) {
      CAPTURE(pdtest::to_string(layout));
      auto kst = pdtest::make_kv(layout, data.k, shape.kv_lens, shape.capacity(), shape.Hkv,
                                 shape.D, 16, 7);
      auto vst = pdtest::make_kv(layout, data.v, shape.kv_lens, shape.capacity(), shape.Hkv,
                                 shape.D, 16, 7);
      std::vector<float> out(data.q.size(), -5.0f);
      AttentionArgs<float> a;
      a.algo = AttentionAlgo::kExact;
      a.q = make_view<const float>(data.q.data(), shape.B(), shape.rows(), shape.H, shape.D);
      a.k = kst.view();
      a.v = vst.view();
      a.q_lens = shape.q_lens.data();
      a.kv_lens = shape.kv_lens.data();
      a.max_kv_len = shape.capacity();
      a.out = make_view(out.data(), shape.B(), shape.rows(), shape.H, shape.D);
      const Status s = ref::Attention<float>::run(a, Workspace{});
      REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
      double worst = 0;
      for (int64_t b = 0; b < shape.B(); ++b)
        for (int64_t i = 0; i < shape.rows(); ++i)
          for (int64_t e = 0; e < shape.H * shape.D; ++e) {
            const std::size_t at = std::size_t((b * shape.rows() + i) * shape.H * shape.D + e);
            if (i >= shape.q_lens[std::size_t(b)]) {
              CHECK(out[at] == -5.0f);
              continue;
            }
            worst = std::max(worst, std::fabs(out[at] - want[at]));
          }
      CHECK(worst <= 2e-6);
      if (first.empty()) first = out;
      CHECK(pdtest::bitwise_equal(out, first));
    }
  }
}

namespace {

//! The Tier-B attention formula term by term, one sum at a time: scores num::dot(q, k_j) * scale in
//! key order, the canonical max and sum, and each output element adding p_j * v_j in key order.
template <class T>
std::vector<T> attention_formula(const pdtest::AttentionShape& s,
                                 const pdtest::AttentionData<T>& d) {
  const int64_t n = s.rows(), cap = s.capacity(), G = s.H / s.Hkv;
  const float scale = num::div(1.0f, num::sqrt(float(s.D)));
  std::vector<T> out(d.q.size(), T{});
  for (int64_t b = 0; b < s.B(); ++b)
    for (int64_t i = 0; i < s.q_lens[std::size_t(b)]; ++i)
      for (int64_t h = 0; h < s.H; ++h) {
        const int64_t last = s.kv_lens[std::size_t(b)] - s.q_lens[std::size_t(b)] + i, g = h / G;
        const T* q = &d.q[std::size_t(((b * n + i) * s.H + h) * s.D)];
        auto key = [&](int64_t j) { return &d.k[std::size_t(((b * cap + j) * s.Hkv + g) * s.D)]; };
        auto value = [&](int64_t j) {
          return &d.v[std::size_t(((b * cap + j) * s.Hkv + g) * s.D)];
        };
        std::vector<float> z(std::size_t(last + 1));
        for (int64_t j = 0; j <= last; ++j)
          z[std::size_t(j)] = num::mul(num::dot(q, key(j), int(s.D)), scale);
        const float m = num::canonical_max(last + 1, [&](int64_t j) { return z[std::size_t(j)]; });
        for (float& x : z) x = num::exp_f32(num::sub(x, m));
        const float l = num::canonical_sum(last + 1, [&](int64_t j) { return z[std::size_t(j)]; });
        for (int64_t e = 0; e < s.D; ++e) {
          float acc = 0.0f;
          for (int64_t j = 0; j <= last; ++j)
            acc = num::add(acc, num::mul(num::div(z[std::size_t(j)], l), num::to_f32(value(j)[e])));
          out[std::size_t(((b * n + i) * s.H + h) * s.D + e)] = num::from_f32<T>(acc);
        }
      }
  return out;
}

template <class T>
void check_attention_formula() {
  for (const auto& shape : pdtest::attention_shapes()) {
    CAPTURE(shape.describe());
    const auto data =
        pdtest::attention_data<T>(shape, pdtest::mix(pdtest::seed(), 9, uint64_t(shape.D)));
    std::vector<T> out(data.q.size(), T{});
    AttentionArgs<T> a;
    a.algo = AttentionAlgo::kExact;
    a.q = make_view<const T>(data.q.data(), shape.B(), shape.rows(), shape.H, shape.D);
    a.k = KvCacheView<const T>::contiguous_bshd(data.k.data(), shape.B(), shape.capacity(),
                                                shape.Hkv, shape.D);
    a.v = KvCacheView<const T>::contiguous_bshd(data.v.data(), shape.B(), shape.capacity(),
                                                shape.Hkv, shape.D);
    a.q_lens = shape.q_lens.data();
    a.kv_lens = shape.kv_lens.data();
    a.max_kv_len = shape.capacity();
    a.out = make_view(out.data(), shape.B(), shape.rows(), shape.H, shape.D);
    REQUIRE(ref::Attention<T>::run(a, Workspace{}).is_ok());
    CHECK(pdtest::bitwise_equal(out, attention_formula(shape, data)));
  }
}

}  // namespace

// The op computes eight keys' dot products and all output elements side by side; this pins that
// it is still the formula, bit for bit (Tier B), in f32 and in the 16-bit types.
TEST_CASE(
    "blocks/ref: Attention kExact equals the Tier-B formula written one sum at a time, bit for "
    "bit") {
  SUBCASE("f32") { check_attention_formula<float>(); }
  SUBCASE("f16") { check_attention_formula<f16>(); }
  SUBCASE("bf16") { check_attention_formula<bf16>(); }
}

TEST_CASE("blocks/ref: a decode row equals the same row of a prefill, bit for bit") {
  const pdtest::AttentionShape prefill{4, 2, 64, {40}, {40}};
  const auto data = pdtest::attention_data<float>(prefill, pdtest::mix(pdtest::seed(), 6));
  auto run = [&](const std::vector<float>& q, int32_t q_len, int32_t kv_len) {
    std::vector<float> out(q.size(), 0.0f);
    AttentionArgs<float> a;
    a.algo = AttentionAlgo::kExact;
    a.q = make_view<const float>(q.data(), 1, int64_t(q.size()) / (4 * 64), 4, 64);
    a.k = KvCacheView<const float>::contiguous_bshd(data.k.data(), 1, 40, 2, 64);
    a.v = KvCacheView<const float>::contiguous_bshd(data.v.data(), 1, 40, 2, 64);
    a.q_lens = &q_len;
    a.kv_lens = &kv_len;
    a.max_kv_len = 40;
    a.out = make_view(out.data(), 1, a.q.extents[1], 4, 64);
    REQUIRE(ref::Attention<float>::run(a, Workspace{}).is_ok());
    return out;
  };
  const auto all = run(data.q, 40, 40);
  for (int32_t row : {0, 17, 39}) {
    const std::vector<float> q(data.q.begin() + row * 256, data.q.begin() + (row + 1) * 256);
    const auto one = run(q, 1, row + 1);
    CHECK(pdtest::bitwise_equal(
        one, std::vector<float>(all.begin() + row * 256, all.begin() + (row + 1) * 256)));
  }
}

TEST_CASE(
    "blocks/ref: Attention and AppendKv reject bad requests with a message and write nothing") {
  const pdtest::AttentionShape s{4, 2, 16, {3, 2}, {5, 9}};
  const auto data = pdtest::attention_data<float>(s, 8);
  auto kst = pdtest::make_kv(Layout::kPagedNHD, data.k, s.kv_lens, s.capacity(), 2, 16, 4, 3);
  auto vst = pdtest::make_kv(Layout::kPagedNHD, data.v, s.kv_lens, s.capacity(), 2, 16, 4, 3);
  std::vector<float> out(data.q.size(), -5.0f);
  std::vector<int32_t> q_lens = s.q_lens, kv_lens = s.kv_lens;
  AttentionArgs<float> a;
  a.algo = AttentionAlgo::kExact;
  a.q = make_view<const float>(data.q.data(), 2, 3, 4, 16);
  a.k = kst.view();
  a.v = vst.view();
  a.q_lens = q_lens.data();
  a.kv_lens = kv_lens.data();
  a.max_kv_len = 9;
  a.out = make_view(out.data(), 2, 3, 4, 16);
  REQUIRE(ref::Attention<float>::run(a, Workspace{}).is_ok());
  const auto good = out;
  std::fill(out.begin(), out.end(), -5.0f);
  auto expect = [&](StatusCode code, const char* text) {
    const Status st = ref::Attention<float>::run(a, Workspace{});
    CHECK(st.code() == code);
    CHECK_MESSAGE(std::string(st.message()).find(text) != std::string::npos, st.message());
    CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == -5.0f; }));
  };
  q_lens[1] = 4;
  expect(StatusCode::kCapacityExceeded, "new rows");
  q_lens[1] = 2;
  kv_lens[0] = 2;
  expect(StatusCode::kInvalidArgument, "below");
  kv_lens[0] = 5;
  a.max_kv_len = 8;
  expect(StatusCode::kCapacityExceeded, "exceeds");
  a.max_kv_len = 9;
  kst.block_table[1] = 1000;
  a.k = kst.view();
  expect(StatusCode::kOutOfRange, "page");
  a.k = kst.view();
  kst = pdtest::make_kv(Layout::kPagedNHD, data.k, s.kv_lens, s.capacity(), 2, 16, 4, 3);
  a.k = kst.view();
  a.q = make_view<const float>(data.q.data(), 2, 3, 3, 16);
  a.out = make_view(out.data(), 2, 3, 3, 16);
  expect(StatusCode::kShapeMismatch, "multiple");
  a.q = make_view<const float>(data.q.data(), 2, 3, 4, 16);
  a.out = make_view(out.data(), 2, 3, 4, 16);
  a.q = make_strided_view<const float>(data.q.data() + 1, {2, 3, 4, 16}, {192, 64, 16, 1});
  expect(StatusCode::kMisaligned, "aligned");
  a.q = make_view<const float>(data.q.data(), 2, 3, 4, 16);
  REQUIRE(ref::Attention<float>::run(a, Workspace{}).is_ok());
  CHECK(pdtest::bitwise_equal(out, good));

  // AppendKv: a bad request leaves the cache as it was.
  std::vector<float> kn(std::size_t(2 * 3 * 2 * 16), 1.0f), vn = kn;
  AppendKvArgs<float> app;
  app.k_new = make_view<const float>(kn.data(), 2, 3, 2, 16);
  app.v_new = make_view<const float>(vn.data(), 2, 3, 2, 16);
  app.k = kst.view();
  app.v = vst.view();
  std::vector<int32_t> ql = {3, 4}, kl = {5, 9};
  app.q_lens = ql.data();
  app.kv_lens = kl.data();
  const auto kbefore = kst.data;
  const Status st = ref::AppendKv<float>::run(app, Workspace{});
  CHECK(st.code() == StatusCode::kCapacityExceeded);
  CHECK(pdtest::bitwise_equal(kst.data, kbefore));
}

TEST_CASE("blocks/ref: AppendKv writes row i at kv_len - q_len + i in every layout") {
  const int64_t Hkv = 2, D = 16, cap = 40;
  const std::vector<int32_t> q_lens = {3, 1, 0}, kv_lens = {3, 33, 10};
  const auto logical = pdtest::generate<float>(std::size_t(3 * cap * Hkv * D), Fill::kNormal,
                                               pdtest::mix(pdtest::seed(), 9));
  const auto fresh = pdtest::generate<float>(std::size_t(3 * 3 * Hkv * D), Fill::kNormal,
                                             pdtest::mix(pdtest::seed(), 10));
  for (Layout layout : pdtest::kAllLayouts) {
    CAPTURE(pdtest::to_string(layout));
    std::vector<int32_t> full_lens(3, int32_t(cap));
    if (layout == Layout::kFlashInferNHD || layout == Layout::kFlashInferHND) full_lens = kv_lens;
    auto kst = pdtest::make_kv(layout, logical, full_lens, cap, Hkv, D, 8, 5);
    auto vst = pdtest::make_kv(layout, logical, full_lens, cap, Hkv, D, 8, 6);
    AppendKvArgs<float> a;
    a.k_new = make_view<const float>(fresh.data(), 3, 3, Hkv, D);
    a.v_new = make_view<const float>(fresh.data(), 3, 3, Hkv, D);
    a.k = kst.view();
    a.v = vst.view();
    a.q_lens = q_lens.data();
    a.kv_lens = kv_lens.data();
    const Status s = ref::AppendKv<float>::run(a, Workspace{});
    REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
    const auto got = pdtest::read_logical(kst.view(), kv_lens, cap);
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t t = 0; t < kv_lens[std::size_t(b)]; ++t) {
        const int64_t i = t - (kv_lens[std::size_t(b)] - q_lens[std::size_t(b)]);
        for (int64_t e = 0; e < Hkv * D; ++e) {
          const float want = i >= 0 ? fresh[std::size_t((b * 3 + i) * Hkv * D + e)]
                                    : logical[std::size_t((b * cap + t) * Hkv * D + e)];
          CHECK(got[std::size_t((b * cap + t) * Hkv * D + e)] == want);
        }
      }
  }
}

TEST_CASE(
    "blocks/ref: Linear is exact on small integers, with bias, residual and in-place residual") {
  for (int64_t rows : {1, 7, 33})
    for (int64_t in :
         {4, 16, 36})  // rows must be 16-byte multiples (the cuBLASLt contract both backends share)
      for (int64_t out_dim : {4, 12, 64}) {
        CAPTURE(rows);
        CAPTURE(in);
        CAPTURE(out_dim);
        const auto x = pdtest::generate<float>(std::size_t(rows * in), Fill::kSmallInt,
                                               pdtest::mix(pdtest::seed(), 11, uint64_t(rows)));
        const auto wt = pdtest::generate<float>(std::size_t(out_dim * in), Fill::kSmallInt,
                                                pdtest::mix(pdtest::seed(), 12, uint64_t(in)));
        const auto bias = pdtest::generate<float>(std::size_t(out_dim), Fill::kSmallInt, 13);
        auto y = pdtest::generate<float>(std::size_t(rows * out_dim), Fill::kSmallInt, 14);
        const auto residual = y;
        ref::LinearPlan<float> plan;
        LinearShape shape;
        shape.rows = rows;
        shape.in = in;
        shape.out = out_dim;
        shape.bias = true;
        shape.residual = true;
        REQUIRE(ref::LinearPlan<float>::create(shape, &plan).is_ok());
        LinearArgs<float> a;
        a.x = make_view<const float>(x.data(), rows, in);
        a.w = make_view<const float>(wt.data(), out_dim, in);
        a.bias = make_view<const float>(bias.data(), out_dim);
        a.residual = make_view<const float>(y.data(), rows, out_dim);
        a.y = make_view(y.data(), rows, out_dim);
        const Status st = plan.run(a, Workspace{});
        REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t o = 0; o < out_dim; ++o) {
            float want = residual[std::size_t(i * out_dim + o)] + bias[std::size_t(o)];
            for (int64_t j = 0; j < in; ++j)
              want += x[std::size_t(i * in + j)] * wt[std::size_t(o * in + j)];
            CHECK(y[std::size_t(i * out_dim + o)] == want);
          }
      }
}

TEST_CASE("blocks/ref: Linear rejects arguments that differ from its plan") {
  std::vector<float> x(64), w(64), y(64), b(8);
  ref::LinearPlan<float> plan;
  LinearShape shape;
  shape.rows = 4;
  shape.in = 8;
  shape.out = 8;
  REQUIRE(ref::LinearPlan<float>::create(shape, &plan).is_ok());
  LinearArgs<float> a;
  a.x = make_view<const float>(x.data(), 4, 8);
  a.w = make_view<const float>(w.data(), 8, 8);
  a.y = make_view(y.data(), 4, 8);
  CHECK(plan.run(a, Workspace{}).is_ok());
  a.x = make_view<const float>(x.data(), 5, 8);
  CHECK(plan.run(a, Workspace{}).code() == StatusCode::kShapeMismatch);
  a.x = make_view<const float>(x.data(), 4, 8);
  a.bias = make_view<const float>(b.data(), 8);
  CHECK(plan.run(a, Workspace{}).code() == StatusCode::kInvalidArgument);
  a.bias = {};
  a.y = make_view(x.data(), 4, 8);
  CHECK(plan.run(a, Workspace{}).code() == StatusCode::kInvalidArgument);  // y overlaps x
  shape.in = 0;
  CHECK(ref::LinearPlan<float>::create(shape, &plan).code() == StatusCode::kInvalidArgument);
  shape.in = 3;  // 12-byte rows
  REQUIRE(ref::LinearPlan<float>::create(shape, &plan).is_ok());
  a.x = make_view<const float>(x.data(), 4, 3);
  a.w = make_view<const float>(w.data(), 8, 3);
  a.y = make_view(y.data(), 4, 8);
  CHECK(plan.run(a, Workspace{}).code() == StatusCode::kMisaligned);
}

TEST_CASE_TEMPLATE(
    "blocks/ref: ArgMax takes the first maximum, the first NaN if any, on every size and row kind",
    T, float, bf16, f16) {
  using pdtest::ArgMaxRow;
  for (int64_t n : pdtest::argmax_sizes())
    for (int64_t rows : {1, 3})
      for (ArgMaxRow kind : {ArgMaxRow::kNormal, ArgMaxRow::kTiedMax, ArgMaxRow::kAllEqual,
                             ArgMaxRow::kNaN, ArgMaxRow::kSignedZeros, ArgMaxRow::kAllMinusInf})
        for (int64_t pad : {0, 5}) {  // pad > 0: rows at a pitch of n + pad (a strided view)
          const uint64_t seed =
              pdtest::mix(pdtest::seed(), 91, uint64_t(n), uint64_t(kind), uint64_t(rows));
          CAPTURE(n);
          CAPTURE(rows);
          CAPTURE(pdtest::to_string(kind));
          CAPTURE(pad);
          CAPTURE(seed);
          const auto x = pdtest::argmax_case<T>(rows, n, n + pad, kind, seed);
          std::vector<int32_t> out(static_cast<std::size_t>(rows), -1);
          ArgMaxArgs<T> a;
          a.x = make_strided_view<const T, 2>(x.data(), {rows, n}, {n + pad, 1});
          a.out = make_view(out.data(), rows);
          REQUIRE(ref::ArgMax<T>::workspace_size(a) == 0);
          REQUIRE(ref::ArgMax<T>::run(a, Workspace{}, nullptr).is_ok());
          CHECK(out == pdtest::argmax_oracle(x, rows, n, n + pad));
        }
}

TEST_CASE("blocks/ref: ArgMax rejects empty rows and a mismatched output, writing nothing") {
  std::vector<float> x(8, 1.0f);
  std::vector<int32_t> out(2, -1);
  ArgMaxArgs<float> a;
  a.x = make_view<const float>(x.data(), 2, 0);
  a.out = make_view(out.data(), 2);
  Status s = ref::ArgMax<float>::run(a, Workspace{}, nullptr);
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("empty") != std::string::npos);
  a.x = make_view<const float>(x.data(), 2, 4);
  a.out = make_view(out.data(), 1);
  s = ref::ArgMax<float>::run(a, Workspace{}, nullptr);
  CHECK(s.code() == StatusCode::kShapeMismatch);
  CHECK(out == std::vector<int32_t>{-1, -1});
  a.out = make_view(out.data(), 2);
  CHECK(ref::ArgMax<float>::can_implement(a).is_ok());
  a.x = make_view<const float>(x.data(), 0, 0);  // no rows: nothing to do
  a.out = make_view(out.data(), 0);
  CHECK(ref::ArgMax<float>::run(a, Workspace{}, nullptr).is_ok());
}
