// SPDX-License-Identifier: Apache-2.0
// CUDA decoder block ops against the CPU reference (ref::), with the tier each check claims:
// - Tier A (bitwise): Embed, AppendKv in every KV layout; ArgMax on every size and row kind (ties,
//   NaN, signed zeros), also at Llama-3's vocabulary and inside a captured graph;
// - Tier B (bitwise): RmsNorm, Rope, SwiGlu, Attention kExact, for f32, bf16 and f16;
// - Tier C: Linear (cuBLASLt) exact on small integers, NMSE <= 1e-5 on normal data; Attention
//   kFast (flash for prefill rows, split-KV for decode rows) NMSE <= 2e-5 (f32) / 1e-4 (16-bit)
//   and max abs error <= 2e-2 (16-bit) against the double definition, with both flash tiles (64
//   keys per step, and the 32 that parts with 99 KiB of shared memory per block run);
// - device-side validation: a bad request leaves the output untouched and read_device_status
//   returns the reference's message.
#include <doctest/doctest.h>

#include <cmath>

#include "promptdistill/blocks.h"
#include "promptdistill/cuda/attention.cuh"
#include "promptdistill/model.h"
#include "promptdistill/selector.h"
#include "support/block_cases.h"
#include "support/compare.h"
#include "support/device_kv.cuh"

using namespace promptdistill;
using pdtest::DeviceBuffer;
using pdtest::DeviceWorkspace;
using pdtest::Fill;
using pdtest::Layout;

namespace {

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) d[i] = num::to_f32(v[i]);
  return d;
}

//! The flash kernel at an explicit key step, past the device's own choice (the kernel headers
//! make the launcher reachable): on an H200 the 32-key tile of 99 KiB parts runs only this way.
template <class T>
Status run_flash_with_keys(const AttentionArgs<T>& a, int keys, Workspace ws) {
  WorkspacePlanner planner(ws);
  auto* status = promptdistill::detail::take_status(planner);
  PD_RETURN_IF_ERROR(planner.status());
  PD_RETURN_IF_ERROR(cuda::detail::reset_status(status, nullptr));
  PD_RETURN_IF_ERROR(cuda::detail::launch_validate_requests(cuda::detail::AttentionCheck<T>{a},
                                                            a.q.extents[0], status, nullptr));
  return cuda::detail::launch_attention_flash(a, keys, status, nullptr);
}

//! Runs the same attention problem on the reference (kExact) and on CUDA with `algo` (with
//! `flash_keys` > 0: the flash kernel at that key step).
template <class T>
void compare_attention(const pdtest::AttentionShape& s, Layout layout, AttentionAlgo algo,
                       int flash_keys = 0) {
  CAPTURE(s.describe());
  CAPTURE(pdtest::to_string(layout));
  CAPTURE(int(algo));
  const auto data =
      pdtest::attention_data<T>(s, pdtest::mix(pdtest::seed(), 1, uint64_t(s.D), uint64_t(layout)));
  auto kst = pdtest::make_kv(layout, data.k, s.kv_lens, s.capacity(), s.Hkv, s.D, 16, 3);
  auto vst = pdtest::make_kv(layout, data.v, s.kv_lens, s.capacity(), s.Hkv, s.D, 16, 3);
  const T poison = num::from_f32<T>(-5.0f);
  std::vector<T> want(data.q.size(), poison);
  AttentionArgs<T> a;
  a.algo = AttentionAlgo::kExact;
  a.q = make_view<const T>(data.q.data(), s.B(), s.rows(), s.H, s.D);
  a.k = kst.view();
  a.v = vst.view();
  a.q_lens = s.q_lens.data();
  a.kv_lens = s.kv_lens.data();
  a.max_kv_len = s.capacity();
  a.out = make_view(want.data(), s.B(), s.rows(), s.H, s.D);
  REQUIRE(ref::Attention<T>::run(a, Workspace{}).is_ok());

  pdtest::DeviceKv<T> dk(kst), dv(vst);
  DeviceBuffer<T> dq(data.q), dout(std::vector<T>(data.q.size(), poison));
  DeviceBuffer<int32_t> dql(s.q_lens), dkl(s.kv_lens);
  a.algo = algo;
  a.q = make_view<const T>(dq.get(), s.B(), s.rows(), s.H, s.D);
  a.k = dk.view;
  a.v = dv.view;
  a.q_lens = dql.get();
  a.kv_lens = dkl.get();
  a.out = make_view(dout.get(), s.B(), s.rows(), s.H, s.D);
  DeviceWorkspace ws(cuda::Attention<T>::workspace_size(a));
  Status st = flash_keys > 0 ? run_flash_with_keys(a, flash_keys, ws.ws)
                             : cuda::Attention<T>::run(a, ws.ws, nullptr);
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  st = cuda::read_device_status(ws.ws, nullptr);
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  const auto got = dout.download();
  if (algo == AttentionAlgo::kExact) {
    CHECK(pdtest::bitwise_equal(got, want));
    return;
  }
  // Tier C: compare the valid rows with the double definition; padded rows stay untouched.
  const auto exact = pdtest::attention_double(s, data);
  std::vector<double> g, w;
  double worst = 0;
  for (int64_t b = 0; b < s.B(); ++b)
    for (int64_t i = 0; i < s.rows(); ++i)
      for (int64_t e = 0; e < s.H * s.D; ++e) {
        const std::size_t at = std::size_t((b * s.rows() + i) * s.H * s.D + e);
        if (i >= s.q_lens[std::size_t(b)]) {
          CHECK(pdtest::bits_of(got[at]) == pdtest::bits_of(poison));
          continue;
        }
        g.push_back(num::to_f32(got[at]));
        w.push_back(exact[at]);
        worst = std::max(worst, std::fabs(g.back() - w.back()));
      }
  const bool wide = std::is_same<T, float>::value;
  CHECK(pdtest::nmse_below(g, w, wide ? 2e-5 : 1e-4));
  CHECK(worst <= (wide ? 1e-4 : 2e-2));
}

}  // namespace

TEST_CASE_TEMPLATE("cuda/blocks: RmsNorm, Rope and SwiGlu equal the reference bit for bit (Tier B)",
                   T, float, bf16, f16) {
  for (int64_t d : {1, 31, 32, 33, 255, 256, 257, 576, 1025}) {
    CAPTURE(d);
    const int64_t n = 5;
    const auto x = pdtest::generate<T>(std::size_t(n * d), Fill::kNormal,
                                       pdtest::mix(pdtest::seed(), 2, uint64_t(d)), 2.0f);
    const auto wt = pdtest::generate<T>(std::size_t(d), Fill::kUniform,
                                        pdtest::mix(pdtest::seed(), 3, uint64_t(d)));
    std::vector<T> want(x.size());
    RmsNormArgs<T> a;
    a.x = make_view<const T>(x.data(), n, d);
    a.weight = make_view<const T>(wt.data(), d);
    a.out = make_view(want.data(), n, d);
    REQUIRE(ref::RmsNorm<T>::run(a, Workspace{}).is_ok());
    DeviceBuffer<T> dx(x), dw(wt), dout(x.size());
    a.x = make_view<const T>(dx.get(), n, d);
    a.weight = make_view<const T>(dw.get(), d);
    a.out = make_view(dout.get(), n, d);
    REQUIRE(cuda::RmsNorm<T>::run(a, Workspace{}, nullptr).is_ok());
    CHECK(pdtest::bitwise_equal(dout.download(), want));
    // SwiGlu on the same data: gate = x, up = x reversed.
    std::vector<T> up(x.rbegin(), x.rend()), sw(x.size());
    SwiGluArgs<T> g;
    g.gate = make_view<const T>(x.data(), n, d);
    g.up = make_view<const T>(up.data(), n, d);
    g.out = make_view(sw.data(), n, d);
    REQUIRE(ref::SwiGlu<T>::run(g, Workspace{}).is_ok());
    DeviceBuffer<T> dup(up);
    g.gate = make_view<const T>(dx.get(), n, d);
    g.up = make_view<const T>(dup.get(), n, d);
    g.out = make_view(dout.get(), n, d);
    REQUIRE(cuda::SwiGlu<T>::run(g, Workspace{}, nullptr).is_ok());
    CHECK(pdtest::bitwise_equal(dout.download(), sw));
  }
  ModelConfig c;
  c.rope.theta = 500000.0;
  for (int64_t D : {16, 64, 96, 128}) {
    c.head_dim = D;
    const std::vector<int32_t> pos = {0, 3, 4, 1000, 8191, 8192, 131071};
    const int64_t n = int64_t(pos.size()), heads = 5;
    std::vector<float> cs, sn;
    REQUIRE(rope_tables(c, pos.data(), n, 131072, &cs, &sn).is_ok());
    const auto x = pdtest::generate<T>(std::size_t(n * heads * D), Fill::kNormal,
                                       pdtest::mix(pdtest::seed(), 4, uint64_t(D)));
    auto want = x;
    RopeArgs<T> r;
    r.x = make_view(want.data(), n, heads, D);
    r.cos = make_view<const float>(cs.data(), n, D / 2);
    r.sin = make_view<const float>(sn.data(), n, D / 2);
    REQUIRE(ref::Rope<T>::run(r, Workspace{}).is_ok());
    DeviceBuffer<T> dx(x);
    DeviceBuffer<float> dc(cs), ds(sn);
    r.x = make_view(dx.get(), n, heads, D);
    r.cos = make_view<const float>(dc.get(), n, D / 2);
    r.sin = make_view<const float>(ds.get(), n, D / 2);
    REQUIRE(cuda::Rope<T>::run(r, Workspace{}, nullptr).is_ok());
    CHECK(pdtest::bitwise_equal(dx.download(), want));
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE_TEMPLATE("cuda/blocks: Embed (Tier A) and its device-side id check", T, float, bf16) {
  const int64_t V = 1000, E = 96;
  const auto table = pdtest::generate<T>(std::size_t(V * E), Fill::kNormal, 5);
  std::vector<int32_t> ids = {0, 999, 5, 5, 123};
  DeviceBuffer<T> dt(table), dout(std::vector<T>(ids.size() * E, num::from_f32<T>(-1.0f)));
  DeviceBuffer<int32_t> di(ids);
  EmbedArgs<T> a;
  a.table = make_view<const T>(dt.get(), V, E);
  a.ids = make_view<const int32_t>(di.get(), int64_t(ids.size()));
  a.out = make_view(dout.get(), int64_t(ids.size()), E);
  DeviceWorkspace ws(cuda::Embed<T>::workspace_size(a));
  REQUIRE(cuda::Embed<T>::run(a, ws.ws, nullptr).is_ok());
  REQUIRE(cuda::read_device_status(ws.ws, nullptr).is_ok());
  const auto got = dout.download();
  for (std::size_t i = 0; i < ids.size(); ++i)
    for (int64_t e = 0; e < E; ++e)
      CHECK(pdtest::bits_of(got[i * E + std::size_t(e)]) ==
            pdtest::bits_of(table[std::size_t(ids[i] * E + e)]));
  ids[3] = 1000;
  di.upload(ids);
  DeviceBuffer<T> fresh(std::vector<T>(ids.size() * E, num::from_f32<T>(-1.0f)));
  a.out = make_view(fresh.get(), int64_t(ids.size()), E);
  REQUIRE(cuda::Embed<T>::run(a, ws.ws, nullptr).is_ok());
  const Status s = cuda::read_device_status(ws.ws, nullptr);
  CHECK(s.code() == StatusCode::kOutOfRange);
  CHECK(std::string(s.message()).find("vocabulary") != std::string::npos);
  const auto untouched = fresh.download();
  CHECK(
      std::all_of(untouched.begin(), untouched.end(), [](T v) { return num::to_f32(v) == -1.0f; }));
}

TEST_CASE_TEMPLATE("cuda/blocks: AppendKv equals the reference in every layout (Tier A)", T, float,
                   bf16) {
  const int64_t Hkv = 2, D = 64, cap = 70;
  const std::vector<int32_t> q_lens = {3, 1, 0, 33}, kv_lens = {3, 65, 10, 40};
  const auto logical = pdtest::generate<T>(std::size_t(4 * cap * Hkv * D), Fill::kNormal, 6);
  const auto fresh = pdtest::generate<T>(std::size_t(4 * 33 * Hkv * D), Fill::kNormal, 7);
  for (Layout layout : pdtest::kAllLayouts) {
    CAPTURE(pdtest::to_string(layout));
    std::vector<int32_t> lens(4, int32_t(cap));
    if (layout == Layout::kFlashInferNHD || layout == Layout::kFlashInferHND) lens = kv_lens;
    auto kst = pdtest::make_kv(layout, logical, lens, cap, Hkv, D, 16, 8);
    auto vst = pdtest::make_kv(layout, logical, lens, cap, Hkv, D, 16, 9);
    pdtest::DeviceKv<T> dk(kst), dv(vst);
    AppendKvArgs<T> a;
    a.k_new = make_view<const T>(fresh.data(), 4, 33, Hkv, D);
    a.v_new = make_view<const T>(fresh.data(), 4, 33, Hkv, D);
    a.k = kst.view();
    a.v = vst.view();
    a.q_lens = q_lens.data();
    a.kv_lens = kv_lens.data();
    REQUIRE(ref::AppendKv<T>::run(a, Workspace{}).is_ok());
    DeviceBuffer<T> dn(fresh);
    DeviceBuffer<int32_t> dql(q_lens), dkl(kv_lens);
    a.k_new = make_view<const T>(dn.get(), 4, 33, Hkv, D);
    a.v_new = make_view<const T>(dn.get(), 4, 33, Hkv, D);
    a.k = dk.view;
    a.v = dv.view;
    a.q_lens = dql.get();
    a.kv_lens = dkl.get();
    DeviceWorkspace ws(cuda::AppendKv<T>::workspace_size(a));
    REQUIRE(cuda::AppendKv<T>::run(a, ws.ws, nullptr).is_ok());
    REQUIRE(cuda::read_device_status(ws.ws, nullptr).is_ok());
    CHECK(pdtest::bitwise_equal(dk.data.download(), kst.data));
    CHECK(pdtest::bitwise_equal(dv.data.download(), vst.data));
  }
}

TEST_CASE_TEMPLATE("cuda/blocks: Attention kExact equals the reference bit for bit (Tier B)", T,
                   float, bf16, f16) {
  for (const auto& s : pdtest::attention_shapes())
    for (Layout layout : {Layout::kBSHD, Layout::kBHSD, Layout::kPagedHND, Layout::kFlashInferNHD})
      compare_attention<T>(s, layout, AttentionAlgo::kExact);
}

TEST_CASE_TEMPLATE("cuda/blocks: Attention kFast (flash / split-KV) within the Tier C bounds", T,
                   float, bf16, f16) {
  auto shapes = pdtest::attention_shapes();
  // Prefill-sized rows (flash for 16-bit types at D in {64, 96, 128}) with a cached prefix.
  shapes.push_back({8, 2, 128, {200, 9, 64}, {200, 300, 64}});
  shapes.push_back({4, 4, 64, {129, 65}, {1000, 65}});
  shapes.push_back({6, 2, 96, {100}, {100}});
  for (const auto& s : shapes)
    for (Layout layout : {Layout::kBSHD, Layout::kPagedNHD, Layout::kFlashInferHND})
      compare_attention<T>(s, layout, AttentionAlgo::kFast);
}

TEST_CASE_TEMPLATE(
    "cuda/blocks: flash prefill at both key steps (64, and 32 as on 99 KiB parts) within the Tier "
    "C bounds",
    T, bf16, f16) {
  const std::vector<pdtest::AttentionShape> shapes = {{8, 2, 128, {200, 9, 64}, {200, 300, 64}},
                                                      {4, 4, 64, {129, 65}, {1000, 65}},
                                                      {6, 2, 96, {100}, {100}}};
  for (int keys : {64, 32})
    for (const auto& s : shapes) {
      CAPTURE(keys);
      compare_attention<T>(s, Layout::kBSHD, AttentionAlgo::kFast, keys);
    }
}

TEST_CASE(
    "cuda/blocks: Attention validates requests on the device and leaves the output untouched") {
  const pdtest::AttentionShape s{4, 2, 64, {3, 2}, {5, 9}};
  const auto data = pdtest::attention_data<bf16>(s, 10);
  auto kst = pdtest::make_kv(Layout::kPagedNHD, data.k, s.kv_lens, s.capacity(), 2, 64, 4, 3);
  pdtest::DeviceKv<bf16> dk(kst), dv(kst);
  std::vector<int32_t> q_lens = {3, 2},
                       kv_lens = {5, 10};  // request 1 sees more keys than max_kv_len
  DeviceBuffer<bf16> dq(data.q), dout(std::vector<bf16>(data.q.size(), num::to_bf16(-5.0f)));
  DeviceBuffer<int32_t> dql(q_lens), dkl(kv_lens);
  for (AttentionAlgo algo : {AttentionAlgo::kExact, AttentionAlgo::kFast}) {
    AttentionArgs<bf16> a;
    a.algo = algo;
    a.q = make_view<const bf16>(dq.get(), 2, 3, 4, 64);
    a.k = dk.view;
    a.v = dv.view;
    a.q_lens = dql.get();
    a.kv_lens = dkl.get();
    a.max_kv_len = 9;
    a.out = make_view(dout.get(), 2, 3, 4, 64);
    DeviceWorkspace ws(cuda::Attention<bf16>::workspace_size(a));
    REQUIRE(cuda::Attention<bf16>::run(a, ws.ws, nullptr).is_ok());
    const Status st = cuda::read_device_status(ws.ws, nullptr);
    CHECK(st.code() == StatusCode::kCapacityExceeded);
    CHECK(std::string(st.message()).find("request 1") != std::string::npos);
    const auto out = dout.download();
    CHECK(std::all_of(out.begin(), out.end(), [](bf16 v) { return num::to_f32(v) == -5.0f; }));
  }
}

TEST_CASE_TEMPLATE(
    "cuda/blocks: Linear (cuBLASLt) exact on small integers, NMSE bound on normal data (Tier C)", T,
    float, bf16, f16) {
  for (int64_t rows : {1, 7, 33, 1025})
    for (int64_t in : {16, 64, 576})
      for (int64_t out_dim : {8, 64, 1536}) {
        CAPTURE(rows);
        CAPTURE(in);
        CAPTURE(out_dim);
        for (Fill fill : {Fill::kSmallInt, Fill::kNormal}) {
          CAPTURE(pdtest::to_string(fill));
          // Small integers stay exact in bf16 only while |sums| <= 256: 8 products of |4 x 4| + 8.
          const int64_t k = fill == Fill::kSmallInt ? std::min<int64_t>(in, 8) : in;
          const auto x = pdtest::generate<T>(std::size_t(rows * k), fill,
                                             pdtest::mix(pdtest::seed(), 11, uint64_t(rows)), 0.5f);
          const auto wt = pdtest::generate<T>(std::size_t(out_dim * k), fill,
                                              pdtest::mix(pdtest::seed(), 12, uint64_t(k)), 0.5f);
          const auto bias = pdtest::generate<T>(std::size_t(out_dim), fill, 13, 0.5f);
          const auto y0 = pdtest::generate<T>(std::size_t(rows * out_dim), fill, 14, 0.5f);
          LinearShape shape;
          shape.rows = rows;
          shape.in = k;
          shape.out = out_dim;
          shape.bias = true;
          shape.residual = true;
          ref::LinearPlan<T> rp;
          cuda::LinearPlan<T> cp;
          REQUIRE(ref::LinearPlan<T>::create(shape, &rp).is_ok());
          const Status cs = cuda::LinearPlan<T>::create(shape, &cp);
          REQUIRE_MESSAGE(cs.is_ok(), std::string(cs.message()));
          auto want = y0;
          LinearArgs<T> a;
          a.x = make_view<const T>(x.data(), rows, k);
          a.w = make_view<const T>(wt.data(), out_dim, k);
          a.bias = make_view<const T>(bias.data(), out_dim);
          a.residual = make_view<const T>(want.data(), rows, out_dim);
          a.y = make_view(want.data(), rows, out_dim);
          REQUIRE(rp.run(a, Workspace{}).is_ok());
          DeviceBuffer<T> dx(x), dw(wt), db(bias), dy(y0);
          a.x = make_view<const T>(dx.get(), rows, k);
          a.w = make_view<const T>(dw.get(), out_dim, k);
          a.bias = make_view<const T>(db.get(), out_dim);
          a.residual = make_view<const T>(dy.get(), rows, out_dim);
          a.y = make_view(dy.get(), rows, out_dim);
          DeviceWorkspace ws(cp.workspace_size());
          const Status st = cp.run(a, ws.ws, nullptr);
          REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
          const auto got = dy.download();
          if (fill == Fill::kSmallInt)
            CHECK(pdtest::bitwise_equal(got, want));
          else
            CHECK(pdtest::nmse_below(got, want, std::is_same<T, float>::value ? 1e-10 : 1e-5));
        }
      }
}

TEST_CASE_TEMPLATE("cuda/blocks: ArgMax equals the reference on every size and row kind (Tier A)",
                   T, float, bf16, f16) {
  using pdtest::ArgMaxRow;
  std::vector<int64_t> sizes = pdtest::argmax_sizes();
  sizes.push_back(128256);  // Llama-3's vocabulary
  for (int64_t n : sizes)
    for (int64_t rows : {1, 3, 70})
      for (ArgMaxRow kind : {ArgMaxRow::kNormal, ArgMaxRow::kTiedMax, ArgMaxRow::kAllEqual,
                             ArgMaxRow::kNaN, ArgMaxRow::kSignedZeros, ArgMaxRow::kAllMinusInf}) {
        if (rows == 70 && n > 1025) continue;
        const int64_t pitch = n + (rows == 3 ? 5 : 0);
        const uint64_t seed =
            pdtest::mix(pdtest::seed(), 94, uint64_t(n), uint64_t(kind), uint64_t(rows));
        CAPTURE(n);
        CAPTURE(rows);
        CAPTURE(pdtest::to_string(kind));
        CAPTURE(seed);
        const auto x = pdtest::argmax_case<T>(rows, n, pitch, kind, seed);
        std::vector<int32_t> want(static_cast<std::size_t>(rows), -1);
        ArgMaxArgs<T> h;
        h.x = make_strided_view<const T, 2>(x.data(), {rows, n}, {pitch, 1});
        h.out = make_view(want.data(), rows);
        REQUIRE(ref::ArgMax<T>::run(h, Workspace{}, nullptr).is_ok());
        DeviceBuffer<T> d_x(x);
        DeviceBuffer<int32_t> d_out(std::vector<int32_t>(want.size(), -1));
        ArgMaxArgs<T> d;
        d.x = make_strided_view<const T, 2>(d_x.get(), {rows, n}, {pitch, 1});
        d.out = make_view(d_out.get(), rows);
        REQUIRE(cuda::ArgMax<T>::workspace_size(d) == 0);
        REQUIRE(cuda::ArgMax<T>::run(d, Workspace{}, nullptr).is_ok());
        CHECK(d_out.download() == want);
        CHECK(want == pdtest::argmax_oracle(x, rows, n, pitch));
      }
}

TEST_CASE("cuda/blocks: ArgMax inside a captured graph, replayed on new logits") {
  const int64_t rows = 4, n = 49152;
  const auto first = pdtest::argmax_case<float>(rows, n, n, pdtest::ArgMaxRow::kTiedMax,
                                                pdtest::mix(pdtest::seed(), 95));
  const auto second = pdtest::argmax_case<float>(rows, n, n, pdtest::ArgMaxRow::kNaN,
                                                 pdtest::mix(pdtest::seed(), 96));
  DeviceBuffer<float> d_x(first);
  DeviceBuffer<int32_t> d_out(std::vector<int32_t>(rows, -1));
  ArgMaxArgs<float> d;
  d.x = make_view<const float>(d_x.get(), rows, n);
  d.out = make_view(d_out.get(), rows);
  cudaStream_t stream = nullptr;
  pdtest::cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  pdtest::cuda_check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                     "begin capture");
  const Status captured = cuda::ArgMax<float>::run(d, Workspace{}, stream);
  pdtest::cuda_check(cudaStreamEndCapture(stream, &graph), "end capture");
  REQUIRE(captured.is_ok());
  pdtest::cuda_check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  for (const auto* x : {&first, &second}) {
    d_x.upload(*x);
    pdtest::cuda_check(cudaGraphLaunch(exec, stream), "launch");
    pdtest::cuda_check(cudaStreamSynchronize(stream), "sync");
    CHECK(d_out.download() == pdtest::argmax_oracle(*x, rows, n, n));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}
