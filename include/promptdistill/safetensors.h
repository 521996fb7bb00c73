// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::models.
//! safetensors files: an 8-byte little-endian header length, a JSON header (dtype, shape and
//! data_offsets of every tensor) and the raw data. Offsets, sizes, shapes and dtypes are validated
//! before use; a bad file gives kCorruptFile naming the tensor, never a crash.

#include <cstdint>
#include <string>
#include <vector>

#include "promptdistill/status.h"

namespace promptdistill {

struct SafetensorInfo {
  std::string name;
  std::string dtype;  //!< "F32", "F16", "BF16" (others are listed but cannot be converted)
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  //!< byte range inside the data section
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  static Status open(const std::string& path, SafetensorsFile* out) noexcept;
  static Status parse(std::vector<uint8_t> bytes, SafetensorsFile* out) noexcept;
  const std::vector<SafetensorInfo>& tensors() const { return tensors_; }
  const SafetensorInfo* find(const std::string& name) const;
  //! Converts a F32/F16/BF16 tensor to f32.
  Status to_f32(const SafetensorInfo& t, float* out) const noexcept;

 private:
  std::vector<uint8_t> bytes_;
  uint64_t data_start_ = 0;
  std::vector<SafetensorInfo> tensors_;
};

}  // namespace promptdistill
