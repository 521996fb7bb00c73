// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core (declarations and validation); the operations:
//! promptdistill::cpu_reference (ref::) and promptdistill::cuda (cuda::). The Selector API: score
//! -> pool -> top-k -> gather / remap -> KV compaction.
//!
//! Every stage is an operation object with
//!   `static Status can_implement(const Args&)`   host-side checks of shapes, strides, alignment;
//!   `static size_t workspace_size(const Args&)`  bytes of caller-owned scratch;
//!   `static Status run(const Args&, Workspace, Stream)`.
//! The same operations exist in `promptdistill::ref` (CPU reference, host memory; the stream is
//! ignored) and `promptdistill::cuda` (device memory; launched on the caller's stream, no
//! allocation, no host synchronisation, CUDA-graph capturable). They are declared once, in
//! `detail/selector_ops.inc`, and included into both namespaces, so their signatures cannot drift.
//!
//! Batches are ragged: request b has `lengths[b]` prompt tokens (an int32 array where the op
//! runs). Per-request values that live in memory (lengths, per-request k, page tables, selected
//! indices) are validated where they are: the reference returns the error from `run()`; the CUDA
//! backend records it in a status word at the start of the workspace, makes the rest of that run
//! a no-op (caller-owned outputs stay untouched), and `cuda::read_device_status()` returns it.
//!
//! ## Exact semantics (shared by both backends; the reduction orders are part of the contract)
//! Notation: H query heads, H_kv KV heads, G = H / H_kv, g(h) = h / G, d = head_dim,
//! sqrt_d = num::sqrt(float(d)), dot() = num::dot (sequential in f32), sums over heads and window
//! rows are sequential in ascending order starting from +0, and all arithmetic is num::add/mul/div.
//! - kPromptDistill: s[j] = div(sum_h div(dot(q_h, k_{g(h),j}), sqrt_d), H)      (Q row 0)
//! - kGemFilter:     s[j] = sum_h dot(q_h, k_{g(h),j})                           (Q row 0)
//! - kSnapKV:  Q holds the last W queries; row i sits at position pos_i = L - W + i (rows with
//!   pos_i < 0 are ignored). z_ij = div(dot(q_ih, k_{g(h),j}), sqrt_d) for j <= pos_i;
//!   m_i = canonical_max_j z_ij, l_i = canonical_sum_j exp_f32(z_ij - m_i);
//!   s_h[j] = sum_i div(exp_f32(z_ij - m_i), l_i) over rows i with pos_i >= j.
//! - kH2O: the same with Q holding all L queries, pos_i = i (column sums of the causal softmax,
//!   computed tile by tile; no L x L matrix exists anywhere).
//! - SnapKV/H2O per KV group: s_g[j] = div(sum_{h in group g} s_h[j], G); per query head: s_h.
//! - kFastKV (Select only): SnapKV's per-query-head rows s_h over the last W queries, each pooled
//!   on its own (exclude_tail W), then summed per KV group: f_g[j] = sum_{h in group g} pooled_h[j]
//!   (ascending h from +0, no division; SumRows with group G). Rows: one per KV head. The sum after
//!   the pooling is what FastKV's code does; with max pooling it differs from SnapKV's mean first.
//! Pooling (row of length L, `exclude_tail` E, `zero_tail` Z): x[j] = (j < L - Z ? s[j] : 0) on
//! [0, L - E); avg: out[j] = div(sum_{t=-r..r} x[j+t], kernel) with zero padding
//! (count_include_pad), max: NaN-propagating max over the in-range taps; positions [L - E, L) are
//! copied unchanged. Top-k: forced = the last `keep_last` (and first `keep_first`) positions of [0,
//! L); the others are candidates, of which min(k, candidates) are chosen by score descending, ties
//! to the smaller index, NaN below every number, -0 == +0. Output: forced + chosen, sorted
//! ascending.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "promptdistill/detail/config.h"
#include "promptdistill/dtype.h"
#include "promptdistill/kv_cache.h"
#include "promptdistill/status.h"
#include "promptdistill/tensor_view.h"
#include "promptdistill/workspace.h"

namespace promptdistill {

enum class Method : int32_t {
  kPromptDistill = 0,
  kGemFilter = 1,
  kSnapKV = 2,
  kH2O = 3,
  kFastKV = 4
};
enum class PoolMode : int32_t { kNone = 0, kAvg = 1, kMax = 2 };
//! How SnapKV/H2O rows are formed: one per KV head (mean over its query group; no KV expansion,
//! compacts any cache) or one per query head (the reference code's GQA-expanded behaviour).
enum class HeadGrouping : int32_t { kPerKvGroup = 0, kPerQueryHead = 1 };
//! Positions written for the kept tokens.
enum class PositionMode : int32_t {
  kOriginal = 0,  //!< positions_in[idx] (identity when positions_in is null): PD, SnapKV, H2O
  kRenumber = 1,  //!< 0..count-1: GemFilter's fresh re-prefill
};

//! Names used everywhere (API, CLI, JSON, Python): "promptdistill", "gemfilter", "snapkv", "h2o",
//! "fastkv";
//! "none", "avg", "max"; "kv-group", "head". `parse` is the inverse of `to_string` and returns
//! kInvalidArgument, naming the accepted spellings, for anything else.
const char* to_string(Method m) noexcept;
Status parse(std::string_view text, Method* out) noexcept;
const char* to_string(PoolMode m) noexcept;
Status parse(std::string_view text, PoolMode* out) noexcept;
const char* to_string(HeadGrouping g) noexcept;
Status parse(std::string_view text, HeadGrouping* out) noexcept;

//! Largest head_dim * num_q_heads the scoring kernels hold in shared memory.
constexpr int64_t kMaxScoreQueryElements =
    12288;  // 48 KiB of f32: the default dynamic shared memory
//! Largest supported head dimension (must also be a multiple of 8).
constexpr int64_t kMaxHeadDim = 256;

// ---- stage arguments
// ------------------------------------------------------------------------------

//! Scores of every prompt token, per request (and per head for SnapKV/H2O).
template <class T>
struct ScoreArgs {
  Method method = Method::kPromptDistill;
  HeadGrouping grouping = HeadGrouping::kPerKvGroup;  //!< SnapKV/H2O only
  //! [B, rows, H, D]: 1 row (the last prompt token) for PromptDistill/GemFilter, the last W
  //! queries for SnapKV, the L_max queries for H2O. Post-RoPE.
  TensorView<const T, 4> q;
  KvCacheView<const T> k;            //!< layer r's post-RoPE keys
  const int32_t* lengths = nullptr;  //!< [B] prompt lengths L_b
  //! [B, score_rows, N] f32 with N >= max L_b; score_rows = 1, H_kv or H (see score_rows()).
  //! Positions j >= L_b are left untouched.
  TensorView<float, 3> scores;
};

//! Pooling of score rows. `in` and `out` must not overlap.
struct PoolArgs {
  PoolMode mode = PoolMode::kAvg;
  int32_t kernel = 5;             //!< odd, >= 1
  int32_t zero_tail = 0;          //!< PromptDistill: 1 (the last token is zeroed before pooling)
  int32_t exclude_tail = 0;       //!< SnapKV: W (window keys are not pooled)
  TensorView<const float, 3> in;  //!< [B, rows, N]
  TensorView<float, 3> out;       //!< [B, rows, N]
  const int32_t* lengths = nullptr;
};

//! Sums of consecutive groups of score rows: out[b, i, j] = sum_{t < group} in[b, i * group + t, j]
//! for j < lengths[b], added in ascending t from +0 (num::add); positions j >= lengths[b] are left
//! untouched. FastKV's per-KV-group rows (group G over per-query-head rows) and its propagation
//! row (group H_kv over those). `in` and `out` must not overlap.
struct SumRowsArgs {
  int64_t group = 1;
  TensorView<const float, 3> in;     //!< [B, rows, N], rows a multiple of group
  TensorView<float, 3> out;          //!< [B, rows / group, N]
  const int32_t* lengths = nullptr;  //!< [B]
};

//! Deterministic top-k with forced positions, batched over ragged rows.
struct TopKArgs {
  TensorView<const float, 3> scores;  //!< [B, rows, N]
  const int32_t* lengths = nullptr;   //!< [B]
  int64_t k = 0;                      //!< candidates to choose per row (if k_per_request is null)
  const int32_t* k_per_request = nullptr;  //!< optional [B]
  int32_t k_offset = 0;  //!< subtracted from k_per_request[b] (budgets that include a window)
  int32_t keep_first = 0;
  int32_t keep_last = 0;
  TensorView<int32_t, 3> indices;  //!< [B, rows, capacity], sorted ascending
  TensorView<int32_t, 2> counts;   //!< [B, rows]
};

//! dst[b, i, :] = src[b, indices[b, 0, i], :] for i < counts[b, 0]: hidden-state rows, position
//! ids (E = 1) and the composition of index maps across stages (int32, E = 1).
template <class T>
struct GatherArgs {
  TensorView<const T, 3> src;  //!< [B, L, E]
  TensorView<const int32_t, 3>
      indices;                          //!< [B, rows, capacity]; row 0 is used, every row validated
  TensorView<const int32_t, 2> counts;  //!< [B, rows]
  TensorView<T, 3> dst;                 //!< [B, capacity', E], capacity' >= counts
};

//! positions_out[b, r, i] for the kept tokens of every row.
struct RemapPositionsArgs {
  PositionMode mode = PositionMode::kOriginal;
  TensorView<const int32_t, 2> positions_in;  //!< [B, L] or empty (identity) for kOriginal
  TensorView<const int32_t, 3> indices;       //!< [B, rows, capacity]
  TensorView<const int32_t, 2> counts;        //!< [B, rows]
  TensorView<int32_t, 3> positions_out;       //!< [B, rows, capacity]
};

//! In-place compaction of one layer's K and V caches: the kept tokens move to the front of each
//! request's sequence, in ascending order. `indices` has 1 row per request (head-uniform: every
//! head keeps the same tokens) or H_kv rows (per-head selections; every row of a request keeps the
//! same count, so the new length is per request in every layout). Per-query-head selections with
//! G > 1 do not fit an H_kv-head cache and are rejected with kUnsupported.
template <class T>
struct CompactKvArgs {
  KvCacheView<T> k;
  KvCacheView<T> v;                      //!< same layout, tables and lengths as k
  const int32_t* seq_lens = nullptr;     //!< [B] current lengths (not read for kPagedIndptr)
  TensorView<const int32_t, 3> indices;  //!< [B, rows, capacity], strictly increasing
  TensorView<const int32_t, 2> counts;   //!< [B, rows]
  int32_t* new_lengths = nullptr;        //!< [B] out
  int32_t* freed_pages = nullptr;        //!< [B] out, optional (paged: whole tail pages freed)
};

// ---- the fused pipeline
// -----------------------------------------------------------------------------

//! A method and its budget. The budget is one number with the reference code's meaning for each
//! method (the CLI's `--budget` and `--n-topks` (one per stage), the Python `budget` and
//! `n_topks`, are all this number; docs/algorithms.md has the vocabulary):
//! PromptDistill: tokens chosen besides the always-kept last token (min(k, L-1) + 1 are kept);
//! GemFilter: tokens kept (min(k, L)); SnapKV/H2O/FastKV: the budget C per row, window included
//! (FastKV's must exceed the window, as its code asserts).
struct MethodConfig {
  Method method = Method::kPromptDistill;
  int64_t budget = 1024;
  int32_t window = 32;  //!< SnapKV/FastKV observation window W; H2O recent window
  PoolMode pool = PoolMode::kAvg;
  int32_t pool_kernel = 5;
  HeadGrouping grouping = HeadGrouping::kPerKvGroup;
};

//! Stage parameters a MethodConfig stands for (docs/algorithms.md §1-§6).
struct MethodPlan {
  PoolMode pool;
  int32_t pool_kernel;
  int32_t zero_tail;
  int32_t exclude_tail;
  int64_t k;  //!< candidates TopK chooses (the budget less the forced window for SnapKV/H2O)
  int32_t keep_last;  //!< forced tail
  PositionMode positions;
};
//! Validates `cfg` and derives the stage parameters.
Status plan_method(const MethodConfig& cfg, MethodPlan* plan) noexcept;
//! Tokens a selection planned as `plan` keeps per row of a prompt of `prompt_length` tokens: the
//! forced ones plus the candidates chosen (PromptDistill min(k, L-1) + 1, GemFilter min(k, L),
//! SnapKV/H2O min(C, L)); 0 for an empty prompt. Every driver that must know the size of a
//! selection before reading it (allocation, host bookkeeping, output shapes) asks this.
int64_t kept_tokens(const MethodPlan& plan, int64_t prompt_length) noexcept;

//! Rows of scores / selections per request: 1 for PromptDistill/GemFilter, H_kv or H for
//! SnapKV/H2O, H_kv for FastKV (its scoring rows are H: Select sums them per group).
int64_t score_rows(Method method, HeadGrouping grouping, int64_t num_q_heads, int64_t num_kv_heads);

//! score -> pool -> top-k -> positions (-> optional hidden-state gather) in one call.
template <class T>
struct SelectArgs {
  MethodConfig config;
  TensorView<const T, 4> q;
  KvCacheView<const T> k;
  const int32_t* lengths = nullptr;             //!< [B]
  int64_t max_length = 0;                       //!< >= every L_b: length of the score rows
  const int32_t* budget_per_request = nullptr;  //!< optional [B], overrides config.budget
  TensorView<const int32_t, 2>
      positions_in;                  //!< optional [B, L] (multi-stage: survivors' positions)
  TensorView<int32_t, 3> indices;    //!< [B, rows, capacity]
  TensorView<int32_t, 2> counts;     //!< [B, rows]
  TensorView<int32_t, 3> positions;  //!< optional [B, rows, capacity]
  //! optional [B, rows, >= N] (N = max_length): the pooled scores that ranked, in the first N
  //! columns; columns past N are never written (both backends)
  TensorView<float, 3> final_scores;
  TensorView<const T, 3> hidden_in;  //!< optional [B, L, hidden] (head-uniform methods)
  TensorView<T, 3> hidden_out;       //!< optional [B, capacity, hidden]
};

// ---- tensor parallelism: heads sharded across ranks
// -----------------------------------------------

//! PromptDistill and GemFilter rank tokens by a sum over *all* query heads, so under tensor
//! parallelism (rank r of R holds query heads [head_offset, head_offset + H_r) and their KV heads)
//! a selection takes three calls per selection layer, the same on every rank:
//!   1. `ScorePartial` writes the rank's un-normalised sum over its own heads, f32 [B, 1, N];
//!   2. the engine all-reduces (sums) that buffer with its own communicator (NCCL, gloo, ...);
//!   3. `FinishSelect` normalises by the global head count, pools and takes the top-k.
//! Step 3 is deterministic, so every rank that receives the same sums (any all-reduce that returns
//! the same bits to every rank, as NCCL's and gloo's do) makes the same selection, with no
//! broadcast.
//!
//! Exactness (docs/algorithms.md §9): the head terms z_h[j] (the dot products, / sqrt_d for
//! PromptDistill) are computed exactly as by `Score`; only the order of the sum over heads differs
//! (rank by rank instead of head by head). With R = 1, or wherever the sums are exact
//! (integer-valued data, for example), the partials added in rank order give the single-device
//! scores, pooled scores and selection bit for bit. Otherwise each pooled score differs from the
//! single-device one by at most delta[j] = 2 * gamma(H + K) * A[j], gamma(m) = m u / (1 - m u), u =
//! 2^-24, K the pool kernel (1 without pooling), A[j] = the pool (average, or max) over the taps of
//! (1/H) sum_h |z_h| (no 1/H for GemFilter), so the two selections differ only in tokens whose
//! single-device score is within 2 max_j delta[j] of the k-th best (near ties).
//!
//! SnapKV and H2O need no all-reduce: their rows are per KV group (or per query head), so each rank
//! runs `Select` on its own heads and gets exactly the unsharded rows of those heads, which it
//! compacts in its own cache.

//! One rank's partial scores (PromptDistill or GemFilter):
//! partial[b, 0, j] = sum over the rank's heads h (ascending, from +0) of z_h[j], where
//! z_h[j] = div(dot(q_h, k_{g(h),j}), sqrt_d) for PromptDistill and dot(q_h, k_{g(h),j}) for
//! GemFilter, g(h) = h / (H_r / H_kv_r). Positions j >= L_b are left untouched.
template <class T>
struct ScorePartialArgs {
  Method method = Method::kPromptDistill;
  TensorView<const T, 4> q;  //!< [B, 1, H_r, D]: the rank's query heads of the last prompt token
  KvCacheView<const T> k;    //!< the rank's H_kv_r KV heads (replicated when R > H_kv)
  const int32_t* lengths = nullptr;  //!< [B]
  //! Global index of q's first head and the query heads of all ranks. Equal shards in rank order
  //! (Megatron): total_heads a multiple of H_r and head_offset = rank * H_r. They are checked, so
  //! that a rank cannot pass its local head count where the global one is meant; the partial itself
  //! does not depend on them.
  int64_t head_offset = 0;
  int64_t total_heads = 0;
  TensorView<float, 3> partial;  //!< [B, 1, N] f32, N >= max L_b
  //! Add this call's sum to what `partial` holds: partial[b, 0, j] = add(partial[b, 0, j], sum),
  //! the sum over the heads still taken from +0. Scores aggregated over several layers (the
  //! selection ranks by the mean over layers and heads) accumulate one call per layer, in layer
  //! order, into one buffer: the same bits as adding separately computed single-layer partials.
  bool accumulate = false;
};

//! The finishing stage on every rank: s[j] = div(summed[b, 0, j], total_heads) for PromptDistill
//! (GemFilter: s = summed), then the method's pooling, top-k and positions exactly as `Select`.
//! Scores aggregated over w layers pass the head terms summed over every layer and head: their
//! count w * H is `total_heads` (PromptDistill's mean over layers and heads; GemFilter's sum).
struct FinishSelectArgs {
  MethodConfig config;                          //!< kPromptDistill or kGemFilter
  TensorView<const float, 3> summed;            //!< [B, 1, N]: the all-reduced partials
  int64_t total_heads = 0;                      //!< head terms summed (H; w * H over w layers)
  const int32_t* lengths = nullptr;             //!< [B], L_b <= N
  const int32_t* budget_per_request = nullptr;  //!< optional [B], overrides config.budget
  TensorView<const int32_t, 2>
      positions_in;                  //!< optional [B, L] (multi-stage: survivors' positions)
  TensorView<int32_t, 3> indices;    //!< [B, 1, capacity]
  TensorView<int32_t, 2> counts;     //!< [B, 1]
  TensorView<int32_t, 3> positions;  //!< optional [B, 1, capacity]
  //! optional [B, 1, >= N]: the pooled scores that ranked, in the first N columns (the rest
  //! untouched)
  TensorView<float, 3> final_scores;
};

// ---- backends
// ---------------------------------------------------------------------------------------

namespace ref {
#include "promptdistill/detail/selector_ops.inc"
}  // namespace ref

namespace cuda {
#include "promptdistill/detail/selector_ops.inc"

//! True when the CUDA runtime sees at least one usable device.
bool device_available() noexcept;
//! Waits for `stream` and returns the status word a CUDA `run()` left in `workspace`
//! (kSuccess, or the first device-side validation error with its message).
Status read_device_status(Workspace workspace, Stream stream) noexcept;
}  // namespace cuda

}  // namespace promptdistill
