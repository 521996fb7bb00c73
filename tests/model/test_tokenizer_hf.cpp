// SPDX-License-Identifier: Apache-2.0
// Tokenizers read from Hugging Face tokenizer.json files against the `tokenizers` package itself
// (scripts/golden/make_tokenizer_fixtures.py trains small vocabularies in the exact configurations
// of Llama-3, Qwen2 and Llama-2/Phi-3 (normalizer and Metaspace forms), then records the ids
// `tokenizers` gives for the 2,054 strings of smollm2_tokenizer.jsonl): identical ids (Tier A) and
// the same decoded text. Bad files: a clear Status.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "promptdistill/tokenizer.h"
#include "support/messages.h"
#include "support/temp_dir.h"

using namespace promptdistill;

namespace {

std::vector<std::string> fixture_strings() {
  std::ifstream in(std::string(PD_GOLDEN_DIR) + "/smollm2_tokenizer.jsonl");
  REQUIRE(in.good());
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line))
    out.push_back(nlohmann::json::parse(line)["text"].get<std::string>());
  return out;
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST_CASE(
    "tokenizer.json: Llama-3, Qwen2, SentencePiece and Metaspace families match tokenizers on "
    "2,054 strings") {
  const auto strings = fixture_strings();
  for (const char* family : {"tok_llama3", "tok_qwen2", "tok_spm", "tok_metaspace"}) {
    CAPTURE(family);
    const std::string dir = std::string(PD_GOLDEN_DIR) + "/" + family;
    Tokenizer tok;
    const Status s = Tokenizer::from_hf_json(dir + "/tokenizer.json", &tok);
    REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
    std::ifstream in(dir + "/expected.json");
    const auto expected = nlohmann::json::parse(in);
    REQUIRE(expected["ids"].size() == strings.size());
    int mismatches = 0, decode_mismatches = 0;
    for (std::size_t i = 0; i < strings.size(); ++i) {
      const auto want = expected["ids"][i].get<std::vector<int32_t>>();
      std::vector<int32_t> got;
      REQUIRE(tok.encode(strings[i], &got).is_ok());
      if (got != want && ++mismatches <= 3) {
        std::string g, w;
        for (int32_t id : got) g += std::to_string(id) + " ";
        for (int32_t id : want) w += std::to_string(id) + " ";
        MESSAGE("text " << nlohmann::json(strings[i]).dump() << "\n  ours: " << g
                        << "\n  hf:   " << w);
      }
      std::string back;
      REQUIRE(tok.decode(want, &back).is_ok());
      const std::string key = std::to_string(i);
      const std::string want_text = expected["decoded"].contains(key)
                                        ? expected["decoded"][key].get<std::string>()
                                        : strings[i];
      if (back != want_text && ++decode_mismatches <= 3)
        MESSAGE("decode of " << nlohmann::json(strings[i]).dump() << ": ours "
                             << nlohmann::json(back).dump() << ", hf "
                             << nlohmann::json(want_text).dump());
    }
    CHECK(mismatches == 0);
    CHECK(decode_mismatches == 0);
  }
}

TEST_CASE("tokenizer.json: bos/eos from tokenizer_config.json; added tokens matched in raw text") {
  Tokenizer tok;
  REQUIRE(Tokenizer::from_hf_json(std::string(PD_GOLDEN_DIR) + "/tok_llama3/tokenizer.json", &tok)
              .is_ok());
  CHECK(tok.bos() >= 0);
  CHECK(tok.token_text(tok.bos()) == "<|begin_of_text|>");
  CHECK(tok.token_text(tok.eos()) == "<|eot_id|>");
  std::vector<int32_t> ids;
  REQUIRE(tok.encode("<|begin_of_text|>hi<|eot_id|>", &ids).is_ok());
  CHECK(ids.front() == tok.bos());
  CHECK(ids.back() == tok.eos());
  REQUIRE(tok.encode("<|begin_of_text|>", &ids, /*parse_special=*/false).is_ok());
  CHECK(ids.size() > 1);
}

TEST_CASE("tokenizer.json: unsupported and corrupt files give a clear Status") {
  Tokenizer tok;
  CHECK(Tokenizer::from_hf_json("/nonexistent/tokenizer.json", &tok).code() ==
        StatusCode::kIoError);
  const pdtest::TempDir dir("tokenizer");
  const std::string tmp = dir.path("tokenizer.json");
  write_file(tmp, "{not json");
  CHECK(Tokenizer::from_hf_json(tmp, &tok).code() == StatusCode::kCorruptFile);
  write_file(tmp, R"({"model": {"type": "Unigram", "vocab": []}})");
  Status s = Tokenizer::from_hf_json(tmp, &tok);
  CHECK(s.code() == StatusCode::kUnsupported);
  CHECK(std::string(s.message()).find("Unigram") != std::string::npos);
  write_file(tmp, R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                      "pre_tokenizer": {"type": "Whitespace"}})");
  s = Tokenizer::from_hf_json(tmp, &tok);
  CHECK(s.code() == StatusCode::kUnsupported);
  CHECK(std::string(s.message()).find("Whitespace") != std::string::npos);
  write_file(tmp, R"({"model": {"type": "BPE", "vocab": {"a": -3}, "merges": []},
                      "pre_tokenizer": {"type": "ByteLevel"}})");
  CHECK(Tokenizer::from_hf_json(tmp, &tok).code() == StatusCode::kCorruptFile);
  write_file(tmp, R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["ab"]},
                      "pre_tokenizer": {"type": "ByteLevel"}})");
  CHECK(Tokenizer::from_hf_json(tmp, &tok).code() == StatusCode::kCorruptFile);
  write_file(tmp, R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                        {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"},
                        {"type": "ByteLevel", "use_regex": false}]}})");
  s = Tokenizer::from_hf_json(tmp, &tok);
  CHECK(s.code() == StatusCode::kUnsupported);
  CHECK(std::string(s.message()).find("regex") != std::string::npos);
}

TEST_CASE("tokenizer.json: bytes quoted from a corrupt file are printed escaped and cut") {
  Tokenizer tok;
  const pdtest::TempDir dir("tokenizer_quotes");
  const std::string tmp = dir.path("tokenizer.json");
  // A token with a bell and an escape sequence in its name, and no valid id.
  write_file(tmp, R"({"model": {"type": "BPE", "vocab": {"\u0007bell\u001b[0m": -3}, "merges": []},
                      "pre_tokenizer": {"type": "ByteLevel"}})");
  Status s = Tokenizer::from_hf_json(tmp, &tok);
  CHECK_MESSAGE(pdtest::clean_message(s, "token '\\x07bell\\x1b[0m' has no valid id"), s.message());
  // A model type of 200 characters with a control character: cut, escaped.
  write_file(tmp, R"({"model": {"type": "Uni\u0001)" + std::string(200, 'g') + R"("}})");
  s = Tokenizer::from_hf_json(tmp, &tok);
  CHECK_MESSAGE(pdtest::clean_message(s, "model type 'Uni\\x01ggg"), s.message());
  CHECK_MESSAGE(pdtest::clean_message(s, "...'"), s.message());
  // Raw bytes that are not UTF-8 where JSON needs a string: the parser's message quotes them.
  write_file(tmp, "{\"model\": \"\xff\xfe\x1b[2J\"}");
  s = Tokenizer::from_hf_json(tmp, &tok);
  CHECK(s.code() == StatusCode::kCorruptFile);
  CHECK_MESSAGE(pdtest::clean_message(s, "tokenizer.json"), s.message());
}
