// SPDX-License-Identifier: Apache-2.0
// Compiled to PTX only, by tests/scripts/check_fmad_tiers.cmake: the Tier B kernels as a program
// that embeds the kernel headers would instantiate them, with nvcc's default --fmad=true. They
// must contain no fused multiply-add: every operation goes through num::'s _rn intrinsics, so
// their bits do not depend on the flags of whoever compiles them.
#include "promptdistill/cuda/attention.cuh"
#include "promptdistill/cuda/blocks.cuh"
#include "promptdistill/cuda/pool.cuh"
#include "promptdistill/cuda/topk.cuh"
#include "promptdistill/cuda/score.cuh"
#include "promptdistill/cuda/select.cuh"

namespace promptdistill {
namespace cuda {

template struct Score<float>;
template struct ScorePartial<float>;
template struct RmsNorm<float>;
template struct Rope<float>;
template struct SwiGlu<float>;
template Status detail::launch_attention_exact<float>(const AttentionArgs<float>&,
                                                      const detail::DeviceStatusWord*,
                                                      cudaStream_t);

Status probe_pool(const PoolArgs& a, Workspace ws, Stream stream) {
  return detail::run_pool(a, ws, stream);
}
Status probe_finish(const FinishSelectArgs& a, Workspace ws, Stream stream) {
  return detail::run_finish_select(a, ws, stream);
}

}  // namespace cuda
}  // namespace promptdistill
