// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The scoring operations the library ships, Score and tensor parallelism's ScorePartial (kernels
//! and members: promptdistill/cuda/score.cuh).
#include "promptdistill/cuda/score.cuh"

namespace promptdistill {
namespace cuda {

template struct Score<float>;
template struct Score<f16>;
template struct Score<bf16>;
template struct ScorePartial<float>;
template struct ScorePartial<f16>;
template struct ScorePartial<bf16>;

}  // namespace cuda
}  // namespace promptdistill
