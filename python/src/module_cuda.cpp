// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! `promptdistill._cuda`: the Selector on the CUDA backend (device memory, the caller's stream).
//! A separate module so that `import promptdistill` works where no CUDA runtime is installed.

#include "binding_ops.h"

namespace pdpy {
namespace {

static_assert(pd::CudaBackend::kDLPackDevice == nb::device::cuda::value,
              "the CUDA backend's arrays are DLPack CUDA arrays");

//! Raises the error a CUDA run recorded in the status word at the start of `status` (a copy of
//! the start of its workspace); synchronises with `stream`.
void check_status(const InArray& status, uintptr_t stream) {
  const Device dev = device_of(status);
  if (dev.type != nb::device::cuda::value)
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "status is on %s; device status words live on the GPU", dev.name.c_str()));
  require_contiguous("status", status);
  raise_if_error(pd::cuda::read_device_status(
      pd::Workspace{const_cast<void*>(status.data()), status.nbytes()}, stream_of(stream)));
}

}  // namespace
}  // namespace pdpy

NB_MODULE(_cuda, m) {
  namespace nb = nanobind;
  using namespace nb::literals;
  pdpy::define_ops<promptdistill::CudaBackend>(m);
  m.def("check_status", &pdpy::check_status, "status"_a, "stream"_a);
  m.def("device_available", &promptdistill::cuda::device_available);
}
