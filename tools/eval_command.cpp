// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! `promptdistill eval passkey|needle|longbench`: a grid of lengths x depths x methods x budgets,
//! one JSON line per case.

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "generate_command.h"
#include "tools/eval.h"
#include "tools/eval_output.h"

namespace pdcli {

using namespace promptdistill;

namespace {

std::string default_haystack() {
  if (const char* env = std::getenv("PROMPTDISTILL_HAYSTACK")) return env;
  return PD_DEFAULT_HAYSTACK;
}

//! The configuration of `method` with `budget` (k for PromptDistill/GemFilter, the budget C
//! of SnapKV/H2O; ignored by full).
PipelineConfig with_budget(const Args& a, const std::string& method, int64_t budget) {
  PipelineConfig c = parse_pipeline(a, method);
  if (c.method == PipelineMethod::kPromptDistill || c.method == PipelineMethod::kGemFilter) {
    c.n_topks = {budget};
    if (c.method == PipelineMethod::kGemFilter) c.selection_layers.resize(1);
  } else {
    c.budget = budget;
  }
  return c;
}

double kept_ratio(const RunOutput& r) {
  if (r.prefill.retained.empty()) return 1.0;
  double mean = 0;
  for (int64_t k : r.prefill.retained) mean += double(k);
  mean /= double(r.prefill.retained.size());
  // PromptDistill: the last stage; SnapKV/H2O: the mean over layers; GemFilter: the one stage.
  const double kept = r.prefill.selected.size() > 1 && r.prefill.retained.size() < 8
                          ? double(r.prefill.retained.back())
                          : mean;
  return kept / double(r.prefill.prompt_tokens);
}

//! The options a line's result depends on besides its case (task, method, budget, length and
//! depth, or dataset and sample): every line records them, and --resume refuses a file whose
//! lines hold others.
nlohmann::json eval_settings(const Args& a, const LoadedModel& m, const std::string& kind) {
  nlohmann::json s;
  s["model"] = m.path;
  s["task"] = kind;
  for (const char* option : {"selection-layers", "cache-truncation-end", "window", "per", "pool",
                             "pool-kernel", "max-new-tokens", "haystack", "data", "templates",
                             "backend", "weights-dtype", "dtype", "decode-weights", "kv-cache"})
    if (a.values.count(option)) s[option] = a.values.at(option);
  s["ignore-eos"] = a.flag("ignore-eos");
  s["threads"] = promptdistill::ref::threads();
  return s;
}

}  // namespace

namespace {

int run_grid(const Args& a, const std::string& kind) {
  LoadedModel m;
  load_model(a, &m);
  if (!m.has_tokenizer)
    fail(
        "eval needs a model with a tokenizer (a GGUF file or an HF folder with a supported "
        "tokenizer.json)");
  std::vector<std::string> methods = {"full", "promptdistill", "gemfilter", "snapkv", "h2o"};
  if (a.values.count("methods")) methods = a.values.at("methods");
  const std::vector<int64_t> budgets = get_ints(a, "budgets", {64, 128, 256, 512, 1024});
  // The budgets of a method's cases (full KV has one case, without a budget).
  auto budgets_of = [&](const std::string& method) {
    return method == "full" ? std::vector<int64_t>{0} : budgets;
  };
  const std::vector<int64_t> lengths = get_ints(a, "lengths", {1024, 2048, 4096, 8000});
  const std::vector<int64_t> depths = get_ints(a, "depths", {0, 25, 50, 75, 100});
  const int64_t max_new = get_int(a, "max-new-tokens", kind == "passkey" ? 10 : 24);
  const std::string backend = get(a, "backend", "cpu");
  std::string haystack;
  if (kind == "needle") {
    const std::string path = get(a, "haystack", default_haystack());
    std::ifstream in(path);
    if (!in)
      fail("cannot open the haystack '" + path +
           "' (run scripts/fetch_haystack.sh or pass --haystack FILE)");
    std::stringstream ss;
    ss << in.rdbuf();
    haystack = ss.str();
  }
  EvalOutput out(get(a, "out", ""), a.flag("resume"), eval_settings(a, m, kind));
  // Each case still to run (--resume skips those in the file), grouped by prompt and method.
  struct MethodCases {
    std::string method;
    std::vector<int64_t> budgets;
  };
  struct PromptCases {
    int64_t length, depth;
    EvalPrompt ep;
    Prompt p;
    std::vector<MethodCases> methods;
  };
  std::vector<PromptCases> todo;
  for (int64_t length : lengths)
    for (int64_t depth : depths) {
      PromptCases pc{length, depth, {}, {}, {}};
      nlohmann::json id;
      id["task"] = kind;
      id["length"] = length;
      id["depth"] = depth;
      for (const auto& method : methods) {
        MethodCases mc{method, {}};
        const std::vector<int64_t> all = budgets_of(method);
        for (int64_t budget : all) {
          id["method"] = method;
          id["budget"] = method == "full" ? nlohmann::json(nullptr) : nlohmann::json(budget);
          if (!out.done(EvalOutput::case_key(id))) mc.budgets.push_back(budget);
        }
        if (!mc.budgets.empty()) pc.methods.push_back(mc);
      }
      if (pc.methods.empty()) continue;
      const Status s = kind == "passkey"
                           ? passkey_prompt(m.tokenizer, length, double(depth) / 100.0,
                                            uint64_t(length * 131 + depth), &pc.ep)
                           : needle_prompt(m.tokenizer, haystack, length, double(depth) / 100.0,
                                           Needle{}, &pc.ep);
      if (!s) fail_status(s);
      if (Status e = m.tokenizer.encode(pc.ep.text, &pc.p.ids); !e) fail_status(e);
      todo.push_back(std::move(pc));
    }
  // Every case's configuration and memory, before the first case runs. On the CPU a method's
  // budgets share one prefill (ref::EigenSession::prefill_sweep: the same results as one prefill
  // per budget); the CUDA session runs each budget.
  for (const PromptCases& pc : todo)
    for (const MethodCases& mc : pc.methods) {
      const int64_t n = int64_t(pc.p.ids.size());
      for (int64_t budget : mc.budgets)
        if (Status v = with_budget(a, mc.method, budget).validate(m.weights.config, n); !v)
          fail_status(v);
      const bool sweep = mc.method != "full" && backend == "cpu" && mc.budgets.size() > 1;
      if (backend == "cpu")
        check_cpu_memory(m, with_budget(a, mc.method, mc.budgets[0]), n, max_new,
                         sweep ? int64_t(mc.budgets.size()) : 1,
                         "eval " + kind + " at length " + std::to_string(pc.length));
    }
  out.open();
  for (const PromptCases& pc : todo)
    for (const MethodCases& mc : pc.methods) {
      const bool full = mc.method == "full",
                 sweep = !full && backend == "cpu" && mc.budgets.size() > 1;
      std::vector<RunOutput> runs;
      if (sweep)
        runs = run_sweep(m, pc.p, with_budget(a, mc.method, mc.budgets[0]), mc.budgets, max_new,
                         a.flag("ignore-eos"));
      for (std::size_t index = 0; index < mc.budgets.size(); ++index) {
        const int64_t budget = mc.budgets[index];
        const PipelineConfig c = with_budget(a, mc.method, budget);
        const RunOutput r = sweep ? runs[index]
                                  : run_one(m, pc.p, c, max_new, backend, get(a, "dtype", ""),
                                            a.flag("ignore-eos"));
        nlohmann::json j;
        j["task"] = kind;
        j["method"] = mc.method;
        j["budget"] = full ? nlohmann::json(nullptr) : nlohmann::json(budget);
        if (c.method == PipelineMethod::kPromptDistill || c.method == PipelineMethod::kGemFilter)
          j["selection_layers"] = c.selection_layers;
        if (c.method == PipelineMethod::kSnapKV || c.method == PipelineMethod::kH2O)
          j["per"] = to_string(c.grouping);
        j["length"] = pc.length;
        j["prompt_tokens"] = r.prefill.prompt_tokens;
        j["depth"] = pc.depth;
        j["expected"] = pc.ep.expected;
        j["generated"] = r.text;
        j["correct"] = answer_contains(r.text, pc.ep.expected);
        j["ttft_ms"] = r.prefill.ttft_ms;
        if (sweep)
          j["prefill_shared"] = true;  // ttft_ms: the shared prefill's time + this budget's own
        j["retained"] = r.prefill.retained;
        j["kept_ratio"] = kept_ratio(r);
        describe_cpu_settings(m, &j);
        out.write(j);
      }
    }
  return 0;
}

//! LongBench: every sample of every file under --data (a .jsonl file or a folder of them), middle-
//! truncated to the model's context, scored with the dataset's metric.
int run_longbench(const Args& a) {
  LoadedModel m;
  load_model(a, &m);
  if (!m.has_tokenizer)
    fail(
        "eval needs a model with a tokenizer (a GGUF file or an HF folder with a supported "
        "tokenizer.json)");
  const std::string data = get(a, "data", "");
  if (data.empty()) fail("eval longbench needs --data DIR_OR_FILE (LongBench JSON lines)");
  std::vector<std::string> files;
  struct stat st {};
  if (stat(data.c_str(), &st) != 0) fail("--data '" + data + "' not found");
  if (S_ISDIR(st.st_mode)) {
    for (const auto& e : std::filesystem::directory_iterator(data))
      if (e.path().extension() == ".jsonl") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(data);
  }
  std::vector<std::pair<std::string, std::string>> templates;
  if (a.values.count("templates"))
    if (Status s = load_longbench_templates(get(a, "templates", ""), &templates); !s)
      fail_status(s);
  EvalOutput out(get(a, "out", ""), a.flag("resume"), eval_settings(a, m, "longbench"));
  out.open();  // each sample's cases are checked before they run
  std::vector<std::string> methods = {"full", "promptdistill"};
  if (a.values.count("methods")) methods = a.values.at("methods");
  const std::vector<int64_t> budgets = get_ints(a, "budgets", PipelineConfig{}.n_topks);
  const int64_t max_new = get_int(a, "max-new-tokens", 64),
                max_samples = get_int(a, "max-samples", 1 << 30);
  std::map<std::string, std::pair<double, int64_t>> totals;
  for (const auto& file : files) {
    std::vector<LongBenchSample> samples;
    if (Status s = load_longbench(file, &samples); !s) fail_status(s);
    const std::string stem = std::filesystem::path(file).stem().string();
    for (std::size_t i = 0; i < samples.size() && int64_t(i) < max_samples; ++i) {
      LongBenchSample& sample = samples[i];
      if (sample.dataset.empty()) sample.dataset = stem;
      std::string text;
      if (Status s = longbench_prompt(sample, templates, &text); !s) fail_status(s);
      Prompt p;
      if (Status s = m.tokenizer.encode(text, &p.ids); !s) fail_status(s);
      const int64_t limit = m.weights.config.max_positions - max_new - 1;
      if (int64_t(p.ids.size()) > limit) {  // middle truncation, as LongBench's drivers do
        std::vector<int32_t> cut(p.ids.begin(), p.ids.begin() + limit / 2);
        cut.insert(cut.end(), p.ids.end() - (limit - limit / 2), p.ids.end());
        p.ids.swap(cut);
      }
      for (const auto& method : methods)  // this sample's cases, checked before the first runs
        for (int64_t budget : method == "full" ? std::vector<int64_t>{0} : budgets) {
          const PipelineConfig c = with_budget(a, method, budget);
          if (Status v = c.validate(m.weights.config, int64_t(p.ids.size())); !v) fail_status(v);
          if (get(a, "backend", "cpu") == "cpu")
            check_cpu_memory(m, c, int64_t(p.ids.size()), max_new, 1,
                             "eval longbench, " + stem + " sample " + std::to_string(i));
        }
      for (const auto& method : methods) {
        const bool full = method == "full";
        for (int64_t budget : full ? std::vector<int64_t>{0} : budgets) {
          nlohmann::json id;
          id["task"] = "longbench";
          id["dataset"] = sample.dataset;
          id["index"] = i;
          id["method"] = method;
          id["budget"] = full ? nlohmann::json(nullptr) : nlohmann::json(budget);
          if (out.done(EvalOutput::case_key(id))) continue;
          const PipelineConfig c = with_budget(a, method, budget);
          const RunOutput r = run_one(m, p, c, max_new, get(a, "backend", "cpu"),
                                      get(a, "dtype", ""), a.flag("ignore-eos"));
          double score = 0;
          if (Status s = longbench_score(sample, r.text, &score); !s) fail_status(s);
          const std::string key =
              sample.dataset + " " + method + (full ? "" : " " + std::to_string(budget));
          totals[key].first += score;
          totals[key].second += 1;
          nlohmann::json j;
          j["task"] = "longbench";
          j["dataset"] = sample.dataset;
          j["index"] = i;
          j["method"] = method;
          if (c.method == PipelineMethod::kSnapKV || c.method == PipelineMethod::kH2O)
            j["per"] = to_string(c.grouping);
          j["budget"] = full ? nlohmann::json(nullptr) : nlohmann::json(budget);
          j["prompt_tokens"] = r.prefill.prompt_tokens;
          j["generated"] = r.text;
          j["score"] = score;
          j["ttft_ms"] = r.prefill.ttft_ms;
          describe_cpu_settings(m, &j);
          out.write(j);
        }
      }
    }
  }
  for (const auto& kv : totals)
    std::fprintf(stderr, "%-40s %6.2f (%lld samples)\n", kv.first.c_str(),
                 kv.second.first / double(kv.second.second), (long long)kv.second.second);
  return 0;
}

}  // namespace

int cmd_eval(const Args& a, const std::string& kind) {
  if (kind == "ruler") return cmd_eval_ruler(a);  // its own options (tools/ruler_command.cpp)
  reject_unknown(a, {"model",
                     "lengths",
                     "depths",
                     "methods",
                     "budgets",
                     "selection-layers",
                     "cache-truncation-end",
                     "window",
                     "per",
                     "pool",
                     "pool-kernel",
                     "out",
                     "max-new-tokens",
                     "haystack",
                     "data",
                     "templates",
                     "max-samples",
                     "backend",
                     "weights-dtype",
                     "dtype",
                     "threads",
                     "decode-weights",
                     "kv-cache",
                     "prefill-weights",
                     "max-memory"});
  std::vector<std::string> methods = {"full", "promptdistill", "gemfilter", "snapkv", "h2o"};
  if (a.values.count("methods")) methods = a.values.at("methods");
  reject_inapplicable(a, methods);
  apply_threads(a);
  if (kind == "passkey" || kind == "needle") return run_grid(a, kind);
  if (kind == "longbench") return run_longbench(a);
  fail("eval takes passkey, needle, longbench or ruler, got '" + kind + "'");
}

}  // namespace pdcli
