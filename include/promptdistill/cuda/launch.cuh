// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! What every CUDA operation shares: the device status word (carved first from the caller's
//! workspace, cleared on the stream, read back by read_device_status) and the validation kernels
//! that fill it. The operations compose them: reset the status word, validate per-request data on
//! the device, then launch the stages, every kernel of which returns immediately once the status
//! word holds an error.
//!
//! The kernel headers (score.cuh, pool.cuh, topk.cuh, gather_compact.cuh, select.cuh, blocks.cuh,
//! attention.cuh) hold the kernels, their launchers and the operations' member definitions as
//! templates: an engine includes them in its own CUDA translation unit to instantiate a stage for
//! its types or fuse it into its own launch sequence; the static library promptdistill::cuda is
//! their explicit instantiations (cuda/*_instances.cu). Framework-free; CUDA translation units
//! only. A program that both links the library and instantiates the same kernels must compile
//! them for the library's architectures (the package's promptdistill_CUDA_ARCHITECTURES).

#include <cuda_runtime.h>

#include "promptdistill/cuda/check.cuh"
#include "promptdistill/detail/selector_checks.h"

namespace promptdistill {
namespace cuda {
namespace detail {

using promptdistill::detail::DeviceStatusWord;

//! One thread per request runs `check(b, status)`.
template <class Check>
__global__ void validate_requests_kernel(Check check, int64_t batch, DeviceStatusWord* status) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b < batch) check(b, status);
}

template <class Check>
Status launch_validate_requests(const Check& check, int64_t batch, DeviceStatusWord* status,
                                cudaStream_t stream) {
  if (batch == 0) return Status::ok();
  validate_requests_kernel<<<blocks_for(batch, 128), 128, 0, stream>>>(check, batch, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

//! Selected indices of every row: in [0, limit) where limit is `limits[b]` (or `fixed_limit`),
//! strictly increasing if asked. Runs after the request checks. It checks every request, also
//! when another one already failed: a lower request's bad index must still win over a higher
//! request's error, as on the CPU (DeviceStatusWord); a request whose own checks failed keeps
//! that error, which comes before any of its indices'.
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    validate_indices_kernel(TensorView<const int32_t, 3> indices,
                            TensorView<const int32_t, 2> counts, const int32_t* limits,
                            int64_t fixed_limit, bool strictly_increasing,
                            DeviceStatusWord* status) {
  const int64_t R = indices.extents[1];
  for (int64_t row = blockIdx.y; row < indices.extents[0] * R; row += gridDim.y) {
    const int64_t b = row / R, r = row % R;
    const int64_t count = counts(b, r);
    if (count < 0 || count > indices.extents[2])
      continue;  // its request failed: read nothing past the row
    const int64_t limit = limits != nullptr ? limits[b] : fixed_limit;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
         i += int64_t(gridDim.x) * blockDim.x)
      promptdistill::detail::index_ok(indices, b, r, i, limit, strictly_increasing, status);
  }
}

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

inline Status launch_validate_indices(TensorView<const int32_t, 3> indices,
                                      TensorView<const int32_t, 2> counts, const int32_t* limits,
                                      int64_t fixed_limit, bool strictly_increasing,
                                      DeviceStatusWord* status, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t rows = indices.extents[0] * indices.extents[1];
  if (rows == 0 || indices.extents[2] == 0) return Status::ok();
  const dim3 grid(blocks_for(indices.extents[2], kThreads), capped_blocks(rows, kMaxGridYZ));
  validate_indices_kernel<kThreads><<<grid, kThreads, 0, stream>>>(
      indices, counts, limits, fixed_limit, strictly_increasing, status);
  PD_CUDA_CHECK_LAUNCH(stream);
  return Status::ok();
}

//! Returns the status word a run left at the start of `workspace`, read in `stream`'s order
//! (cuda::read_device_status, for programs that use the kernel headers without the library).
//! The copy is queued on `stream` and only that stream is waited for: a blocking cudaMemcpy would
//! run on the legacy default stream, which waits for every blocking stream of the device.
inline Status read_status_word(Workspace workspace, cudaStream_t stream) {
  if (workspace.ptr == nullptr || workspace.bytes < sizeof(DeviceStatusWord))
    return Status(StatusCode::kInvalidArgument,
                  "read_device_status: the workspace holds no status word");
  DeviceStatusWord word{};
  PD_CUDA_TRY(cudaMemcpyAsync(&word, workspace.ptr, sizeof word, cudaMemcpyDeviceToHost, stream));
  PD_CUDA_TRY(cudaStreamSynchronize(stream));
  return promptdistill::detail::status_from_word(word);
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
