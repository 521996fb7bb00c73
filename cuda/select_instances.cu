// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The fused selector and the tensor-parallel finishing stage the library ships
//! (promptdistill/cuda/select.cuh).
#include "promptdistill/cuda/select.cuh"

namespace promptdistill {
namespace cuda {

template struct Select<float>;
template struct Select<f16>;
template struct Select<bf16>;

Status FinishSelect::can_implement(const FinishSelectArgs& a) noexcept {
  return detail::can_implement_finish_select(a);
}
std::size_t FinishSelect::workspace_size(const FinishSelectArgs& a) noexcept {
  return detail::finish_select_workspace_size(a);
}
Status FinishSelect::run(const FinishSelectArgs& a, Workspace ws, Stream stream) noexcept {
  return detail::run_finish_select(a, ws, stream);
}

}  // namespace cuda
}  // namespace promptdistill
