// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU decode path (decode_ref.cpp, decode_weights_ref.cpp,
//! decode_attention_ref.cpp): what DecodeWeights and DecodeWorkspace hold, and the attention of
//! one decode step.

#include <cstdint>
#include <vector>

#include "pipelines/cpu/gemm_ref.h"
#include "pipelines/cpu/matvec_ref.h"
#include "promptdistill/transformer_ref.h"

namespace promptdistill {
namespace ref {

struct DecodeWeights::Impl {
  DecodeWeightFormat format = DecodeWeightFormat::kF32;
  struct Layer {
    matvec::Matrix wq, wk, wv, wo, w_gate, w_up, w_down;
  };
  std::vector<Layer> layers;
  matvec::Matrix output;
};

struct DecodeWorkspace::Impl {
  int64_t max_context = 0;
  int64_t rope_half = 0;
  std::vector<float> rope_cos,
      rope_sin;  //!< [max_context, D/2]: row p is position p's (at length p + 1)
  std::vector<float> x, h, q, k, v, attn, o, gate, up, down, logits;
  matvec::Input16 xq;                     //!< block-format weights: the input in int16 blocks
  std::vector<float> block_sums;          //!< Q4_1 weights: the input's sum per block of 32
  gemm::AlignedBuffer attention_scratch;  //!< exact attention: the kernel's tiles, per thread
  std::vector<float> partials;  //!< fast attention: per query head and chunk, (max, sum, acc[D])
};

//! Attention of one decode token over `cache` (which already holds it), per query head:
//! attn[H * D]. Exact: the prefill's kernel for one row (prefill_attention_ref.h: the same bits),
//! its scratch in the workspace (grown only when the thread count grew since reserve).
//! Fast (Tier C): fixed chunks of keys, each chunk's softmax partials combined in chunk order
//! (the result does not depend on the thread count), f32 or f16 cache.
Status decode_attention(const ModelConfig& config, const float* q, const KvLayerCache& cache,
                        bool exact, DecodeWorkspace::Impl* ws, float* attn);

}  // namespace ref
}  // namespace promptdistill
