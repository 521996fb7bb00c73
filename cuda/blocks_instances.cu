// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The elementwise and row-wise block operations the library ships (promptdistill/cuda/blocks.cuh).
#include "promptdistill/cuda/blocks.cuh"

namespace promptdistill {
namespace cuda {

#define PD_INSTANTIATE(T)      \
  template struct Embed<T>;    \
  template struct RmsNorm<T>;  \
  template struct Rope<T>;     \
  template struct SwiGlu<T>;   \
  template struct AppendKv<T>; \
  template struct ArgMax<T>;
PD_INSTANTIATE(float)
PD_INSTANTIATE(f16)
PD_INSTANTIATE(bf16)
#undef PD_INSTANTIATE

}  // namespace cuda
}  // namespace promptdistill
