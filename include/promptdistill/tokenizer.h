// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::models.
//! BPE tokenizers of the Llama family, read from GGUF metadata (tokenizer.ggml.model = "gpt2") or
//! from a Hugging Face `tokenizer.json`. Control and user-defined (added) tokens are matched in the
//! raw text first (leftmost, longest), then each remaining segment is encoded:
//! - byte-level BPE (SmolLM2, Llama-3, Qwen2, GPT-2): pre-tokenized by the family's regex, mapped
//!   byte-to-unicode GPT-2 style and merged by merge rank. Pre-tokenizers: "smollm" (every Unicode
//!   number on its own, then the GPT-2 regex), "gpt2"/"default", "llama3" (Llama-3's Split regex,
//!   numbers in runs of up to 3), "qwen2" (the same with single numbers);
//! - SentencePiece-style BPE (Llama-2, Phi-3): spaces become "▁", a "▁" is prepended (normalizer
//!   `Prepend`, or `Metaspace` with prepend_scheme first/always), characters outside the vocabulary
//!   fall back to their <0xXX> byte tokens, then merges by rank.

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
  //! A Hugging Face tokenizer.json (model type BPE; the pre-tokenizers and normalizers above;
  //! bos/eos from a tokenizer_config.json next to it, if any). Anything else is kUnsupported with
  //! a message naming it.
  static Status from_hf_json(const std::string& path, Tokenizer* out) noexcept;

  //! Text (valid UTF-8) to ids. With `parse_special`, control tokens written in the text become
  //! their ids; without it they are tokenized as plain text.
  Status encode(const std::string& text, std::vector<int32_t>* ids,
                bool parse_special = true) const noexcept;
  //! Ids to text; control tokens are written out unless `skip_special`.
  Status decode(const std::vector<int32_t>& ids, std::string* text,
                bool skip_special = false) const noexcept;

  int64_t vocab_size() const { return int64_t(tokens_.size()); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  const std::string& token_text(int32_t id) const { return tokens_[std::size_t(id)]; }
  bool is_special(int32_t id) const {
    return types_[std::size_t(id)] == 3 || types_[std::size_t(id)] == 4;
  }

 private:
  enum class Pre { kGpt2, kSmolLM, kLlama3, kQwen2 };
  //! How a SentencePiece-style tokenizer adds the leading "▁" to a segment.
  enum class Prefix { kNone, kAlways, kMetaspaceFirst, kMetaspaceAlways };
  void bpe(const std::string& word, std::vector<int32_t>* ids) const;
  void encode_sentencepiece(const std::string& segment, bool first,
                            std::vector<int32_t>* ids) const;

  std::vector<std::string> tokens_;
  std::vector<int32_t> types_;
  std::unordered_map<std::string, int32_t> ids_;
  std::unordered_map<std::string, int32_t> merge_rank_;  //!< "left right" -> rank
  std::vector<int32_t> specials_;  //!< ids of control/user tokens, longest first
  Pre pre_ = Pre::kGpt2;
  bool byte_level_ = true;            //!< false: SentencePiece-style (▁ spaces, byte fallback)
  Prefix prefix_ = Prefix::kNone;     //!< SentencePiece-style only
  bool ignore_merges_ = false;        //!< Llama-3: a pre-token in the vocabulary is one token
  bool decode_bytes_ = true;          //!< decoder turns <0xXX> tokens into bytes (ByteFallback)
  bool strip_leading_space_ = false;  //!< decoder drops the first leading space (SentencePiece)
  int32_t unk_ = -1;
  int32_t bos_ = -1, eos_ = -1;
};

}  // namespace promptdistill
