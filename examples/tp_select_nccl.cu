// SPDX-License-Identifier: Apache-2.0
// PromptDistill's selection under tensor parallelism on several GPUs with NCCL, as a multi-GPU
// engine runs it: rank r (GPU r) holds query heads [r H/R, (r+1) H/R) of the selection layer and
// their KV heads, and makes three calls on its own stream:
//   cuda::ScorePartial   its un-normalised sum over its own heads, f32 [B, 1, L]
//   ncclAllReduce        sum over the ranks, in place
//   cuda::FinishSelect   normalise by the global head count, pool, top-k: the same on every rank
// No allocation, no host synchronisation: the three calls can be captured in a CUDA graph.
//
// One process drives R = 2, 4 or 8 GPUs (the most the machine has) through ncclCommInitAll. The
// keys and queries are small integers with head dim 64, so every sum is exact and every rank's
// selection must equal the single-GPU cuda::Select bit for bit (docs/algorithms.md §9); the
// example checks that and that all ranks agree, and prints the time of the three calls. With
// fewer than two GPUs it says so and exits with 77 (the test suite reports it as skipped).
#include <cuda_runtime.h>
#include <nccl.h>
#include <promptdistill/promptdistill.h>

#include <cstdio>
#include <random>
#include <vector>

namespace {

using namespace promptdistill;

constexpr int64_t kHeads = 32, kKvHeads = 8, kDim = 64, kLength = 32768, kBudget = 2048;

bool cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
  return e == cudaSuccess;
}
bool nccl_ok(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) std::fprintf(stderr, "%s: %s\n", what, ncclGetErrorString(r));
  return r == ncclSuccess;
}
bool status_ok(const Status& s, const char* what) {
  if (!s.is_ok()) std::fprintf(stderr, "%s: %s\n", what, s.message());
  return s.is_ok();
}

template <class T>
T* upload(const std::vector<T>& host) {
  T* p = nullptr;
  if (!cuda_ok(cudaMalloc(&p, host.size() * sizeof(T)), "cudaMalloc")) return nullptr;
  cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return p;
}

//! One rank's buffers on its GPU.
struct Rank {
  cudaStream_t stream = nullptr;
  ncclComm_t comm = nullptr;
  bf16 *q = nullptr, *k = nullptr;
  int32_t *lengths = nullptr, *indices = nullptr, *counts = nullptr;
  float* partial = nullptr;
  void *ws_partial = nullptr, *ws_finish = nullptr;
  std::size_t ws_partial_bytes = 0, ws_finish_bytes = 0;
  ScorePartialArgs<bf16> score;
  FinishSelectArgs finish;
};

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  const int ranks = devices >= 8 ? 8 : devices >= 4 ? 4 : devices >= 2 ? 2 : 0;
  if (ranks == 0) {
    std::printf(
        "tensor-parallel selection with NCCL needs two or more GPUs; this machine has %d: "
        "skipped\n",
        devices);
    return 77;
  }
  const int64_t heads_per_rank = kHeads / ranks, kv_per_rank = kKvHeads / ranks;

  std::mt19937 rng(7);
  std::uniform_int_distribution<int> small(-4, 4);
  std::vector<bf16> q(kHeads * kDim), k(kLength * kKvHeads * kDim);
  for (auto& x : q) x = to_bf16(float(small(rng)));
  for (auto& x : k) x = to_bf16(float(small(rng)));
  const std::vector<int32_t> lengths = {int32_t(kLength)};
  MethodConfig config;
  config.budget = kBudget;

  std::vector<Rank> rank(static_cast<std::size_t>(ranks));
  std::vector<int> device_list(static_cast<std::size_t>(ranks));
  std::vector<ncclComm_t> comms(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) device_list[std::size_t(r)] = r;
  if (!nccl_ok(ncclCommInitAll(comms.data(), ranks, device_list.data()), "ncclCommInitAll"))
    return 1;
  for (int r = 0; r < ranks; ++r) {
    Rank& R = rank[std::size_t(r)];
    cudaSetDevice(r);
    cudaStreamCreate(&R.stream);
    R.comm = comms[std::size_t(r)];
    // The rank's heads, as its engine holds them: its query heads and its KV heads, contiguous.
    std::vector<bf16> q_r(q.begin() + r * heads_per_rank * kDim,
                          q.begin() + (r + 1) * heads_per_rank * kDim),
        k_r;
    for (int64_t t = 0; t < kLength; ++t)
      k_r.insert(k_r.end(), k.begin() + (t * kKvHeads + r * kv_per_rank) * kDim,
                 k.begin() + (t * kKvHeads + (r + 1) * kv_per_rank) * kDim);
    R.q = upload(q_r);
    R.k = upload(k_r);
    R.lengths = upload(lengths);
    R.indices = upload(std::vector<int32_t>(kLength, -1));
    R.counts = upload(std::vector<int32_t>(1, 0));
    R.partial = upload(std::vector<float>(kLength, 0.0f));
    if (!R.q || !R.k || !R.lengths || !R.indices || !R.counts || !R.partial) return 1;
    R.score.q = make_view<const bf16>(R.q, 1, 1, heads_per_rank, kDim);
    R.score.k = KvCacheView<const bf16>::contiguous_bshd(R.k, 1, kLength, kv_per_rank, kDim);
    R.score.lengths = R.lengths;
    R.score.head_offset = r * heads_per_rank;
    R.score.total_heads = kHeads;
    R.score.partial = make_view(R.partial, 1, 1, kLength);
    R.finish.config = config;
    R.finish.summed = make_view<const float>(R.partial, 1, 1, kLength);
    R.finish.total_heads = kHeads;
    R.finish.lengths = R.lengths;
    R.finish.indices = make_view(R.indices, 1, 1, kLength);
    R.finish.counts = make_view(R.counts, 1, 1);
    if (!status_ok(cuda::ScorePartial<bf16>::can_implement(R.score), "ScorePartial") ||
        !status_ok(cuda::FinishSelect::can_implement(R.finish), "FinishSelect"))
      return 1;
    R.ws_partial_bytes = cuda::ScorePartial<bf16>::workspace_size(R.score);
    R.ws_finish_bytes = cuda::FinishSelect::workspace_size(R.finish);
    if (!cuda_ok(cudaMalloc(&R.ws_partial, R.ws_partial_bytes), "cudaMalloc") ||
        !cuda_ok(cudaMalloc(&R.ws_finish, R.ws_finish_bytes), "cudaMalloc"))
      return 1;
  }

  // The three calls per selection layer, every rank on its own stream (a warm-up, then timed).
  std::vector<cudaEvent_t> start(static_cast<std::size_t>(ranks)),
      stop(static_cast<std::size_t>(ranks));
  for (int pass = 0; pass < 2; ++pass) {
    for (int r = 0; r < ranks; ++r) {
      Rank& R = rank[std::size_t(r)];
      cudaSetDevice(r);
      if (pass == 1) {
        cudaEventCreate(&start[std::size_t(r)]);
        cudaEventCreate(&stop[std::size_t(r)]);
        cudaEventRecord(start[std::size_t(r)], R.stream);
      }
      if (!status_ok(cuda::ScorePartial<bf16>::run(
                         R.score, Workspace{R.ws_partial, R.ws_partial_bytes}, R.stream),
                     "ScorePartial"))
        return 1;
    }
    if (!nccl_ok(ncclGroupStart(), "ncclGroupStart")) return 1;
    for (int r = 0; r < ranks; ++r) {
      Rank& R = rank[std::size_t(r)];
      if (!nccl_ok(
              ncclAllReduce(R.partial, R.partial, kLength, ncclFloat, ncclSum, R.comm, R.stream),
              "ncclAllReduce"))
        return 1;
    }
    if (!nccl_ok(ncclGroupEnd(), "ncclGroupEnd")) return 1;
    for (int r = 0; r < ranks; ++r) {
      Rank& R = rank[std::size_t(r)];
      cudaSetDevice(r);
      if (!status_ok(cuda::FinishSelect::run(R.finish, Workspace{R.ws_finish, R.ws_finish_bytes},
                                             R.stream),
                     "FinishSelect"))
        return 1;
      if (pass == 1) cudaEventRecord(stop[std::size_t(r)], R.stream);
    }
  }

  // Every rank's selection (one host synchronisation per rank, after the work).
  std::vector<std::vector<int32_t>> kept(static_cast<std::size_t>(ranks));
  float slowest_ms = 0.0f;
  for (int r = 0; r < ranks; ++r) {
    Rank& R = rank[std::size_t(r)];
    cudaSetDevice(r);
    if (!status_ok(cuda::read_device_status(Workspace{R.ws_finish, R.ws_finish_bytes}, R.stream),
                   "FinishSelect on the device"))
      return 1;
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start[std::size_t(r)], stop[std::size_t(r)]);
    slowest_ms = ms > slowest_ms ? ms : slowest_ms;
    int32_t count = 0;
    cudaMemcpy(&count, R.counts, sizeof count, cudaMemcpyDeviceToHost);
    kept[std::size_t(r)].resize(std::size_t(count));
    cudaMemcpy(kept[std::size_t(r)].data(), R.indices, std::size_t(count) * sizeof(int32_t),
               cudaMemcpyDeviceToHost);
  }
  bool ranks_agree = true;
  for (int r = 1; r < ranks; ++r) ranks_agree = ranks_agree && kept[std::size_t(r)] == kept[0];

  // The single-GPU selection on every head, on GPU 0.
  cudaSetDevice(0);
  bf16* all_q = upload(q);
  bf16* all_k = upload(k);
  int32_t* single_indices = upload(std::vector<int32_t>(kLength, -1));
  int32_t* single_count = upload(std::vector<int32_t>(1, 0));
  SelectArgs<bf16> single;
  single.config = config;
  single.q = make_view<const bf16>(all_q, 1, 1, kHeads, kDim);
  single.k = KvCacheView<const bf16>::contiguous_bshd(all_k, 1, kLength, kKvHeads, kDim);
  single.lengths = rank[0].lengths;
  single.max_length = kLength;
  single.indices = make_view(single_indices, 1, 1, kLength);
  single.counts = make_view(single_count, 1, 1);
  void* ws = nullptr;
  const std::size_t ws_bytes = cuda::Select<bf16>::workspace_size(single);
  if (!cuda_ok(cudaMalloc(&ws, ws_bytes), "cudaMalloc") ||
      !status_ok(cuda::Select<bf16>::run(single, Workspace{ws, ws_bytes}, rank[0].stream),
                 "Select") ||
      !status_ok(cuda::read_device_status(Workspace{ws, ws_bytes}, rank[0].stream),
                 "Select on the device"))
    return 1;
  int32_t count = 0;
  cudaMemcpy(&count, single_count, sizeof count, cudaMemcpyDeviceToHost);
  std::vector<int32_t> want(static_cast<std::size_t>(count));
  cudaMemcpy(want.data(), single_indices, std::size_t(count) * sizeof(int32_t),
             cudaMemcpyDeviceToHost);
  const bool equals_single = kept[0] == want;

  std::printf("%d ranks x %lld query heads (%lld KV heads each), %lld tokens, kept %zu\n", ranks,
              (long long)heads_per_rank, (long long)kv_per_rank, (long long)kLength,
              kept[0].size());
  std::printf("every rank the same selection: %s; equal to the single-GPU Select: %s\n",
              ranks_agree ? "yes" : "NO", equals_single ? "yes" : "NO");
  std::printf("score_partial + all-reduce + finish_select: %.1f us (slowest rank)\n",
              1000.0 * slowest_ms);
  for (int r = 0; r < ranks; ++r) {
    Rank& R = rank[std::size_t(r)];
    cudaSetDevice(r);
    for (void* p : {(void*)R.q, (void*)R.k, (void*)R.lengths, (void*)R.indices, (void*)R.counts,
                    (void*)R.partial, R.ws_partial, R.ws_finish})
      cudaFree(p);
    cudaStreamDestroy(R.stream);
    ncclCommDestroy(R.comm);
  }
  cudaSetDevice(0);
  for (void* p : {(void*)all_q, (void*)all_k, (void*)single_indices, (void*)single_count, ws})
    cudaFree(p);
  return ranks_agree && equals_single ? 0 : 1;
}
