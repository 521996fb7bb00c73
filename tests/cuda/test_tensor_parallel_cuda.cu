// SPDX-License-Identifier: Apache-2.0
// Tensor parallelism on the CUDA backend, simulated on one device: every rank's cuda::ScorePartial
// equals ref::ScorePartial bit for bit (Tier B), and cuda::FinishSelect on the rank-order sums
// equals ref::FinishSelect bit for bit (Tier B scores, Tier A indices), for PromptDistill and
// GemFilter, f32 and bf16, 32/8 and 64/8 heads, R in {1, 2, 4, 8}, contiguous and paged keys.
// The three calls of a selection layer (partials, the summing, the finish) are captured in a CUDA
// graph and replayed; device-resident length errors are reported and leave the outputs untouched.
#include <doctest/doctest.h>

#include "promptdistill/promptdistill.h"
#include "support/compare.h"
#include "support/device_kv.cuh"
#include "support/selector_cases.h"
#include "support/tensor_parallel.h"

using namespace promptdistill;
using pdtest::DeviceBuffer;
using pdtest::Layout;

namespace {

//! The all-reduce of the simulation: sums[i] = ((p_0 + p_1) + p_2) ... in rank order.
__global__ void add_in_rank_order(const float* partials, int64_t ranks, int64_t n, float* sums) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float acc = partials[i];
    for (int64_t r = 1; r < ranks; ++r) acc = __fadd_rn(acc, partials[r * n + i]);
    sums[i] = acc;
  }
}

template <class T>
ScorePartialArgs<T> partial_args(const pdtest::ScoreCase<T>& c, Method method, const T* q,
                                 KvCacheView<const T> k, const int32_t* lengths,
                                 const pdtest::RankShard& shard, float* out) {
  ScorePartialArgs<T> a;
  a.method = method;
  a.q = pdtest::shard_q(c.q_view(q), shard);
  a.k = pdtest::shard_k(k, shard);
  a.lengths = lengths;
  a.head_offset = shard.q_first;
  a.total_heads = c.H;
  a.partial = make_view(out, c.B, 1, c.N);
  return a;
}

struct FinishOut {
  std::vector<int32_t> indices, counts, positions;
  std::vector<float> scores;
};

FinishSelectArgs finish_args(const MethodConfig& cfg, const float* summed, int64_t B, int64_t N,
                             int64_t H, const int32_t* lengths, int32_t* indices, int32_t* counts,
                             int32_t* positions, float* scores) {
  FinishSelectArgs a;
  a.config = cfg;
  a.summed = make_view(summed, B, 1, N);
  a.total_heads = H;
  a.lengths = lengths;
  a.indices = make_view(indices, B, 1, N);
  a.counts = make_view(counts, B, 1);
  a.positions = make_view(positions, B, 1, N);
  a.final_scores = make_view(scores, B, 1, N);
  return a;
}

template <class T>
void check_backends_agree(Method method, int64_t H, int64_t Hkv, Layout layout, pdtest::Fill fill) {
  auto c = pdtest::make_score_case<T>(
      method, HeadGrouping::kPerKvGroup, {1000, 517, 1}, H, Hkv, 128, 0, fill,
      pdtest::mix(pdtest::seed(), uint64_t(method), uint64_t(H), uint64_t(layout)));
  auto host_kv = pdtest::make_kv<T>(layout, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 5);
  pdtest::DeviceKv<T> kv(host_kv);
  DeviceBuffer<T> q(c.q);
  DeviceBuffer<int32_t> lengths(c.lengths);
  MethodConfig cfg;
  cfg.method = method;
  cfg.budget = 100;
  const std::size_t n = std::size_t(c.B * c.N);
  for (int64_t ranks : {1, 2, 4, 8}) {
    CAPTURE(c.describe());
    CAPTURE(ranks);
    std::vector<float> summed;
    for (int64_t r = 0; r < ranks; ++r) {
      const pdtest::RankShard shard = pdtest::rank_shard(H, Hkv, ranks, r);
      std::vector<float> want(n, 0.0f);
      HostWorkspace host_ws;
      const auto ra = partial_args<T>(c, method, c.q.data(), KvCacheView<const T>(host_kv.view()),
                                      c.lengths.data(), shard, want.data());
      REQUIRE(host_ws.reserve(ref::ScorePartial<T>::workspace_size(ra)).is_ok());
      REQUIRE(ref::ScorePartial<T>::run(ra, host_ws.workspace()).is_ok());
      DeviceBuffer<float> got(std::vector<float>(n, 0.0f));
      const auto da = partial_args<T>(c, method, q.get(), KvCacheView<const T>(kv.view),
                                      lengths.get(), shard, got.get());
      pdtest::DeviceWorkspace ws(cuda::ScorePartial<T>::workspace_size(da));
      REQUIRE(cuda::ScorePartial<T>::run(da, ws.ws).is_ok());
      REQUIRE(cuda::read_device_status(ws.ws, nullptr).is_ok());
      CAPTURE(shard.describe());
      CHECK(pdtest::bitwise_equal(got.download(), want));
      if (r == 0)
        summed = want;
      else
        for (std::size_t i = 0; i < n; ++i) summed[i] = num::add(summed[i], want[i]);
    }
    FinishOut want{std::vector<int32_t>(n, -1), std::vector<int32_t>(std::size_t(c.B), -1),
                   std::vector<int32_t>(n, -1), std::vector<float>(n, 0.0f)};
    const auto rf =
        finish_args(cfg, summed.data(), c.B, c.N, H, c.lengths.data(), want.indices.data(),
                    want.counts.data(), want.positions.data(), want.scores.data());
    HostWorkspace host_ws;
    REQUIRE(host_ws.reserve(ref::FinishSelect::workspace_size(rf)).is_ok());
    REQUIRE(ref::FinishSelect::run(rf, host_ws.workspace()).is_ok());
    DeviceBuffer<float> d_summed(summed), d_scores(std::vector<float>(n, 0.0f));
    DeviceBuffer<int32_t> d_idx(std::vector<int32_t>(n, -1)),
        d_counts(std::vector<int32_t>(std::size_t(c.B), -1)), d_pos(std::vector<int32_t>(n, -1));
    const auto df = finish_args(cfg, d_summed.get(), c.B, c.N, H, lengths.get(), d_idx.get(),
                                d_counts.get(), d_pos.get(), d_scores.get());
    pdtest::DeviceWorkspace ws(cuda::FinishSelect::workspace_size(df));
    REQUIRE(cuda::FinishSelect::run(df, ws.ws).is_ok());
    REQUIRE(cuda::read_device_status(ws.ws, nullptr).is_ok());
    CHECK(pdtest::bitwise_equal(d_idx.download(), want.indices));
    CHECK(pdtest::bitwise_equal(d_counts.download(), want.counts));
    CHECK(pdtest::bitwise_equal(d_pos.download(), want.positions));
    CHECK(pdtest::bitwise_equal(d_scores.download(), want.scores));
  }
}

}  // namespace

TEST_CASE(
    "cuda/tensor parallel: ScorePartial and FinishSelect equal the reference bit for bit (Tier "
    "B)") {
  for (Method method : {Method::kPromptDistill, Method::kGemFilter}) {
    for (auto [H, Hkv] : {std::pair<int64_t, int64_t>{32, 8}, {64, 8}}) {
      check_backends_agree<float>(method, H, Hkv, Layout::kBSHD, pdtest::Fill::kNormal);
      check_backends_agree<bf16>(method, H, Hkv, Layout::kPagedHND, pdtest::Fill::kNormal);
      check_backends_agree<bf16>(method, H, Hkv, Layout::kBSHD, pdtest::Fill::kSmallInt);
    }
  }
}

TEST_CASE(
    "cuda/score layers: ScorePartial accumulating over layers equals the reference bit for bit "
    "(Tier B)") {
  // Scores aggregated over three layers (PipelineConfig::score_layers): the first call writes, the
  // next ones add to the buffer; both backends add the same head sums in the same order.
  std::vector<pdtest::ScoreCase<bf16>> layers;
  for (uint64_t l = 0; l < 3; ++l)
    layers.push_back(pdtest::make_score_case<bf16>(
        Method::kPromptDistill, HeadGrouping::kPerKvGroup, {1000, 517, 1}, 9, 3, 64, 0,
        pdtest::Fill::kNormal, pdtest::mix(pdtest::seed(), 60, l)));
  const auto& c0 = layers[0];
  const std::size_t n = std::size_t(c0.B * c0.N);
  std::vector<float> want(n, 0.0f);
  DeviceBuffer<float> got(std::vector<float>(n, 0.0f));
  DeviceBuffer<int32_t> lengths(c0.lengths);
  const pdtest::RankShard whole = pdtest::rank_shard(c0.H, c0.Hkv, 1, 0);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const auto& c = layers[l];
    auto host_kv =
        pdtest::make_kv<bf16>(Layout::kPagedNHD, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 5);
    pdtest::DeviceKv<bf16> kv(host_kv);
    DeviceBuffer<bf16> q(c.q);
    auto ra = partial_args<bf16>(c, Method::kPromptDistill, c.q.data(),
                                 KvCacheView<const bf16>(host_kv.view()), c.lengths.data(), whole,
                                 want.data());
    ra.accumulate = l > 0;
    HostWorkspace host_ws;
    REQUIRE(host_ws.reserve(ref::ScorePartial<bf16>::workspace_size(ra)).is_ok());
    REQUIRE(ref::ScorePartial<bf16>::run(ra, host_ws.workspace()).is_ok());
    auto da = partial_args<bf16>(c, Method::kPromptDistill, q.get(),
                                 KvCacheView<const bf16>(kv.view), lengths.get(), whole, got.get());
    da.accumulate = l > 0;
    pdtest::DeviceWorkspace ws(cuda::ScorePartial<bf16>::workspace_size(da));
    REQUIRE(cuda::ScorePartial<bf16>::run(da, ws.ws).is_ok());
    REQUIRE(cuda::read_device_status(ws.ws, nullptr).is_ok());
    CAPTURE(l);
    CHECK(pdtest::bitwise_equal(got.download(), want));
  }
}

TEST_CASE(
    "cuda/tensor parallel: the three calls of a selection layer captured in a CUDA graph, replayed "
    "twice") {
  const int64_t H = 32, Hkv = 8, ranks = 4;
  auto c = pdtest::make_score_case<bf16>(Method::kPromptDistill, HeadGrouping::kPerKvGroup,
                                         {900, 333}, H, Hkv, 128, 0, pdtest::Fill::kNormal,
                                         pdtest::mix(pdtest::seed(), 9));
  auto host_kv =
      pdtest::make_kv<bf16>(Layout::kBSHD, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 1);
  pdtest::DeviceKv<bf16> kv(host_kv);
  DeviceBuffer<bf16> q(c.q);
  DeviceBuffer<int32_t> lengths(c.lengths);
  const std::size_t n = std::size_t(c.B * c.N);
  DeviceBuffer<float> partials(std::vector<float>(n * ranks, 0.0f)),
      summed(std::vector<float>(n, 0.0f)), scores(std::vector<float>(n, 0.0f));
  DeviceBuffer<int32_t> idx(n), counts(std::size_t(c.B)), pos(n);
  MethodConfig cfg;
  cfg.budget = 64;
  std::vector<ScorePartialArgs<bf16>> rank_args;
  for (int64_t r = 0; r < ranks; ++r)
    rank_args.push_back(partial_args<bf16>(c, cfg.method, q.get(), KvCacheView<const bf16>(kv.view),
                                           lengths.get(), pdtest::rank_shard(H, Hkv, ranks, r),
                                           partials.get() + r * n));
  const auto fa = finish_args(cfg, summed.get(), c.B, c.N, H, lengths.get(), idx.get(),
                              counts.get(), pos.get(), scores.get());
  std::vector<pdtest::DeviceWorkspace> rank_ws;
  for (const auto& a : rank_args) rank_ws.emplace_back(cuda::ScorePartial<bf16>::workspace_size(a));
  pdtest::DeviceWorkspace finish_ws(cuda::FinishSelect::workspace_size(fa));
  cudaStream_t stream;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  auto layer = [&] {
    for (int64_t r = 0; r < ranks; ++r)
      REQUIRE(cuda::ScorePartial<bf16>::run(rank_args[std::size_t(r)], rank_ws[std::size_t(r)].ws,
                                            stream)
                  .is_ok());
    add_in_rank_order<<<64, 256, 0, stream>>>(partials.get(), ranks, int64_t(n), summed.get());
    REQUIRE(cudaGetLastError() == cudaSuccess);
    REQUIRE(cuda::FinishSelect::run(fa, finish_ws.ws, stream).is_ok());
  };
  layer();
  REQUIRE(cuda::read_device_status(finish_ws.ws, stream).is_ok());
  const auto want_idx = idx.download(), want_counts = counts.download();
  const auto want_scores = scores.download();

  cudaGraph_t graph;
  REQUIRE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal) == cudaSuccess);
  layer();
  REQUIRE(cudaStreamEndCapture(stream, &graph) == cudaSuccess);
  cudaGraphExec_t exec;
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  for (int replay = 0; replay < 2; ++replay) {
    idx.upload(std::vector<int32_t>(n, -1));
    scores.upload(std::vector<float>(n, 0.0f));
    REQUIRE(cudaGraphLaunch(exec, stream) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
    REQUIRE(cuda::read_device_status(finish_ws.ws, stream).is_ok());
    CAPTURE(replay);
    CHECK(pdtest::bitwise_equal(idx.download(), want_idx));
    CHECK(pdtest::bitwise_equal(counts.download(), want_counts));
    CHECK(pdtest::bitwise_equal(scores.download(), want_scores));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_CASE(
    "cuda/tensor parallel: a device-resident length past the rows is reported, outputs untouched") {
  const int64_t B = 2, N = 64;
  DeviceBuffer<float> summed(std::vector<float>(std::size_t(B * N), 1.0f)),
      scores(std::vector<float>(std::size_t(B * N), -7.0f));
  DeviceBuffer<int32_t> lengths(std::vector<int32_t>{N, N + 1}),
      idx(std::vector<int32_t>(std::size_t(B * N), -7)),
      counts(std::vector<int32_t>(std::size_t(B), -7)),
      pos(std::vector<int32_t>(std::size_t(B * N), -7));
  MethodConfig cfg;
  cfg.budget = 8;
  const auto a = finish_args(cfg, summed.get(), B, N, 8, lengths.get(), idx.get(), counts.get(),
                             pos.get(), scores.get());
  pdtest::DeviceWorkspace ws(cuda::FinishSelect::workspace_size(a));
  REQUIRE(cuda::FinishSelect::run(a, ws.ws).is_ok());
  const Status s = cuda::read_device_status(ws.ws, nullptr);
  CHECK(s.code() == StatusCode::kCapacityExceeded);
  CHECK_MESSAGE(std::string(s.message()).find("request 1: length 65 exceeds the capacity 64") !=
                    std::string::npos,
                std::string(s.message()));
  for (int32_t v : idx.download()) REQUIRE(v == -7);
  for (int32_t v : counts.download()) REQUIRE(v == -7);
  for (float v : scores.download()) REQUIRE(v == -7.0f);
}
