// SPDX-License-Identifier: Apache-2.0
// The device status word: with several failing threads it keeps the error that comes first in
// the CPU reference's order (lowest request, then its own checks, then its indices by position),
// so an op with several invalid requests reports what ref:: reports; read_device_status waits for
// its own stream only. (The update rule itself is tested on the CPU:
// tests/api/test_validation.cpp.)
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>

#include "promptdistill/cuda/launch.cuh"
#include "promptdistill/promptdistill.h"
#include "support/device_kv.cuh"
#include "support/generators.h"

using namespace promptdistill;
using pdtest::DeviceBuffer;
using promptdistill::detail::DataCheck;
using promptdistill::detail::DeviceStatusWord;

namespace {

//! Thread t records error t (request a[t], position p[t]) when fail[t] is set.
__global__ void record_kernel(const int64_t* a, const int64_t* position, const int32_t* fail,
                              int64_t n, DeviceStatusWord* w) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n && fail[t])
    promptdistill::detail::record(w, DataCheck::kIndexOutOfRange, a[t], t, n, position[t]);
}

//! Spins until the host sets *flag, or gives up after `timeout_ns` and says so.
__global__ void wait_for_host_kernel(volatile int32_t* flag, int32_t* timed_out,
                                     unsigned long long timeout_ns) {
  unsigned long long start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  while (*flag == 0) {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    if (now - start > timeout_ns) {
      *timed_out = 1;
      return;
    }
  }
}

DeviceStatusWord download_word(const pdtest::DeviceWorkspace& ws) {
  DeviceStatusWord w{};
  pdtest::cuda_check(cudaMemcpy(&w, ws.ws.ptr, sizeof w, cudaMemcpyDeviceToHost), "download word");
  return w;
}

std::string message_of(const Status& s) {
  return s.is_ok() ? std::string("ok") : std::string(s.message());
}

}  // namespace

TEST_CASE(
    "cuda/status word: of many failing threads the lowest (request, position) is kept, its fields "
    "with it") {
  for (int trial = 0; trial < 20; ++trial) {
    const uint64_t seed = pdtest::mix(pdtest::seed(), 71, uint64_t(trial));
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const int64_t n = 1 + int64_t(rng() % 20000);
    const std::size_t count = static_cast<std::size_t>(n);
    std::vector<int64_t> a(count), position(count);
    std::vector<int32_t> fail(count);
    // Distinct keys: (request, position) = a permutation of [0, n) split into 37 positions each.
    std::vector<int64_t> keys(count);
    std::iota(keys.begin(), keys.end(), 0);
    std::shuffle(keys.begin(), keys.end(), rng);
    int64_t want = -1;
    for (int64_t t = 0; t < n; ++t) {
      a[std::size_t(t)] = keys[std::size_t(t)] / 37;
      position[std::size_t(t)] = keys[std::size_t(t)] % 37 - 1;
      fail[std::size_t(t)] = rng() % 4 == 0 || t == n - 1;
      if (fail[std::size_t(t)] && (want < 0 || keys[std::size_t(t)] < keys[std::size_t(want)]))
        want = t;
    }
    CAPTURE(n);
    DeviceBuffer<int64_t> d_a(a), d_position(position);
    DeviceBuffer<int32_t> d_fail(fail);
    pdtest::DeviceWorkspace ws(sizeof(DeviceStatusWord));
    REQUIRE(cuda::detail::reset_status(static_cast<DeviceStatusWord*>(ws.ws.ptr), nullptr).is_ok());
    record_kernel<<<unsigned((n + 255) / 256), 256>>>(d_a.get(), d_position.get(), d_fail.get(), n,
                                                      static_cast<DeviceStatusWord*>(ws.ws.ptr));
    pdtest::cuda_check(cudaDeviceSynchronize(), "record_kernel");
    const DeviceStatusWord w = download_word(ws);
    CHECK(w.code == int32_t(StatusCode::kOutOfRange));
    CHECK(w.a == a[std::size_t(want)]);
    CHECK(w.position == position[std::size_t(want)]);
    CHECK(w.b == want);  // the winner's own payload, not another thread's
    CHECK(w.lock == 0);
  }
}

TEST_CASE(
    "cuda/status word: several invalid requests report what the reference reports (Gather, "
    "RemapPositions, CompactKv, Embed)") {
  // Seeded random batches with errors in several requests (bad counts, bad indices, lengths past
  // the cache), the status message compared with ref::'s.
  for (int trial = 0; trial < 40; ++trial) {
    const uint64_t seed = pdtest::mix(pdtest::seed(), 72, uint64_t(trial));
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const int64_t B = 2 + int64_t(rng() % 30), L = 64, E = 8, cap = 48;
    std::vector<int32_t> idx(static_cast<std::size_t>(B * cap)),
        counts(static_cast<std::size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      counts[std::size_t(b)] = int32_t(rng() % (cap + 1));
      for (int64_t i = 0; i < cap; ++i) idx[std::size_t(b * cap + i)] = int32_t(i);
      const int kind = int(rng() % 6);
      if (kind == 0)
        counts[std::size_t(b)] = int32_t(cap + 1 + rng() % 5);  // count beyond the capacity
      if (kind == 1 && counts[std::size_t(b)] > 0)
        idx[std::size_t(b * cap + rng() % counts[std::size_t(b)])] = int32_t(L + rng() % 9);
      if (kind == 2 && counts[std::size_t(b)] > 1)
        idx[std::size_t(b * cap + 1 + rng() % (counts[std::size_t(b)] - 1))] = 0;  // repeats
    }
    // Gather (indices need not increase).
    {
      const std::vector<float> src(std::size_t(B * L * E), 1.0f);
      std::vector<float> dst(std::size_t(B * cap * E), -1.0f);
      GatherArgs<float> h;
      h.src = make_view<const float>(src.data(), B, L, E);
      h.indices = make_view<const int32_t>(idx.data(), B, 1, cap);
      h.counts = make_view<const int32_t>(counts.data(), B, 1);
      h.dst = make_view(dst.data(), B, cap, E);
      const Status want = ref::Gather<float>::run(h, Workspace{});
      DeviceBuffer<float> d_src(src), d_dst(dst);
      DeviceBuffer<int32_t> d_idx(idx), d_counts(counts);
      GatherArgs<float> d = h;
      d.src = make_view<const float>(d_src.get(), B, L, E);
      d.indices = make_view<const int32_t>(d_idx.get(), B, 1, cap);
      d.counts = make_view<const int32_t>(d_counts.get(), B, 1);
      d.dst = make_view(d_dst.get(), B, cap, E);
      pdtest::DeviceWorkspace ws(cuda::Gather<float>::workspace_size(d));
      REQUIRE(cuda::Gather<float>::run(d, ws.ws, nullptr).is_ok());
      CHECK(message_of(cuda::read_device_status(ws.ws, nullptr)) == message_of(want));
    }
    // RemapPositions, original positions through a lookup table.
    {
      std::vector<int32_t> positions_in(static_cast<std::size_t>(B * L)),
          out(static_cast<std::size_t>(B * cap), -1);
      RemapPositionsArgs h;
      h.mode = PositionMode::kOriginal;
      h.positions_in = make_view<const int32_t>(positions_in.data(), B, L);
      h.indices = make_view<const int32_t>(idx.data(), B, 1, cap);
      h.counts = make_view<const int32_t>(counts.data(), B, 1);
      h.positions_out = make_view(out.data(), B, 1, cap);
      const Status want = ref::RemapPositions::run(h, Workspace{});
      DeviceBuffer<int32_t> d_in(positions_in), d_out(out), d_idx(idx), d_counts(counts);
      RemapPositionsArgs d = h;
      d.positions_in = make_view<const int32_t>(d_in.get(), B, L);
      d.indices = make_view<const int32_t>(d_idx.get(), B, 1, cap);
      d.counts = make_view<const int32_t>(d_counts.get(), B, 1);
      d.positions_out = make_view(d_out.get(), B, 1, cap);
      pdtest::DeviceWorkspace ws(cuda::RemapPositions::workspace_size(d));
      REQUIRE(cuda::RemapPositions::run(d, ws.ws, nullptr).is_ok());
      CHECK(message_of(cuda::read_device_status(ws.ws, nullptr)) == message_of(want));
    }
    // CompactKv (strictly increasing indices, lengths within the cache).
    {
      const int64_t S = 56, H = 1, D = 64;
      std::vector<int32_t> lens(static_cast<std::size_t>(B)), nl(static_cast<std::size_t>(B), -9);
      for (int64_t b = 0; b < B; ++b)
        lens[std::size_t(b)] = int32_t(rng() % 4 == 0 ? S + 1 : cap + rng() % (S - cap + 1));
      const std::vector<float> cache(std::size_t(B * S * H * D), 0.5f);
      std::vector<float> keys = cache, values = cache;
      CompactKvArgs<float> h;
      h.k = KvCacheView<float>::contiguous_bshd(keys.data(), B, S, H, D);
      h.v = KvCacheView<float>::contiguous_bshd(values.data(), B, S, H, D);
      h.seq_lens = lens.data();
      h.indices = make_view<const int32_t>(idx.data(), B, 1, cap);
      h.counts = make_view<const int32_t>(counts.data(), B, 1);
      h.new_lengths = nl.data();
      const Status want = ref::CompactKv<float>::run(h, Workspace{});
      DeviceBuffer<float> d_keys(cache), d_values(cache);
      DeviceBuffer<int32_t> d_lens(lens), d_idx(idx), d_counts(counts), d_nl(nl);
      CompactKvArgs<float> d = h;
      d.k = KvCacheView<float>::contiguous_bshd(d_keys.get(), B, S, H, D);
      d.v = KvCacheView<float>::contiguous_bshd(d_values.get(), B, S, H, D);
      d.seq_lens = d_lens.get();
      d.indices = make_view<const int32_t>(d_idx.get(), B, 1, cap);
      d.counts = make_view<const int32_t>(d_counts.get(), B, 1);
      d.new_lengths = d_nl.get();
      pdtest::DeviceWorkspace ws(cuda::CompactKv<float>::workspace_size(d));
      REQUIRE(cuda::CompactKv<float>::run(d, ws.ws, nullptr).is_ok());
      CHECK(message_of(cuda::read_device_status(ws.ws, nullptr)) == message_of(want));
    }
  }
  // Embed: every row checks its id; rows 700, 5 and 3000 are out of the vocabulary -> row 5.
  const int64_t vocab = 50, E = 16, n = 4096;
  std::vector<int32_t> ids(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[std::size_t(i)] = int32_t(i % vocab);
  ids[700] = -4;
  ids[5] = 50;
  ids[3000] = 99;
  const std::vector<float> table(std::size_t(vocab * E), 1.0f);
  std::vector<float> out(std::size_t(n * E), -1.0f);
  EmbedArgs<float> h;
  h.table = make_view<const float>(table.data(), vocab, E);
  h.ids = make_view<const int32_t>(ids.data(), n);
  h.out = make_view(out.data(), n, E);
  HostWorkspace host_ws;
  REQUIRE(host_ws.reserve(ref::Embed<float>::workspace_size(h)).is_ok());
  const Status want = ref::Embed<float>::run(h, host_ws.workspace());
  CHECK(message_of(want) == "token id 50 at row 5 is outside the vocabulary [0, 50)");
  DeviceBuffer<float> d_table(table), d_out(out);
  DeviceBuffer<int32_t> d_ids(ids);
  EmbedArgs<float> d = h;
  d.table = make_view<const float>(d_table.get(), vocab, E);
  d.ids = make_view<const int32_t>(d_ids.get(), n);
  d.out = make_view(d_out.get(), n, E);
  pdtest::DeviceWorkspace ws(cuda::Embed<float>::workspace_size(d));
  REQUIRE(cuda::Embed<float>::run(d, ws.ws, nullptr).is_ok());
  CHECK(message_of(cuda::read_device_status(ws.ws, nullptr)) == message_of(want));
}

TEST_CASE(
    "cuda/status word: read_device_status waits for its own stream, not for another busy one") {
  // A kernel on another blocking stream spins until the host sets a flag (giving up after 5 s).
  // A read that waited on the legacy default stream would wait for that kernel, and the host
  // would set the flag only after the timeout.
  int32_t* flag = nullptr;
  pdtest::cuda_check(
      cudaHostAlloc(reinterpret_cast<void**>(&flag), sizeof(int32_t), cudaHostAllocMapped),
      "cudaHostAlloc");
  *flag = 0;
  int32_t* device_flag = nullptr;
  pdtest::cuda_check(cudaHostGetDevicePointer(reinterpret_cast<void**>(&device_flag), flag, 0),
                     "cudaHostGetDevicePointer");
  DeviceBuffer<int32_t> timed_out(std::vector<int32_t>{0});
  cudaStream_t busy = nullptr, mine = nullptr;
  pdtest::cuda_check(cudaStreamCreate(&busy), "cudaStreamCreate");
  pdtest::cuda_check(cudaStreamCreate(&mine), "cudaStreamCreate");
  pdtest::DeviceWorkspace ws(sizeof(DeviceStatusWord));
  REQUIRE(cuda::detail::reset_status(static_cast<DeviceStatusWord*>(ws.ws.ptr), mine).is_ok());
  pdtest::cuda_check(cudaStreamSynchronize(mine), "reset");
  wait_for_host_kernel<<<1, 1, 0, busy>>>(device_flag, timed_out.get(), 5000000000ull);
  pdtest::cuda_check(cudaGetLastError(), "wait_for_host_kernel");
  const Status read = cuda::read_device_status(ws.ws, mine);
  *reinterpret_cast<volatile int32_t*>(flag) = 1;
  pdtest::cuda_check(cudaStreamSynchronize(busy), "busy stream");
  CHECK(read.is_ok());
  CHECK(timed_out.download()[0] == 0);
  cudaStreamDestroy(busy);
  cudaStreamDestroy(mine);
  cudaFreeHost(flag);
}
