// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Device queries and the status word read-back.

#include "promptdistill/cuda/launch.cuh"

namespace promptdistill {
namespace cuda {

bool device_available() noexcept {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

Status read_device_status(Workspace workspace, Stream stream) noexcept {
  return detail::read_status_word(workspace, stream);
}

}  // namespace cuda
}  // namespace promptdistill
