// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core. One parser for every enum that has a `to_string`: the
//! `parse()` functions of the Selector's and the pipelines' enums are this, so every spelling
//! error reads the same and lists the accepted names.

#include <cstddef>
#include <new>
#include <string>
#include <string_view>

#include "promptdistill/status.h"

namespace promptdistill {
namespace detail {

//! The value among `values` whose to_string() is `text`, or kInvalidArgument "<what> must be one
//! of <every spelling>, got '<text>'" (text as Quoted writes it).
template <class Enum, std::size_t N>
Status parse_enum(std::string_view text, const Enum (&values)[N], const char* what,
                  Enum* out) noexcept {
  try {
    std::string choices;
    for (Enum value : values) {
      if (text == to_string(value)) {
        *out = value;
        return Status::ok();
      }
      choices += choices.empty() ? "" : ", ";
      choices += to_string(value);
    }
    // The caller's bytes escaped and cut (a cut inside a UTF-8 character made Python's error
    // translation fail).
    return Status(StatusCode::kInvalidArgument, "%s must be one of %s, got '%s'", what,
                  choices.c_str(), Quoted(text, 40).c_str());
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "parse: out of host memory");
  }
}

}  // namespace detail
}  // namespace promptdistill
