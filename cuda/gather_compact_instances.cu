// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Gather, position remap and KV compaction as the library ships them (kernels and members:
//! promptdistill/cuda/gather_compact.cuh). Gather<int32_t> composes index maps across stages.
#include "promptdistill/cuda/gather_compact.cuh"

namespace promptdistill {
namespace cuda {

template struct Gather<float>;
template struct Gather<f16>;
template struct Gather<bf16>;
template struct Gather<int32_t>;

template struct CompactKv<float>;
template struct CompactKv<f16>;
template struct CompactKv<bf16>;

// RemapPositions is not a template: its members, on the body in the header.
Status RemapPositions::can_implement(const RemapPositionsArgs& a) noexcept {
  return detail::can_implement_remap(a);
}
std::size_t RemapPositions::workspace_size(const RemapPositionsArgs&) noexcept {
  return promptdistill::detail::status_only_workspace_size();
}
Status RemapPositions::run(const RemapPositionsArgs& a, Workspace ws, Stream stream) noexcept {
  return detail::run_remap(a, ws, stream);
}

}  // namespace cuda
}  // namespace promptdistill
