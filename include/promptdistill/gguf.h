// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::models.
//! GGUF model files (versions 2 and 3): header, metadata, tensor infos, alignment, and
//! dequantisation of F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors to f32.
//!
//! Every count, length, offset and size is validated against the file before it is used; a
//! truncated, corrupt or inconsistent file gives kCorruptFile with a message naming the problem
//! (and the tensor or key involved), an unknown tensor type kUnsupported, never a crash.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "promptdistill/status.h"

namespace promptdistill {

enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kBF16 = 30,
};
const char* to_string(GgmlType t) noexcept;

//! A metadata value. Arrays hold their elements in `array` (nested arrays allowed).
struct GgufValue {
  enum class Kind : uint32_t {
    kU8 = 0,
    kI8 = 1,
    kU16 = 2,
    kI16 = 3,
    kU32 = 4,
    kI32 = 5,
    kF32 = 6,
    kBool = 7,
    kString = 8,
    kArray = 9,
    kU64 = 10,
    kI64 = 11,
    kF64 = 12,
  };
  Kind kind = Kind::kU32;
  int64_t i = 0;                 //!< integer kinds and bool
  uint64_t u = 0;                //!< unsigned kinds (also mirrored into `i` when it fits)
  double f = 0;                  //!< float kinds
  std::string s;                 //!< kString
  Kind element = Kind::kU32;     //!< kArray: element kind
  std::vector<GgufValue> array;  //!< kArray

  bool is_integer() const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  //!< GGUF order: dims[0] is the fastest-varying (row length)
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  //!< from the start of the file
  uint64_t bytes = 0;
  int64_t numel() const;
};

class GgufFile {
 public:
  //! Reads and validates `path` (the tensor data stays in memory).
  static Status open(const std::string& path, GgufFile* out) noexcept;
  //! Validates an in-memory image (takes ownership).
  static Status parse(std::vector<uint8_t> bytes, GgufFile* out) noexcept;

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  const GgufValue* find(const std::string& key) const;

  //! Typed metadata access: kCorruptFile (naming the key) when missing or of the wrong kind.
  Status get_int(const std::string& key, int64_t* out) const noexcept;
  Status get_float(const std::string& key, double* out) const noexcept;
  Status get_string(const std::string& key, std::string* out) const noexcept;
  Status get_strings(const std::string& key, std::vector<std::string>* out) const noexcept;
  Status get_ints(const std::string& key, std::vector<int64_t>* out) const noexcept;

  //! The raw bytes of a tensor.
  const uint8_t* tensor_data(const GgufTensorInfo& t) const { return bytes_.data() + t.offset; }
  //! Dequantises a tensor to f32 (numel values, GGUF element order).
  Status dequantize(const GgufTensorInfo& t, float* out) const noexcept;

 private:
  std::vector<uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

//! Dequantises `count` elements (a multiple of the type's block size) of raw GGUF data.
Status dequantize_ggml(GgmlType type, const uint8_t* data, int64_t count, float* out) noexcept;
//! Block geometry of a type: elements per block and bytes per block.
bool ggml_block_geometry(GgmlType type, int64_t* block_elements, int64_t* block_bytes) noexcept;

}  // namespace promptdistill
