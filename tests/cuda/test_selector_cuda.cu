// SPDX-License-Identifier: Apache-2.0
// CUDA selector vs the CPU reference: scores bit for bit in f32 (Tier B), top-k indices,
// positions and counts bit for bit (Tier A), over layouts, head shapes, head dims, sizes that
// break kernels, ties and NaNs; device-side validation errors leave outputs untouched.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "promptdistill/promptdistill.h"
#include "support/compare.h"
#include "support/device_kv.cuh"
#include "support/selector_cases.h"

using namespace promptdistill;
using pdtest::DeviceBuffer;
using pdtest::Fill;
using pdtest::Layout;

namespace {

struct Outputs {
  std::vector<float> scores;
  std::vector<int32_t> indices, counts, positions;
  Status status;
};

template <class T>
SelectArgs<T> select_args(const pdtest::ScoreCase<T>& c, const MethodConfig& cfg, const T* q,
                          KvCacheView<const T> k, const int32_t* lengths, int32_t* idx,
                          int32_t* counts, int32_t* pos, float* scores, int64_t extra_columns = 0) {
  const int64_t R = score_rows(cfg.method, cfg.grouping, c.H, c.Hkv);
  SelectArgs<T> a;
  a.config = cfg;
  a.q = c.q_view(q);
  a.k = k;
  a.lengths = lengths;
  a.max_length = c.N;
  a.indices = make_view(idx, c.B, R, c.N);
  a.counts = make_view(counts, c.B, R);
  a.positions = make_view(pos, c.B, R, c.N);
  a.final_scores = make_view(scores, c.B, R, c.N + extra_columns);
  return a;
}

template <class T>
Outputs run_ref(const pdtest::ScoreCase<T>& c, const MethodConfig& cfg, Layout layout,
                int64_t extra_columns = 0) {
  auto kv = pdtest::make_kv<T>(layout, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 5);
  const int64_t R = score_rows(cfg.method, cfg.grouping, c.H, c.Hkv);
  Outputs o;
  o.scores.assign(std::size_t(c.B * R * (c.N + extra_columns)), -3.0f);
  o.indices.assign(std::size_t(c.B * R * c.N), -1);
  o.counts.assign(std::size_t(c.B * R), -1);
  o.positions.assign(std::size_t(c.B * R * c.N), -1);
  auto a = select_args<T>(c, cfg, c.q.data(), kv.view(), c.lengths.data(), o.indices.data(),
                          o.counts.data(), o.positions.data(), o.scores.data(), extra_columns);
  HostWorkspace ws;
  REQUIRE(ws.reserve(ref::Select<T>::workspace_size(a)).is_ok());
  o.status = ref::Select<T>::run(a, ws.workspace());
  return o;
}

template <class T>
Outputs run_cuda(const pdtest::ScoreCase<T>& c, const MethodConfig& cfg, Layout layout,
                 int64_t extra_columns = 0) {
  auto host_kv = pdtest::make_kv<T>(layout, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 5);
  pdtest::DeviceKv<T> kv(host_kv);
  const int64_t R = score_rows(cfg.method, cfg.grouping, c.H, c.Hkv);
  DeviceBuffer<T> q(c.q);
  DeviceBuffer<int32_t> lengths(c.lengths);
  DeviceBuffer<float> scores(
      std::vector<float>(std::size_t(c.B * R * (c.N + extra_columns)), -3.0f));
  DeviceBuffer<int32_t> idx(std::vector<int32_t>(std::size_t(c.B * R * c.N), -1));
  DeviceBuffer<int32_t> counts(std::vector<int32_t>(std::size_t(c.B * R), -1));
  DeviceBuffer<int32_t> pos(std::vector<int32_t>(std::size_t(c.B * R * c.N), -1));
  auto a = select_args<T>(c, cfg, q.get(), kv.view, lengths.get(), idx.get(), counts.get(),
                          pos.get(), scores.get(), extra_columns);
  pdtest::DeviceWorkspace ws(cuda::Select<T>::workspace_size(a));
  Outputs o;
  o.status = cuda::Select<T>::run(a, ws.ws, nullptr);
  if (o.status.is_ok()) o.status = cuda::read_device_status(ws.ws, nullptr);
  o.scores = scores.download();
  o.indices = idx.download();
  o.counts = counts.download();
  o.positions = pos.download();
  return o;
}

template <class T>
void check_same(const pdtest::ScoreCase<T>& c, const MethodConfig& cfg, Layout layout,
                int64_t extra_columns = 0) {
  const Outputs want = run_ref(c, cfg, layout, extra_columns);
  const Outputs got = run_cuda(c, cfg, layout, extra_columns);
  CAPTURE(extra_columns);
  INFO(c.describe());
  INFO(std::string(pdtest::to_string(layout)));
  CAPTURE(cfg.budget);
  REQUIRE_MESSAGE(want.status.is_ok(), std::string(want.status.message()));
  REQUIRE_MESSAGE(got.status.is_ok(), std::string(got.status.message()));
  CHECK(pdtest::bitwise_equal(got.scores, want.scores));
  CHECK(pdtest::bitwise_equal(got.counts, want.counts));
  CHECK(pdtest::bitwise_equal(got.indices, want.indices));
  CHECK(pdtest::bitwise_equal(got.positions, want.positions));
}

}  // namespace

TEST_CASE(
    "cuda/select: a final_scores wider than N runs and ranks as on the CPU (one rule, both "
    "backends)") {
  // can_implement accepts final_scores [B, rows, >= N] on both backends; the columns past N keep
  // their -3 on both (compared with the rest of the buffer).
  for (Method m : {Method::kPromptDistill, Method::kSnapKV, Method::kH2O}) {
    const uint64_t seed = pdtest::mix(pdtest::seed(), 404, uint64_t(m));
    auto c = pdtest::make_score_case<float>(m, HeadGrouping::kPerKvGroup, {300, 129}, 8, 2, 64, 16,
                                            Fill::kNormal, seed);
    MethodConfig cfg;
    cfg.method = m;
    cfg.budget = 64;
    cfg.window = 16;
    for (int64_t extra : {1, 7}) check_same(c, cfg, Layout::kBSHD, extra);
  }
}

TEST_CASE(
    "cuda/select: PromptDistill and GemFilter equal the reference across sizes, heads and dims") {
  struct Heads {
    int64_t H, Hkv;
  };
  for (Method m : {Method::kPromptDistill, Method::kGemFilter}) {
    for (Heads hh : {Heads{1, 1}, Heads{8, 2}, Heads{9, 3}, Heads{32, 8}, Heads{28, 4}}) {
      for (int64_t D : {64, 96, 128}) {
        for (int32_t L : {1, 2, 5, 31, 32, 33, 1023, 1024, 1025, 4097}) {
          const uint64_t seed =
              pdtest::mix(pdtest::seed(), uint64_t(m), uint64_t(hh.H), uint64_t(D), uint64_t(L));
          auto c = pdtest::make_score_case<float>(m, HeadGrouping::kPerKvGroup, {L}, hh.H, hh.Hkv,
                                                  D, 0, Fill::kNormal, seed);
          for (int64_t k : {int64_t(0), int64_t(1), int64_t(L) - 2, int64_t(L) - 1, int64_t(L),
                            int64_t(L) + 5}) {
            if (k < 0) continue;
            MethodConfig cfg;
            cfg.method = m;
            cfg.budget = k;
            check_same(c, cfg, Layout::kBSHD);
          }
        }
      }
    }
  }
}

TEST_CASE("cuda/select: every layout, dtype, strided q and ragged batches") {
  for (Layout layout : pdtest::kAllLayouts) {
    for (Method m : {Method::kPromptDistill, Method::kGemFilter, Method::kSnapKV, Method::kH2O}) {
      for (HeadGrouping g : {HeadGrouping::kPerKvGroup, HeadGrouping::kPerQueryHead}) {
        if ((m == Method::kPromptDistill || m == Method::kGemFilter) &&
            g == HeadGrouping::kPerQueryHead)
          continue;
        const std::vector<int32_t> lengths = m == Method::kH2O
                                                 ? std::vector<int32_t>{300, 45, 129}
                                                 : std::vector<int32_t>{1025, 33, 700};
        const uint64_t seed =
            pdtest::mix(pdtest::seed(), uint64_t(layout), uint64_t(m), uint64_t(g));
        MethodConfig cfg;
        cfg.method = m;
        cfg.grouping = g;
        cfg.window = 32;
        cfg.budget = m == Method::kSnapKV || m == Method::kH2O ? 64 : 40;
        check_same(
            pdtest::make_score_case<bf16>(m, g, lengths, 8, 2, 128, 32, Fill::kNormal, seed, true),
            cfg, layout);
        check_same(
            pdtest::make_score_case<f16>(m, g, lengths, 9, 3, 64, 32, Fill::kNormal, seed + 1), cfg,
            layout);
        cfg.pool = PoolMode::kMax;
        check_same(
            pdtest::make_score_case<float>(m, g, lengths, 4, 4, 96, 32, Fill::kUniform, seed + 2),
            cfg, layout);
      }
    }
  }
}

TEST_CASE(
    "cuda/select: FastKV (per-head pooled rows summed per KV group) equals the reference, every "
    "layout and dtype") {
  for (Layout layout : pdtest::kAllLayouts) {
    const std::vector<int32_t> lengths = {1025, 33, 700, 5};  // 5 < window: every token kept
    const uint64_t seed = pdtest::mix(pdtest::seed(), 50, uint64_t(layout));
    MethodConfig cfg;
    cfg.method = Method::kFastKV;
    cfg.window = 8;
    cfg.budget = 64;
    cfg.pool = PoolMode::kMax;
    cfg.pool_kernel = 7;
    check_same(pdtest::make_score_case<bf16>(Method::kFastKV, HeadGrouping::kPerKvGroup, lengths, 9,
                                             3, 64, 8, Fill::kNormal, seed, true),
               cfg, layout);
    cfg.pool = PoolMode::kAvg;
    check_same(pdtest::make_score_case<float>(Method::kFastKV, HeadGrouping::kPerKvGroup, lengths,
                                              32, 8, 128, 8, Fill::kNormal, seed + 1),
               cfg, layout);
  }
}

TEST_CASE("cuda/sum rows: the group sums equal the reference bit for bit (Tier B)") {
  const int64_t B = 3, R = 12, N = 4099;
  const std::vector<int32_t> lengths = {4099, 17, 0};
  const std::vector<float> in = pdtest::generate<float>(std::size_t(B * R * N), Fill::kNormal,
                                                        pdtest::mix(pdtest::seed(), 51), 1.0f);
  for (int64_t group : {1, 3, 12}) {
    CAPTURE(group);
    std::vector<float> want(std::size_t(B * (R / group) * N), -7.0f);
    SumRowsArgs a;
    a.group = group;
    a.in = make_view(in.data(), B, R, N);
    a.out = make_view(want.data(), B, R / group, N);
    a.lengths = lengths.data();
    REQUIRE(ref::SumRows::run(a, Workspace{}).is_ok());
    DeviceBuffer<float> d_in(in), d_out(std::vector<float>(want.size(), -7.0f));
    DeviceBuffer<int32_t> d_len(lengths);
    a.in = make_view<const float>(d_in.get(), B, R, N);
    a.out = make_view(d_out.get(), B, R / group, N);
    a.lengths = d_len.get();
    pdtest::DeviceWorkspace ws(cuda::SumRows::workspace_size(a));
    REQUIRE(cuda::SumRows::run(a, ws.ws).is_ok());
    REQUIRE(cuda::read_device_status(ws.ws, nullptr).is_ok());
    CHECK(pdtest::bitwise_equal(d_out.download(), want));  // past each length: untouched (-7)
  }
}

TEST_CASE("cuda/select: all-ties, small-integer and NaN rows") {
  for (Fill fill : {Fill::kConstant, Fill::kSmallInt}) {
    for (int32_t L : {33, 1024, 4097}) {
      auto c = pdtest::make_score_case<bf16>(Method::kGemFilter, HeadGrouping::kPerKvGroup, {L}, 8,
                                             2, 64, 0, fill, 3);
      MethodConfig cfg;
      cfg.method = Method::kGemFilter;
      cfg.budget = L / 3;
      INFO(std::string(pdtest::to_string(fill)));
      check_same(c, cfg, Layout::kBSHD);
    }
  }
  auto c = pdtest::make_score_case<float>(Method::kPromptDistill, HeadGrouping::kPerKvGroup, {500},
                                          4, 2, 64, 0, Fill::kNormal, 4);
  for (int64_t j = 100; j < 140; ++j) c.k_logical[std::size_t(j * 2 * 64)] = std::nanf("");
  MethodConfig cfg;
  cfg.budget = 470;  // must reach into the NaN-scored tokens
  check_same(c, cfg, Layout::kBSHD);
}

TEST_CASE("cuda/topk: batched ragged rows with per-request k (Tier A) at large n") {
  using Case = pdtest::LargeTopKCase;
  const Case c(pdtest::seed());
  std::vector<int32_t> want_idx(std::size_t(Case::kB * Case::kRows * Case::kN), -1),
      want_counts(std::size_t(Case::kB * Case::kRows), -1);
  REQUIRE(ref::TopK::run(Case::args(c.scores.data(), c.lengths.data(), c.budgets.data(),
                                    want_idx.data(), want_counts.data()),
                         Workspace{})
              .is_ok());
  DeviceBuffer<float> d_scores(c.scores);
  DeviceBuffer<int32_t> d_len(c.lengths), d_k(c.budgets),
      d_idx(std::vector<int32_t>(want_idx.size(), -1)),
      d_counts(std::vector<int32_t>(want_counts.size(), -1));
  const TopKArgs d =
      Case::args(d_scores.get(), d_len.get(), d_k.get(), d_idx.get(), d_counts.get());
  pdtest::DeviceWorkspace ws(cuda::TopK::workspace_size(d));
  REQUIRE(cuda::TopK::run(d, ws.ws, nullptr).is_ok());
  REQUIRE(cuda::read_device_status(ws.ws, nullptr).is_ok());
  CHECK(pdtest::bitwise_equal(d_counts.download(), want_counts));
  CHECK(pdtest::bitwise_equal(d_idx.download(), want_idx));
}

TEST_CASE("cuda/select: device-side validation errors, outputs untouched") {
  auto c = pdtest::make_score_case<float>(Method::kPromptDistill, HeadGrouping::kPerKvGroup,
                                          {64, 64}, 4, 2, 64, 0, Fill::kNormal, 8);
  MethodConfig cfg;
  cfg.budget = 8;
  struct Bad {
    std::vector<int32_t> lengths;
    StatusCode want;
  };
  for (const Bad& bad :
       {Bad{{64, 0}, StatusCode::kInvalidArgument}, Bad{{-1, 64}, StatusCode::kInvalidArgument},
        Bad{{65, 64}, StatusCode::kCapacityExceeded}}) {
    auto broken = c;
    broken.lengths = bad.lengths;
    const Outputs got = run_cuda(broken, cfg, Layout::kBSHD);
    const Outputs want = run_ref(broken, cfg, Layout::kBSHD);
    CHECK(got.status.code() == bad.want);
    CHECK(want.status.code() == bad.want);
    CHECK(std::all_of(got.indices.begin(), got.indices.end(), [](int32_t v) { return v == -1; }));
    CHECK(std::all_of(got.counts.begin(), got.counts.end(), [](int32_t v) { return v == -1; }));
    CHECK(std::all_of(got.scores.begin(), got.scores.end(), [](float v) { return v == -3.0f; }));
  }
  // Host-side errors come back from run() directly, with nothing launched.
  DeviceBuffer<int32_t> d_len(c.lengths);
  auto a = select_args<float>(c, cfg, nullptr, KvCacheView<const float>{}, d_len.get(), nullptr,
                              nullptr, nullptr, nullptr);
  CHECK(cuda::Select<float>::run(a, Workspace{}, nullptr).code() == StatusCode::kInvalidArgument);
}
