// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Quality evaluation: the passkey and needle-in-a-haystack prompts (question at the end, as the
//! reference evaluations build them) and the LongBench metrics.
//!
//! - Passkey (InfBench style): a repeated filler paragraph with "The pass key is NNNNN." hidden at
//!   a depth; correct when the answer contains the five digits.
//! - Needle (the GemFilter/PromptDistill needle format): a real-prose haystack, a needle sentence
//!   inserted at a sentence boundary at the chosen depth, and the question at the end (followed by
//!   an answer prefix, see `Needle::answer_prefix`); correct when the answer contains the needle's
//!   key fact (case-insensitive).
//! - LongBench (THUDM/LongBench `metrics.py` definitions): qa_f1, rouge (ROUGE-L F), code_sim
//!   (edit similarity, fuzzywuzzy's ratio), classification, retrieval and count scores; a dataset
//!   scores a prediction as the best over its reference answers.

#include <cstdint>
#include <string>
#include <vector>

#include "promptdistill/status.h"

namespace promptdistill {

class Tokenizer;

struct EvalPrompt {
  std::string text;
  std::string expected;  //!< passkey digits / the needle's key fact
  int64_t tokens = 0;    //!< prompt length under the tokenizer
};

//! A passkey prompt of about `target_tokens` tokens with the key at `depth` in [0, 1].
Status passkey_prompt(const Tokenizer& tok, int64_t target_tokens, double depth, uint64_t seed,
                      EvalPrompt* out) noexcept;

struct Needle {
  std::string sentence =
      "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny "
      "day.";
  std::string question = "What is the best thing to do in San Francisco?";
  std::string key_fact = "Dolores Park";
  //! Appended after "Answer:". The reference format ends at "Answer:"; SmolLM2-135M-Instruct then
  //! ends its turn at once (its first token was <|im_end|> in every case we ran), so by default the
  //! answer is started for it, as the passkey prompt does ("The pass key is"). Empty = reference.
  std::string answer_prefix = " The best thing to do in San Francisco is";
};
//! A needle prompt of about `target_tokens` tokens cut from `haystack` (prose), the needle at
//! `depth` in [0, 1] (moved to the next sentence end).
Status needle_prompt(const Tokenizer& tok, const std::string& haystack, int64_t target_tokens,
                     double depth, const Needle& needle, EvalPrompt* out) noexcept;

//! Case-insensitive containment, the passkey/needle correctness rule.
bool answer_contains(const std::string& answer, const std::string& expected);

// ---- LongBench -------------------------------------------------------------------------------

struct LongBenchSample {
  std::string dataset, input, context;
  std::vector<std::string> answers;
  std::vector<std::string> all_classes;
  int64_t length = 0;
};
//! Reads a LongBench JSON-lines file (fields: input, context, answers, all_classes, length,
//! dataset); kCorruptFile names the line that is wrong.
Status load_longbench(const std::string& path, std::vector<LongBenchSample>* out) noexcept;

double longbench_qa_f1(const std::string& prediction, const std::string& answer);
double longbench_rouge_l(const std::string& prediction, const std::string& answer);
double longbench_code_sim(const std::string& prediction, const std::string& answer);
double longbench_classification(const std::string& prediction, const std::string& answer,
                                const std::vector<std::string>& all_classes);
double longbench_retrieval(const std::string& prediction, const std::string& answer);
double longbench_count(const std::string& prediction, const std::string& answer);
//! The dataset's metric (LongBench's dataset2metric) applied to the best reference answer, x100.
//! kUnsupported for a dataset it does not know.
Status longbench_score(const LongBenchSample& sample, const std::string& prediction,
                       double* score) noexcept;
//! Fills a template ("{context}" and "{input}" placeholders). `templates` maps dataset names to
//! templates, e.g. LongBench's config/dataset2prompt.json (read with load_longbench_templates);
//! without an entry the generic "{context}\n\nQuestion: {input}\nAnswer:" is used.
Status longbench_prompt(const LongBenchSample& sample,
                        const std::vector<std::pair<std::string, std::string>>& templates,
                        std::string* prompt) noexcept;
Status load_longbench_templates(const std::string& path,
                                std::vector<std::pair<std::string, std::string>>* out) noexcept;

}  // namespace promptdistill
