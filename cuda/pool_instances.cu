// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Pooling and row-group sums as the library ships them. The operations are not templates, so
//! their members are defined here, on the bodies in promptdistill/cuda/pool.cuh.
#include "promptdistill/cuda/pool.cuh"

namespace promptdistill {
namespace cuda {

Status Pool::can_implement(const PoolArgs& a) noexcept { return detail::can_implement_pool(a); }
std::size_t Pool::workspace_size(const PoolArgs&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
Status Pool::run(const PoolArgs& a, Workspace ws, Stream stream) noexcept {
  return detail::run_pool(a, ws, stream);
}

Status SumRows::can_implement(const SumRowsArgs& a) noexcept {
  return detail::can_implement_sum_rows(a);
}
std::size_t SumRows::workspace_size(const SumRowsArgs&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
Status SumRows::run(const SumRowsArgs& a, Workspace ws, Stream stream) noexcept {
  return detail::run_sum_rows(a, ws, stream);
}

}  // namespace cuda
}  // namespace promptdistill
