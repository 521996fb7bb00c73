// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "promptdistill/status.h"

#include <cstdarg>
#include <cstdio>
#include <cstdint>
#include <cstring>

namespace promptdistill {

const char* to_string(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::kSuccess: return "success";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kShapeMismatch: return "shape mismatch";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kMisaligned: return "misaligned";
    case StatusCode::kWorkspaceTooSmall: return "workspace too small";
    case StatusCode::kOutOfMemory: return "out of memory";
    case StatusCode::kOutOfRange: return "out of range";
    case StatusCode::kCapacityExceeded: return "capacity exceeded";
    case StatusCode::kCudaError: return "CUDA error";
    case StatusCode::kCublasError: return "cuBLAS error";
    case StatusCode::kIoError: return "I/O error";
    case StatusCode::kCorruptFile: return "corrupt file";
    case StatusCode::kNoDevice: return "no CUDA device";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown status";
}

namespace {

//! Length of the well-formed UTF-8 character at `s` (at most `n` bytes available) of a code point
//! >= U+00A0 (printable beyond ASCII), or 0: a control character (C1), an overlong form, a
//! surrogate, a code point beyond U+10FFFF, a stray or missing continuation byte.
std::size_t printable_utf8(const unsigned char* s, std::size_t n) {
  std::size_t len = 0;
  uint32_t cp = 0, min = 0;
  if (s[0] >= 0xC2 && s[0] <= 0xDF)
    len = 2, cp = s[0] & 0x1Fu, min = 0x80;
  else if (s[0] >= 0xE0 && s[0] <= 0xEF)
    len = 3, cp = s[0] & 0x0Fu, min = 0x800;
  else if (s[0] >= 0xF0 && s[0] <= 0xF4)
    len = 4, cp = s[0] & 0x07u, min = 0x10000;
  else
    return 0;
  if (len > n) return 0;
  for (std::size_t i = 1; i < len; ++i) {
    if ((s[i] & 0xC0u) != 0x80u) return 0;
    cp = (cp << 6) | (s[i] & 0x3Fu);
  }
  if (cp < min || cp < 0xA0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

//! Bytes of `s` [0, n) that end on a UTF-8 character boundary: a trailing lead byte and its
//! continuation bytes are left out when the character is incomplete.
std::size_t utf8_boundary(const char* s, std::size_t n) {
  std::size_t start = n;
  while (start > 0 && n - start < 4 && (static_cast<unsigned char>(s[start - 1]) & 0xC0u) == 0x80u)
    --start;
  if (start == 0) return n;
  const auto lead = static_cast<unsigned char>(s[start - 1]);
  const std::size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return lead >= 0xC0 && n - (start - 1) < need ? start - 1 : n;
}

}  // namespace

Status::Status(StatusCode code, const char* format, ...) noexcept : code_(code), message_{} {
  va_list args;
  va_start(args, format);
  const int written = std::vsnprintf(message_, kMaxMessage, format, args);
  va_end(args);
  // A cut message must not end inside a multi-byte character (Python decodes it as UTF-8).
  if (written >= int(kMaxMessage)) message_[utf8_boundary(message_, std::strlen(message_))] = '\0';
}

Quoted::Quoted(const char* bytes, std::size_t size, std::size_t max_bytes) noexcept : text_{} {
  if (max_bytes > kMaxBytes) max_bytes = kMaxBytes;
  const auto* s = reinterpret_cast<const unsigned char*>(bytes);
  std::size_t out = 0, i = 0;
  while (i < size) {
    char unit[8];
    std::size_t len = 0, used = 1;
    if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '\\' && s[i] != '\'') {
      unit[len++] = char(s[i]);
    } else if (const std::size_t n = printable_utf8(s + i, size - i); n > 0) {
      for (std::size_t j = 0; j < n; ++j) unit[len++] = char(s[i + j]);
      used = n;
    } else {
      static const char kHex[] = "0123456789abcdef";
      unit[len++] = '\\', unit[len++] = 'x', unit[len++] = kHex[s[i] >> 4],
      unit[len++] = kHex[s[i] & 15];
    }
    if (out + len > max_bytes) {
      std::memcpy(text_ + out, "...", 3);
      out += 3;
      break;
    }
    std::memcpy(text_ + out, unit, len);
    out += len;
    i += used;
  }
  text_[out] = '\0';
}

Status::Status(StatusCode code) noexcept : code_(code), message_{} {
  std::snprintf(message_, kMaxMessage, "%s", to_string(code));
}

const char* describe(const Status& status, char* buffer, std::size_t size) noexcept {
  if (size == 0) return buffer;
  std::snprintf(buffer, size, "%s: %s", to_string(status.code()), status.message());
  return buffer;
}

}  // namespace promptdistill
