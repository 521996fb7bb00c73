// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Compute-only launchers of the selector stages (no validation, no status reset) and the shared
//! validation kernels. The public `cuda::` operations and the fused pipeline compose them:
//! reset the status word, validate per-request data on the device, then launch the stages, every
//! kernel of which returns immediately once the status word holds an error.

#include <cuda_runtime.h>

#include "cuda/check.cuh"
#include "promptdistill/detail/selector_checks.h"

namespace promptdistill {
namespace cuda {
namespace detail {

using promptdistill::detail::DeviceStatusWord;

//! The launch shapes of the scoring kernels fit the grid: the batch (gridDim.y or z) and, for
//! SnapKV/H2O, the heads (gridDim.y) and batch x KV heads (the group mean's gridDim.y) at most
//! 65535, and the query rows (gridDim.x of the row statistics) at most 2^31 - 1. Keys need no
//! limit (the kernels loop over them). kUnsupported otherwise.
Status check_score_grid(Method method, HeadGrouping grouping, int64_t batch, int64_t query_rows, int64_t heads,
                        int64_t kv_heads);
template <class T>
Status launch_score(const ScoreArgs<T>& a, const promptdistill::detail::ScoreBuffers& buffers,
                    const DeviceStatusWord* status, cudaStream_t stream);
Status launch_pool(const PoolArgs& a, const DeviceStatusWord* status, cudaStream_t stream);
Status launch_topk(const TopKArgs& a, const DeviceStatusWord* status, cudaStream_t stream);
template <class T>
Status launch_gather(const GatherArgs<T>& a, const DeviceStatusWord* status, cudaStream_t stream);
Status launch_remap(const RemapPositionsArgs& a, const DeviceStatusWord* status, cudaStream_t stream);

//! One thread per request runs `check(b, status)`.
template <class Check>
__global__ void validate_requests_kernel(Check check, int64_t batch, DeviceStatusWord* status) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b < batch) check(b, status);
}

template <class Check>
Status launch_validate_requests(const Check& check, int64_t batch, DeviceStatusWord* status, cudaStream_t stream) {
  if (batch == 0) return Status::ok();
  validate_requests_kernel<<<blocks_for(batch, 128), 128, 0, stream>>>(check, batch, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

//! Selected indices of every row: in [0, limit) where limit is `limits[b]` (or `fixed_limit`),
//! strictly increasing if asked. Runs after the request checks (which validated the counts).
__global__ void validate_indices_kernel(TensorView<const int32_t, 3> indices, TensorView<const int32_t, 2> counts,
                                        const int32_t* limits, int64_t fixed_limit, bool strictly_increasing,
                                        DeviceStatusWord* status);

//! Clears the status word (capturable) and returns it.
inline Status reset_status(DeviceStatusWord* status, cudaStream_t stream) {
  PD_CUDA_TRY(cudaMemsetAsync(status, 0, sizeof(DeviceStatusWord), stream));
  return Status::ok();
}

//! For operations whose only scratch is the status word: carve it from `ws` (checking the
//! workspace) and clear it on the stream.
inline Status begin_status_only_run(Workspace ws, cudaStream_t stream, DeviceStatusWord** status) {
  WorkspacePlanner planner(ws);
  *status = promptdistill::detail::take_status(planner);
  PD_RETURN_IF_ERROR(planner.status());
  return reset_status(*status, stream);
}

inline Status launch_validate_indices(TensorView<const int32_t, 3> indices, TensorView<const int32_t, 2> counts,
                                      const int32_t* limits, int64_t fixed_limit, bool strictly_increasing,
                                      DeviceStatusWord* status, cudaStream_t stream) {
  const int64_t rows = indices.extents[0] * indices.extents[1];
  if (rows == 0 || indices.extents[2] == 0) return Status::ok();
  const dim3 grid(blocks_for(indices.extents[2], 256), unsigned(rows < 65535 ? rows : 65535));
  validate_indices_kernel<<<grid, 256, 0, stream>>>(indices, counts, limits, fixed_limit, strictly_increasing, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
