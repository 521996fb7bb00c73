// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Runs the fused selector on one request (q [Lq, H, D], k [L, H_kv, D], f32 host arrays) on the
//! CPU reference or the CUDA backend, in a chosen storage dtype. Shared by `select` and `demo`.

#include <string>
#include <vector>

#include "promptdistill/promptdistill.h"

namespace pdcli {

struct SelectInput {
  std::vector<float> q;  //!< [Lq, H, D]
  std::vector<float> k;  //!< [L, H_kv, D]
  int64_t Lq = 0, H = 0, L = 0, Hkv = 0, D = 0;
};

struct SelectOutput {
  int64_t rows = 0;
  std::vector<std::vector<int32_t>> indices;    //!< per row, ascending
  std::vector<std::vector<int32_t>> positions;  //!< per row
  std::vector<float> scores;                    //!< final scores of row 0 ([0, L))
  double milliseconds = 0;                      //!< wall time of run() and the wait for its device
};

//! backend: a built backend's name (backend.h: "cpu", "cuda"); dtype: "f32", "f16" or "bf16".
promptdistill::Status run_select(const SelectInput& in, const promptdistill::MethodConfig& cfg,
                                 const std::string& backend, const std::string& dtype,
                                 SelectOutput* out);

bool cuda_backend_built();

}  // namespace pdcli
