// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::cpu_pipelines (ref::BatchSession) and promptdistill::cuda_pipelines
//! (cuda::BatchSession, BatchSessionF16, BatchSessionF32). `BatchSession<Backend, T>`: the
//! pipelines of docs/algorithms.md (full KV, PromptDistill multi-stage with cache truncation,
//! GemFilter, SnapKV, H2O) and greedy decoding for a batch of prompts of different lengths,
//! composed only of the block operations (blocks.h) and the Selector API (selector.h) of one
//! backend. The same code runs on
//! - `ref::BatchSession` (CPU reference ops, f32, host memory): testable on any machine against
//!   `ref::EigenSession`, the Eigen decoder;
//! - `cuda::BatchSession` (CUDA ops, bf16 weights and activations, f32 accumulation and f32 logits,
//!   device memory), `cuda::BatchSessionF16` and `cuda::BatchSessionF32`.
//!
//! The implementation is private (pipelines/batch_session/: RAII buffers, the decoder, the
//! pipelines) and compiled into the library for the instantiations below.
//!
//! Layout: a prefill keeps the batch padded, [B, n_max, ...] with request b's first n_b rows
//! valid; rows past n_b are computed but never read (attention, KV appends and selections only
//! touch valid rows). Per-layer caches are contiguous [B, capacity_l, H_kv, D] with per-request
//! lengths; after a selection with cache truncation they are compacted in place (CompactKv) and
//! re-allocated to their new size, so the full-length K/V is freed while later layers run.
//! GemFilter's filter pass keeps no per-layer cache: one layer's K/V (the attention input) lives
//! in a scratch buffer that the next layer overwrites and that is freed before pass 2.
//! SnapKV/H2O per query head (the published variant) GQA-expand a layer's cache to H heads when
//! they compress it (query head h then reads head h), as the reference code stores it; the new
//! tokens of such a layer are expanded on append. Everything follows `ref::EigenSession`'s
//! semantics.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "promptdistill/backend.h"
#include "promptdistill/blocks.h"
#include "promptdistill/model.h"
#include "promptdistill/pipeline.h"
#include "promptdistill/selector.h"

namespace promptdistill {

//! Sums `count` elements of type `dtype` at `data` (this backend's memory: device memory on CUDA)
//! over every rank of a tensor-parallel group, in place, ordered on `stream` (NCCL's
//! ncclAllReduce with ncclSum, torch.distributed's all_reduce, ...). Every rank must receive the
//! same bits; the session calls it at the same points, in the same order, on every rank.
using AllReduce = std::function<Status(void* data, int64_t count, DType dtype, Stream stream)>;

struct BatchSessionOptions {
  int64_t decode_reserve =
      64;  //!< cache tokens reserved per request for decoding (grows on demand)
  int64_t mlp_chunk_rows =
      2048;  //!< MLP rows per step, bounding the [rows, intermediate] activations
  AttentionAlgo attention = AttentionAlgo::kFast;
  //! Read the device status word after every operation (a host sync each; for tests and
  //! debugging). Selections, gathers and compactions are always checked.
  bool check_every_op = false;
  //! Record one decode step (embedding, every layer, the final norm, the LM head and the argmax)
  //! as a CUDA graph and replay it for the next steps, as long as nothing is re-allocated (a
  //! cache growing past its reserve records the step again). The step's inputs (ids, positions'
  //! RoPE rows, cache lengths) go up in one copy from pinned memory before the replay; only the
  //! B next tokens come back. Not with tensor parallelism (the caller's all-reduce may not be
  //! capturable) or check_every_op. The CPU reference records the step as a call and replays it
  //! under the same rules (nothing allocated, uploaded or downloaded inside), so ref::BatchSession
  //! tests the recorded path on any machine. If recording fails, the session decodes without a
  //! graph and decode_graph_status() says why.
  bool decode_graph = true;
  //! Memory a prefill may plan to use on top of what the session holds; 0 = what the backend
  //! reports as available (free device memory; MemAvailable on the CPU). A prefill whose
  //! estimated caches and activations exceed it fails before any work with kOutOfMemory.
  int64_t memory_limit_bytes = 0;
  //! Tensor parallelism (Megatron-style; docs/algorithms.md §9): this session is rank `tp_rank`
  //! of `tp_size`. It holds query heads [r H/R, (r+1) H/R) with their KV heads (H_kv/R of them, or
  //! the one they share when R > H_kv, replicated) and caches, the matching rows of the q/k/v
  //! projections, columns of the output projection, and 1/R of the MLP's intermediate columns;
  //! embeddings, norms and the LM head are replicated. It calls `all_reduce` after the attention
  //! output projection and after the MLP (on the residual stream, type T) and on PromptDistill's
  //! and GemFilter's partial scores (f32), so every rank selects and generates the same tokens.
  //! SnapKV/H2O select on each rank's own heads (`PrefillResult::selected` holds the rank's rows;
  //! per KV group needs R <= H_kv). Needs the checkpoint's weights (`create`); H, the intermediate
  //! size and H_kv (or R, when R > H_kv) multiples of R.
  int64_t tp_size = 1;
  int64_t tp_rank = 0;
  AllReduce all_reduce;  //!< required when tp_size > 1
};

template <class Backend, class T>
class BatchSession {
 public:
  ~BatchSession();
  BatchSession(const BatchSession&) = delete;
  BatchSession& operator=(const BatchSession&) = delete;

  //! Uploads the weights (rounded to T; the LM head stays f32) and prepares an empty session.
  static Status create(const ModelWeights* weights, const BatchSessionOptions& options,
                       Stream stream, std::unique_ptr<BatchSession>* out) noexcept;
  //! A session of `config`'s shape whose weights are drawn on the backend itself (unit norms,
  //! random matrices scaled to keep activations O(1); detail/random_weights.h): the timings and
  //! memory of a checkpoint of that shape without the checkpoint, and no host copy of it.
  static Status create_random(const ModelConfig& config, uint64_t seed,
                              const BatchSessionOptions& options, Stream stream,
                              std::unique_ptr<BatchSession>* out) noexcept;

  //! Prefills every prompt with `config`'s method (one configuration for the whole batch; the
  //! selections are per request). `out[b]` is request b's result; ttft_ms is the batch's.
  Status prefill(const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig& config,
                 std::vector<PrefillResult>* out) noexcept;
  //! Feeds tokens[b] to request b at its next position; next[b] is its greedy next token.
  Status decode_step(const std::vector<int32_t>& tokens, std::vector<int32_t>* next) noexcept;
  //! Greedy generation for every request after a prefill, as ref::EigenSession::generate: first[b]
  //! always kept, at most max_new_tokens in all, a decoded stop token ends the request and is not
  //! returned; decode_ms_per_step is the mean time of one batched step.
  Status generate(const std::vector<int32_t>& first, int64_t max_new_tokens,
                  const std::vector<int32_t>& stop, std::vector<std::vector<int32_t>>* out,
                  double* decode_ms_per_step) noexcept;

  int64_t batch() const noexcept { return batch_; }
  static const char* backend_name() noexcept { return Backend::kName; }
  //! Tokens in layer l's cache for request b.
  int64_t cache_length(int64_t layer, int64_t b) const noexcept;
  //! Layer l's keys and values of request b as f32 [length, heads, D] (host copies, for tests;
  //! heads is H_kv, or H for a layer SnapKV/H2O compressed per query head; a tensor-parallel
  //! rank's own heads).
  Status read_cache(int64_t layer, int64_t b, std::vector<float>* k,
                    std::vector<float>* v) const noexcept;
  //! Memory this session holds now / at most since the last prefill began (weights included).
  int64_t memory_bytes() const noexcept;
  int64_t peak_memory_bytes() const noexcept;
  int64_t weight_bytes() const noexcept;
  //! Host synchronisations (downloads from the backend, status reads) since the last prefill
  //! began. A prefill needs a fixed number whatever its length, stages or layers: the selections
  //! stay on the backend and the results come back once at its end (3 for a method that selects:
  //! the status word, the recorded selections, the first tokens' logits; 2 for full KV; 2 more
  //! when truncate_after_last_layer composes the stage maps on the host); each decode step adds 1
  //! (its B next tokens: the argmax runs on the backend). Allocation is stream-ordered on CUDA, so
  //! re-sizing a cache does not synchronise, and a step's inputs go up from pinned memory.
  int64_t host_syncs() const noexcept;
  //! Decode steps since the last prefill that replayed a recorded step (decode_graph) instead of
  //! issuing its operations one by one.
  int64_t decode_graph_replays() const noexcept;
  //! Why decoding stopped recording steps (ok while it records, or with decode_graph off).
  Status decode_graph_status() const noexcept;
  //! The f32 logits [B, vocab] the last prefill took its first tokens from (the host copy it made
  //! for them; reading it does not synchronise). Decode steps keep their logits on the backend.
  const std::vector<float>& last_logits() const noexcept;

 private:
  struct Impl;  // pipelines/batch_session/ (private, not installed)
  BatchSession() = default;
  //! create() (`weights` uploaded) and create_random() (`weights` null: drawn from `seed`).
  static Status create_session(const ModelConfig& config, const ModelWeights* weights,
                               uint64_t seed, const BatchSessionOptions& options, Stream stream,
                               std::unique_ptr<BatchSession>* out) noexcept;
  std::unique_ptr<Impl> impl_;
  int64_t batch_ = 0;
};

namespace ref {
using BatchSession = promptdistill::BatchSession<RefBackend, float>;
}  // namespace ref
namespace cuda {
using BatchSession = promptdistill::BatchSession<CudaBackend, bf16>;
using BatchSessionF16 = promptdistill::BatchSession<CudaBackend, f16>;
using BatchSessionF32 = promptdistill::BatchSession<CudaBackend, float>;
//! The former names, kept for one release.
using Session [[deprecated("cuda::Session was renamed cuda::BatchSession")]] = BatchSession;
using SessionF16 [[deprecated("cuda::SessionF16 was renamed cuda::BatchSessionF16")]] =
    BatchSessionF16;
using SessionF32 [[deprecated("cuda::SessionF32 was renamed cuda::BatchSessionF32")]] =
    BatchSessionF32;
}  // namespace cuda

extern template class BatchSession<RefBackend, float>;
extern template class BatchSession<CudaBackend, bf16>;   // in promptdistill::cuda
extern template class BatchSession<CudaBackend, f16>;    // in promptdistill::cuda
extern template class BatchSession<CudaBackend, float>;  // in promptdistill::cuda

}  // namespace promptdistill
