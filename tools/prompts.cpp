// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "tools/prompts.h"

#include <vector>

namespace promptdistill {

HaystackPrompt haystack_prompt(int64_t words, double depth, uint64_t seed) {
  static const char* kWords[] = {
      "the",     "river",  "garden",    "morning", "library", "village",  "mountain", "quiet",
      "old",     "market", "children",  "walked",  "along",   "the",      "road",     "and",
      "watched", "birds",  "over",      "fields",  "where",   "farmers",  "worked",   "near",
      "a",       "small",  "bridge",    "with",    "stone",   "walls",    "that",     "were",
      "built",   "long",   "ago",       "by",      "people",  "who",      "lived",    "in",
      "houses",  "of",     "wood",      "during",  "winter",  "evenings", "stories",  "told",
      "about",   "ships",  "travelers", "and",     "distant", "cities",   "full",     "of",
      "light",   "music",  "bread",     "tea"};
  constexpr int kCount = int(sizeof(kWords) / sizeof(kWords[0]));
  uint64_t state = seed * 6364136223846793005ull + 1442695040888963407ull;
  auto next = [&](int bound) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return int((state >> 33) % uint64_t(bound));
  };
  const int64_t fact_at = int64_t(double(words) * (depth < 0 ? 0 : depth > 1 ? 1 : depth));
  const uint64_t code = 1000 + (seed * 7919) % 9000;
  const std::string fact = "The secret code of the blue door is " + std::to_string(code) + ".";
  std::string text;
  int64_t written = 0;
  bool planted = false;
  while (written < words) {
    if (!planted && written >= fact_at) {
      text += fact + " ";
      planted = true;
    }
    const int n = 6 + next(10);
    std::string sentence;
    for (int i = 0; i < n; ++i) {
      std::string w = kWords[next(kCount)];
      if (i == 0) w[0] = char(w[0] - 'a' + 'A');
      sentence += (i ? " " : "") + w;
    }
    text += sentence + ". ";
    written += n;
  }
  if (!planted) text += fact + " ";
  text +=
      "\nQuestion: What is the secret code of the blue door?\nAnswer: The secret code of the blue "
      "door is";
  return {text, std::to_string(code)};
}

}  // namespace promptdistill
