// SPDX-License-Identifier: Apache-2.0
// RULER's synthetic tasks (tools/ruler.h) in SmolLM2's tokenizer, on a synthetic prose haystack:
// samples are deterministic in their seed, fill the target length as RULER's rule says (prompt
// plus tokens_to_generate within it, the haystack the largest that fits), hold their answers the
// way each task defines them, and are scored as RULER scores; the chat template is read from the
// GGUF's; `eval ruler` writes one line per sample, method and budget with its settings. Exact
// (string logic and counts).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "promptdistill/gguf.h"
#include "promptdistill/tokenizer.h"
#include "support/temp_dir.h"
#include "tools/ruler.h"

using namespace promptdistill;

namespace {

struct Fixture {
  Tokenizer tok;
  ChatTemplate chat;
  RulerSources sources;
  std::string haystack;
  Fixture() {
    GgufFile f;
    REQUIRE(GgufFile::open(PD_TEST_MODEL, &f).is_ok());
    REQUIRE(Tokenizer::from_gguf(f, &tok).is_ok());
    std::string jinja;
    REQUIRE(f.get_string("tokenizer.chat_template", &jinja).is_ok());
    chat = chat_template_from(jinja);
    // Prose of 400 distinct two-syllable words with sentence ends (the KJV text in the runs).
    const char* syllables[] = {"ra",  "ven", "mo",  "lin", "gar", "den", "tu",
                               "sol", "mir", "ka",  "bel", "dor", "fen", "hal",
                               "jun", "lor", "nim", "pel", "ros", "tam"};
    std::ostringstream text;
    for (int i = 0; i < 6000; ++i) {
      const int w = (i * 7919) % 400;
      text << syllables[w % 20] << syllables[w / 20] << (i % 11 == 10 ? ". " : " ");
    }
    haystack = text.str();
    sources = ruler_sources(haystack);
  }
};

int64_t count_of(const std::string& text, const std::string& what) {
  int64_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("ruler: samples are deterministic, fill the target length and hold their answers") {
  const Fixture fx;
  REQUIRE(fx.chat.kind == "chatml");
  CHECK(fx.chat.system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  for (RulerTask task : all_ruler_tasks()) {
    CAPTURE(std::string(to_string(task)));
    RulerSample a, b, other;
    REQUIRE(ruler_sample(fx.tok, fx.chat, fx.sources, task, 1024, 7, 0, &a).is_ok());
    REQUIRE(ruler_sample(fx.tok, fx.chat, fx.sources, task, 1024, 7, 0, &b).is_ok());
    REQUIRE(ruler_sample(fx.tok, fx.chat, fx.sources, task, 1024, 7, 1, &other).is_ok());
    CHECK(a.prompt == b.prompt);
    CHECK(a.outputs == b.outputs);
    CHECK(a.prompt != other.prompt);
    // RULER's length rule: prompt + tokens_to_generate within the target, the haystack the largest
    // that fits (one more unit would not: within a unit's tokens of the budget).
    const int64_t budget = 1024 - ruler_tokens_to_generate(task);
    CHECK(a.prompt_tokens <= budget);
    CHECK(a.prompt_tokens >= budget - 40);
    CHECK(a.prompt.rfind("<|im_start|>system\nYou are a helpful AI assistant named SmolLM", 0) ==
          0);
    CHECK(a.prompt.size() > a.answer_prefix.size());
    CHECK(a.prompt.compare(a.prompt.size() - a.answer_prefix.size(), a.answer_prefix.size(),
                           a.answer_prefix) == 0);
    REQUIRE_FALSE(a.outputs.empty());
    for (const std::string& o : a.outputs) CHECK(a.input.find(o) != std::string::npos);
  }
}

TEST_CASE("ruler: each task's structure (needles, queries, chains, word counts)") {
  const Fixture fx;
  RulerSample s;
  REQUIRE(
      ruler_sample(fx.tok, fx.chat, fx.sources, RulerTask::kNiahSingle, 1024, 3, 0, &s).is_ok());
  CHECK(s.outputs.size() == 1);
  CHECK(s.outputs[0].size() == 7);
  CHECK(s.input.rfind("A special magic number is hidden within the following text.", 0) ==
        0);  // RULER's singular form
  CHECK(count_of(s.input, "One of the special magic numbers for ") == 1);
  CHECK(s.answer_prefix.find(" mentioned in the provided text is") != std::string::npos);
  REQUIRE(
      ruler_sample(fx.tok, fx.chat, fx.sources, RulerTask::kNiahMultikey, 1024, 3, 0, &s).is_ok());
  CHECK(s.outputs.size() == 1);
  CHECK(count_of(s.input, "One of the special magic numbers for ") == 4);  // three distractors
  REQUIRE(ruler_sample(fx.tok, fx.chat, fx.sources, RulerTask::kNiahMultivalue, 1024, 3, 0, &s)
              .is_ok());
  CHECK(s.outputs.size() == 4);
  CHECK(s.input.rfind("Some special magic numbers are hidden", 0) == 0);
  REQUIRE(ruler_sample(fx.tok, fx.chat, fx.sources, RulerTask::kNiahMultiquery, 1024, 3, 0, &s)
              .is_ok());
  CHECK(s.outputs.size() == 4);
  CHECK(count_of(s.answer_prefix, ", ") == 3);
  CHECK(s.answer_prefix.find(", and ") != std::string::npos);
  REQUIRE(ruler_sample(fx.tok, fx.chat, fx.sources, RulerTask::kVt, 1024, 3, 0, &s).is_ok());
  REQUIRE(s.outputs.size() == 5);
  for (std::size_t j = 1; j < 5; ++j)
    CHECK(s.input.find("VAR " + s.outputs[j] + " = VAR " + s.outputs[j - 1]) != std::string::npos);
  CHECK(count_of(s.input, "Memorize and track the chain(s)") == 2);  // its one in-context example
  // cwe below 4,096 tokens: the ten common words six times in the list, every other word once.
  REQUIRE(ruler_sample(fx.tok, fx.chat, fx.sources, RulerTask::kCwe, 1024, 3, 0, &s).is_ok());
  REQUIRE(s.outputs.size() == 10);
  const std::string list = s.input.substr(s.input.rfind("Below is a numbered list"));
  for (const std::string& w : s.outputs)
    CHECK(count_of(list, ". " + w + " ") + count_of(list, ". " + w + "\n") == 6);
  // fwe: the three answers are the most frequent coded words of the text ("..." the noise above
  // them).
  REQUIRE(ruler_sample(fx.tok, fx.chat, fx.sources, RulerTask::kFwe, 1024, 3, 0, &s).is_ok());
  REQUIRE(s.outputs.size() == 3);
  std::map<std::string, int64_t> counts;
  std::istringstream words(s.input.substr(
      s.input.find("words. ") + 7, s.input.find("\nQuestion") - s.input.find("words. ") - 7));
  for (std::string w; words >> w;) ++counts[w];
  std::vector<std::pair<int64_t, std::string>> ranked;
  for (const auto& [w, n] : counts) ranked.emplace_back(-n, w);
  std::sort(ranked.begin(), ranked.end());
  CHECK(ranked[0].second == "...");
  for (std::size_t i = 0; i < 3; ++i) CHECK(ranked[i + 1].second == s.outputs[i]);
}

TEST_CASE(
    "ruler: the score is RULER's string_match_all; chat templates are recognised or left out") {
  CHECK(ruler_score(" 1234567 and 7654321", {"1234567", "7654321"}) == 1.0);
  CHECK(ruler_score("ABCDE", {"abcde", "fghij"}) == 0.5);  // case-insensitive, a fraction
  CHECK(ruler_score("", {"x"}) == 0.0);
  CHECK(ruler_score("word\x01tail", {"word\ntail"}) == 1.0);  // control characters become newlines
  const ChatTemplate llama =
      chat_template_from("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}");
  CHECK(llama.kind == "llama3");
  CHECK(llama.wrap("Q", " A") ==
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|><|start_header_id|"
        ">assistant<|end_header_id|>\n\n A");
  const ChatTemplate none = chat_template_from("{{ messages }}");
  CHECK(none.kind == "none");
  CHECK(none.wrap("Q", " A") == "Q A");
  RulerTask t;
  CHECK(parse("niah_multikey", &t).is_ok());
  CHECK(t == RulerTask::kNiahMultikey);
  CHECK(parse("qa_1", &t).code() == StatusCode::kInvalidArgument);
}

TEST_CASE(
    "ruler: eval ruler through the CLI writes every setting, the commit and the score it "
    "computed") {
  const Fixture fx;
  const pdtest::TempDir tmp("ruler");
  const std::string haystack = tmp.path("haystack.txt"), out = tmp.path("ruler.jsonl");
  {
    std::ofstream h(haystack);
    h << fx.haystack;
  }
  const std::string cmd =
      std::string(PD_CLI_PATH) + " eval ruler --haystack " + haystack +
      " --lengths 512 --samples 1 --tasks niah_single fwe --methods full promptdistill fastkv"
      " --budgets 48 96 --selection-layers 12 --score-layers 11 12 --tsp-layer 12 --tsp-length 200"
      " --max-new-tokens 6 --out " +
      out;
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(out);
  int rows = 0;
  for (std::string line; std::getline(in, line); ++rows) {
    const auto j = nlohmann::json::parse(line);
    INFO(line.substr(0, 300));
    CHECK(j["score"].get<double>() == ruler_score(j["generated"].get<std::string>(),
                                                  j["outputs"].get<std::vector<std::string>>()));
    CHECK(j["length"] == 512);
    CHECK(j["prompt_tokens"].get<int64_t>() <= 512);
    CHECK(j["chat_template"] == "chatml");
    CHECK(std::string(j["commit"].get<std::string>()).size() >= 7);
    CHECK_FALSE(j["machine"].get<std::string>().empty());
    CHECK(j["kv_cache_bytes"].get<int64_t>() > 0);
    if (j["method"] == "promptdistill") {
      CHECK(j["settings"]["score_layers"] == std::vector<int64_t>{11, 12});
      CHECK(j["prefill_shared"] == true);
    }
    if (j["method"] == "fastkv") CHECK(j["settings"]["tsp_layer"] == 12);
  }
  CHECK(rows == 2 * (1 + 2 + 2));  // two tasks x (full + two budgets of each method)
}
