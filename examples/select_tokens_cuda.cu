// SPDX-License-Identifier: Apache-2.0
// The same PromptDistill selection as select_tokens.cpp on the CUDA backend, in an engine's
// style: device buffers, a caller-owned workspace, the caller's stream, no host sync inside
// run(); the result is checked against the CPU reference. Without a GPU it says so and exits 0.
#include <promptdistill/promptdistill.h>

#include <cuda_runtime.h>

#include <cstdio>
#include <random>
#include <vector>

int main() {
  using namespace promptdistill;
  if (!cuda::device_available()) {
    std::printf("no CUDA device: nothing to run\n");
    return 0;
  }
  const int64_t L = 4096, H = 32, Hkv = 8, D = 128;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<bf16> q(H * D), keys(L * Hkv * D);
  for (auto& x : q) x = to_bf16(normal(rng));
  for (auto& x : keys) x = to_bf16(normal(rng));
  std::vector<int32_t> lengths = {int32_t(L)};

  bf16 *dq, *dk;
  int32_t *dl, *di, *dc;
  cudaMalloc(&dq, q.size() * sizeof(bf16));
  cudaMalloc(&dk, keys.size() * sizeof(bf16));
  cudaMalloc(&dl, sizeof(int32_t));
  cudaMalloc(&di, L * sizeof(int32_t));
  cudaMalloc(&dc, sizeof(int32_t));
  cudaMemcpy(dq, q.data(), q.size() * sizeof(bf16), cudaMemcpyHostToDevice);
  cudaMemcpy(dk, keys.data(), keys.size() * sizeof(bf16), cudaMemcpyHostToDevice);
  cudaMemcpy(dl, lengths.data(), sizeof(int32_t), cudaMemcpyHostToDevice);

  SelectArgs<bf16> a;
  a.config.budget = 1024;
  a.q = make_view<const bf16>(dq, 1, 1, H, D);
  a.k = KvCacheView<const bf16>::contiguous_bshd(dk, 1, L, Hkv, D);
  a.lengths = dl;
  a.max_length = L;
  a.indices = make_view(di, 1, 1, L);
  a.counts = make_view(dc, 1, 1);
  Status s = cuda::Select<bf16>::can_implement(a);
  void* ws = nullptr;
  const std::size_t bytes = cuda::Select<bf16>::workspace_size(a);
  cudaMalloc(&ws, bytes);
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  if (s.is_ok()) s = cuda::Select<bf16>::run(a, Workspace{ws, bytes}, stream);
  if (s.is_ok()) s = cuda::read_device_status(Workspace{ws, bytes}, stream);
  if (!s.is_ok()) {
    std::printf("error: %s\n", s.message());
    return 1;
  }
  std::vector<int32_t> got(L), count(1);
  cudaMemcpy(count.data(), dc, sizeof(int32_t), cudaMemcpyDeviceToHost);
  cudaMemcpy(got.data(), di, L * sizeof(int32_t), cudaMemcpyDeviceToHost);

  std::vector<int32_t> want(L), want_count(1);
  SelectArgs<bf16> h = a;
  h.q = make_view<const bf16>(q.data(), 1, 1, H, D);
  h.k = KvCacheView<const bf16>::contiguous_bshd(keys.data(), 1, L, Hkv, D);
  h.lengths = lengths.data();
  h.indices = make_view(want.data(), 1, 1, L);
  h.counts = make_view(want_count.data(), 1, 1);
  HostWorkspace host_ws;
  s = host_ws.reserve(ref::Select<bf16>::workspace_size(h));
  if (s.is_ok()) s = ref::Select<bf16>::run(h, host_ws.workspace());
  const bool same = s.is_ok() && count[0] == want_count[0] &&
                    std::equal(want.begin(), want.begin() + count[0], got.begin());
  std::printf("kept %d of %lld tokens on the GPU; matches the CPU reference: %s\n", count[0],
              (long long)L, same ? "yes" : "no");
  for (void* p : {(void*)dq, (void*)dk, (void*)dl, (void*)di, (void*)dc, ws}) cudaFree(p);
  cudaStreamDestroy(stream);
  return same ? 0 : 1;
}
