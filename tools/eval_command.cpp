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

#include "tools/json_line.h"
#include "generate_command.h"
#include "tools/eval.h"

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
  const double kept = r.prefill.selected.size() > 1 && r.prefill.retained.size() < 8 ? double(r.prefill.retained.back()) : mean;
  return kept / double(r.prefill.prompt_tokens);
}

void emit(std::FILE* out, nlohmann::json j) {
  std::fprintf(out, "%s\n", pdcli::json_line(j).c_str());
  std::fflush(out);
}

}  // namespace

namespace {

int run_grid(const Args& a, const std::string& kind) {
  LoadedModel m;
  load_model(a, &m);
  if (!m.has_tokenizer) fail("eval needs a model with a tokenizer (a GGUF file or an HF folder with a supported tokenizer.json)");
  std::FILE* out = stdout;
  const std::string out_path = get(a, "out", "");
  if (!out_path.empty() && !(out = std::fopen(out_path.c_str(), "w"))) fail("cannot write --out '" + out_path + "'");
  std::vector<std::string> methods = {"full", "promptdistill", "gemfilter", "snapkv", "h2o"};
  if (a.values.count("methods")) methods = a.values.at("methods");
  const std::vector<int64_t> budgets = get_ints(a, "budgets", {64, 128, 256, 512, 1024});
  const std::vector<int64_t> lengths = get_ints(a, "lengths", {1024, 2048, 4096, 8000});
  const std::vector<int64_t> depths = get_ints(a, "depths", {0, 25, 50, 75, 100});
  const int64_t max_new = get_int(a, "max-new-tokens", kind == "passkey" ? 10 : 24);
  const std::string backend = get(a, "backend", "cpu");
  std::string haystack;
  if (kind == "needle") {
    const std::string path = get(a, "haystack", default_haystack());
    std::ifstream in(path);
    if (!in) fail("cannot open the haystack '" + path + "' (run scripts/fetch_haystack.sh or pass --haystack FILE)");
    std::stringstream ss;
    ss << in.rdbuf();
    haystack = ss.str();
  }
  for (int64_t length : lengths) {
    for (int64_t depth : depths) {
      EvalPrompt ep;
      const Status s = kind == "passkey"
                           ? passkey_prompt(m.tokenizer, length, double(depth) / 100.0, uint64_t(length * 131 + depth), &ep)
                           : needle_prompt(m.tokenizer, haystack, length, double(depth) / 100.0, Needle{}, &ep);
      if (!s) fail_status(s);
      Prompt p;
      if (Status e = m.tokenizer.encode(ep.text, &p.ids); !e) fail_status(e);
      for (const auto& method : methods) {
        const bool full = method == "full";
        const std::vector<int64_t> case_budgets = full ? std::vector<int64_t>{0} : budgets;
        // On the CPU a budget sweep shares one prefill (ref::EigenSession::prefill_sweep: the same
        // results as one prefill per budget); the CUDA session runs each budget.
        const bool sweep = !full && backend == "cpu" && case_budgets.size() > 1;
        std::vector<RunOutput> runs;
        if (sweep) {
          for (int64_t budget : case_budgets)
            if (Status v = with_budget(a, method, budget).validate(m.weights.config, int64_t(p.ids.size())); !v) fail_status(v);
          runs = run_sweep(m, p, with_budget(a, method, case_budgets[0]), case_budgets, max_new, a.flag("ignore-eos"));
        }
        for (std::size_t index = 0; index < case_budgets.size(); ++index) {
          const int64_t budget = case_budgets[index];
          const PipelineConfig c = with_budget(a, method, budget);
          if (Status v = c.validate(m.weights.config, int64_t(p.ids.size())); !v) fail_status(v);
          const RunOutput r = sweep ? runs[index] : run_one(m, p, c, max_new, backend, get(a, "dtype", ""), a.flag("ignore-eos"));
          nlohmann::json j;
          j["task"] = kind;
          j["method"] = method;
          j["budget"] = full ? nlohmann::json(nullptr) : nlohmann::json(budget);
          if (c.method == PipelineMethod::kPromptDistill || c.method == PipelineMethod::kGemFilter)
            j["selection_layers"] = c.selection_layers;
          if (c.method == PipelineMethod::kSnapKV || c.method == PipelineMethod::kH2O) j["per"] = to_string(c.grouping);
          j["length"] = length;
          j["prompt_tokens"] = r.prefill.prompt_tokens;
          j["depth"] = depth;
          j["expected"] = ep.expected;
          j["generated"] = r.text;
          j["correct"] = answer_contains(r.text, ep.expected);
          j["ttft_ms"] = r.prefill.ttft_ms;
          if (sweep) j["prefill_shared"] = true;  // ttft_ms: the shared prefill's time + this budget's own
          j["retained"] = r.prefill.retained;
          j["kept_ratio"] = kept_ratio(r);
          describe_cpu_settings(m, &j);
          emit(out, j);
        }
      }
    }
  }
  if (out != stdout) std::fclose(out);
  return 0;
}

//! LongBench: every sample of every file under --data (a .jsonl file or a folder of them), middle-
//! truncated to the model's context, scored with the dataset's metric.
int run_longbench(const Args& a) {
  LoadedModel m;
  load_model(a, &m);
  if (!m.has_tokenizer) fail("eval needs a model with a tokenizer (a GGUF file or an HF folder with a supported tokenizer.json)");
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
    if (Status s = load_longbench_templates(get(a, "templates", ""), &templates); !s) fail_status(s);
  std::FILE* out = stdout;
  const std::string out_path = get(a, "out", "");
  if (!out_path.empty() && !(out = std::fopen(out_path.c_str(), "w"))) fail("cannot write --out '" + out_path + "'");
  std::vector<std::string> methods = {"full", "promptdistill"};
  if (a.values.count("methods")) methods = a.values.at("methods");
  const std::vector<int64_t> budgets = get_ints(a, "budgets", PipelineConfig{}.n_topks);
  const int64_t max_new = get_int(a, "max-new-tokens", 64), max_samples = get_int(a, "max-samples", 1 << 30);
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
      for (const auto& method : methods) {
        const bool full = method == "full";
        for (int64_t budget : full ? std::vector<int64_t>{0} : budgets) {
          const PipelineConfig c = with_budget(a, method, budget);
          if (Status v = c.validate(m.weights.config, int64_t(p.ids.size())); !v) fail_status(v);
          const RunOutput r = run_one(m, p, c, max_new, get(a, "backend", "cpu"), get(a, "dtype", ""), a.flag("ignore-eos"));
          double score = 0;
          if (Status s = longbench_score(sample, r.text, &score); !s) fail_status(s);
          const std::string key = sample.dataset + " " + method + (full ? "" : " " + std::to_string(budget));
          totals[key].first += score;
          totals[key].second += 1;
          nlohmann::json j;
          j["task"] = "longbench";
          j["dataset"] = sample.dataset;
          j["index"] = i;
          j["method"] = method;
          if (c.method == PipelineMethod::kSnapKV || c.method == PipelineMethod::kH2O) j["per"] = to_string(c.grouping);
          j["budget"] = full ? nlohmann::json(nullptr) : nlohmann::json(budget);
          j["prompt_tokens"] = r.prefill.prompt_tokens;
          j["generated"] = r.text;
          j["score"] = score;
          j["ttft_ms"] = r.prefill.ttft_ms;
          describe_cpu_settings(m, &j);
          emit(out, j);
        }
      }
    }
  }
  for (const auto& kv : totals)
    std::fprintf(stderr, "%-40s %6.2f (%lld samples)\n", kv.first.c_str(), kv.second.first / double(kv.second.second),
                 (long long)kv.second.second);
  if (out != stdout) std::fclose(out);
  return 0;
}

}  // namespace

int cmd_eval(const Args& a, const std::string& kind) {
  if (kind == "ruler") return cmd_eval_ruler(a);  // its own options (tools/ruler_command.cpp)
  reject_unknown(a, {"model", "lengths", "depths", "methods", "budgets", "selection-layers", "cache-truncation-end", "window",
                     "per", "pool", "pool-kernel", "out", "max-new-tokens", "haystack", "data", "templates", "max-samples",
                     "backend", "weights-dtype", "dtype", "threads", "decode-weights", "kv-cache"});
  std::vector<std::string> methods = {"full", "promptdistill", "gemfilter", "snapkv", "h2o"};
  if (a.values.count("methods")) methods = a.values.at("methods");
  reject_inapplicable(a, methods);
  apply_threads(a);
  if (kind == "passkey" || kind == "needle") return run_grid(a, kind);
  if (kind == "longbench") return run_longbench(a);
  fail("eval takes passkey, needle, longbench or ruler, got '" + kind + "'");
}

}  // namespace pdcli
