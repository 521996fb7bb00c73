// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Top-k as the library ships it. The operation is not a template, so its members are defined
//! here, on the body in promptdistill/cuda/topk.cuh.
#include "promptdistill/cuda/topk.cuh"

namespace promptdistill {
namespace cuda {

Status TopK::can_implement(const TopKArgs& a) noexcept {
  return promptdistill::detail::check_topk(a);
}
std::size_t TopK::workspace_size(const TopKArgs&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
Status TopK::run(const TopKArgs& a, Workspace ws, Stream stream) noexcept {
  return detail::run_topk(a, ws, stream);
}

}  // namespace cuda
}  // namespace promptdistill
