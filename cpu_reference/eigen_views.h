// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Zero-copy Eigen adapters over library views. Eigen is used for views and for non-reducing
//! elementwise work only; every reduction of the reference is an explicit loop in the order
//! `detail/numerics.h` specifies, so that it matches the CUDA kernels bit for bit.

#include <Eigen/Core>

#include "promptdistill/detail/numerics.h"
#include "promptdistill/tensor_view.h"

namespace promptdistill {
namespace ref {

//! The head (b, row, h, :) of a rank-4 query view widened to f32 (exact).
template <class T>
Eigen::VectorXf widen_head(const TensorView<const T, 4>& q, int64_t b, int64_t row, int64_t h) {
  Eigen::VectorXf out(q.extents[3]);
  for (int64_t d = 0; d < q.extents[3]; ++d) out[d] = num::to_f32(q(b, row, h, d));
  return out;
}

}  // namespace ref
}  // namespace promptdistill
