// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The fused selector on the device: one status reset, one validation kernel for every request,
//! then score -> pool -> top-k -> positions -> hidden-state gather, all on the caller's stream,
//! with every intermediate in the caller's workspace. No allocation, no host synchronisation:
//! the whole run can be captured in a CUDA graph.

#include "cuda/launch.cuh"

namespace promptdistill {
namespace cuda {
namespace detail {
namespace {

template <class T>
struct SelectRequestCheck {
  promptdistill::detail::SelectStages<T> s;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const { promptdistill::detail::select_request_ok(s, b, w); }
};

}  // namespace
}  // namespace detail

template <class T>
Status Select<T>::can_implement(const SelectArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_select(a));
  return detail::check_score_grid(a.config.method, a.config.grouping, a.q.extents[0], a.q.extents[1], a.q.extents[2],
                                  a.k.num_heads);
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
  PD_RETURN_IF_ERROR(can_implement(a));
  WorkspacePlanner planner(ws);
  auto* status = promptdistill::detail::take_status(planner);
  const auto buffers = promptdistill::detail::plan_select(a, planner);
  PD_RETURN_IF_ERROR(planner.status());
  const auto s = promptdistill::detail::select_stages(a, buffers);
  PD_RETURN_IF_ERROR(detail::reset_status(status, stream));
  PD_RETURN_IF_ERROR(detail::launch_validate_requests(detail::SelectRequestCheck<T>{s}, a.q.extents[0], status, stream));
  PD_RETURN_IF_ERROR(detail::launch_score(s.score, buffers.score, status, stream));
  PD_RETURN_IF_ERROR(detail::launch_pool(s.pool, status, stream));
  PD_RETURN_IF_ERROR(detail::launch_topk(s.topk, status, stream));
  if (s.has_positions) PD_RETURN_IF_ERROR(detail::launch_remap(s.remap, status, stream));
  if (s.has_gather) PD_RETURN_IF_ERROR(detail::launch_gather(s.gather, status, stream));
  return Status::ok();
}

template struct Select<float>;
template struct Select<f16>;
template struct Select<bf16>;

}  // namespace cuda
}  // namespace promptdistill
