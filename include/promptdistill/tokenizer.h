// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Byte-level BPE tokenizer read from GGUF metadata (tokenizer.ggml.model = "gpt2"): vocabulary,
//! merges, token types and the pre-tokenizer name. Control and user-defined tokens are matched in
//! the raw text first (leftmost, longest), then each remaining segment is pre-tokenized, mapped
//! byte-to-unicode GPT-2 style and merged by merge rank.
//!
//! Pre-tokenizers: "smollm" (every Unicode number code point on its own, then the GPT-2 regex,
//! as llama.cpp and SmolLM2's tokenizer.json do), "gpt2"/"default" (the GPT-2 regex alone).

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "promptdistill/status.h"

namespace promptdistill {

class GgufFile;

class Tokenizer {
 public:
  static Status from_gguf(const GgufFile& file, Tokenizer* out) noexcept;

  //! Text (valid UTF-8) to ids. With `parse_special`, control tokens written in the text become
  //! their ids; without it they are tokenized as plain text.
  Status encode(const std::string& text, std::vector<int32_t>* ids, bool parse_special = true) const noexcept;
  //! Ids to text; control tokens are written out unless `skip_special`.
  Status decode(const std::vector<int32_t>& ids, std::string* text, bool skip_special = false) const noexcept;

  int64_t vocab_size() const { return int64_t(tokens_.size()); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  const std::string& token_text(int32_t id) const { return tokens_[std::size_t(id)]; }
  bool is_special(int32_t id) const { return types_[std::size_t(id)] == 3 || types_[std::size_t(id)] == 4; }

 private:
  enum class Pre { kGpt2, kSmolLM };
  void bpe(const std::string& word, std::vector<int32_t>* ids) const;

  std::vector<std::string> tokens_;
  std::vector<int32_t> types_;
  std::unordered_map<std::string, int32_t> ids_;
  std::unordered_map<std::string, int32_t> merge_rank_;  //!< "left right" -> rank
  std::vector<int32_t> specials_;                        //!< ids of control/user tokens, longest first
  Pre pre_ = Pre::kGpt2;
  int32_t bos_ = -1, eos_ = -1;
};

}  // namespace promptdistill
