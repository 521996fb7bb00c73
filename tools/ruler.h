// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! RULER's synthetic tasks (arXiv 2404.06654; NVIDIA/RULER scripts/data/synthetic), generated
//! offline and deterministically, and scored as RULER scores them. The task texts, needle formats,
//! answer prefixes, counts and the length rule (prompt plus RULER's tokens_to_generate within the
//! target length, in the model's tokenizer) follow RULER; what differs is written in
//! docs/results.md (RULER tasks): the prose haystack is the KJV text the needle grid uses instead
//! of Paul Graham's essays, the words come from that text's vocabulary instead of the wonderwords
//! lists, sentences are split at ". ", "? " and "! " instead of NLTK's tokenizer, and the random
//! draws are this file's own (a splitmix64 stream per sample), not Python's.
//!
//! Tasks (RULER's scripts/synthetic.yaml): niah_single (its niah_single_2: prose haystack, a word
//! key, a 7-digit value), niah_multikey (niah_multikey_1: three distractor needles with other
//! keys), niah_multivalue (four values for the key), niah_multiquery (four keys asked), vt
//! (variable tracking: one chain of four hops in noise, with one in-context example), cwe (common
//! words extraction with one example) and fwe (frequent coded words, Zipf alpha 2).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "promptdistill/status.h"

namespace promptdistill {

class Tokenizer;

enum class RulerTask : int32_t {
  kNiahSingle,
  kNiahMultikey,
  kNiahMultivalue,
  kNiahMultiquery,
  kVt,
  kCwe,
  kFwe
};
//! RULER's names: "niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt",
//! "cwe", "fwe"; `parse` is the inverse.
const char* to_string(RulerTask task) noexcept;
Status parse(std::string_view text, RulerTask* out) noexcept;
std::vector<RulerTask> all_ruler_tasks();
//! RULER's tokens_to_generate of the task (niah 128, vt 30, cwe 120, fwe 50): the answer's share
//! of the target length.
int64_t ruler_tokens_to_generate(RulerTask task) noexcept;

//! How a task text reaches the model: wrapped in its chat template (a user turn, then the
//! assistant turn started and RULER's answer prefix), or as is. Recognised from the template text
//! a GGUF file carries (tokenizer.chat_template): ChatML (<|im_start|>, with the system message the
//! template adds when there is none, as SmolLM2's does) and Llama-3 headers; anything else: none.
struct ChatTemplate {
  std::string kind = "none";  //!< "none", "chatml" or "llama3"
  std::string system;         //!< ChatML: the default system message, if the template has one
  std::string wrap(const std::string& user, const std::string& answer_prefix) const;
};
ChatTemplate chat_template_from(const std::string& jinja);

//! What the generators read besides the tokenizer: the prose haystack split into words (RULER's
//! "essay"), and its distinct lower-case words of four or more letters, sorted (the vocabulary of
//! the needle keys and of the common-words lists).
struct RulerSources {
  std::vector<std::string> essay_words;
  std::vector<std::string> vocabulary;
};
RulerSources ruler_sources(const std::string& haystack);

struct RulerSample {
  RulerTask task = RulerTask::kNiahSingle;
  std::string input;                 //!< the task text (template filled, examples included)
  std::string answer_prefix;         //!< RULER's, started after the chat template's assistant turn
  std::string prompt;                //!< what the model reads: chat.wrap(input, answer_prefix)
  std::vector<std::string> outputs;  //!< the strings a correct answer contains
  int64_t prompt_tokens = 0;
  int64_t haystack_units = 0;  //!< words, noise lines or list entries the haystack holds
};

//! Sample `index` of `task` for a target of `max_seq_length` tokens (prompt plus the task's
//! tokens_to_generate, in `tok`'s tokens; the haystack is the largest that fits, as RULER's binary
//! search finds it). Deterministic in (seed, task, max_seq_length, index).
Status ruler_sample(const Tokenizer& tok, const ChatTemplate& chat, const RulerSources& sources,
                    RulerTask task, int64_t max_seq_length, uint64_t seed, int64_t index,
                    RulerSample* out) noexcept;

//! RULER's string_match_all for one prediction: the fraction of `outputs` the prediction contains,
//! ignoring case, after its postprocess_pred (stripped; control characters as newlines).
double ruler_score(const std::string& prediction, const std::vector<std::string>& outputs);

}  // namespace promptdistill
