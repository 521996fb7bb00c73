// SPDX-License-Identifier: Apache-2.0
// The evaluation harness: LongBench metrics on hand-written samples (values worked out by hand
// from LongBench's metric definitions), the LongBench loader, passkey/needle prompt builders,
// and a small passkey + needle grid through the CLI with every method, checking that the
// harness scores what the model answered (Tier: exact, the scoring is string logic).
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "support/temp_dir.h"
#include "tools/eval.h"
#include "promptdistill/gguf.h"
#include "promptdistill/pipeline.h"
#include "promptdistill/tokenizer.h"

using namespace promptdistill;

TEST_CASE("eval/longbench: metrics on hand-written samples") {
  // qa_f1: normalised tokens "paris france" vs "paris": P = 1/2, R = 1 -> F1 = 2/3.
  CHECK(longbench_qa_f1("Paris, France.", "Paris") == doctest::Approx(2.0 / 3.0));
  CHECK(longbench_qa_f1("The Eiffel Tower", "eiffel tower") ==
        doctest::Approx(1.0));  // articles dropped
  CHECK(longbench_qa_f1("London", "Paris") == 0.0);
  // ROUGE-L: LCS of "the cat sat on the mat" and "the cat is on the mat" is 5 of 6 tokens each.
  CHECK(longbench_rouge_l("the cat sat on the mat", "the cat is on the mat") ==
        doctest::Approx(5.0 / 6.0));
  CHECK(longbench_rouge_l("", "anything") == 0.0);
  // code_sim: comment lines are skipped; ratio = 2 * LCS / (len a + len b).
  CHECK(longbench_code_sim("# comment\nreturn x", "return x") == doctest::Approx(1.0));
  CHECK(longbench_code_sim("abcd", "abce") == doctest::Approx(0.75));
  // classification: only the classes the prediction names, excluding substrings of the answer.
  CHECK(longbench_classification("Answer: Location", "Location", {"Location", "Person"}) ==
        doctest::Approx(1.0));
  CHECK(longbench_classification("Location or Person", "Location", {"Location", "Person"}) ==
        doctest::Approx(0.5));
  CHECK(longbench_classification("Person", "Location", {"Location", "Person"}) == 0.0);
  // retrieval: the share of numbers in the prediction equal to the paragraph number.
  CHECK(longbench_retrieval("Paragraph 12", "Paragraph 12") == doctest::Approx(1.0));
  CHECK(longbench_retrieval("12 or 7", "Paragraph 12") == doctest::Approx(0.5));
  CHECK(longbench_count("There are 5 unique paragraphs", "5") == doctest::Approx(1.0));
  CHECK(longbench_count("4 or 5", "5") == doctest::Approx(0.5));
  LongBenchSample s;
  s.dataset = "trivia_unknown";
  double score = 0;
  CHECK(longbench_score(s, "x", &score).code() == StatusCode::kUnsupported);
  s.dataset = "triviaqa";
  s.answers = {"Paris", "City of Light"};
  REQUIRE(longbench_score(s, "Paris\nsecond line ignored", &score).is_ok());
  CHECK(score == doctest::Approx(100.0));
  s.context = "CTX";
  s.input = "Q?";
  std::string prompt;
  REQUIRE(longbench_prompt(s, {{"triviaqa", "A {context} B {input} C"}}, &prompt).is_ok());
  CHECK(prompt == "A CTX B Q? C");
  REQUIRE(longbench_prompt(s, {}, &prompt).is_ok());
  CHECK(prompt == "CTX\n\nQuestion: Q?\nAnswer:");
}

TEST_CASE("eval/longbench: loader accepts LongBench lines and names bad ones") {
  const pdtest::TempDir tmp("longbench");
  const std::string path = tmp.path("sample.jsonl");
  {
    std::ofstream f(path);
    f << R"({"input": "Who?", "context": "Text", "answers": ["Ann"], "length": 3, "dataset": "qasper", "all_classes": null})"
      << "\n\n";
    f << R"({"input": "When?", "context": "More", "answers": ["1990", "in 1990"], "dataset": "hotpotqa"})"
      << "\n";
  }
  std::vector<LongBenchSample> v;
  REQUIRE(load_longbench(path, &v).is_ok());
  REQUIRE(v.size() == 2);
  CHECK(v[1].answers.size() == 2);
  CHECK(v[0].dataset == "qasper");
  {
    std::ofstream f(path);
    f << R"({"input": "Who?", "answers": ["Ann"]})"
      << "\n";
  }
  const Status s = load_longbench(path, &v);
  CHECK(s.code() == StatusCode::kCorruptFile);
  CHECK(std::string(s.message()).find("line 1") != std::string::npos);
  CHECK(load_longbench("/nonexistent.jsonl", &v).code() == StatusCode::kIoError);
}

TEST_CASE("eval/prompts and a small grid through the CLI score known answers correctly") {
  GgufFile f;
  REQUIRE(GgufFile::open(PD_TEST_MODEL, &f).is_ok());
  Tokenizer tok;
  REQUIRE(Tokenizer::from_gguf(f, &tok).is_ok());
  for (double depth : {0.0, 0.5, 1.0}) {
    EvalPrompt p;
    REQUIRE(passkey_prompt(tok, 400, depth, 3, &p).is_ok());
    CHECK(p.expected.size() == 5);
    CHECK(p.text.find("The pass key is " + p.expected) != std::string::npos);
    CHECK(p.tokens <= 400);
    CHECK(p.tokens >= 360);
    const double at = double(p.text.find("The pass key is")) / double(p.text.size());
    CHECK(at == doctest::Approx(depth).epsilon(0.15));
  }
  CHECK(answer_contains(" It is DOLORES park.", "Dolores Park"));
  CHECK_FALSE(answer_contains("", "x"));

  const pdtest::TempDir tmp("eval");
  const std::string out = tmp.path("grid.jsonl");
  const std::string haystack = tmp.path("haystack.txt");
  {
    std::ofstream h(haystack);
    for (int i = 0; i < 400; ++i)
      h << "And the river went out of the garden, and the people walked by it in the evening " << i
        << ". ";
  }
  const std::string cmd =
      std::string(PD_CLI_PATH) +
      " eval passkey --lengths 300 --depths 0 100 --budgets 64 --selection-layers 12 --out " + out +
      " && " + PD_CLI_PATH + " eval needle --haystack " + haystack +
      " --lengths 300 --depths 50 --budgets 64 --selection-layers 12 --max-new-tokens 8 >> " + out;
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(out);
  std::string line;
  int rows = 0;
  std::set<std::string> methods;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    ++rows;
    methods.insert(j["method"].get<std::string>());
    INFO(line);
    CHECK(j["correct"].get<bool>() ==
          answer_contains(j["generated"].get<std::string>(), j["expected"].get<std::string>()));
    CHECK(j["prompt_tokens"].get<int64_t>() <= 300);
    CHECK(j["kept_ratio"].get<double>() > 0.0);
    CHECK(j["kept_ratio"].get<double>() <= 1.0);
    const bool grouped = j["method"] == "snapkv" || j["method"] == "h2o";
    CHECK(j.contains("per") == grouped);  // SnapKV/H2O lines say which variant ran
    if (grouped) CHECK(j["per"] == to_string(PipelineConfig{}.grouping));  // the published default
  }
  CHECK(rows == 2 * 5 + 5);  // passkey: 2 depths x 5 method runs; needle: 1 depth x 5
  CHECK(methods == std::set<std::string>{"full", "promptdistill", "gemfilter", "snapkv", "h2o"});

  // LongBench through the CLI: a folder of JSON-lines files, a template file, per-line scores.
  const std::string lb_data = tmp.path("lb_data"), lb_templates = tmp.path("lb_templates.json"),
                    lb_out = tmp.path("lb.jsonl");
  std::filesystem::create_directories(lb_data);
  {
    std::ofstream data(lb_data + "/passage_count.jsonl");
    data
        << R"({"input": "", "context": "Paragraph 1: cats sleep. Paragraph 2: dogs bark. Paragraph 3: cats sleep.", "answers": ["2"], "length": 12})"
        << "\n";
    std::ofstream t(lb_templates);
    t << R"({"passage_count": "{context}\n\nHow many unique paragraphs are there? Answer with a number. The answer is"})";
  }
  const std::string lb =
      std::string(PD_CLI_PATH) + " eval longbench --data " + lb_data + " --templates " +
      lb_templates +
      " --methods full promptdistill --budgets 8 --selection-layers 12 --max-new-tokens 4 --out " +
      lb_out;
  REQUIRE(std::system(lb.c_str()) == 0);
  std::ifstream lin(lb_out);
  int lb_rows = 0;
  while (std::getline(lin, line)) {
    const auto j = nlohmann::json::parse(line);
    ++lb_rows;
    INFO(line);
    CHECK(j["dataset"] == "passage_count");
    LongBenchSample sample;
    sample.dataset = "passage_count";
    sample.answers = {"2"};
    double want = -1;
    REQUIRE(longbench_score(sample, j["generated"].get<std::string>(), &want).is_ok());
    CHECK(j["score"].get<double>() == want);  // the CLI scores with the library's metric
  }
  CHECK(lb_rows == 2);
}
