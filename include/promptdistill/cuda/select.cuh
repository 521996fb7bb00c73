// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! The fused selector on the device, `cuda::Select<T>` (instantiated in cuda/select_instances.cu):
//! one status reset, one validation kernel for every request, then score -> pool -> top-k ->
//! positions -> hidden-state gather (FastKV: a group sum between pool and top-k), all on the
//! caller's stream, with every intermediate in the caller's workspace. No allocation, no host
//! synchronisation: the whole run can be captured in a CUDA graph. Also the tensor-parallel
//! finishing stage (`run_finish_select`, the body of `cuda::FinishSelect`, whose members are in
//! cuda/select_instances.cu): normalise the all-reduced partial scores, then the same pool, top-k
//! and positions launches as Select.

#include "promptdistill/cuda/gather_compact.cuh"
#include "promptdistill/cuda/pool.cuh"
#include "promptdistill/cuda/topk.cuh"
#include "promptdistill/cuda/score.cuh"

namespace promptdistill {
namespace cuda {
namespace detail {

template <class T>
struct SelectRequestCheck {
  promptdistill::detail::SelectStages<T> s;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    promptdistill::detail::select_request_ok(s, b, w);
  }
};

//! Every stage's launch fits the grid.
template <class T>
Status check_select_grid(const promptdistill::detail::SelectStages<T>& s) {
  const ScoreArgs<T>& score = s.score;
  PD_RETURN_IF_ERROR(check_score_grid(score.method, score.grouping, score.q.extents[0],
                                      score.q.extents[1], score.q.extents[2], score.k.num_heads));
  PD_RETURN_IF_ERROR(check_pool_grid(s.pool));
  if (s.has_group_sum) PD_RETURN_IF_ERROR(check_sum_rows_grid(s.group_sum));
  if (s.has_positions) PD_RETURN_IF_ERROR(check_remap_grid(s.remap));
  if (s.has_gather) PD_RETURN_IF_ERROR(check_gather_grid(s.gather));
  return Status::ok();
}

//! PromptDistill's mean over the global heads (GemFilter: a copy) of the summed partial scores.
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    normalise_summed_kernel(promptdistill::detail::FinishStages s, const DeviceStatusWord* status) {
  if (status->code != 0) return;
  const int64_t b = blockIdx.y, L = s.lengths[b];
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < L;
       j += int64_t(gridDim.x) * blockDim.x)
    s.normalised(b, 0, j) = s.divide ? num::div(s.summed(b, 0, j), s.divisor) : s.summed(b, 0, j);
}

struct FinishRequestCheck {
  promptdistill::detail::FinishStages s;
  __device__ void operator()(int64_t b, DeviceStatusWord* w) const {
    promptdistill::detail::finish_request_ok(s, b, w);
  }
};

//! The finishing stage's launches fit the grid (the batch on gridDim.y, the pooling rows).
inline Status check_finish_grid(const promptdistill::detail::FinishStages& s) {
  if (s.summed.extents[0] > kMaxGridYZ)
    return Status(StatusCode::kUnsupported, "finish_select: batch %lld exceeds the grid limit %lld",
                  (long long)s.summed.extents[0], (long long)kMaxGridYZ);
  PD_RETURN_IF_ERROR(check_pool_grid(s.pool));
  if (s.has_positions) PD_RETURN_IF_ERROR(check_remap_grid(s.remap));
  return Status::ok();
}

inline Status can_implement_finish_select(const FinishSelectArgs& a) {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_finish_select(a));
  alignas(WorkspacePlanner::kAlignment) static float scratch_stand_in[1];
  const promptdistill::detail::FinishBuffers stand_in{scratch_stand_in, scratch_stand_in};
  return check_finish_grid(promptdistill::detail::finish_stages(a, stand_in));
}

inline std::size_t finish_select_workspace_size(const FinishSelectArgs& a) {
  WorkspacePlanner planner;
  promptdistill::detail::take_status(planner);
  promptdistill::detail::plan_finish(a, planner);
  return planner.bytes_needed();
}

//! Status reset, one validation kernel, normalise -> pool -> top-k -> positions on `stream`.
inline Status run_finish_select(const FinishSelectArgs& a, Workspace ws, cudaStream_t stream) {
  PD_RETURN_IF_ERROR(can_implement_finish_select(a));
  WorkspacePlanner planner(ws);
  auto* status = promptdistill::detail::take_status(planner);
  const auto buffers = promptdistill::detail::plan_finish(a, planner);
  PD_RETURN_IF_ERROR(planner.status());
  const auto s = promptdistill::detail::finish_stages(a, buffers);
  const int64_t B = a.summed.extents[0];
  PD_RETURN_IF_ERROR(reset_status(status, stream));
  PD_RETURN_IF_ERROR(launch_validate_requests(FinishRequestCheck{s}, B, status, stream));
  if (B == 0) return Status::ok();
  constexpr int kThreads = 256;
  normalise_summed_kernel<kThreads>
      <<<dim3(blocks_for(a.summed.extents[2], kThreads), unsigned(B)), kThreads, 0, stream>>>(
          s, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  PD_RETURN_IF_ERROR(launch_pool(s.pool, status, stream));
  PD_RETURN_IF_ERROR(launch_topk(s.topk, status, stream));
  if (s.has_positions) PD_RETURN_IF_ERROR(launch_remap(s.remap, status, stream));
  return Status::ok();
}

}  // namespace detail

template <class T>
Status Select<T>::can_implement(const SelectArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_select(a));
  // Shapes only: the stage views over the workspace are never read here.
  alignas(WorkspacePlanner::kAlignment) static float scratch_stand_in[1];
  promptdistill::detail::SelectBuffers stand_in{};
  stand_in.raw_scores = stand_in.pooled = stand_in.pooled_heads = scratch_stand_in;
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
  PD_RETURN_IF_ERROR(detail::launch_validate_requests(detail::SelectRequestCheck<T>{s},
                                                      a.q.extents[0], status, stream));
  PD_RETURN_IF_ERROR(detail::launch_score(s.score, buffers.score, status, stream));
  PD_RETURN_IF_ERROR(detail::launch_pool(s.pool, status, stream));
  if (s.has_group_sum) PD_RETURN_IF_ERROR(detail::launch_sum_rows(s.group_sum, status, stream));
  PD_RETURN_IF_ERROR(detail::launch_topk(s.topk, status, stream));
  if (s.has_positions) PD_RETURN_IF_ERROR(detail::launch_remap(s.remap, status, stream));
  if (s.has_gather) PD_RETURN_IF_ERROR(detail::launch_gather(s.gather, status, stream));
  return Status::ok();
}

}  // namespace cuda
}  // namespace promptdistill
