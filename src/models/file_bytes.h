// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Whole-file reads for the parsers (GGUF, safetensors, .npy): kIoError when the file cannot be
//! opened or read, kOutOfMemory when it does not fit.

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "promptdistill/status.h"

namespace promptdistill {
namespace detail {

inline Status read_file_bytes(const std::string& path, std::vector<uint8_t>* out) noexcept {
  try {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) return Status(StatusCode::kIoError, "cannot open '%.180s'", path.c_str());
    const std::streamsize size = in.tellg();
    in.seekg(0);
    out->resize(static_cast<std::size_t>(size));
    if (size > 0 && !in.read(reinterpret_cast<char*>(out->data()), size))
      return Status(StatusCode::kIoError, "cannot read '%.180s'", path.c_str());
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "out of host memory reading '%.180s'", path.c_str());
  }
}

//! Parses `path` with `parse(bytes, out)`, prefixing any error message with the path.
template <class File, class Parse>
Status open_and_parse(const std::string& path, File* out, Parse parse) noexcept {
  std::vector<uint8_t> bytes;
  PD_RETURN_IF_ERROR(read_file_bytes(path, &bytes));
  const Status s = parse(std::move(bytes), out);
  if (!s.is_ok()) return Status(s.code(), "%.100s: %s", path.c_str(), s.message());
  return s;
}

}  // namespace detail
}  // namespace promptdistill
