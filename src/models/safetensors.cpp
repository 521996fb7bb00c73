// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "promptdistill/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string_view>

#include <nlohmann/json.hpp>

#include "file_bytes.h"
#include "promptdistill/detail/numerics.h"

namespace promptdistill {

int64_t SafetensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {
int64_t dtype_bytes(const std::string& d) {
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}
}  // namespace

Status SafetensorsFile::parse(std::vector<uint8_t> bytes, SafetensorsFile* out) noexcept {
  try {
    SafetensorsFile f;
    f.bytes_ = std::move(bytes);
    if (f.bytes_.size() < 8)
      return Status(StatusCode::kCorruptFile, "safetensors: file shorter than its header length");
    uint64_t header_len = 0;
    std::memcpy(&header_len, f.bytes_.data(), 8);
    if (header_len > f.bytes_.size() - 8)
      return Status(StatusCode::kCorruptFile,
                    "safetensors: header of %llu bytes runs past the end of the file",
                    static_cast<unsigned long long>(header_len));
    f.data_start_ = 8 + header_len;
    const uint64_t data_size = f.bytes_.size() - f.data_start_;
    const auto header = nlohmann::json::parse(
        f.bytes_.begin() + 8, f.bytes_.begin() + long(f.data_start_), nullptr, false);
    if (header.is_discarded() || !header.is_object())
      return Status(StatusCode::kCorruptFile, "safetensors: header is not a JSON object");
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") continue;
      const auto& v = it.value();
      SafetensorInfo t;
      t.name = it.key();
      if (!v.is_object() || !v.contains("dtype") || !v["dtype"].is_string() ||
          !v.contains("shape") || !v["shape"].is_array() || !v.contains("data_offsets") ||
          !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
        return Status(StatusCode::kCorruptFile,
                      "safetensors: tensor '%s' lacks dtype, shape or data_offsets",
                      Quoted(t.name, 100).c_str());
      t.dtype = v["dtype"].get<std::string>();
      const int64_t item = dtype_bytes(t.dtype);
      if (item == 0)
        return Status(StatusCode::kCorruptFile, "safetensors: tensor '%s' has unknown dtype '%s'",
                      Quoted(t.name, 100).c_str(), Quoted(t.dtype, 20).c_str());
      int64_t count = 1;
      for (const auto& d : v["shape"]) {
        if (!d.is_number_unsigned() ||
            d.get<uint64_t>() > uint64_t(std::numeric_limits<int32_t>::max()))
          return Status(StatusCode::kCorruptFile, "safetensors: tensor '%s' has a bad shape entry",
                        Quoted(t.name, 100).c_str());
        const int64_t e = int64_t(d.get<uint64_t>());
        if (e != 0 && count > std::numeric_limits<int64_t>::max() / item / e)
          return Status(StatusCode::kCorruptFile, "safetensors: tensor '%s' is too large",
                        Quoted(t.name, 100).c_str());
        count *= e;
        t.shape.push_back(e);
      }
      const auto& off = v["data_offsets"];
      if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        return Status(StatusCode::kCorruptFile, "safetensors: tensor '%s' has bad data_offsets",
                      Quoted(t.name, 100).c_str());
      t.begin = off[0].get<uint64_t>();
      t.end = off[1].get<uint64_t>();
      if (t.begin > t.end || t.end > data_size)
        return Status(StatusCode::kCorruptFile,
                      "safetensors: tensor '%s' data [%llu, %llu) is outside the %llu data bytes",
                      Quoted(t.name, 100).c_str(), static_cast<unsigned long long>(t.begin),
                      static_cast<unsigned long long>(t.end),
                      static_cast<unsigned long long>(data_size));
      if (t.end - t.begin != uint64_t(count * item))
        return Status(StatusCode::kCorruptFile,
                      "safetensors: tensor '%s' has %llu bytes, its shape needs %lld",
                      Quoted(t.name, 100).c_str(), static_cast<unsigned long long>(t.end - t.begin),
                      static_cast<long long>(count * item));
      f.tensors_.push_back(std::move(t));
    }
    std::vector<const SafetensorInfo*> sorted;
    for (const auto& t : f.tensors_) sorted.push_back(&t);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    for (std::size_t i = 1; i < sorted.size(); ++i)
      if (sorted[i]->begin < sorted[i - 1]->end && sorted[i]->end > sorted[i]->begin)
        return Status(StatusCode::kCorruptFile, "safetensors: tensors '%s' and '%s' overlap",
                      Quoted(sorted[i - 1]->name, 80).c_str(), Quoted(sorted[i]->name, 80).c_str());
    *out = std::move(f);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "safetensors: out of host memory");
  } catch (const std::exception& e) {
    return Status(StatusCode::kCorruptFile, "safetensors: bad header (%s)",
                  Quoted(std::string_view(e.what()), 100).c_str());
  }
}

Status SafetensorsFile::open(const std::string& path, SafetensorsFile* out) noexcept {
  return detail::open_and_parse(path, out, &SafetensorsFile::parse);
}

const SafetensorInfo* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

Status SafetensorsFile::to_f32(const SafetensorInfo& t, float* out) const noexcept {
  const uint8_t* p = bytes_.data() + data_start_ + t.begin;
  const int64_t n = t.numel();
  if (t.dtype == "F32") {
    std::memcpy(out, p, std::size_t(n) * 4);
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    const bool half = t.dtype == "F16";
    for (int64_t i = 0; i < n; ++i) {
      uint16_t bits;
      std::memcpy(&bits, p + 2 * i, 2);
      out[i] = half ? num::to_f32(f16{bits}) : num::to_f32(bf16{bits});
    }
  } else {
    return Status(StatusCode::kUnsupported,
                  "safetensors: tensor '%s' has dtype %s (F32, F16, BF16 are supported)",
                  Quoted(t.name, 100).c_str(), Quoted(t.dtype, 10).c_str());
  }
  return Status::ok();
}

}  // namespace promptdistill
