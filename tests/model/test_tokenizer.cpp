// SPDX-License-Identifier: Apache-2.0
// The byte-level BPE tokenizer read from the SmolLM2 GGUF against the Hugging Face `tokenizers`
// package built from the same vocabulary and merges (tests/golden/smollm2_tokenizer.jsonl,
// 2,000+ strings: scripts, whitespace runs, digits, code, long words, special tokens): identical
// ids (Tier A), and decode(encode(text)) == text. Skipped (exit 77) without the model file.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "promptdistill/gguf.h"
#include "promptdistill/tokenizer.h"

using namespace promptdistill;

TEST_CASE("tokenizer: same ids as Hugging Face tokenizers on the fixture; round trip") {
  GgufFile f;
  REQUIRE(GgufFile::open(PD_TEST_MODEL, &f).is_ok());
  Tokenizer tok;
  const Status s = Tokenizer::from_gguf(f, &tok);
  REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
  CHECK(tok.vocab_size() == 49152);
  std::ifstream in(std::string(PD_GOLDEN_DIR) + "/smollm2_tokenizer.jsonl");
  REQUIRE(in.good());
  std::string line;
  int cases = 0, mismatches = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const std::string text = j["text"].get<std::string>();
    const auto want = j["ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> got;
    REQUIRE(tok.encode(text, &got).is_ok());
    ++cases;
    if (got != want) {
      ++mismatches;
      if (mismatches <= 5) {
        std::string g, w;
        for (int32_t id : got) g += std::to_string(id) + " ";
        for (int32_t id : want) w += std::to_string(id) + " ";
        MESSAGE("text " << nlohmann::json(text).dump() << "\n  ours: " << g << "\n  hf:   " << w);
      }
    }
    std::string back;
    REQUIRE(tok.decode(got, &back).is_ok());
    CHECK_MESSAGE(back == text, "round trip of " << nlohmann::json(text).dump());
  }
  MESSAGE(cases << " strings, " << mismatches << " mismatches");
  CHECK(cases >= 2000);
  CHECK(mismatches == 0);
}

TEST_CASE("tokenizer: special tokens, invalid input") {
  GgufFile f;
  REQUIRE(GgufFile::open(PD_TEST_MODEL, &f).is_ok());
  Tokenizer tok;
  REQUIRE(Tokenizer::from_gguf(f, &tok).is_ok());
  std::vector<int32_t> ids;
  REQUIRE(tok.encode("<|im_start|>user", &ids).is_ok());
  CHECK(ids.front() == 1);
  REQUIRE(tok.encode("<|im_start|>user", &ids, /*parse_special=*/false).is_ok());
  CHECK(ids.front() != 1);
  CHECK(tok.encode("bad \xff utf8", &ids).code() == StatusCode::kInvalidArgument);
  std::string text;
  CHECK(tok.decode({1, 99999}, &text).code() == StatusCode::kInvalidArgument);
  REQUIRE(tok.decode({1, 2}, &text, /*skip_special=*/true).is_ok());
  CHECK(text.empty());
}
