// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The exact (Tier B) attention launcher the library ships, in its own translation unit so that it
//! is compiled with --fmad=false while the Tier C kernels keep fused multiply-adds
//! (attention_instances.cu).
#include "promptdistill/cuda/attention.cuh"

namespace promptdistill {
namespace cuda {

template Status detail::launch_attention_exact<float>(const AttentionArgs<float>&,
                                                      const detail::DeviceStatusWord*,
                                                      cudaStream_t);
template Status detail::launch_attention_exact<f16>(const AttentionArgs<f16>&,
                                                    const detail::DeviceStatusWord*, cudaStream_t);
template Status detail::launch_attention_exact<bf16>(const AttentionArgs<bf16>&,
                                                     const detail::DeviceStatusWord*, cudaStream_t);

}  // namespace cuda
}  // namespace promptdistill
