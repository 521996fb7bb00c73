// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core. Planning shared by both selector backends (implemented in
//! src/core/selector_plan.cpp): the top-k row geometry and rank order, the workspace plans of the
//! scoring stage and of the fused pipeline, and the stage arguments the fused pipeline runs.
//! The checks of the same operations are in selector_checks.h.

#include <cstdint>

#include "promptdistill/detail/config.h"
#include "promptdistill/detail/numerics.h"
#include "promptdistill/selector.h"

namespace promptdistill {
namespace detail {

// ---- top-k row geometry
// --------------------------------------------------------------------------

//! Forced and candidate ranges of one row of length n: forced [0, first) and [n - last, n),
//! candidates [first, n - last), chosen = min(k, candidates).
struct TopKRow {
  int64_t first;   //!< forced head count
  int64_t last;    //!< forced tail count
  int64_t chosen;  //!< candidates chosen
  PD_HOST_DEVICE int64_t cand_begin() const { return first; }
  PD_HOST_DEVICE int64_t count() const { return first + last + chosen; }
};
PD_HOST_DEVICE inline TopKRow topk_row(int64_t n, int64_t k, int64_t keep_first,
                                       int64_t keep_last) {
  TopKRow r;
  r.last = keep_last < n ? keep_last : n;
  r.first = keep_first < n - r.last ? keep_first : n - r.last;
  const int64_t candidates = n - r.last - r.first;
  r.chosen = k < candidates ? k : candidates;
  return r;
}

//! Radix key of a score: larger key = ranks higher; every NaN maps to 0 (below -inf), -0 to +0.
PD_HOST_DEVICE inline uint32_t rank_key(float x) {
  if (x != x) return 0u;
  if (x == 0.0f) x = 0.0f;
  const uint32_t u = num::bits_of(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

//! Scratch of the scoring stage (SnapKV/H2O row statistics and per-query-head scores).
struct ScoreBuffers {
  float* row_max = nullptr;      //!< [B, H, rows]
  float* row_sum = nullptr;      //!< [B, H, rows]
  float* head_scores = nullptr;  //!< [B, H, N] (per-KV-group grouping only)
};
template <class T>
ScoreBuffers plan_score(const ScoreArgs<T>& a, WorkspacePlanner& planner);

//! Scratch of the fused pipeline.
struct SelectBuffers {
  ScoreBuffers score;
  float* raw_scores = nullptr;  //!< [B, rows, N] (FastKV: [B, H, N], its per-query-head rows)
  float* pooled = nullptr;      //!< [B, rows, N] unless the caller passed final_scores
  float* pooled_heads =
      nullptr;  //!< FastKV: [B, H, N], each head's pooled row before the group sum
};
template <class T>
SelectBuffers plan_select(const SelectArgs<T>& a, WorkspacePlanner& planner);

//! The stage arguments the fused pipeline runs (views over its scratch or the caller's outputs).
template <class T>
struct SelectStages {
  MethodPlan plan;
  ScoreArgs<T> score;
  PoolArgs pool;
  TopKArgs topk;
  RemapPositionsArgs remap;
  GatherArgs<T> gather;
  SumRowsArgs
      group_sum;  //!< FastKV: pooled per-head rows -> per-KV-group rows, between pool and top-k
  bool has_positions;
  bool has_gather;
  bool has_group_sum;
};
template <class T>
SelectStages<T> select_stages(const SelectArgs<T>& a, const SelectBuffers& buffers);

// ---- tensor parallelism
// -----------------------------------------------------------------------------

//! The Score arguments a rank's partial scoring runs as (the same kernels and reduction order,
//! without the final division by the head count).
template <class T>
ScoreArgs<T> partial_as_score(const ScorePartialArgs<T>& a) {
  ScoreArgs<T> s;
  s.method = a.method;
  s.q = a.q;
  s.k = a.k;
  s.lengths = a.lengths;
  s.scores = a.partial;
  return s;
}

//! Scratch of the finishing stage.
struct FinishBuffers {
  float* normalised = nullptr;  //!< [B, 1, N]
  float* pooled = nullptr;      //!< [B, 1, N] unless the caller passed final_scores
};
FinishBuffers plan_finish(const FinishSelectArgs& a, WorkspacePlanner& planner);

//! The stages the finishing step runs: normalise (summed -> normalised), then pool, top-k and
//! positions with the arguments `Select` would use.
struct FinishStages {
  MethodPlan plan;
  TensorView<const float, 3> summed;
  TensorView<float, 3> normalised;
  float divisor;  //!< total_heads for PromptDistill, 1 (no division) for GemFilter
  bool divide;
  const int32_t* lengths;
  PoolArgs pool;
  TopKArgs topk;
  RemapPositionsArgs remap;
  bool has_positions;
};
FinishStages finish_stages(const FinishSelectArgs& a, const FinishBuffers& buffers);

}  // namespace detail
}  // namespace promptdistill
