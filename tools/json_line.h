// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! One JSON object as one output line. Generated text can end inside a UTF-8 sequence (a token
//! holds some bytes of a character, as random or cut-off generations do), which nlohmann::json
//! refuses by throwing; such bytes are written as U+FFFD instead, the way tokenizers display them.

#include <string>

#include <nlohmann/json.hpp>

namespace pdcli {

inline std::string json_line(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace pdcli
