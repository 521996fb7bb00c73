// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Built-in long prompts: a deterministic synthetic "haystack" of filler sentences with one fact
//! planted at a chosen depth and a question about it at the end (the shape of the needle and
//! passkey evaluations: the question comes last, so the last token is a good query).

#include <cstdint>
#include <string>

namespace promptdistill {

struct HaystackPrompt {
  std::string text;      //!< filler with the fact inside, then the question and answer prefix
  std::string expected;  //!< what a correct answer contains
};

//! About `words` filler words (the SmolLM2 tokenizer gives ~1.2 tokens per word), the fact at
//! `depth` in [0, 1]. The same arguments always give the same text.
HaystackPrompt haystack_prompt(int64_t words, double depth, uint64_t seed);

}  // namespace promptdistill
