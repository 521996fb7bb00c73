// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! What an error message quoting a corrupt file's bytes must look like: valid UTF-8 with no
//! control character (no NUL, newline or terminal escape), within Status's bound.

#include <cstdint>
#include <string>

#include "promptdistill/status.h"

namespace pdtest {

//! True when `text` is well-formed UTF-8 (no overlong form, surrogate or code point past
//! U+10FFFF) without C0/C1 control characters or DEL.
inline bool printable_utf8(const std::string& text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (std::size_t i = 0; i < text.size();) {
    const unsigned c = s[i];
    if (c < 0x20 || c == 0x7F) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = c >= 0xF0 && c <= 0xF4   ? 4
                      : c >= 0xE0 && c <= 0xEF ? 3
                      : c >= 0xC2 && c <= 0xDF ? 2
                                               : 0;
    if (len == 0 || i + len > text.size()) return false;
    uint32_t cp = c & (len == 2 ? 0x1Fu : len == 3 ? 0x0Fu : 0x07u);
    for (std::size_t j = 1; j < len; ++j) {
      if ((s[i + j] & 0xC0u) != 0x80u) return false;
      cp = (cp << 6) | (s[i + j] & 0x3Fu);
    }
    const uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp < 0xA0) return false;
    i += len;
  }
  return true;
}

//! A failed status whose message is clean and contains `fragment`.
inline bool clean_message(const promptdistill::Status& s, const std::string& fragment) {
  const std::string m = s.message();
  return !s.is_ok() && m.size() < promptdistill::Status::kMaxMessage && printable_utf8(m) &&
         m.find(fragment) != std::string::npos;
}

}  // namespace pdtest
