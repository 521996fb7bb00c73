// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Passkey and needle prompts, and the LongBench loader and metrics.

#include "tools/eval.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "promptdistill/tokenizer.h"

namespace promptdistill {
namespace {

int64_t count_tokens(const Tokenizer& tok, const std::string& text) {
  std::vector<int32_t> ids;
  return tok.encode(text, &ids).is_ok() ? int64_t(ids.size()) : -1;
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

//! LongBench's normalize_answer: lower case, no punctuation, no articles, single spaces.
std::string normalize_answer(const std::string& s) {
  std::string t;
  for (char c : lower(s))
    if (!std::ispunct(static_cast<unsigned char>(c))) t.push_back(c);
  std::string out;
  for (const auto& w : split_ws(t)) {
    if (w == "a" || w == "an" || w == "the") continue;
    out += (out.empty() ? "" : " ") + w;
  }
  return out;
}

template <class T>
int64_t lcs_length(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<int64_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> find_numbers(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      cur.push_back(c);
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string first_line(const std::string& s) {
  std::size_t b = s.find_first_not_of('\n');
  if (b == std::string::npos) return "";
  return s.substr(b, s.find('\n', b) - b);
}

}  // namespace

bool answer_contains(const std::string& answer, const std::string& expected) {
  return !expected.empty() && lower(answer).find(lower(expected)) != std::string::npos;
}

Status passkey_prompt(const Tokenizer& tok, int64_t target, double depth, uint64_t seed,
                      EvalPrompt* out) noexcept {
  try {
    static const std::string kIntro =
        "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
        "it. "
        "I will quiz you about the important information there.\n\n";
    static const std::string kFiller =
        "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back "
        "again. ";
    const std::string key = std::to_string(10000 + (seed * 2654435761ull) % 90000);
    const std::string needle =
        "The pass key is " + key + ". Remember it. " + key + " is the pass key. ";
    const std::string question = "\n\nWhat is the pass key? The pass key is";
    const int64_t fixed = count_tokens(tok, kIntro + needle + question);
    const int64_t per = count_tokens(tok, kFiller + kFiller) - count_tokens(tok, kFiller);
    if (fixed < 0 || per <= 0)
      return Status(StatusCode::kInternal, "passkey: the tokenizer failed on the filler");
    const int64_t reps = std::max<int64_t>(0, (target - fixed) / per);
    const int64_t before = int64_t(double(reps) * std::min(1.0, std::max(0.0, depth)) + 0.5);
    std::string text = kIntro;
    for (int64_t i = 0; i < reps; ++i) {
      if (i == before) text += needle;
      text += kFiller;
    }
    if (before >= reps) text += needle;
    text += question;
    *out = EvalPrompt{text, key, count_tokens(tok, text)};
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "passkey: out of host memory");
  }
}

Status needle_prompt(const Tokenizer& tok, const std::string& haystack, int64_t target,
                     double depth, const Needle& needle, EvalPrompt* out) noexcept {
  try {
    const std::string head = "<|im_start|> This is a very long story book: <book> ";
    const std::string tail =
        " </book>.\n Based on the content of the book, Question: " + needle.question +
        "\nAnswer:" + needle.answer_prefix;
    const int64_t fixed = count_tokens(tok, head + "\n" + needle.sentence + "\n" + tail);
    std::vector<int32_t> ids;
    PD_RETURN_IF_ERROR(tok.encode(haystack, &ids, /*parse_special=*/false));
    const int64_t budget = std::max<int64_t>(0, target - fixed);
    if (int64_t(ids.size()) < budget)
      return Status(StatusCode::kInvalidArgument,
                    "needle: the haystack has %zu tokens, %lld are needed", ids.size(),
                    (long long)budget);
    ids.resize(std::size_t(budget));
    std::string context;
    PD_RETURN_IF_ERROR(tok.decode(ids, &context));
    std::size_t at = std::size_t(double(context.size()) * std::min(1.0, std::max(0.0, depth)));
    if (at < context.size()) {
      const std::size_t end = context.find(". ", at);  // insert after the next sentence end
      at = end == std::string::npos ? context.size() : end + 1;
    }
    const std::string text =
        head + context.substr(0, at) + "\n" + needle.sentence + "\n" + context.substr(at) + tail;
    *out = EvalPrompt{text, needle.key_fact, count_tokens(tok, text)};
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "needle: out of host memory");
  }
}

Status load_longbench(const std::string& path, std::vector<LongBenchSample>* out) noexcept {
  try {
    std::ifstream in(path);
    if (!in) return Status(StatusCode::kIoError, "cannot open '%.180s'", path.c_str());
    out->clear();
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("input") || !j.contains("context") ||
          !j.contains("answers") || !j["input"].is_string() || !j["context"].is_string() ||
          !j["answers"].is_array())
        return Status(StatusCode::kCorruptFile,
                      "%.150s line %lld: expected an object with input, context and answers",
                      path.c_str(), (long long)n);
      LongBenchSample s;
      s.input = j["input"].get<std::string>();
      s.context = j["context"].get<std::string>();
      for (const auto& a : j["answers"])
        if (a.is_string()) s.answers.push_back(a.get<std::string>());
      if (j.contains("all_classes") && j["all_classes"].is_array())
        for (const auto& c : j["all_classes"])
          if (c.is_string()) s.all_classes.push_back(c.get<std::string>());
      if (j.contains("dataset") && j["dataset"].is_string())
        s.dataset = j["dataset"].get<std::string>();
      if (j.contains("length") && j["length"].is_number_integer())
        s.length = j["length"].get<int64_t>();
      out->push_back(std::move(s));
    }
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "longbench: out of host memory");
  }
}

double longbench_qa_f1(const std::string& prediction, const std::string& answer) {
  const auto p = split_ws(normalize_answer(prediction)), g = split_ws(normalize_answer(answer));
  std::map<std::string, int64_t> count;
  for (const auto& w : g) ++count[w];
  int64_t same = 0;
  for (const auto& w : p)
    if (count[w]-- > 0) ++same;
  if (same == 0) return 0.0;
  const double precision = double(same) / double(p.size()),
               recall = double(same) / double(g.size());
  return 2 * precision * recall / (precision + recall);
}

double longbench_rouge_l(const std::string& prediction, const std::string& answer) {
  const auto p = split_ws(lower(prediction)), g = split_ws(lower(answer));
  if (p.empty() || g.empty()) return 0.0;
  const double lcs = double(lcs_length(p, g));
  if (lcs == 0) return 0.0;
  const double precision = lcs / double(p.size()), recall = lcs / double(g.size());
  return 2 * precision * recall / (precision + recall);
}

double longbench_code_sim(const std::string& prediction, const std::string& answer) {
  std::string line;
  std::istringstream in(
      prediction.substr(std::min(prediction.size(), prediction.find_first_not_of('\n'))));
  while (std::getline(in, line))
    if (line.find('`') == std::string::npos && line.find('#') == std::string::npos &&
        line.find("//") == std::string::npos)
      break;
  const std::vector<char> a(line.begin(), line.end()), b(answer.begin(), answer.end());
  if (a.empty() && b.empty()) return 1.0;
  // fuzzywuzzy's ratio: 2 * matches / total length (Levenshtein ratio with substitution cost 2).
  return std::round(100.0 * 2.0 * double(lcs_length(a, b)) / double(a.size() + b.size())) / 100.0;
}

double longbench_classification(const std::string& prediction, const std::string& answer,
                                const std::vector<std::string>& all_classes) {
  std::vector<std::string> matches;
  for (const auto& c : all_classes)
    if (prediction.find(c) != std::string::npos) matches.push_back(c);
  std::vector<std::string> kept;
  for (const auto& m : matches)
    if (!(answer.find(m) != std::string::npos && m != answer)) kept.push_back(m);
  return std::find(kept.begin(), kept.end(), answer) != kept.end() ? 1.0 / double(kept.size())
                                                                   : 0.0;
}

double longbench_retrieval(const std::string& prediction, const std::string& answer) {
  // The first "Paragraph <digits>" of the answer (LongBench's r'Paragraph (\d+)').
  std::string want;
  for (std::size_t at = answer.find("Paragraph "); at != std::string::npos && want.empty();
       at = answer.find("Paragraph ", at + 1)) {
    std::size_t e = at + 10;
    while (e < answer.size() && std::isdigit(static_cast<unsigned char>(answer[e])))
      want.push_back(answer[e++]);
  }
  if (want.empty()) return 0.0;
  const auto numbers = find_numbers(prediction);
  if (numbers.empty()) return 0.0;
  return double(std::count(numbers.begin(), numbers.end(), want)) / double(numbers.size());
}

double longbench_count(const std::string& prediction, const std::string& answer) {
  const auto numbers = find_numbers(prediction);
  if (numbers.empty()) return 0.0;
  return double(std::count(numbers.begin(), numbers.end(), answer)) / double(numbers.size());
}

Status longbench_score(const LongBenchSample& s, const std::string& prediction,
                       double* score) noexcept {
  try {
    static const std::map<std::string, int> kMetric = {{"narrativeqa", 0},
                                                       {"qasper", 0},
                                                       {"multifieldqa_en", 0},
                                                       {"hotpotqa", 0},
                                                       {"2wikimqa", 0},
                                                       {"musique", 0},
                                                       {"triviaqa", 0},
                                                       {"gov_report", 1},
                                                       {"qmsum", 1},
                                                       {"multi_news", 1},
                                                       {"samsum", 1},
                                                       {"trec", 2},
                                                       {"passage_retrieval_en", 3},
                                                       {"passage_count", 4},
                                                       {"lcc", 5},
                                                       {"repobench-p", 5}};
    const auto it = kMetric.find(s.dataset);
    if (it == kMetric.end())
      return Status(StatusCode::kUnsupported, "longbench: no metric for dataset '%s'",
                    Quoted(s.dataset, 60).c_str());
    // Few-shot tasks score the first line of the answer only (as LongBench's scorer does).
    const bool first_only = s.dataset == "trec" || s.dataset == "triviaqa" || s.dataset == "samsum";
    const std::string pred = first_only ? first_line(prediction) : prediction;
    double best = 0;
    for (const auto& a : s.answers) {
      double v = 0;
      switch (it->second) {
        case 0: v = longbench_qa_f1(pred, a); break;
        case 1: v = longbench_rouge_l(pred, a); break;
        case 2: v = longbench_classification(pred, a, s.all_classes); break;
        case 3: v = longbench_retrieval(pred, a); break;
        case 4: v = longbench_count(pred, a); break;
        default: v = longbench_code_sim(pred, a); break;
      }
      best = std::max(best, v);
    }
    *score = 100.0 * best;
    return Status::ok();
  } catch (const std::exception&) {
    return Status(StatusCode::kInternal, "longbench: scoring failed");
  }
}

Status load_longbench_templates(const std::string& path,
                                std::vector<std::pair<std::string, std::string>>* out) noexcept {
  try {
    std::ifstream in(path);
    if (!in) return Status(StatusCode::kIoError, "cannot open '%.180s'", path.c_str());
    std::stringstream ss;
    ss << in.rdbuf();
    const auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return Status(StatusCode::kCorruptFile, "%.180s: not a JSON object of templates",
                    path.c_str());
    out->clear();
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.value().is_string()) out->emplace_back(it.key(), it.value().get<std::string>());
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "longbench: out of host memory");
  }
}

Status longbench_prompt(const LongBenchSample& s,
                        const std::vector<std::pair<std::string, std::string>>& templates,
                        std::string* prompt) noexcept {
  try {
    std::string t = "{context}\n\nQuestion: {input}\nAnswer:";
    for (const auto& kv : templates)
      if (kv.first == s.dataset) t = kv.second;
    for (const auto& field : {std::make_pair(std::string("{context}"), &s.context),
                              std::make_pair(std::string("{input}"), &s.input)}) {
      const std::size_t at = t.find(field.first);
      if (at != std::string::npos) t.replace(at, field.first.size(), *field.second);
    }
    *prompt = std::move(t);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "longbench: out of host memory");
  }
}

}  // namespace promptdistill
