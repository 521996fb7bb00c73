// SPDX-License-Identifier: Apache-2.0
// The fused selector and a KV compaction captured in a CUDA graph: capture succeeds (so run()
// neither allocates nor synchronises with the host), and two replays give exactly the results of
// a direct run.
#include <doctest/doctest.h>

#include "promptdistill/promptdistill.h"
#include "support/compare.h"
#include "support/device_kv.cuh"
#include "support/selector_cases.h"

using namespace promptdistill;
using pdtest::DeviceBuffer;

TEST_CASE("cuda/graph: select + compact inside stream capture, replayed twice") {
  for (Method m : {Method::kPromptDistill, Method::kSnapKV, Method::kH2O}) {
    auto c = pdtest::make_score_case<bf16>(m, HeadGrouping::kPerKvGroup, {700, 300}, 8, 2, 128, 32,
                                           pdtest::Fill::kNormal,
                                           pdtest::mix(pdtest::seed(), uint64_t(m)));
    auto host_kv = pdtest::make_kv<bf16>(pdtest::Layout::kPagedHND, c.k_logical, c.lengths, c.N,
                                         c.Hkv, c.D, 16, 3);
    MethodConfig cfg;
    cfg.method = m;
    cfg.budget = 128;
    const int64_t R = score_rows(m, cfg.grouping, c.H, c.Hkv);
    DeviceBuffer<bf16> q(c.q);
    DeviceBuffer<int32_t> lengths(c.lengths), idx(std::size_t(c.B * R * c.N)),
        counts(std::size_t(c.B * R)), new_len(std::size_t(c.B)), freed(std::size_t(c.B));
    cudaStream_t stream;
    REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);

    auto run_once = [&](pdtest::DeviceKv<bf16>& kv, pdtest::DeviceKv<bf16>& vv,
                        const Workspace& ws1, const Workspace& ws2) {
      SelectArgs<bf16> a;
      a.config = cfg;
      a.q = c.q_view(q.get());
      a.k = kv.view;
      a.lengths = lengths.get();
      a.max_length = c.N;
      a.indices = make_view(idx.get(), c.B, R, c.N);
      a.counts = make_view(counts.get(), c.B, R);
      REQUIRE(cuda::Select<bf16>::run(a, ws1, stream).is_ok());
      CompactKvArgs<bf16> ca;
      ca.k = kv.view;
      ca.v = vv.view;
      ca.v.block_table = kv.view.block_table;
      ca.seq_lens = lengths.get();
      ca.indices = make_view<const int32_t>(idx.get(), c.B, R, c.N);
      ca.counts = make_view<const int32_t>(counts.get(), c.B, R);
      ca.new_lengths = new_len.get();
      ca.freed_pages = freed.get();
      REQUIRE(cuda::CompactKv<bf16>::run(ca, ws2, stream).is_ok());
    };

    // Direct run.
    pdtest::DeviceKv<bf16> k1(host_kv), v1(host_kv);
    SelectArgs<bf16> sizing;
    sizing.config = cfg;
    sizing.q = c.q_view(q.get());
    sizing.k = k1.view;
    sizing.max_length = c.N;
    pdtest::DeviceWorkspace ws1(cuda::Select<bf16>::workspace_size(sizing)), ws2(4096);
    run_once(k1, v1, ws1.ws, ws2.ws);
    REQUIRE(cuda::read_device_status(ws1.ws, stream).is_ok());
    REQUIRE(cuda::read_device_status(ws2.ws, stream).is_ok());
    const auto want_idx = idx.download(), want_counts = counts.download(),
               want_len = new_len.download();
    const auto want_k = k1.data.download();

    // Capture once; replay twice. Compaction is in place, so the caches and outputs are restored
    // (outside the graph) before each replay.
    pdtest::DeviceKv<bf16> k2(host_kv), v2(host_kv);
    cudaGraph_t graph;
    REQUIRE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal) == cudaSuccess);
    run_once(k2, v2, ws1.ws, ws2.ws);
    REQUIRE(cudaStreamEndCapture(stream, &graph) == cudaSuccess);
    cudaGraphExec_t exec;
    REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
    for (int replay = 0; replay < 2; ++replay) {
      k2.data.upload(host_kv.data);
      v2.data.upload(host_kv.data);
      idx.upload(std::vector<int32_t>(idx.size(), -1));
      counts.upload(std::vector<int32_t>(counts.size(), -1));
      REQUIRE(cudaGraphLaunch(exec, stream) == cudaSuccess);
      REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
      REQUIRE(cuda::read_device_status(ws1.ws, stream).is_ok());
      REQUIRE(cuda::read_device_status(ws2.ws, stream).is_ok());
      INFO(std::string(to_string(m)));
      CAPTURE(replay);
      CHECK(pdtest::bitwise_equal(idx.download(), want_idx));
      CHECK(pdtest::bitwise_equal(counts.download(), want_counts));
      CHECK(pdtest::bitwise_equal(new_len.download(), want_len));
      CHECK(pdtest::bitwise_equal(k2.data.download(), want_k));
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
}
