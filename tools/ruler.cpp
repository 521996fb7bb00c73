// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! RULER's synthetic tasks: generation (the task texts of NVIDIA/RULER's
//! scripts/data/synthetic/constants.py and generators, written here in this project's words),
//! the size search, the chat template and the score.

#include "tools/ruler.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <numeric>
#include <set>
#include <sstream>

#include "promptdistill/detail/parse_enum.h"
#include "promptdistill/tokenizer.h"

namespace promptdistill {
namespace {

//! A splitmix64 stream: the draws of one sample, reproducible on every platform.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  int64_t below(int64_t n) { return int64_t(next() % uint64_t(n)); }
  int64_t range(int64_t lo, int64_t hi) { return lo + below(hi - lo + 1); }  // inclusive
  template <class T>
  void shuffle(std::vector<T>* v) {
    for (std::size_t i = v->size(); i > 1; --i)
      std::swap((*v)[i - 1], (*v)[std::size_t(below(int64_t(i)))]);
  }
  //! k distinct values of [0, n), in draw order.
  std::vector<int64_t> sample(int64_t n, int64_t k) {
    std::vector<int64_t> all(static_cast<std::size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    for (int64_t i = 0; i < k; ++i)
      std::swap(all[std::size_t(i)], all[std::size_t(i + below(n - i))]);
    all.resize(std::size_t(k));
    return all;
  }
};

uint64_t sample_seed(uint64_t seed, RulerTask task, int64_t length, int64_t index) {
  uint64_t h = seed;
  for (uint64_t v : {uint64_t(task) + 1, uint64_t(length), uint64_t(index)})
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

//! Python's str.format for the named fields the templates use.
std::string format(std::string text,
                   const std::vector<std::pair<std::string, std::string>>& fields) {
  for (const auto& [name, value] : fields) text = replace_all(text, "{" + name + "}", value);
  return text;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? separator : "") + parts[i];
  return out;
}

//! RULER's templates (constants.py), each with its answer prefix.
constexpr const char* kNiahTemplate =
    "Some special magic {type_needle_v} are hidden within the following text. Make sure to "
    "memorize it. I will quiz "
    "you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
    "{type_needle_v} for {query} "
    "mentioned in the provided text?";
constexpr const char* kNiahPrefix =
    " The special magic {type_needle_v} for {query} mentioned in the provided text are";
constexpr const char* kVtTemplate =
    "Memorize and track the chain(s) of variable assignment hidden in the following "
    "text.\n\n{context}\nQuestion: Find "
    "all variables that are assigned the value {query} in the text above.";
constexpr const char* kVtPrefix =
    " Answer: According to the chain(s) of variable assignment in the text above, {num_v} "
    "variables are assigned the "
    "value {query}, they are: ";
constexpr const char* kCweTemplate =
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that "
    "appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?";
constexpr const char* kCwePrefix =
    " Answer: The top 10 words that appear most often in the list are:";
constexpr const char* kFweTemplate =
    "Read the following coded text and track the frequency of each coded word. Find the three most "
    "frequently "
    "appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the "
    "dots '....'. What "
    "are the three most frequently appeared words in the above coded text?";
constexpr const char* kFwePrefix =
    " Answer: According to the coded text above, the three most frequently appeared words are:";
constexpr const char* kNoise =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

//! The task text, its answer prefix and the expected strings for a haystack of `units`.
struct Draft {
  std::string input, prefix;
  std::vector<std::string> outputs;
};

// ---- needle in a haystack
// --------------------------------------------------------------------------

struct NiahSpec {
  int64_t keys, values, queries;
};
NiahSpec niah_spec(RulerTask task) {
  switch (task) {
    case RulerTask::kNiahMultikey: return {4, 1, 1};
    case RulerTask::kNiahMultivalue: return {1, 4, 1};
    case RulerTask::kNiahMultiquery: return {4, 1, 4};
    default: return {1, 1, 1};
  }
}

//! The first `words` words of the essay (repeated when it is shorter), cut into sentences after
//! ". ", "? " and "! " (RULER uses NLTK's sentence tokenizer).
std::vector<std::string> essay_sentences(const std::vector<std::string>& essay, int64_t words) {
  std::vector<std::string> sentences;
  std::string current;
  for (int64_t i = 0; i < words; ++i) {
    const std::string& w = essay[std::size_t(i) % essay.size()];
    current += (current.empty() ? "" : " ") + w;
    const char last = w.empty() ? ' ' : w.back();
    if (last == '.' || last == '?' || last == '!') {
      sentences.push_back(current);
      current.clear();
    }
  }
  if (!current.empty()) sentences.push_back(current);
  return sentences;
}

Draft niah_draft(const RulerSources& src, RulerTask task, int64_t words, Rng rng) {
  const NiahSpec spec = niah_spec(task);
  const auto& vocab = src.vocabulary;
  std::vector<std::string> keys;
  std::vector<std::vector<std::string>> values;
  std::vector<std::string> needles;
  while (int64_t(keys.size()) < spec.keys) {  // an adjective-noun pair in RULER: two words here
    const std::string key = vocab[std::size_t(rng.below(int64_t(vocab.size())))] + "-" +
                            vocab[std::size_t(rng.below(int64_t(vocab.size())))];
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
    keys.push_back(key);
    values.emplace_back();
    for (int64_t v = 0; v < spec.values; ++v) {
      values.back().push_back(std::to_string(rng.range(1000000, 9999999)));
      needles.push_back("One of the special magic numbers for " + key +
                        " is: " + values.back().back() + ".");
    }
  }
  rng.shuffle(&needles);
  // RULER's 40 depths, np.round(np.linspace(0, 100, 40)); one per needle, without repetition.
  std::vector<int64_t> depths;
  for (int64_t i = 0; i < 40; ++i) depths.push_back(std::llround(double(i) * 100.0 / 39.0));
  const std::vector<std::string> sentences = essay_sentences(src.essay_words, words);
  std::vector<int64_t> at;
  for (int64_t d : rng.sample(40, int64_t(needles.size())))
    at.push_back(int64_t(double(sentences.size()) * double(depths[std::size_t(d)]) / 100.0));
  std::sort(at.begin(), at.end());
  at.insert(at.begin(), 0);
  at.push_back(int64_t(sentences.size()));
  std::vector<std::string> parts;
  for (std::size_t i = 1; i < at.size(); ++i) {
    parts.push_back(join(
        std::vector<std::string>(sentences.begin() + at[i - 1], sentences.begin() + at[i]), " "));
    if (i - 1 < needles.size()) parts.push_back(needles[i - 1]);
  }
  Draft d;
  std::vector<std::string> queries;
  for (int64_t k : rng.sample(spec.keys, spec.queries)) {
    queries.push_back(keys[std::size_t(k)]);
    for (const std::string& v : values[std::size_t(k)]) d.outputs.push_back(v);
  }
  std::string query = queries.back();
  if (queries.size() > 1)
    query = join(std::vector<std::string>(queries.begin(), queries.end() - 1), ", ") + ", and " +
            queries.back();
  // One value asked: RULER's singular wording, replaced in the template and its prefix alike.
  std::string templ = kNiahTemplate, prefix = kNiahPrefix, type = "numbers";
  if (spec.values * spec.queries == 1) {
    for (std::string* text : {&templ, &prefix})
      for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
               {"Some", "A"}, {"are all", "is"}, {"are", "is"}, {"answers", "answer"}})
        *text = replace_all(*text, from, to);
    type = "number";
  }
  d.input =
      format(templ, {{"type_needle_v", type}, {"context", join(parts, " ")}, {"query", query}});
  d.prefix = format(prefix, {{"type_needle_v", type}, {"query", query}});
  return d;
}

// ---- variable tracking
// ---------------------------------------------------------------------------

//! One chain of four hops (five variables) in `lines` noise lines; `letters` per name (RULER: 5,
//! 3 in its in-context example).
Draft vt_draft(int64_t lines, int64_t letters, Rng& rng) {
  lines = std::max<int64_t>(lines, 5);  // room for the chain's five lines
  std::vector<std::string> vars;
  while (vars.size() < 5) {
    std::string name;
    for (int64_t i = 0; i < letters; ++i) name.push_back(char('A' + rng.below(26)));
    if (std::find(vars.begin(), vars.end(), name) == vars.end()) vars.push_back(name);
  }
  const std::string value = std::to_string(rng.range(10000, 99999));
  std::vector<std::string> chain = {"VAR " + vars[0] + " = " + value};
  for (std::size_t j = 0; j + 1 < vars.size(); ++j)
    chain.push_back("VAR " + vars[j + 1] + " = VAR " + vars[j] + " ");
  std::vector<std::string> sentences(static_cast<std::size_t>(lines), kNoise);
  std::vector<int64_t> at = rng.sample(lines, int64_t(chain.size()));
  std::sort(at.begin(), at.end());
  for (std::size_t j = 0; j < chain.size(); ++j)
    sentences.insert(sentences.begin() + at[j] + int64_t(j), chain[j]);
  Draft d;
  d.input = format(kVtTemplate, {{"context", replace_all(join(sentences, "\n"), ". \n", ".\n")},
                                 {"query", value}});
  d.prefix = format(kVtPrefix, {{"num_v", "5"}, {"query", value}});
  d.outputs = vars;
  return d;
}

// ---- common and frequent words
// ---------------------------------------------------------------------

//! A numbered list of `words` distinct words, the first ten repeated `common` times and the others
//! `uncommon` times, shuffled; the ten are the answer.
std::string cwe_list(const RulerSources& src, int64_t words, int64_t common, int64_t uncommon,
                     Rng& rng, std::vector<std::string>* answer) {
  std::vector<std::string> chosen;
  for (int64_t i : rng.sample(int64_t(src.vocabulary.size()), words))
    chosen.push_back(src.vocabulary[std::size_t(i)]);
  std::vector<std::string> list;
  for (int64_t r = 0; r < common; ++r) list.insert(list.end(), chosen.begin(), chosen.begin() + 10);
  for (int64_t r = 0; r < uncommon; ++r) list.insert(list.end(), chosen.begin() + 10, chosen.end());
  rng.shuffle(&list);
  std::string out;
  for (std::size_t i = 0; i < list.size(); ++i)
    out += (i ? " " : "") + std::to_string(i + 1) + ". " + list[i];
  answer->assign(chosen.begin(), chosen.begin() + 10);
  return out;
}

Draft cwe_draft(const RulerSources& src, int64_t max_seq_length, int64_t words, Rng rng) {
  // RULER: below 4,096 tokens an example of 20 words (3 / 1 repeats) and 6 / 1 repeats; else 40
  // words (10 / 3) and 30 / 3.
  const bool short_target = max_seq_length < 4096;
  std::vector<std::string> example_answer;
  const std::string example = short_target ? cwe_list(src, 20, 3, 1, rng, &example_answer)
                                           : cwe_list(src, 40, 10, 3, rng, &example_answer);
  std::string numbered;
  for (std::size_t i = 0; i < example_answer.size(); ++i)
    numbered += (i ? " " : "") + std::to_string(i + 1) + ". " + example_answer[i];
  Draft d;
  const std::string context =
      cwe_list(src, words, short_target ? 6 : 30, short_target ? 1 : 3, rng, &d.outputs);
  d.input = format(std::string(kCweTemplate) + kCwePrefix, {{"context", example}}) + " " +
            numbered + "\n" + format(kCweTemplate, {{"context", context}});
  d.prefix = kCwePrefix;
  return d;
}

Draft fwe_draft(int64_t max_seq_length, int64_t words, Rng rng) {
  const int64_t vocab_size =
      std::max<int64_t>(4, (max_seq_length - ruler_tokens_to_generate(RulerTask::kFwe)) / 50);
  std::set<std::string> distinct;
  while (int64_t(distinct.size()) < vocab_size) {
    std::string w;
    for (int i = 0; i < 6; ++i) w.push_back(char('a' + rng.below(26)));
    distinct.insert(w);
  }
  std::vector<std::string> vocab(distinct.begin(), distinct.end());
  rng.shuffle(&vocab);
  vocab[0] = "...";  // the top-ranked word is noise, as in RULER
  // Zipf counts: int(words * k^-alpha / zeta(alpha)) for rank k, alpha 2 (zeta(2) = pi^2 / 6).
  const double zeta2 = 1.6449340668482264;
  std::vector<std::string> text;
  for (int64_t k = 1; k <= vocab_size; ++k)
    text.insert(text.end(), std::size_t(double(words) / (double(k) * double(k)) / zeta2),
                vocab[std::size_t(k - 1)]);
  rng.shuffle(&text);
  Draft d;
  d.input = format(kFweTemplate, {{"context", join(text, " ")}});
  d.prefix = kFwePrefix;
  d.outputs.assign(vocab.begin() + 1, vocab.begin() + 4);
  return d;
}

//! The task's draft for `units` of haystack, and RULER's step for its size.
Draft draft_of(const Tokenizer& tok, const RulerSources& src, RulerTask task,
               int64_t max_seq_length, int64_t units, Rng rng);

int64_t token_count(const Tokenizer& tok, const std::string& text) {
  std::vector<int32_t> ids;
  return tok.encode(text, &ids).is_ok() ? int64_t(ids.size()) : -1;
}

//! The largest count in [1, upper] for which `tokens(count)` stays within `budget` (tokens grows
//! with the count); 0 when even 1 does not fit.
int64_t largest_fitting(int64_t upper, int64_t budget,
                        const std::function<int64_t(int64_t)>& tokens) {
  int64_t lo = 1, hi = upper, best = 0;
  while (lo <= hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (tokens(mid) <= budget) {
      best = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return best;
}

Draft draft_of(const Tokenizer& tok, const RulerSources& src, RulerTask task,
               int64_t max_seq_length, int64_t units, Rng rng) {
  switch (task) {
    case RulerTask::kVt: {
      // One in-context example first, its noise sized to fit 500 tokens as RULER sizes it.
      Rng example_rng{rng.next()};
      const int64_t example_lines =
          std::max<int64_t>(1, largest_fitting(200, 500, [&](int64_t lines) {
                              Rng r = example_rng;
                              const Draft e = vt_draft(lines, 3, r);
                              return token_count(tok, e.input + e.prefix);
                            }));
      const Draft e = vt_draft(example_lines, 3, example_rng);
      Draft d = vt_draft(units, 5, rng);
      d.input = e.input + e.prefix + " " + join(e.outputs, " ") + "\n" + "\n" + d.input;
      return d;
    }
    case RulerTask::kCwe:
      return cwe_draft(src, max_seq_length, std::max<int64_t>(units, 11), rng);  // ten common + one
    case RulerTask::kFwe: return fwe_draft(max_seq_length, units, rng);
    default: return niah_draft(src, task, units, rng);
  }
}

}  // namespace

const char* to_string(RulerTask task) noexcept {
  switch (task) {
    case RulerTask::kNiahSingle: return "niah_single";
    case RulerTask::kNiahMultikey: return "niah_multikey";
    case RulerTask::kNiahMultivalue: return "niah_multivalue";
    case RulerTask::kNiahMultiquery: return "niah_multiquery";
    case RulerTask::kVt: return "vt";
    case RulerTask::kCwe: return "cwe";
    case RulerTask::kFwe: return "fwe";
  }
  return "unknown";
}

Status parse(std::string_view text, RulerTask* out) noexcept {
  static constexpr RulerTask kAll[] = {RulerTask::kNiahSingle,
                                       RulerTask::kNiahMultikey,
                                       RulerTask::kNiahMultivalue,
                                       RulerTask::kNiahMultiquery,
                                       RulerTask::kVt,
                                       RulerTask::kCwe,
                                       RulerTask::kFwe};
  return detail::parse_enum(text, kAll, "ruler task", out);
}

std::vector<RulerTask> all_ruler_tasks() {
  return {RulerTask::kNiahSingle,
          RulerTask::kNiahMultikey,
          RulerTask::kNiahMultivalue,
          RulerTask::kNiahMultiquery,
          RulerTask::kVt,
          RulerTask::kCwe,
          RulerTask::kFwe};
}

int64_t ruler_tokens_to_generate(RulerTask task) noexcept {
  switch (task) {
    case RulerTask::kVt: return 30;
    case RulerTask::kCwe: return 120;
    case RulerTask::kFwe: return 50;
    default: return 128;
  }
}

std::string ChatTemplate::wrap(const std::string& user, const std::string& answer_prefix) const {
  if (kind == "chatml")
    return (system.empty() ? "" : "<|im_start|>system\n" + system + "<|im_end|>\n") +
           "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n" + answer_prefix;
  if (kind == "llama3")
    return "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + user +
           "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" + answer_prefix;
  return user + answer_prefix;
}

ChatTemplate chat_template_from(const std::string& jinja) {
  ChatTemplate t;
  if (jinja.find("<|im_start|>") != std::string::npos) {
    t.kind = "chatml";
    // The system turn a template writes itself when the conversation has none (SmolLM2's).
    const std::string open = "<|im_start|>system\n";
    const std::size_t at = jinja.find(open);
    if (at != std::string::npos) {
      const std::size_t end = jinja.find("<|im_end|>", at + open.size());
      if (end != std::string::npos && jinja.find("{{", at + open.size()) > end)
        t.system = jinja.substr(at + open.size(), end - at - open.size());
    }
  } else if (jinja.find("<|start_header_id|>") != std::string::npos) {
    t.kind = "llama3";
  }
  return t;
}

RulerSources ruler_sources(const std::string& haystack) {
  RulerSources s;
  std::istringstream in(haystack);
  std::set<std::string> words;
  for (std::string w; in >> w;) {
    s.essay_words.push_back(w);
    std::string lower;
    for (char c : w)
      if (std::isalpha(static_cast<unsigned char>(c)))
        lower.push_back(char(std::tolower(static_cast<unsigned char>(c))));
    if (lower.size() >= 4) words.insert(lower);
  }
  s.vocabulary.assign(words.begin(), words.end());
  return s;
}

Status ruler_sample(const Tokenizer& tok, const ChatTemplate& chat, const RulerSources& sources,
                    RulerTask task, int64_t max_seq_length, uint64_t seed, int64_t index,
                    RulerSample* out) noexcept {
  try {
    if (sources.essay_words.empty() || sources.vocabulary.size() < 100)
      return Status(StatusCode::kInvalidArgument,
                    "ruler: the haystack text has %zu words and %zu distinct ones (too few)",
                    sources.essay_words.size(), sources.vocabulary.size());
    const Rng rng{sample_seed(seed, task, max_seq_length, index)};
    const int64_t budget = max_seq_length - ruler_tokens_to_generate(task);
    auto tokens_of = [&](int64_t units) {
      const Draft d = draft_of(tok, sources, task, max_seq_length, units, rng);
      return token_count(tok, chat.wrap(d.input, d.prefix));
    };
    // The largest haystack that fits: a probe gives tokens per unit, the search runs up to three
    // times the estimate (RULER's slack). Units: essay words, noise lines, listed words, coded
    // words.
    const int64_t probe = 64, fixed = tokens_of(1), at_probe = tokens_of(probe);
    if (fixed < 0 || at_probe < 0)
      return Status(StatusCode::kInternal, "ruler: the tokenizer failed on the task text");
    const double per_unit = std::max(1e-3, double(at_probe - fixed) / double(probe - 1));
    int64_t upper = std::max<int64_t>(probe, int64_t(3.0 * double(budget) / per_unit));
    if (task == RulerTask::kCwe)
      upper = std::min<int64_t>(upper, int64_t(sources.vocabulary.size()));
    const int64_t units = largest_fitting(upper, budget, tokens_of);
    if (units < 1)
      return Status(StatusCode::kInvalidArgument,
                    "ruler: %s does not fit %lld tokens with this tokenizer", to_string(task),
                    (long long)max_seq_length);
    const Draft d = draft_of(tok, sources, task, max_seq_length, units, rng);
    RulerSample s;
    s.task = task;
    s.input = d.input;
    s.answer_prefix = d.prefix;
    s.prompt = chat.wrap(d.input, d.prefix);
    s.outputs = d.outputs;
    s.prompt_tokens = token_count(tok, s.prompt);
    s.haystack_units = units;
    *out = std::move(s);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "ruler: out of host memory");
  }
}

double ruler_score(const std::string& prediction, const std::vector<std::string>& outputs) {
  if (outputs.empty()) return 0.0;
  std::string pred;
  for (char c : prediction) pred.push_back(static_cast<unsigned char>(c) < 0x20 ? '\n' : c);
  const std::size_t b = pred.find_first_not_of(" \t\n\r\f\v"),
                    e = pred.find_last_not_of(" \t\n\r\f\v");
  pred = b == std::string::npos ? std::string() : pred.substr(b, e - b + 1);
  for (auto& c : pred) c = char(std::tolower(static_cast<unsigned char>(c)));
  int64_t found = 0;
  for (const std::string& o : outputs) {
    std::string lower = o;
    for (auto& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
    found += pred.find(lower) != std::string::npos;
  }
  return double(found) / double(outputs.size());
}

}  // namespace promptdistill
