// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! CPU reference of the fused selection (Select: score, pool, top-k, remap, gather in one call)
//! and of the tensor-parallel finishing stage (FinishSelect), on the stage operations.

#include "cpu_reference/eigen_views.h"
#include "promptdistill/detail/selector_checks.h"

namespace promptdistill {
namespace ref {

using detail::DeviceStatusWord;

// ---- fused pipeline
// -------------------------------------------------------------------------------

template <class T>
Status Select<T>::can_implement(const SelectArgs<T>& a) noexcept {
  return detail::check_select(a);
}
template <class T>
std::size_t Select<T>::workspace_size(const SelectArgs<T>& a) noexcept {
  WorkspacePlanner planner;
  detail::take_status(planner);
  detail::plan_select(a, planner);
  return planner.bytes_needed();
}
template <class T>
Status Select<T>::run(const SelectArgs<T>& a, Workspace ws, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  WorkspacePlanner planner(ws);
  detail::take_status(planner);
  const detail::SelectBuffers buffers = detail::plan_select(a, planner);
  PD_RETURN_IF_ERROR(planner.status());
  const detail::SelectStages<T> s = detail::select_stages(a, buffers);
  // Validate every request before any stage writes a caller-owned output.
  DeviceStatusWord w{};
  for (int64_t b = 0; b < a.q.extents[0]; ++b) detail::select_request_ok(s, b, &w);
  if (w.code != 0) return detail::status_from_word(w);
  PD_RETURN_IF_ERROR(Score<T>::run(s.score, ws, stream));
  PD_RETURN_IF_ERROR(Pool::run(s.pool, ws, stream));
  if (s.has_group_sum) PD_RETURN_IF_ERROR(SumRows::run(s.group_sum, ws, stream));
  PD_RETURN_IF_ERROR(TopK::run(s.topk, ws, stream));
  if (s.has_positions) PD_RETURN_IF_ERROR(RemapPositions::run(s.remap, ws, stream));
  if (s.has_gather) PD_RETURN_IF_ERROR(Gather<T>::run(s.gather, ws, stream));
  return Status::ok();
}

// ---- tensor parallelism: the finishing stage
// ------------------------------------------------------

Status FinishSelect::can_implement(const FinishSelectArgs& a) noexcept {
  return detail::check_finish_select(a);
}
std::size_t FinishSelect::workspace_size(const FinishSelectArgs& a) noexcept {
  WorkspacePlanner planner;
  detail::take_status(planner);
  detail::plan_finish(a, planner);
  return planner.bytes_needed();
}
Status FinishSelect::run(const FinishSelectArgs& a, Workspace ws, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  WorkspacePlanner planner(ws);
  detail::take_status(planner);
  const detail::FinishBuffers buffers = detail::plan_finish(a, planner);
  PD_RETURN_IF_ERROR(planner.status());
  const detail::FinishStages s = detail::finish_stages(a, buffers);
  DeviceStatusWord w{};
  for (int64_t b = 0; b < a.summed.extents[0]; ++b) detail::finish_request_ok(s, b, &w);
  if (w.code != 0) return detail::status_from_word(w);
  for (int64_t b = 0; b < a.summed.extents[0]; ++b)
    for (int64_t j = 0; j < a.lengths[b]; ++j)
      s.normalised(b, 0, j) = s.divide ? num::div(s.summed(b, 0, j), s.divisor) : s.summed(b, 0, j);
  PD_RETURN_IF_ERROR(Pool::run(s.pool, ws, stream));
  PD_RETURN_IF_ERROR(TopK::run(s.topk, ws, stream));
  if (s.has_positions) PD_RETURN_IF_ERROR(RemapPositions::run(s.remap, ws, stream));
  return Status::ok();
}

template struct Select<float>;
template struct Select<f16>;
template struct Select<bf16>;

}  // namespace ref
}  // namespace promptdistill
