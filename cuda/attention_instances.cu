// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Attention as the library ships it (promptdistill/cuda/attention.cuh). This translation unit
//! compiles the Tier C kernels (flash prefill, split-KV decode) with fused multiply-adds; the
//! Tier B exact kernel is instantiated in attention_exact_instances.cu, with --fmad=false, and
//! only declared here.
#include "promptdistill/cuda/attention.cuh"

namespace promptdistill {
namespace cuda {

#define PD_EXACT_LAUNCHER(T)                                \
  extern template Status detail::launch_attention_exact<T>( \
      const AttentionArgs<T>&, const detail::DeviceStatusWord*, cudaStream_t);
PD_EXACT_LAUNCHER(float)
PD_EXACT_LAUNCHER(f16)
PD_EXACT_LAUNCHER(bf16)
#undef PD_EXACT_LAUNCHER

template struct Attention<float>;
template struct Attention<f16>;
template struct Attention<bf16>;

}  // namespace cuda
}  // namespace promptdistill
