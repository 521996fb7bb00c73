// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The fused selector the library ships (promptdistill/cuda/select.cuh).
#include "promptdistill/cuda/select.cuh"

namespace promptdistill {
namespace cuda {

template struct Select<float>;
template struct Select<f16>;
template struct Select<bf16>;

}  // namespace cuda
}  // namespace promptdistill
