// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Host-side checks (`can_implement`) shared by both selector backends, so that the CPU reference
//! and the CUDA backend accept and reject exactly the same arguments, and the messages of the
//! per-request data checks.

#include <cstdio>

#include "promptdistill/detail/selector_checks.h"
#include "promptdistill/detail/view_checks.h"

namespace promptdistill {

namespace detail {

namespace {

template <class T, int R>
Status check_any_view(const char* name, const TensorView<T, R>& v) {
  return check_view(name, v);
}

}  // namespace

template <class T>
Status check_score(const ScoreArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(check_any_view("q", a.q));
  PD_RETURN_IF_ERROR(check_any_view("scores", a.scores));
  PD_RETURN_IF_ERROR(check_kv("k", a.k));
  const int64_t B = a.q.extents[0], rows = a.q.extents[1], H = a.q.extents[2], D = a.q.extents[3];
  PD_REQUIRE(a.method != Method::kFastKV, StatusCode::kInvalidArgument,
             "fastkv is not a scoring of its own: Select scores it as snapkv per query head, pools "
             "each head "
             "and sums the pooled rows per KV group (SumRows)");
  PD_REQUIRE(a.method >= Method::kPromptDistill && a.method <= Method::kH2O,
             StatusCode::kInvalidArgument, "unknown method %d", int(a.method));
  PD_REQUIRE(a.k.batch == B && a.scores.extents[0] == B, StatusCode::kShapeMismatch,
             "batch differs: q %lld, k %lld, scores %lld", (long long)B, (long long)a.k.batch,
             (long long)a.scores.extents[0]);
  PD_REQUIRE(H >= 1 && H % a.k.num_heads == 0, StatusCode::kShapeMismatch,
             "query heads %lld are not a multiple of KV heads %lld", (long long)H,
             (long long)a.k.num_heads);
  PD_REQUIRE(D == a.k.head_dim, StatusCode::kShapeMismatch, "head_dim differs: q %lld, k %lld",
             (long long)D, (long long)a.k.head_dim);
  PD_REQUIRE(H * D <= kMaxScoreQueryElements, StatusCode::kUnsupported,
             "q heads x head_dim = %lld exceeds %lld", (long long)(H * D),
             (long long)kMaxScoreQueryElements);
  PD_REQUIRE(a.q.strides[3] == 1, StatusCode::kUnsupported,
             "q: head_dim must be contiguous (stride 1)");
  PD_REQUIRE(a.q.is_aligned(16), StatusCode::kMisaligned,
             "q: rows must start on 16-byte boundaries");
  if (a.method == Method::kPromptDistill || a.method == Method::kGemFilter)
    PD_REQUIRE(rows == 1, StatusCode::kShapeMismatch,
               "%s scores one query row (the last token), q has %lld", to_string(a.method),
               (long long)rows);
  PD_REQUIRE(rows >= 1, StatusCode::kShapeMismatch, "q has no query rows");
  const int64_t want = score_rows(a.method, a.grouping, H, a.k.num_heads);
  PD_REQUIRE(a.scores.extents[1] == want, StatusCode::kShapeMismatch,
             "scores has %lld rows per request, %s needs %lld", (long long)a.scores.extents[1],
             to_string(a.method), (long long)want);
  PD_REQUIRE(a.lengths != nullptr || B == 0, StatusCode::kInvalidArgument, "lengths is null");
  PD_REQUIRE(a.scores.extents[2] <= INT32_MAX, StatusCode::kUnsupported,
             "score rows longer than 2^31-1");
  return Status::ok();
}

Status check_pool(const PoolArgs& a) noexcept {
  PD_RETURN_IF_ERROR(check_any_view("pool in", a.in));
  PD_RETURN_IF_ERROR(check_any_view("pool out", a.out));
  PD_REQUIRE(a.mode >= PoolMode::kNone && a.mode <= PoolMode::kMax, StatusCode::kInvalidArgument,
             "unknown pool mode");
  PD_REQUIRE(a.kernel >= 1 && a.kernel % 2 == 1, StatusCode::kInvalidArgument,
             "pool kernel must be odd and >= 1, got %d", a.kernel);
  PD_REQUIRE(a.zero_tail >= 0 && a.exclude_tail >= 0, StatusCode::kInvalidArgument,
             "zero_tail and exclude_tail must be >= 0");
  for (int i = 0; i < 3; ++i)
    PD_REQUIRE(a.in.extents[i] == a.out.extents[i], StatusCode::kShapeMismatch,
               "pool in and out shapes differ");
  PD_REQUIRE(!overlaps(a.in.data, span_bytes(a.in), a.out.data, span_bytes(a.out)),
             StatusCode::kInvalidArgument, "pool in and out overlap");
  PD_REQUIRE(a.lengths != nullptr || a.in.extents[0] == 0, StatusCode::kInvalidArgument,
             "lengths is null");
  return Status::ok();
}

Status check_sum_rows(const SumRowsArgs& a) noexcept {
  PD_RETURN_IF_ERROR(check_any_view("sum_rows in", a.in));
  PD_RETURN_IF_ERROR(check_any_view("sum_rows out", a.out));
  PD_REQUIRE(a.group >= 1, StatusCode::kInvalidArgument, "sum_rows: group must be >= 1, got %lld",
             (long long)a.group);
  const int64_t B = a.in.extents[0], R = a.in.extents[1];
  PD_REQUIRE(R % a.group == 0, StatusCode::kShapeMismatch,
             "sum_rows: %lld rows are not a multiple of the group %lld", (long long)R,
             (long long)a.group);
  PD_REQUIRE(a.out.extents[0] == B && a.out.extents[1] == R / a.group &&
                 a.out.extents[2] == a.in.extents[2],
             StatusCode::kShapeMismatch,
             "sum_rows: out must be [%lld, %lld, %lld], got [%lld, %lld, %lld]", (long long)B,
             (long long)(R / a.group), (long long)a.in.extents[2], (long long)a.out.extents[0],
             (long long)a.out.extents[1], (long long)a.out.extents[2]);
  PD_REQUIRE(!overlaps(a.in.data, span_bytes(a.in), a.out.data, span_bytes(a.out)),
             StatusCode::kInvalidArgument, "sum_rows in and out overlap");
  PD_REQUIRE(a.lengths != nullptr || B == 0, StatusCode::kInvalidArgument, "lengths is null");
  return Status::ok();
}

Status check_topk(const TopKArgs& a) noexcept {
  PD_RETURN_IF_ERROR(check_any_view("scores", a.scores));
  PD_RETURN_IF_ERROR(check_any_view("indices", a.indices));
  PD_RETURN_IF_ERROR(check_any_view("counts", a.counts));
  PD_REQUIRE(a.k >= 0, StatusCode::kInvalidArgument, "k must be >= 0, got %lld", (long long)a.k);
  PD_REQUIRE(a.keep_first >= 0 && a.keep_last >= 0 && a.k_offset >= 0, StatusCode::kInvalidArgument,
             "keep_first, keep_last and k_offset must be >= 0");
  const int64_t B = a.scores.extents[0], R = a.scores.extents[1];
  PD_REQUIRE(a.indices.extents[0] == B && a.indices.extents[1] == R && a.counts.extents[0] == B &&
                 a.counts.extents[1] == R,
             StatusCode::kShapeMismatch,
             "indices [%lld, %lld, _] and counts [%lld, %lld] must match scores [%lld, %lld, _]",
             (long long)a.indices.extents[0], (long long)a.indices.extents[1],
             (long long)a.counts.extents[0], (long long)a.counts.extents[1], (long long)B,
             (long long)R);
  PD_REQUIRE(a.scores.extents[2] <= INT32_MAX, StatusCode::kUnsupported, "rows longer than 2^31-1");
  PD_REQUIRE(a.lengths != nullptr || B == 0, StatusCode::kInvalidArgument, "lengths is null");
  return Status::ok();
}

template <class T>
Status check_gather(const GatherArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(check_any_view("gather src", a.src));
  PD_RETURN_IF_ERROR(check_any_view("gather dst", a.dst));
  PD_RETURN_IF_ERROR(check_any_view("indices", a.indices));
  PD_RETURN_IF_ERROR(check_any_view("counts", a.counts));
  const int64_t B = a.src.extents[0];
  PD_REQUIRE(a.dst.extents[0] == B && a.indices.extents[0] == B && a.counts.extents[0] == B,
             StatusCode::kShapeMismatch,
             "gather: batch differs between src, dst, indices and counts");
  PD_REQUIRE(a.dst.extents[2] == a.src.extents[2], StatusCode::kShapeMismatch,
             "gather: row width differs (src %lld, dst %lld)", (long long)a.src.extents[2],
             (long long)a.dst.extents[2]);
  PD_REQUIRE(a.indices.extents[1] >= 1 && a.counts.extents[1] == a.indices.extents[1],
             StatusCode::kShapeMismatch,
             "gather: indices and counts need the same (>= 1) rows per request");
  PD_REQUIRE(!overlaps(a.src.data, span_bytes(a.src), a.dst.data, span_bytes(a.dst)),
             StatusCode::kInvalidArgument, "gather src and dst overlap");
  return Status::ok();
}

Status check_remap(const RemapPositionsArgs& a) noexcept {
  PD_RETURN_IF_ERROR(check_any_view("positions_in", a.positions_in));
  PD_RETURN_IF_ERROR(check_any_view("indices", a.indices));
  PD_RETURN_IF_ERROR(check_any_view("counts", a.counts));
  PD_RETURN_IF_ERROR(check_any_view("positions_out", a.positions_out));
  const int64_t B = a.indices.extents[0], R = a.indices.extents[1];
  PD_REQUIRE(a.counts.extents[0] == B && a.counts.extents[1] == R &&
                 a.positions_out.extents[0] == B && a.positions_out.extents[1] == R,
             StatusCode::kShapeMismatch,
             "positions_out and counts must match indices [B, rows, _]");
  PD_REQUIRE(a.positions_in.data == nullptr || a.positions_in.extents[0] == B,
             StatusCode::kShapeMismatch, "positions_in batch differs");
  return Status::ok();
}

//! A cache written in place must give every element its own address: a stride of 0 along a
//! dimension of more than one element (a broadcast view) makes tokens, heads or requests share
//! memory, and a compaction would move the same element twice.
template <class T>
Status check_writable_kv(const char* name, const KvCacheView<T>& v) {
  const int64_t outer = v.paged() ? v.num_blocks : v.batch;
  PD_REQUIRE((outer <= 1 || v.stride_seq != 0) && (v.capacity <= 1 || v.stride_token != 0) &&
                 (v.num_heads <= 1 || v.stride_head != 0),
             StatusCode::kInvalidArgument,
             "%s: a stride of 0 along a dimension of more than one element (a broadcast view) "
             "makes elements "
             "share memory; it cannot be written in place",
             name);
  return Status::ok();
}

template <class T>
Status check_compact(const CompactKvArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(check_kv("k cache", a.k));
  PD_RETURN_IF_ERROR(check_kv("v cache", a.v));
  PD_RETURN_IF_ERROR(check_any_view("indices", a.indices));
  PD_RETURN_IF_ERROR(check_any_view("counts", a.counts));
  const auto& k = a.k;
  const auto& v = a.v;
  PD_REQUIRE(k.layout == v.layout && k.batch == v.batch && k.num_heads == v.num_heads &&
                 k.head_dim == v.head_dim && k.capacity == v.capacity &&
                 k.num_blocks == v.num_blocks && k.block_table == v.block_table &&
                 k.max_blocks_per_request == v.max_blocks_per_request && k.indptr == v.indptr &&
                 k.indices == v.indices && k.last_page_len == v.last_page_len,
             StatusCode::kShapeMismatch, "k and v caches must share layout, shape and page tables");
  const int64_t B = k.batch, R = a.indices.extents[1];
  PD_REQUIRE(a.indices.extents[0] == B && a.counts.extents[0] == B && a.counts.extents[1] == R,
             StatusCode::kShapeMismatch, "indices/counts batch differs from the cache");
  if (R != 1 && R != k.num_heads)
    return Status(
        StatusCode::kUnsupported,
        "selection has %lld rows per request; a cache with %lld KV heads compacts head-uniform "
        "(1 row) or per-KV-head (%lld rows) selections. Per-query-head selections need a "
        "GQA-expanded cache: use HeadGrouping::kPerKvGroup",
        (long long)R, (long long)k.num_heads, (long long)k.num_heads);
  PD_REQUIRE(k.layout == KvLayout::kPagedIndptr || a.seq_lens != nullptr || B == 0,
             StatusCode::kInvalidArgument,
             "seq_lens is required for contiguous and block-table caches");
  PD_REQUIRE(a.new_lengths != nullptr || B == 0, StatusCode::kInvalidArgument,
             "new_lengths is null");
  PD_RETURN_IF_ERROR(check_writable_kv("k cache", a.k));
  PD_RETURN_IF_ERROR(check_writable_kv("v cache", a.v));
  return check_kv_distinct("compaction", a.k, a.v);
}

template <class T>
Status check_select(const SelectArgs<T>& a) noexcept {
  MethodPlan plan;
  PD_RETURN_IF_ERROR(plan_method(a.config, &plan));
  PD_REQUIRE(a.max_length >= 1 && a.max_length <= INT32_MAX, StatusCode::kInvalidArgument,
             "max_length must be in [1, 2^31-1], got %lld", (long long)a.max_length);
  // The scratch views are only shape-checked here; this stand-in address is never dereferenced.
  alignas(WorkspacePlanner::kAlignment) static float scratch_stand_in[1];
  SelectBuffers stand_in{};
  stand_in.raw_scores = stand_in.pooled = stand_in.pooled_heads = scratch_stand_in;
  const SelectStages<T> s = select_stages(a, stand_in);
  PD_RETURN_IF_ERROR(check_score(s.score));
  PD_RETURN_IF_ERROR(check_topk(s.topk));
  if (a.final_scores.data != nullptr) {
    const int64_t B = a.q.extents[0], R = s.topk.scores.extents[1];
    PD_REQUIRE(a.final_scores.extents[0] == B && a.final_scores.extents[1] == R &&
                   a.final_scores.extents[2] >= a.max_length,
               StatusCode::kShapeMismatch, "final_scores must be [B, %lld, >= max_length]",
               (long long)R);
  }
  if (s.has_positions) PD_RETURN_IF_ERROR(check_remap(s.remap));
  if (a.hidden_in.data != nullptr || a.hidden_out.data != nullptr) {
    PD_REQUIRE(a.config.method == Method::kPromptDistill || a.config.method == Method::kGemFilter,
               StatusCode::kUnsupported,
               "hidden-state gather needs a head-uniform selection (PromptDistill or GemFilter)");
    PD_RETURN_IF_ERROR(check_gather(s.gather));
  }
  return Status::ok();
}

namespace {

//! PromptDistill and GemFilter are the methods whose scores sum over every head.
Status require_head_sum_method(const char* op, Method method) {
  if (method == Method::kPromptDistill || method == Method::kGemFilter) return Status::ok();
  if (method == Method::kSnapKV || method == Method::kH2O || method == Method::kFastKV)
    return Status(
        StatusCode::kUnsupported,
        "%s: %s selects per KV group (or per query head), which needs no all-reduce under tensor "
        "parallelism: run Select on the rank's own heads",
        op, to_string(method));
  return Status(StatusCode::kInvalidArgument, "%s: unknown method %d", op, int(method));
}

}  // namespace

template <class T>
Status check_score_partial(const ScorePartialArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(require_head_sum_method("score_partial", a.method));
  PD_RETURN_IF_ERROR(check_score(partial_as_score(a)));
  const long long H_r = a.q.extents[2], offset = a.head_offset, total = a.total_heads;
  PD_REQUIRE(total >= H_r, StatusCode::kInvalidArgument,
             "total_heads %lld is below the rank's %lld query heads (pass the model's query heads, "
             "not the rank's)",
             total, H_r);
  PD_REQUIRE(
      total % H_r == 0, StatusCode::kInvalidArgument,
      "total_heads %lld is not a multiple of the rank's %lld query heads (ranks hold equal shards)",
      total, H_r);
  PD_REQUIRE(offset >= 0 && offset % H_r == 0 && offset + H_r <= total,
             StatusCode::kInvalidArgument,
             "head_offset %lld must be rank * %lld with the rank's heads inside [0, %lld)", offset,
             H_r, total);
  return Status::ok();
}

Status check_finish_select(const FinishSelectArgs& a) noexcept {
  PD_RETURN_IF_ERROR(require_head_sum_method("finish_select", a.config.method));
  MethodPlan plan;
  PD_RETURN_IF_ERROR(plan_method(a.config, &plan));
  PD_RETURN_IF_ERROR(check_any_view("scores", a.summed));
  const int64_t B = a.summed.extents[0], N = a.summed.extents[2];
  PD_REQUIRE(a.summed.extents[1] == 1, StatusCode::kShapeMismatch,
             "the summed partial scores must be [B, 1, N] (one row per request), got %lld rows",
             (long long)a.summed.extents[1]);
  PD_REQUIRE(N >= 1 && N <= INT32_MAX, StatusCode::kInvalidArgument,
             "score rows must hold 1 to 2^31-1 tokens, got %lld", (long long)N);
  PD_REQUIRE(a.total_heads >= 1, StatusCode::kInvalidArgument, "total_heads must be >= 1, got %lld",
             (long long)a.total_heads);
  // The divisor is a float: an exact integer below 2^24, as the single-device Score divides.
  PD_REQUIRE(a.total_heads <= (int64_t(1) << 24), StatusCode::kInvalidArgument,
             "total_heads %lld exceeds 2^24", (long long)a.total_heads);
  if (a.final_scores.data != nullptr) {
    PD_RETURN_IF_ERROR(check_any_view("final_scores", a.final_scores));
    PD_REQUIRE(a.final_scores.extents[0] == B && a.final_scores.extents[1] == 1 &&
                   a.final_scores.extents[2] >= N,
               StatusCode::kShapeMismatch, "final_scores must be [B, 1, >= %lld]", (long long)N);
  }
  alignas(WorkspacePlanner::kAlignment) static float scratch_stand_in[1];
  FinishBuffers stand_in{scratch_stand_in, scratch_stand_in};
  const FinishStages s = finish_stages(a, stand_in);
  PD_RETURN_IF_ERROR(check_topk(s.topk));
  if (s.has_positions) PD_RETURN_IF_ERROR(check_remap(s.remap));
  return Status::ok();
}

#define PD_INSTANTIATE(T)                                             \
  template Status check_score<T>(const ScoreArgs<T>&) noexcept;       \
  template Status check_gather<T>(const GatherArgs<T>&) noexcept;     \
  template Status check_compact<T>(const CompactKvArgs<T>&) noexcept; \
  template Status check_select<T>(const SelectArgs<T>&) noexcept;     \
  template Status check_score_partial<T>(const ScorePartialArgs<T>&) noexcept;
PD_INSTANTIATE(float)
PD_INSTANTIATE(f16)
PD_INSTANTIATE(bf16)
template Status check_gather<int32_t>(const GatherArgs<int32_t>&) noexcept;

}  // namespace detail
}  // namespace promptdistill
