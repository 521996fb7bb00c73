// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! GGUF parsing with every count, length and offset checked before use, and dequantisation.

#include "promptdistill/gguf.h"

#include <cstring>
#include <limits>
#include <set>

#include "file_bytes.h"
#include "promptdistill/detail/numerics.h"

namespace promptdistill {

const char* to_string(GgmlType t) noexcept {
  switch (t) {
    case GgmlType::kF32: return "F32";
    case GgmlType::kF16: return "F16";
    case GgmlType::kQ4_0: return "Q4_0";
    case GgmlType::kQ4_1: return "Q4_1";
    case GgmlType::kQ8_0: return "Q8_0";
    case GgmlType::kBF16: return "BF16";
  }
  return "unknown";
}

bool GgufValue::is_integer() const {
  return kind != Kind::kF32 && kind != Kind::kF64 && kind != Kind::kString && kind != Kind::kArray;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

bool ggml_block_geometry(GgmlType type, int64_t* elements, int64_t* bytes) noexcept {
  switch (type) {
    case GgmlType::kF32: *elements = 1, *bytes = 4; return true;
    case GgmlType::kF16: *elements = 1, *bytes = 2; return true;
    case GgmlType::kBF16: *elements = 1, *bytes = 2; return true;
    case GgmlType::kQ8_0: *elements = 32, *bytes = 34; return true;  // f16 d, int8 q[32]
    case GgmlType::kQ4_0: *elements = 32, *bytes = 18; return true;  // f16 d, u8 q[16]
    case GgmlType::kQ4_1: *elements = 32, *bytes = 20; return true;  // f16 d, f16 m, u8 q[16]
  }
  return false;
}

namespace {

constexpr uint32_t kMaxArrayDepth = 4;
constexpr uint64_t kMaxDims = 4;

float half_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return num::to_f32(f16{bits});
}

//! Bounds-checked little-endian reader over the file image.
class Reader {
 public:
  Reader(const uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return size_ - pos_; }

  template <class T>
  Status read(T* out, const char* what) {
    if (remaining() < sizeof(T))
      return Status(StatusCode::kCorruptFile, "gguf: truncated while reading %s at byte %zu", what,
                    pos_);
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::ok();
  }
  Status read_string(std::string* out, const char* what) {
    uint64_t len = 0;
    PD_RETURN_IF_ERROR(read(&len, what));
    if (len > remaining())
      return Status(StatusCode::kCorruptFile,
                    "gguf: %s string of %llu bytes runs past the end of the file", what,
                    static_cast<unsigned long long>(len));
    out->assign(reinterpret_cast<const char*>(data_ + pos_), std::size_t(len));
    pos_ += std::size_t(len);
    return Status::ok();
  }

 private:
  const uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

//! Smallest encoded size of one value of `kind` (bounds array lengths before allocating).
uint64_t min_encoded_size(GgufValue::Kind kind) {
  switch (kind) {
    case GgufValue::Kind::kU8:
    case GgufValue::Kind::kI8:
    case GgufValue::Kind::kBool: return 1;
    case GgufValue::Kind::kU16:
    case GgufValue::Kind::kI16: return 2;
    case GgufValue::Kind::kU32:
    case GgufValue::Kind::kI32:
    case GgufValue::Kind::kF32: return 4;
    case GgufValue::Kind::kU64:
    case GgufValue::Kind::kI64:
    case GgufValue::Kind::kF64: return 8;
    case GgufValue::Kind::kString: return 8;
    case GgufValue::Kind::kArray: return 12;
  }
  return 1;
}

Status read_value(Reader& r, GgufValue::Kind kind, const std::string& key, uint32_t depth,
                  GgufValue* v) {
  v->kind = kind;
  switch (kind) {
    case GgufValue::Kind::kU8: {
      uint8_t x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      v->u = x, v->i = x;
      return Status::ok();
    }
    case GgufValue::Kind::kI8: {
      int8_t x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      v->i = x, v->u = uint64_t(x);
      return Status::ok();
    }
    case GgufValue::Kind::kU16: {
      uint16_t x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      v->u = x, v->i = x;
      return Status::ok();
    }
    case GgufValue::Kind::kI16: {
      int16_t x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      v->i = x, v->u = uint64_t(x);
      return Status::ok();
    }
    case GgufValue::Kind::kU32: {
      uint32_t x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      v->u = x, v->i = x;
      return Status::ok();
    }
    case GgufValue::Kind::kI32: {
      int32_t x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      v->i = x, v->u = uint64_t(x);
      return Status::ok();
    }
    case GgufValue::Kind::kU64: {
      uint64_t x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      v->u = x, v->i = int64_t(x);
      return Status::ok();
    }
    case GgufValue::Kind::kI64: {
      int64_t x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      v->i = x, v->u = uint64_t(x);
      return Status::ok();
    }
    case GgufValue::Kind::kF32: {
      float x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      v->f = x;
      return Status::ok();
    }
    case GgufValue::Kind::kF64: {
      double x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      v->f = x;
      return Status::ok();
    }
    case GgufValue::Kind::kBool: {
      uint8_t x = 0;
      PD_RETURN_IF_ERROR(r.read(&x, key.c_str()));
      if (x > 1)
        return Status(StatusCode::kCorruptFile, "gguf: key '%s': bool value %u",
                      Quoted(key, 100).c_str(), unsigned(x));
      v->i = x, v->u = x;
      return Status::ok();
    }
    case GgufValue::Kind::kString: return r.read_string(&v->s, key.c_str());
    case GgufValue::Kind::kArray: {
      if (depth >= kMaxArrayDepth)
        return Status(StatusCode::kCorruptFile, "gguf: key '%s': arrays nested too deep",
                      Quoted(key, 100).c_str());
      uint32_t element = 0;
      uint64_t count = 0;
      PD_RETURN_IF_ERROR(r.read(&element, key.c_str()));
      if (element > uint32_t(GgufValue::Kind::kF64))
        return Status(StatusCode::kCorruptFile, "gguf: key '%s': unknown array element type %u",
                      Quoted(key, 100).c_str(), element);
      PD_RETURN_IF_ERROR(r.read(&count, key.c_str()));
      v->element = GgufValue::Kind(element);
      if (count > r.remaining() / min_encoded_size(v->element))
        return Status(StatusCode::kCorruptFile,
                      "gguf: key '%s': array of %llu elements runs past the end of the file",
                      Quoted(key, 100).c_str(), static_cast<unsigned long long>(count));
      v->array.resize(std::size_t(count));
      for (auto& e : v->array) PD_RETURN_IF_ERROR(read_value(r, v->element, key, depth + 1, &e));
      return Status::ok();
    }
  }
  return Status(StatusCode::kCorruptFile, "gguf: key '%s': unknown value type %u",
                Quoted(key, 100).c_str(), unsigned(kind));
}

}  // namespace

Status dequantize_ggml(GgmlType type, const uint8_t* p, int64_t count, float* out) noexcept {
  int64_t qk = 0, block_bytes = 0;
  if (!ggml_block_geometry(type, &qk, &block_bytes))
    return Status(StatusCode::kUnsupported, "gguf: tensor type %u cannot be dequantised",
                  unsigned(type));
  if (count % qk != 0)
    return Status(StatusCode::kCorruptFile, "gguf: %lld elements are not whole %s blocks",
                  (long long)count, to_string(type));
  switch (type) {
    case GgmlType::kF32: std::memcpy(out, p, std::size_t(count) * 4); break;
    case GgmlType::kF16:
      for (int64_t i = 0; i < count; ++i) out[i] = half_at(p + 2 * i);
      break;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        out[i] = num::to_f32(bf16{bits});
      }
      break;
    case GgmlType::kQ8_0:
      for (int64_t b = 0; b < count / 32; ++b, p += 34) {
        const float d = half_at(p);
        for (int j = 0; j < 32; ++j) out[b * 32 + j] = num::mul(float(int8_t(p[2 + j])), d);
      }
      break;
    case GgmlType::kQ4_0:
      for (int64_t b = 0; b < count / 32; ++b, p += 18) {
        const float d = half_at(p);
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = num::mul(float(int(p[2 + j] & 0x0f) - 8), d);
          out[b * 32 + j + 16] = num::mul(float(int(p[2 + j] >> 4) - 8), d);
        }
      }
      break;
    case GgmlType::kQ4_1:
      for (int64_t b = 0; b < count / 32; ++b, p += 20) {
        const float d = half_at(p), m = half_at(p + 2);
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = num::add(num::mul(float(p[4 + j] & 0x0f), d), m);
          out[b * 32 + j + 16] = num::add(num::mul(float(p[4 + j] >> 4), d), m);
        }
      }
      break;
  }
  return Status::ok();
}

Status GgufFile::parse(std::vector<uint8_t> bytes, GgufFile* out) noexcept {
  try {
    GgufFile f;
    f.bytes_ = std::move(bytes);
    Reader r(f.bytes_.data(), f.bytes_.size());
    uint32_t magic = 0;
    PD_RETURN_IF_ERROR(r.read(&magic, "magic"));
    if (magic != 0x46554747u)
      return Status(StatusCode::kCorruptFile, "gguf: bad magic (not a GGUF file)");
    PD_RETURN_IF_ERROR(r.read(&f.version_, "version"));
    if (f.version_ != 2 && f.version_ != 3)
      return Status(StatusCode::kUnsupported, "gguf: version %u is not supported (2 or 3)",
                    f.version_);
    uint64_t tensor_count = 0, kv_count = 0;
    PD_RETURN_IF_ERROR(r.read(&tensor_count, "tensor count"));
    PD_RETURN_IF_ERROR(r.read(&kv_count, "metadata count"));
    if (kv_count > r.remaining() / 13)
      return Status(StatusCode::kCorruptFile, "gguf: %llu metadata entries cannot fit the file",
                    static_cast<unsigned long long>(kv_count));
    if (tensor_count > r.remaining() / 24)
      return Status(StatusCode::kCorruptFile, "gguf: %llu tensor infos cannot fit the file",
                    static_cast<unsigned long long>(tensor_count));
    for (uint64_t i = 0; i < kv_count; ++i) {
      std::string key;
      PD_RETURN_IF_ERROR(r.read_string(&key, "metadata key"));
      uint32_t kind = 0;
      PD_RETURN_IF_ERROR(r.read(&kind, key.c_str()));
      if (kind > uint32_t(GgufValue::Kind::kF64))
        return Status(StatusCode::kCorruptFile, "gguf: key '%s' has unknown value type %u",
                      Quoted(key, 100).c_str(), kind);
      GgufValue v;
      PD_RETURN_IF_ERROR(read_value(r, GgufValue::Kind(kind), key, 0, &v));
      if (!f.metadata_.emplace(key, std::move(v)).second)
        return Status(StatusCode::kCorruptFile, "gguf: duplicate metadata key '%s'",
                      Quoted(key, 100).c_str());
    }
    if (const GgufValue* a = f.find("general.alignment")) {
      if (!a->is_integer() || a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > 65536)
        return Status(StatusCode::kCorruptFile,
                      "gguf: general.alignment must be a power of two up to 65536");
      f.alignment_ = a->u;
    }
    f.tensors_.resize(std::size_t(tensor_count));
    for (auto& t : f.tensors_) {
      PD_RETURN_IF_ERROR(r.read_string(&t.name, "tensor name"));
      uint32_t n_dims = 0;
      PD_RETURN_IF_ERROR(r.read(&n_dims, t.name.c_str()));
      if (n_dims == 0 || n_dims > kMaxDims)
        return Status(StatusCode::kCorruptFile, "gguf: tensor '%s' has %u dimensions (1..4)",
                      Quoted(t.name, 100).c_str(), n_dims);
      int64_t count = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        uint64_t extent = 0;
        PD_RETURN_IF_ERROR(r.read(&extent, t.name.c_str()));
        if (extent == 0 || extent > uint64_t(std::numeric_limits<int64_t>::max() / count))
          return Status(StatusCode::kCorruptFile, "gguf: tensor '%s' has a bad extent %llu",
                        Quoted(t.name, 100).c_str(), static_cast<unsigned long long>(extent));
        count *= int64_t(extent);
        t.dims.push_back(int64_t(extent));
      }
      uint32_t type = 0;
      PD_RETURN_IF_ERROR(r.read(&type, t.name.c_str()));
      t.type = GgmlType(type);
      int64_t qk = 0, block_bytes = 0;
      if (!ggml_block_geometry(t.type, &qk, &block_bytes))
        return Status(StatusCode::kUnsupported,
                      "gguf: tensor '%s' has type %u (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)",
                      Quoted(t.name, 100).c_str(), type);
      if (t.dims[0] % qk != 0)
        return Status(StatusCode::kCorruptFile,
                      "gguf: tensor '%s' rows of %lld are not whole %s blocks",
                      Quoted(t.name, 100).c_str(), (long long)t.dims[0], to_string(t.type));
      if (count / qk > std::numeric_limits<int64_t>::max() / block_bytes)
        return Status(StatusCode::kCorruptFile, "gguf: tensor '%s' is too large",
                      Quoted(t.name, 100).c_str());
      t.bytes = uint64_t(count / qk * block_bytes);
      PD_RETURN_IF_ERROR(r.read(&t.offset, t.name.c_str()));
      if (t.offset % f.alignment_ != 0)
        return Status(StatusCode::kCorruptFile, "gguf: tensor '%s' offset %llu is not %llu-aligned",
                      Quoted(t.name, 100).c_str(), static_cast<unsigned long long>(t.offset),
                      static_cast<unsigned long long>(f.alignment_));
    }
    const uint64_t data_start =
        (uint64_t(r.pos()) + f.alignment_ - 1) / f.alignment_ * f.alignment_;
    for (auto& t : f.tensors_) {
      if (t.offset > f.bytes_.size() || data_start > f.bytes_.size() - t.offset ||
          t.bytes > f.bytes_.size() - data_start - t.offset)
        return Status(StatusCode::kCorruptFile,
                      "gguf: tensor '%s' data (%llu bytes at %llu) runs past the end of the file",
                      Quoted(t.name, 100).c_str(), static_cast<unsigned long long>(t.bytes),
                      static_cast<unsigned long long>(t.offset));
      t.offset += data_start;
    }
    std::set<std::string> names;
    for (const auto& t : f.tensors_)
      if (!names.insert(t.name).second)
        return Status(StatusCode::kCorruptFile, "gguf: duplicate tensor '%s'",
                      Quoted(t.name, 100).c_str());
    *out = std::move(f);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "gguf: out of host memory");
  }
}

Status GgufFile::open(const std::string& path, GgufFile* out) noexcept {
  return detail::open_and_parse(path, out, &GgufFile::parse);
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}
const GgufValue* GgufFile::find(const std::string& key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

Status GgufFile::get_int(const std::string& key, int64_t* out) const noexcept {
  const GgufValue* v = find(key);
  if (!v || !v->is_integer())
    return Status(StatusCode::kCorruptFile, "gguf: missing integer key '%s'",
                  Quoted(key, 100).c_str());
  *out = v->i;
  return Status::ok();
}
Status GgufFile::get_float(const std::string& key, double* out) const noexcept {
  const GgufValue* v = find(key);
  if (!v)
    return Status(StatusCode::kCorruptFile, "gguf: missing number key '%s'",
                  Quoted(key, 100).c_str());
  if (v->kind == GgufValue::Kind::kF32 || v->kind == GgufValue::Kind::kF64)
    *out = v->f;
  else if (v->is_integer())
    *out = double(v->i);
  else
    return Status(StatusCode::kCorruptFile, "gguf: key '%s' is not a number",
                  Quoted(key, 100).c_str());
  return Status::ok();
}
Status GgufFile::get_string(const std::string& key, std::string* out) const noexcept {
  const GgufValue* v = find(key);
  if (!v || v->kind != GgufValue::Kind::kString)
    return Status(StatusCode::kCorruptFile, "gguf: missing string key '%s'",
                  Quoted(key, 100).c_str());
  try {
    *out = v->s;
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "gguf: out of host memory");
  }
  return Status::ok();
}
Status GgufFile::get_strings(const std::string& key, std::vector<std::string>* out) const noexcept {
  const GgufValue* v = find(key);
  if (!v || v->kind != GgufValue::Kind::kArray || v->element != GgufValue::Kind::kString)
    return Status(StatusCode::kCorruptFile, "gguf: missing string array '%s'",
                  Quoted(key, 100).c_str());
  try {
    out->clear();
    out->reserve(v->array.size());
    for (const auto& e : v->array) out->push_back(e.s);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "gguf: out of host memory");
  }
  return Status::ok();
}
Status GgufFile::get_ints(const std::string& key, std::vector<int64_t>* out) const noexcept {
  const GgufValue* v = find(key);
  if (!v || v->kind != GgufValue::Kind::kArray)
    return Status(StatusCode::kCorruptFile, "gguf: missing integer array '%s'",
                  Quoted(key, 100).c_str());
  try {
    out->clear();
    for (const auto& e : v->array) {
      if (!e.is_integer())
        return Status(StatusCode::kCorruptFile, "gguf: '%s' holds non-integers",
                      Quoted(key, 100).c_str());
      out->push_back(e.i);
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "gguf: out of host memory");
  }
  return Status::ok();
}

Status GgufFile::dequantize(const GgufTensorInfo& t, float* out) const noexcept {
  return dequantize_ggml(t.type, tensor_data(t), t.numel(), out);
}

}  // namespace promptdistill
