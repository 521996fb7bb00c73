// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Planning shared by both selector backends: the names of the selector's enums and their
//! parsers, what a MethodConfig stands for (`plan_method`), and the workspace plans and stage
//! arguments of the scoring stage and the fused pipeline, so that the CPU reference and the CUDA
//! backend size and carve their scratch identically.

#include <string>

#include "promptdistill/detail/parse_enum.h"
#include "promptdistill/detail/selector_plan.h"

namespace promptdistill {

using detail::parse_enum;

const char* to_string(Method m) noexcept {
  switch (m) {
    case Method::kPromptDistill: return "promptdistill";
    case Method::kGemFilter: return "gemfilter";
    case Method::kSnapKV: return "snapkv";
    case Method::kH2O: return "h2o";
    case Method::kFastKV: return "fastkv";
  }
  return "unknown";
}
const char* to_string(PoolMode m) noexcept {
  switch (m) {
    case PoolMode::kNone: return "none";
    case PoolMode::kAvg: return "avg";
    case PoolMode::kMax: return "max";
  }
  return "unknown";
}
const char* to_string(HeadGrouping g) noexcept {
  switch (g) {
    case HeadGrouping::kPerKvGroup: return "kv-group";
    case HeadGrouping::kPerQueryHead: return "head";
  }
  return "unknown";
}

Status parse(std::string_view text, Method* out) noexcept {
  static constexpr Method kAll[] = {Method::kPromptDistill, Method::kGemFilter, Method::kSnapKV,
                                    Method::kH2O, Method::kFastKV};
  return parse_enum(text, kAll, "method", out);
}
Status parse(std::string_view text, PoolMode* out) noexcept {
  static constexpr PoolMode kAll[] = {PoolMode::kNone, PoolMode::kAvg, PoolMode::kMax};
  return parse_enum(text, kAll, "pool", out);
}
Status parse(std::string_view text, HeadGrouping* out) noexcept {
  static constexpr HeadGrouping kAll[] = {HeadGrouping::kPerKvGroup, HeadGrouping::kPerQueryHead};
  return parse_enum(text, kAll, "per (head grouping)", out);
}

int64_t score_rows(Method method, HeadGrouping grouping, int64_t num_q_heads,
                   int64_t num_kv_heads) {
  if (method == Method::kPromptDistill || method == Method::kGemFilter) return 1;
  if (method == Method::kFastKV) return num_kv_heads;
  return grouping == HeadGrouping::kPerKvGroup ? num_kv_heads : num_q_heads;
}

Status plan_method(const MethodConfig& c, MethodPlan* plan) noexcept {
  if (c.budget < 0)
    return Status(StatusCode::kInvalidArgument, "budget must be >= 0, got %lld",
                  (long long)c.budget);
  if (c.budget > INT32_MAX)
    return Status(StatusCode::kInvalidArgument, "budget %lld does not fit int32",
                  (long long)c.budget);
  if (c.pool_kernel < 1 || c.pool_kernel % 2 == 0)
    return Status(StatusCode::kInvalidArgument, "pool kernel must be odd and >= 1, got %d",
                  c.pool_kernel);
  MethodPlan p{c.pool, c.pool_kernel, 0, 0, c.budget, 0, PositionMode::kOriginal};
  switch (c.method) {
    case Method::kPromptDistill:
      p.zero_tail = 1;
      p.keep_last = 1;
      break;
    case Method::kGemFilter: p.positions = PositionMode::kRenumber; break;
    case Method::kSnapKV:
    case Method::kH2O:
      if (c.window < 1)
        return Status(StatusCode::kInvalidArgument, "window must be >= 1, got %d", c.window);
      if (c.budget < c.window)
        return Status(StatusCode::kInvalidArgument,
                      "%s budget %lld must be >= the window %d (the window is part of the budget)",
                      to_string(c.method), (long long)c.budget, c.window);
      p.keep_last = c.window;
      p.k = c.budget - c.window;
      if (c.method == Method::kSnapKV) {
        p.exclude_tail = c.window;
      } else {
        p.pool = PoolMode::kNone;  // H2O ranks accumulated attention as is
      }
      break;
    case Method::kFastKV:
      // FastKV's code asserts max_capacity_prompt - window_size > 0 and sums its pooled
      // per-head rows per KV group: there is no per-query-head variant.
      if (c.window < 1)
        return Status(StatusCode::kInvalidArgument, "window must be >= 1, got %d", c.window);
      if (c.budget <= c.window)
        return Status(
            StatusCode::kInvalidArgument,
            "fastkv budget %lld must exceed the window %d (the window is part of the budget)",
            (long long)c.budget, c.window);
      if (c.grouping != HeadGrouping::kPerKvGroup)
        return Status(
            StatusCode::kInvalidArgument,
            "fastkv selects per KV group (each head's pooled scores summed over the group); "
            "per query head does not apply");
      if (c.pool == PoolMode::kNone)
        return Status(StatusCode::kInvalidArgument,
                      "fastkv pools (avg or max); pool none does not apply");
      p.keep_last = c.window;
      p.k = c.budget - c.window;
      p.exclude_tail = c.window;
      break;
    default: return Status(StatusCode::kInvalidArgument, "unknown method %d", int(c.method));
  }
  *plan = p;
  return Status::ok();
}

int64_t kept_tokens(const MethodPlan& plan, int64_t prompt_length) noexcept {
  return detail::topk_row(prompt_length > 0 ? prompt_length : 0, plan.k, 0, plan.keep_last).count();
}

namespace detail {

template <class T>
ScoreBuffers plan_score(const ScoreArgs<T>& a, WorkspacePlanner& planner) {
  ScoreBuffers b;
  if (a.method == Method::kSnapKV || a.method == Method::kH2O) {
    const auto B = std::size_t(a.q.extents[0]), rows = std::size_t(a.q.extents[1]),
               H = std::size_t(a.q.extents[2]), N = std::size_t(a.scores.extents[2]);
    b.row_max = planner.take<float>(B * H * rows);
    b.row_sum = planner.take<float>(B * H * rows);
    if (a.grouping == HeadGrouping::kPerKvGroup) b.head_scores = planner.take<float>(B * H * N);
  }
  return b;
}

template <class T>
SelectBuffers plan_select(const SelectArgs<T>& a, WorkspacePlanner& planner) {
  SelectBuffers b;
  const int64_t B = a.q.extents[0];
  const int64_t R = score_rows(a.config.method, a.config.grouping, a.q.extents[2], a.k.num_heads);
  const auto n = std::size_t(B * R * a.max_length);
  if (a.config.method == Method::kFastKV) {
    const auto heads = std::size_t(B * a.q.extents[2] * a.max_length);
    b.raw_scores = planner.take<float>(heads);
    b.pooled_heads = planner.take<float>(heads);
  } else {
    b.raw_scores = planner.take<float>(n);
  }
  if (a.final_scores.data == nullptr) b.pooled = planner.take<float>(n);
  SelectStages<T> s = select_stages(a, b);
  b.score = plan_score(s.score, planner);
  return b;
}

namespace {

//! Pool -> top-k -> positions over score rows `in`, as `plan` says; the pooled rows go to
//! `ranked`. Select and FinishSelect share it, so the finishing stage ranks exactly as Select.
struct RankingStages {
  PoolArgs pool;
  TopKArgs topk;
  RemapPositionsArgs remap;
  bool has_positions;
};
RankingStages ranking_stages(const MethodPlan& plan, int64_t budget, TensorView<const float, 3> in,
                             TensorView<float, 3> ranked, const int32_t* lengths,
                             const int32_t* budget_per_request,
                             TensorView<const int32_t, 2> positions_in,
                             TensorView<int32_t, 3> indices, TensorView<int32_t, 2> counts,
                             TensorView<int32_t, 3> positions) {
  RankingStages r{};
  r.pool.mode = plan.pool;
  r.pool.kernel = plan.pool_kernel;
  r.pool.zero_tail = plan.zero_tail;
  r.pool.exclude_tail = plan.exclude_tail;
  r.pool.in = in;
  r.pool.out = ranked;
  r.pool.lengths = lengths;

  r.topk.scores = ranked;
  r.topk.lengths = lengths;
  r.topk.k = plan.k;
  r.topk.k_per_request = budget_per_request;
  r.topk.k_offset = int32_t(budget - plan.k);
  r.topk.keep_last = plan.keep_last;
  r.topk.indices = indices;
  r.topk.counts = counts;

  r.has_positions = positions.data != nullptr;
  r.remap.mode = plan.positions;
  r.remap.positions_in = positions_in;
  r.remap.indices = indices;
  r.remap.counts = counts;
  r.remap.positions_out = positions;
  return r;
}

//! The plan of an invalid configuration: harmless stages that can_implement rejects anyway.
MethodPlan plan_or_inert(const MethodConfig& config) {
  MethodPlan plan;
  if (!plan_method(config, &plan).is_ok())
    plan = MethodPlan{PoolMode::kNone, 1, 0, 0, 0, 0, PositionMode::kOriginal};
  return plan;
}

//! Where the pooled scores that rank go: the caller's final_scores or the workspace's, [B, R, N].
//! final_scores may be wider than N (check_select / check_finish_select accept extents[2] >= N):
//! the stages see its first N columns, so both backends pool and rank the same [B, R, N] and
//! never write the columns past N.
TensorView<float, 3> ranked_view(const TensorView<float, 3>& final_scores, float* pooled, int64_t B,
                                 int64_t R, int64_t N) {
  if (final_scores.data == nullptr) return make_view(pooled, B, R, N);
  return make_strided_view<float, 3>(
      final_scores.data, {B, R, N},
      {final_scores.strides[0], final_scores.strides[1], final_scores.strides[2]});
}

}  // namespace

template <class T>
SelectStages<T> select_stages(const SelectArgs<T>& a, const SelectBuffers& buf) {
  SelectStages<T> s{};
  s.plan = plan_or_inert(a.config);
  const int64_t B = a.q.extents[0];
  const int64_t R = score_rows(a.config.method, a.config.grouping, a.q.extents[2], a.k.num_heads);
  const int64_t N = a.max_length;

  // FastKV scores as SnapKV per query head (H rows), pools each head and sums the pooled rows
  // per KV group; every other method ranks its score rows after pooling them.
  const bool fastkv = a.config.method == Method::kFastKV;
  const int64_t H = a.q.extents[2];
  s.score.method = fastkv ? Method::kSnapKV : a.config.method;
  s.score.grouping = fastkv ? HeadGrouping::kPerQueryHead : a.config.grouping;
  s.score.q = a.q;
  s.score.k = a.k;
  s.score.lengths = a.lengths;
  s.score.scores = make_view(buf.raw_scores, B, fastkv ? H : R, N);

  const TensorView<float, 3> ranked = ranked_view(a.final_scores, buf.pooled, B, R, N);
  const RankingStages r =
      ranking_stages(s.plan, a.config.budget, s.score.scores.as_const(), ranked, a.lengths,
                     a.budget_per_request, a.positions_in, a.indices, a.counts, a.positions);
  s.pool = r.pool;
  s.has_group_sum = fastkv;
  if (fastkv) {
    s.pool.out = make_view(buf.pooled_heads, B, H, N);
    s.group_sum.group = R > 0 && H % R == 0 ? H / R : 1;
    s.group_sum.in = s.pool.out.as_const();
    s.group_sum.out = ranked;
    s.group_sum.lengths = a.lengths;
  }
  s.topk = r.topk;
  s.remap = r.remap;
  s.has_positions = r.has_positions;

  s.has_gather = a.hidden_in.data != nullptr && a.hidden_out.data != nullptr;
  s.gather.src = a.hidden_in;
  s.gather.indices = a.indices;
  s.gather.counts = a.counts;
  s.gather.dst = a.hidden_out;
  return s;
}

FinishBuffers plan_finish(const FinishSelectArgs& a, WorkspacePlanner& planner) {
  FinishBuffers b;
  const auto n = std::size_t(a.summed.extents[0] * a.summed.extents[1] * a.summed.extents[2]);
  b.normalised = planner.take<float>(n);
  if (a.final_scores.data == nullptr) b.pooled = planner.take<float>(n);
  return b;
}

FinishStages finish_stages(const FinishSelectArgs& a, const FinishBuffers& buf) {
  FinishStages s{};
  s.plan = plan_or_inert(a.config);
  const int64_t B = a.summed.extents[0], R = a.summed.extents[1], N = a.summed.extents[2];
  s.summed = a.summed;
  s.normalised = make_view(buf.normalised, B, R, N);
  s.divide = a.config.method == Method::kPromptDistill;
  s.divisor = float(a.total_heads);
  s.lengths = a.lengths;
  const TensorView<float, 3> ranked = ranked_view(a.final_scores, buf.pooled, B, R, N);
  const RankingStages r =
      ranking_stages(s.plan, a.config.budget, s.normalised.as_const(), ranked, a.lengths,
                     a.budget_per_request, a.positions_in, a.indices, a.counts, a.positions);
  s.pool = r.pool;
  s.topk = r.topk;
  s.remap = r.remap;
  s.has_positions = r.has_positions;
  return s;
}

#define PD_INSTANTIATE(T)                                                         \
  template ScoreBuffers plan_score<T>(const ScoreArgs<T>&, WorkspacePlanner&);    \
  template SelectBuffers plan_select<T>(const SelectArgs<T>&, WorkspacePlanner&); \
  template SelectStages<T> select_stages<T>(const SelectArgs<T>&, const SelectBuffers&);
PD_INSTANTIATE(float)
PD_INSTANTIATE(f16)
PD_INSTANTIATE(bf16)
#undef PD_INSTANTIATE

}  // namespace detail
}  // namespace promptdistill
