// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! The fused selector on the device, `cuda::Select<T>` (instantiated in cuda/select_instances.cu):
//! one status reset, one validation kernel for every request, then score -> pool -> top-k ->
//! positions -> hidden-state gather, all on the caller's stream, with every intermediate in the
//! caller's workspace. No allocation, no host synchronisation: the whole run can be captured in
//! a CUDA graph.

#include "promptdistill/cuda/gather_compact.cuh"
#include "promptdistill/cuda/pool_topk.cuh"
#include "promptdistill/cuda/score.cuh"

namespace promptdistill {
namespace cuda {
namespace detail {

template <class T>
struct SelectRequestCheck {
  promptdistill::detail::SelectStages<T> s;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const { promptdistill::detail::select_request_ok(s, b, w); }
};

//! Every stage's launch fits the grid.
template <class T>
Status check_select_grid(const promptdistill::detail::SelectStages<T>& s) {
  const ScoreArgs<T>& score = s.score;
  PD_RETURN_IF_ERROR(check_score_grid(score.method, score.grouping, score.q.extents[0], score.q.extents[1],
                                      score.q.extents[2], score.k.num_heads));
  PD_RETURN_IF_ERROR(check_pool_grid(s.pool));
  if (s.has_positions) PD_RETURN_IF_ERROR(check_remap_grid(s.remap));
  if (s.has_gather) PD_RETURN_IF_ERROR(check_gather_grid(s.gather));
  return Status::ok();
}

}  // namespace detail

template <class T>
Status Select<T>::can_implement(const SelectArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_select(a));
  // Shapes only: the stage views over the workspace are never read here.
  alignas(WorkspacePlanner::kAlignment) static float scratch_stand_in[1];
  promptdistill::detail::SelectBuffers stand_in{};
  stand_in.raw_scores = stand_in.pooled = scratch_stand_in;
  return detail::check_select_grid(promptdistill::detail::select_stages(a, stand_in));
}
template <class T>
std::size_t Select<T>::workspace_size(const SelectArgs<T>& a) noexcept {
  WorkspacePlanner planner;
  promptdistill::detail::take_status(planner);
  promptdistill::detail::plan_select(a, planner);
  return planner.bytes_needed();
}
template <class T>
Status Select<T>::run(const SelectArgs<T>& a, Workspace ws, Stream stream) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_select(a));
  WorkspacePlanner planner(ws);
  auto* status = promptdistill::detail::take_status(planner);
  const auto buffers = promptdistill::detail::plan_select(a, planner);
  PD_RETURN_IF_ERROR(planner.status());
  const auto s = promptdistill::detail::select_stages(a, buffers);
  PD_RETURN_IF_ERROR(detail::check_select_grid(s));
  PD_RETURN_IF_ERROR(detail::reset_status(status, stream));
  PD_RETURN_IF_ERROR(detail::launch_validate_requests(detail::SelectRequestCheck<T>{s}, a.q.extents[0], status, stream));
  PD_RETURN_IF_ERROR(detail::launch_score(s.score, buffers.score, status, stream));
  PD_RETURN_IF_ERROR(detail::launch_pool(s.pool, status, stream));
  PD_RETURN_IF_ERROR(detail::launch_topk(s.topk, status, stream));
  if (s.has_positions) PD_RETURN_IF_ERROR(detail::launch_remap(s.remap, status, stream));
  if (s.has_gather) PD_RETURN_IF_ERROR(detail::launch_gather(s.gather, status, stream));
  return Status::ok();
}

}  // namespace cuda
}  // namespace promptdistill
