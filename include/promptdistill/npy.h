// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::models.
//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0; little-endian; C order) for the
//! verification CLI and for test fixtures. Supported dtypes: '<f4', '<f2', '<i4', '<i8'.
//! Every header field, the shape and the payload size are validated; a bad file gives
//! kIoError (cannot read) or kCorruptFile (with what is wrong), never a crash.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "promptdistill/dtype.h"
#include "promptdistill/status.h"

namespace promptdistill {

struct NpyArray {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;  //!< C-order, little-endian payload
  int64_t numel() const;
};

//! Parses an in-memory .npy image.
Status parse_npy(const unsigned char* data, std::size_t size, NpyArray* out) noexcept;
//! Reads and parses `path`.
Status read_npy(const std::string& path, NpyArray* out) noexcept;
//! Writes a version-1.0 .npy file.
Status write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape,
                 const void* data) noexcept;

}  // namespace promptdistill
