// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Device queries, the device status word, and the shared index validation kernel.

#include "cuda/launch.cuh"

namespace promptdistill {
namespace cuda {

bool device_available() noexcept {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

Status read_device_status(Workspace workspace, Stream stream) noexcept {
  if (workspace.ptr == nullptr || workspace.bytes < sizeof(promptdistill::detail::DeviceStatusWord))
    return Status(StatusCode::kInvalidArgument, "read_device_status: the workspace holds no status word");
  PD_CUDA_TRY(cudaStreamSynchronize(stream));
  promptdistill::detail::DeviceStatusWord word{};
  PD_CUDA_TRY(cudaMemcpy(&word, workspace.ptr, sizeof word, cudaMemcpyDeviceToHost));
  return promptdistill::detail::status_from_word(word);
}

namespace detail {

__global__ void validate_indices_kernel(TensorView<const int32_t, 3> indices, TensorView<const int32_t, 2> counts,
                                        const int32_t* limits, int64_t fixed_limit, bool strictly_increasing,
                                        DeviceStatusWord* status) {
  if (status->code != 0) return;  // counts were not validated: do not read past them
  const int64_t R = indices.extents[1];
  for (int64_t row = blockIdx.y; row < indices.extents[0] * R; row += gridDim.y) {
    const int64_t b = row / R, r = row % R;
    const int64_t count = counts(b, r);
    const int64_t limit = limits != nullptr ? limits[b] : fixed_limit;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
      promptdistill::detail::index_ok(indices, b, r, i, limit, strictly_increasing, status);
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
