// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The scoring operation the library ships (kernels and members: promptdistill/cuda/score.cuh).
#include "promptdistill/cuda/score.cuh"

namespace promptdistill {
namespace cuda {

template struct Score<float>;
template struct Score<f16>;
template struct Score<bf16>;

}  // namespace cuda
}  // namespace promptdistill
