// SPDX-License-Identifier: Apache-2.0
// A program that embeds the Selector's CUDA kernels from the headers alone: it instantiates
// cuda::Select<float> in this translation unit (promptdistill/cuda/select.cuh) and links the
// host-side libraries (validation; the CPU reference to compare with), not promptdistill::cuda.
// Built twice: in the project tree (test cuda_header_only) and by the install consumer test
// against the installed headers. Without a device it says so and exits 77 (skipped).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "promptdistill/cuda/select.cuh"
#include "promptdistill/promptdistill.h"

using namespace promptdistill;
// CCCL (included by the top-k kernel) has a global namespace `cuda` too: name ours unambiguously.
namespace pdcuda = promptdistill::cuda;

namespace {

template <class U>
U* to_device(const std::vector<U>& host) {
  U* p = nullptr;
  if (cudaMalloc(&p, host.size() * sizeof(U)) != cudaSuccess) return nullptr;
  cudaMemcpy(p, host.data(), host.size() * sizeof(U), cudaMemcpyHostToDevice);
  return p;
}

//! PromptDistill selection of two ragged requests: indices, counts and positions.
struct Run {
  std::vector<int32_t> indices, counts, positions;
  Status status;
};

constexpr int64_t kBatch = 2, kHeads = 8, kKvHeads = 2, kHeadDim = 64, kMaxLength = 300,
                  kBudget = 24;

SelectArgs<float> make_args(const float* q, const float* k, const int32_t* lengths,
                            int32_t* indices, int32_t* counts, int32_t* positions) {
  SelectArgs<float> a;
  a.config.method = Method::kPromptDistill;
  a.config.budget = kBudget;
  a.q = make_view<const float>(q, kBatch, 1, kHeads, kHeadDim);
  a.k = KvCacheView<const float>::contiguous_bshd(k, kBatch, kMaxLength, kKvHeads, kHeadDim);
  a.lengths = lengths;
  a.max_length = kMaxLength;
  a.indices = make_view(indices, kBatch, 1, kMaxLength);
  a.counts = make_view(counts, kBatch, 1);
  a.positions = make_view(positions, kBatch, 1, kMaxLength);
  return a;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf(
        "SKIPPED: no CUDA device; the header-only Selector was compiled and linked without "
        "promptdistill::cuda\n");
    return 77;
  }
  // Deterministic inputs (a linear congruential generator, values in [-1, 1)).
  std::vector<float> q(std::size_t(kBatch * kHeads * kHeadDim)),
      k(std::size_t(kBatch * kMaxLength * kKvHeads * kHeadDim));
  uint64_t state = 20261129;
  auto next = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return float(int64_t(state >> 40) % 2048) / 1024.0f;
  };
  for (float& x : q) x = next();
  for (float& x : k) x = next();
  const std::vector<int32_t> lengths = {int32_t(kMaxLength), 97};

  Run want;
  want.indices.assign(std::size_t(kBatch * kMaxLength), -1);
  want.counts.assign(std::size_t(kBatch), -1);
  want.positions.assign(want.indices.size(), -1);
  {
    const auto a = make_args(q.data(), k.data(), lengths.data(), want.indices.data(),
                             want.counts.data(), want.positions.data());
    std::vector<unsigned char> ws(ref::Select<float>::workspace_size(a) + 256);
    void* base = ws.data() + (256 - reinterpret_cast<std::uintptr_t>(ws.data()) % 256) % 256;
    want.status =
        ref::Select<float>::run(a, Workspace{base, ref::Select<float>::workspace_size(a)});
  }

  Run got;
  float *d_q = to_device(q), *d_k = to_device(k);
  int32_t *d_lengths = to_device(lengths), *d_indices = to_device(want.indices),
          *d_counts = to_device(want.counts), *d_positions = to_device(want.positions);
  const auto a = make_args(d_q, d_k, d_lengths, d_indices, d_counts, d_positions);
  const std::size_t bytes = pdcuda::Select<float>::workspace_size(a);
  void* d_ws = nullptr;
  cudaMalloc(&d_ws, bytes);
  const Workspace ws{d_ws, bytes};
  got.status = pdcuda::Select<float>::run(a, ws, nullptr);
  if (got.status.is_ok()) got.status = pdcuda::detail::read_status_word(ws, nullptr);
  got.indices.resize(want.indices.size());
  got.counts.resize(want.counts.size());
  got.positions.resize(want.positions.size());
  cudaMemcpy(got.indices.data(), d_indices, got.indices.size() * sizeof(int32_t),
             cudaMemcpyDeviceToHost);
  cudaMemcpy(got.counts.data(), d_counts, got.counts.size() * sizeof(int32_t),
             cudaMemcpyDeviceToHost);
  cudaMemcpy(got.positions.data(), d_positions, got.positions.size() * sizeof(int32_t),
             cudaMemcpyDeviceToHost);
  for (void* p : {(void*)d_q, (void*)d_k, (void*)d_lengths, (void*)d_indices, (void*)d_counts,
                  (void*)d_positions, d_ws})
    cudaFree(p);

  if (!want.status.is_ok() || !got.status.is_ok()) {
    std::printf("FAILED: reference %s / header-only CUDA %s\n", want.status.message(),
                got.status.message());
    return 1;
  }
  // Tier A over Tier B scores: the kept indices, counts and positions are the reference's exactly.
  if (got.indices != want.indices || got.counts != want.counts || got.positions != want.positions) {
    std::printf(
        "FAILED: the header-only CUDA selection differs from the reference (counts %d %d vs %d "
        "%d)\n",
        got.counts[0], got.counts[1], want.counts[0], want.counts[1]);
    return 1;
  }
  std::printf("header-only Selector ok: kept %d and %d tokens, equal to the reference\n",
              got.counts[0], got.counts[1]);
  return 0;
}
