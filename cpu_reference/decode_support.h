// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU decode path (decode_ref.cpp, decode_weights_ref.cpp,
//! decode_attention_ref.cpp): what DecodeWeights and DecodeWorkspace hold, and the attention of
//! one decode step.

#include <cstdint>
#include <vector>

#include "cpu_reference/matvec_ref.h"
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

//! An f32 buffer whose start is 64-byte aligned: Eigen peels unaligned leading elements of its
//! reductions and elementwise loops differently from aligned ones, so the exact attention's
//! scores must sit where Eigen's own temporaries would (aligned) to give the same bits.
class AlignedFloats {
 public:
  void resize(std::size_t n) {
    if (n + 16 > raw_.size()) raw_.resize(n + 16);
  }
  float* data() {
    auto at = reinterpret_cast<std::uintptr_t>(raw_.data());
    return raw_.data() + ((64 - at % 64) % 64) / sizeof(float);
  }

 private:
  std::vector<float> raw_;
};

struct DecodeWorkspace::Impl {
  int64_t max_context = 0;
  int64_t rope_half = 0;
  std::vector<float> rope_cos, rope_sin;  //!< [max_context, D/2]: row p is position p's (at length p + 1)
  std::vector<float> x, h, q, k, v, attn, o, gate, up, down, logits;
  matvec::Input16 xq;             //!< block-format weights: the input in int16 blocks
  std::vector<float> block_sums;  //!< Q4_1 weights: the input's sum per block of 32
  AlignedFloats scores;          //!< exact attention: one row of max_context per query head
  int64_t score_stride = 0;      //!< floats between heads' rows (a multiple of 16)
  std::vector<float> partials;   //!< fast attention: per query head and chunk, (max, sum, acc[D])
};

//! Attention of one decode token over `cache` (which already holds it), per query head:
//! attn[H * D]. Exact: the prefill's Eigen code for one row, on workspace buffers (the same bits).
//! Fast (Tier C): fixed chunks of keys, each chunk's softmax partials combined in chunk order
//! (the result does not depend on the thread count), f32 or f16 cache.
void decode_attention(const ModelConfig& config, const float* q, const KvLayerCache& cache, bool exact, DecodeWorkspace::Impl* ws,
                      float* attn);

}  // namespace ref
}  // namespace promptdistill
