// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "promptdistill/npy.h"

#include "file_bytes.h"

#include <cstring>
#include <fstream>
#include <limits>

namespace promptdistill {

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  return n;
}

namespace {

//! The value text after `'key':` in a header dict, or empty.
std::string field(const std::string& header, const char* key) {
  const std::string quoted = std::string("'") + key + "'";
  const std::size_t at = header.find(quoted);
  if (at == std::string::npos) return {};
  std::size_t p = header.find(':', at + quoted.size());
  if (p == std::string::npos) return {};
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  if (p >= header.size()) return {};
  if (header[p] == '(') {
    const std::size_t end = header.find(')', p);
    return end == std::string::npos ? std::string() : header.substr(p, end - p + 1);
  }
  if (header[p] == '\'') {
    const std::size_t end = header.find('\'', p + 1);
    return end == std::string::npos ? std::string() : header.substr(p + 1, end - p - 1);
  }
  std::size_t end = p;
  while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  return header.substr(p, end - p);
}

Status parse_shape(const std::string& text, std::vector<int64_t>* shape) {
  if (text.size() < 2 || text.front() != '(' || text.back() != ')')
    return Status(StatusCode::kCorruptFile, "npy: 'shape' is not a tuple");
  shape->clear();
  std::size_t p = 1;
  int64_t count = 1;
  while (p < text.size() - 1) {
    while (p < text.size() - 1 && (text[p] == ' ' || text[p] == ',')) ++p;
    if (p >= text.size() - 1) break;
    if (text[p] < '0' || text[p] > '9')
      return Status(StatusCode::kCorruptFile, "npy: bad character in 'shape'");
    int64_t v = 0;
    while (p < text.size() - 1 && text[p] >= '0' && text[p] <= '9') {
      if (v > (std::numeric_limits<int64_t>::max() - 9) / 10)
        return Status(StatusCode::kCorruptFile, "npy: shape entry overflows");
      v = v * 10 + (text[p++] - '0');
    }
    if (v != 0 && count > std::numeric_limits<int64_t>::max() / v)
      return Status(StatusCode::kCorruptFile, "npy: element count overflows");
    count *= v;
    shape->push_back(v);
    if (shape->size() > 8) return Status(StatusCode::kCorruptFile, "npy: more than 8 dimensions");
  }
  return Status::ok();
}

}  // namespace

Status parse_npy(const unsigned char* data, std::size_t size, NpyArray* out) noexcept {
  try {
    static const unsigned char kMagic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (size < 10 || std::memcmp(data, kMagic, 6) != 0)
      return Status(StatusCode::kCorruptFile, "npy: missing magic string (not a .npy file)");
    const int major = data[6];
    std::size_t header_len = 0, offset = 0;
    if (major == 1) {
      header_len = std::size_t(data[8]) | (std::size_t(data[9]) << 8);
      offset = 10;
    } else if (major == 2 || major == 3) {
      if (size < 12) return Status(StatusCode::kCorruptFile, "npy: truncated header length");
      header_len = std::size_t(data[8]) | (std::size_t(data[9]) << 8) |
                   (std::size_t(data[10]) << 16) | (std::size_t(data[11]) << 24);
      offset = 12;
    } else {
      return Status(StatusCode::kCorruptFile, "npy: unsupported format version %d", major);
    }
    if (header_len > size - offset)
      return Status(StatusCode::kCorruptFile, "npy: header runs past the end of the file");
    const std::string header(reinterpret_cast<const char*>(data + offset), header_len);
    const std::string descr = field(header, "descr");
    NpyArray a;
    std::size_t item = 0;
    if (descr == "<f4")
      a.dtype = DType::kF32, item = 4;
    else if (descr == "<f2")
      a.dtype = DType::kF16, item = 2;
    else if (descr == "<i4")
      a.dtype = DType::kI32, item = 4;
    else if (descr == "<i8")
      a.dtype = DType::kI64, item = 8;
    else
      return Status(StatusCode::kUnsupported,
                    "npy: dtype '%s' is not supported (<f4, <f2, <i4, <i8)",
                    Quoted(descr, 32).c_str());
    const std::string fortran = field(header, "fortran_order");
    if (fortran != "False")
      return Status(fortran == "True" ? StatusCode::kUnsupported : StatusCode::kCorruptFile,
                    "npy: fortran_order must be False");
    PD_RETURN_IF_ERROR(parse_shape(field(header, "shape"), &a.shape));
    const int64_t n = a.numel();
    const std::size_t payload = size - offset - header_len;
    if (n > int64_t(std::numeric_limits<int64_t>::max() / int64_t(item)) ||
        std::size_t(n) * item != payload)
      return Status(StatusCode::kCorruptFile, "npy: payload has %zu bytes, shape needs %lld",
                    payload, static_cast<long long>(n) * static_cast<long long>(item));
    a.bytes.assign(data + offset + header_len, data + size);
    *out = std::move(a);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "npy: out of host memory");
  }
}

Status read_npy(const std::string& path, NpyArray* out) noexcept {
  std::vector<uint8_t> bytes;
  PD_RETURN_IF_ERROR(detail::read_file_bytes(path, &bytes));
  const Status s = parse_npy(bytes.data(), bytes.size(), out);
  if (!s.is_ok()) return Status(s.code(), "%.180s: %s", path.c_str(), s.message());
  return s;
}

Status write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape,
                 const void* data) noexcept {
  try {
    const char* descr = dtype == DType::kF32   ? "<f4"
                        : dtype == DType::kF16 ? "<f2"
                        : dtype == DType::kI32 ? "<i4"
                        : dtype == DType::kI64 ? "<i8"
                                               : nullptr;
    if (descr == nullptr)
      return Status(StatusCode::kUnsupported, "npy: cannot write dtype %s", to_string(dtype));
    std::string dims;
    int64_t n = 1;
    for (int64_t e : shape) {
      dims += std::to_string(e) + ",";
      if (shape.size() > 1) dims += " ";
      n *= e;
    }
    if (shape.size() > 1) dims.pop_back();
    std::string header = std::string("{'descr': '") + descr +
                         "', 'fortran_order': False, 'shape': (" + dims + "), }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::ofstream f(path, std::ios::binary);
    if (!f) return Status(StatusCode::kIoError, "cannot create '%.180s'", path.c_str());
    const unsigned char pre[10] = {0x93,
                                   'N',
                                   'U',
                                   'M',
                                   'P',
                                   'Y',
                                   1,
                                   0,
                                   static_cast<unsigned char>(header.size() & 0xff),
                                   static_cast<unsigned char>(header.size() >> 8)};
    f.write(reinterpret_cast<const char*>(pre), 10);
    f.write(header.data(), std::streamsize(header.size()));
    f.write(static_cast<const char*>(data), std::streamsize(std::size_t(n) * size_of(dtype)));
    if (!f) return Status(StatusCode::kIoError, "cannot write '%.180s'", path.c_str());
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "npy: out of host memory");
  }
}

}  // namespace promptdistill
