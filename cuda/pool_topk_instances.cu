// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Pooling, row-group sums and top-k as the library ships them. The operations are not templates,
//! so their members are defined here, on the bodies in promptdistill/cuda/pool_topk.cuh.
#include "promptdistill/cuda/pool_topk.cuh"

namespace promptdistill {
namespace cuda {

Status Pool::can_implement(const PoolArgs& a) noexcept { return detail::can_implement_pool(a); }
std::size_t Pool::workspace_size(const PoolArgs&) noexcept { return promptdistill::detail::status_only_workspace_size(); }
Status Pool::run(const PoolArgs& a, Workspace ws, Stream stream) noexcept { return detail::run_pool(a, ws, stream); }

Status SumRows::can_implement(const SumRowsArgs& a) noexcept { return detail::can_implement_sum_rows(a); }
std::size_t SumRows::workspace_size(const SumRowsArgs&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
Status SumRows::run(const SumRowsArgs& a, Workspace ws, Stream stream) noexcept { return detail::run_sum_rows(a, ws, stream); }

Status TopK::can_implement(const TopKArgs& a) noexcept { return promptdistill::detail::check_topk(a); }
std::size_t TopK::workspace_size(const TopKArgs&) noexcept { return promptdistill::detail::status_only_workspace_size(); }
Status TopK::run(const TopKArgs& a, Workspace ws, Stream stream) noexcept { return detail::run_topk(a, ws, stream); }

}  // namespace cuda
}  // namespace promptdistill
