// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU decoder (transformer_ref.cpp, decode_ref.cpp, prefill_weights_ref.cpp): what
//! PrefillWeights holds.

#include <string>
#include <vector>

#include "pipelines/cpu/gemm_ref.h"
#include "promptdistill/transformer_ref.h"

namespace promptdistill {
namespace ref {

struct PrefillWeights::Impl {
  PrefillWeightFormat format = PrefillWeightFormat::kF32;
  //! One layer's linear weights, packed: [Q; K; V] (three parts), O, [gate; up], down.
  struct Layer {
    gemm::PackedMatrix qkv, wo, gate_up, down;
  };
  std::vector<Layer> layers;
  std::string kernels;  //!< how they run, for describe()
};

}  // namespace ref
}  // namespace promptdistill
