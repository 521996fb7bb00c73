// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! `promptdistill eval ruler`: RULER's synthetic tasks (tools/ruler.h) at several lengths, every
//! method at every budget (one prefill per budget sweep on the CPU), one JSON line per sample,
//! method and budget, with the commit the CLI was built from, the machine and every setting.

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "build_info.h"
#include "generate_command.h"
#include "promptdistill/gguf.h"
#include "tools/json_line.h"
#include "tools/ruler.h"

namespace pdcli {

using namespace promptdistill;

namespace {

std::string machine_description() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::string cpu;
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; cpu.empty() && std::getline(info, line);)
    if (line.rfind("model name", 0) == 0) cpu = line.substr(line.find(':') + 2);
  return std::string(host) + ", " + (cpu.empty() ? "unknown CPU" : cpu) + ", " +
         std::to_string(std::thread::hardware_concurrency()) + " cores";
}

//! Every setting the method reads, as the JSON line records it.
nlohmann::json settings_of(const PipelineConfig& c) {
  nlohmann::json j;
  switch (c.method) {
    case PipelineMethod::kFull: break;
    case PipelineMethod::kPromptDistill:
    case PipelineMethod::kGemFilter:
      j["selection_layers"] = c.selection_layers;
      j["score_layers"] = c.score_layers;
      if (c.method == PipelineMethod::kPromptDistill)
        j["cache_truncation_end"] = c.cache_truncation_end;
      j["pool"] = to_string(c.pool);
      j["pool_kernel"] = c.pool_kernel;
      break;
    case PipelineMethod::kSnapKV:
    case PipelineMethod::kH2O:
    case PipelineMethod::kFastKV:
      j["window"] = c.window;
      j["per"] = to_string(c.grouping);
      if (c.method != PipelineMethod::kH2O) {
        j["pool"] = to_string(c.pool);
        j["pool_kernel"] = c.pool_kernel;
      }
      if (c.method == PipelineMethod::kFastKV) {
        j["tsp_layer"] = c.tsp_layer;
        j["tsp_length"] = c.tsp_length;
        j["tsp_rate"] = c.tsp_rate;
        j["retain_rate"] = c.retain_rate;
      }
      break;
  }
  return j;
}

PipelineConfig budgeted(const Args& a, const std::string& method, int64_t budget) {
  PipelineConfig c = parse_pipeline(a, method);
  if (c.method == PipelineMethod::kPromptDistill || c.method == PipelineMethod::kGemFilter)
    c.n_topks = {budget};
  else if (c.method != PipelineMethod::kFull)
    c.budget = budget;
  return c;
}

ChatTemplate chat_template_of(const Args& a, const LoadedModel& m) {
  const std::string choice = get(a, "chat-template", "auto");
  if (choice == "none") return ChatTemplate{};
  if (choice != "auto") fail("--chat-template must be auto or none, got '" + choice + "'");
  GgufFile f;
  std::string jinja;
  if (GgufFile::open(m.path, &f).is_ok()) f.get_string("tokenizer.chat_template", &jinja);
  return chat_template_from(jinja);
}

}  // namespace

int cmd_eval_ruler(const Args& a) {
  reject_unknown(a, {"model",
                     "tasks",
                     "lengths",
                     "samples",
                     "first-sample",
                     "seed",
                     "methods",
                     "budgets",
                     "selection-layers",
                     "cache-truncation-end",
                     "score-layers",
                     "window",
                     "per",
                     "pool",
                     "pool-kernel",
                     "tsp-layer",
                     "tsp-length",
                     "tsp-rate",
                     "retain-rate",
                     "out",
                     "max-new-tokens",
                     "haystack",
                     "chat-template",
                     "threads",
                     "decode-weights",
                     "kv-cache"});
  std::vector<std::string> methods = {"full",   "promptdistill", "gemfilter",
                                      "snapkv", "h2o",           "fastkv"};
  if (a.values.count("methods")) methods = a.values.at("methods");
  reject_inapplicable(a, methods);
  apply_threads(a);
  std::vector<RulerTask> tasks = all_ruler_tasks();
  if (a.values.count("tasks")) {
    tasks.clear();
    for (const std::string& name : a.values.at("tasks")) {
      RulerTask t;
      if (Status s = parse(name, &t); !s) fail("--tasks: " + std::string(s.message()));
      tasks.push_back(t);
    }
  }
  const std::vector<int64_t> lengths = get_ints(a, "lengths", {1024, 2048, 4096, 8192});
  const std::vector<int64_t> budgets = get_ints(a, "budgets", {128, 256, 512, 1024});
  const int64_t samples = get_int(a, "samples", 25), first = get_int(a, "first-sample", 0);
  const uint64_t seed = uint64_t(get_int(a, "seed", 0));
  LoadedModel m;
  load_model(a, &m);
  if (!m.has_tokenizer) fail("eval ruler needs a model with a tokenizer");
  const ChatTemplate chat = chat_template_of(a, m);
  const std::string haystack_path =
      get(a, "haystack",
          std::getenv("PROMPTDISTILL_HAYSTACK") ? std::getenv("PROMPTDISTILL_HAYSTACK")
                                                : PD_DEFAULT_HAYSTACK);
  std::ifstream in(haystack_path);
  if (!in)
    fail("cannot open the haystack '" + haystack_path +
         "' (run scripts/fetch_haystack.sh or pass --haystack FILE)");
  std::stringstream text;
  text << in.rdbuf();
  const RulerSources sources = ruler_sources(text.str());
  std::FILE* out = stdout;
  const std::string out_path = get(a, "out", "");
  if (!out_path.empty() && !(out = std::fopen(out_path.c_str(), "w")))
    fail("cannot write --out '" + out_path + "'");
  const std::string machine = machine_description();
  for (int64_t length : lengths)
    for (RulerTask task : tasks)
      for (int64_t index = first; index < first + samples; ++index) {
        RulerSample sample;
        if (Status s = ruler_sample(m.tokenizer, chat, sources, task, length, seed, index, &sample);
            !s)
          fail_status(s);
        Prompt p;
        if (Status s = m.tokenizer.encode(sample.prompt, &p.ids); !s) fail_status(s);
        // RULER's answers are short: at most 64 new tokens (FastKV's RULER driver), or its own
        // tokens_to_generate when smaller.
        const int64_t max_new =
            get_int(a, "max-new-tokens", std::min<int64_t>(64, ruler_tokens_to_generate(task)));
        for (const std::string& method : methods) {
          const bool full = method == "full";
          const std::vector<int64_t> case_budgets = full ? std::vector<int64_t>{0} : budgets;
          for (int64_t budget : case_budgets)
            if (Status v =
                    budgeted(a, method, budget).validate(m.weights.config, int64_t(p.ids.size()));
                !v)
              fail_status(v);
          const bool sweep = !full && case_budgets.size() > 1;
          std::vector<RunOutput> runs;
          if (sweep)
            runs =
                run_sweep(m, p, budgeted(a, method, case_budgets[0]), case_budgets, max_new, false);
          else
            runs = {run_one(m, p, budgeted(a, method, case_budgets[0]), max_new, "cpu", "", false)};
          for (std::size_t i = 0; i < case_budgets.size(); ++i) {
            const PipelineConfig c = budgeted(a, method, case_budgets[i]);
            const RunOutput& r = runs[i];
            nlohmann::json j;
            j["task"] = to_string(task);
            j["length"] = length;
            j["index"] = index;
            j["seed"] = seed;
            j["prompt_tokens"] = r.prefill.prompt_tokens;
            j["haystack_units"] = sample.haystack_units;
            j["method"] = method;
            j["budget"] = full ? nlohmann::json(nullptr) : nlohmann::json(case_budgets[i]);
            j["settings"] = settings_of(c);
            j["outputs"] = sample.outputs;
            j["generated"] = r.text;
            j["generated_tokens"] = r.generated.size();
            j["max_new_tokens"] = max_new;
            j["score"] = ruler_score(r.text, sample.outputs);
            j["ttft_ms"] = r.prefill.ttft_ms;
            j["prefill_shared"] = sweep;  // ttft_ms: the shared prefill's time + this budget's own
            j["decode_ms_per_token"] = r.decode_ms_per_token;
            j["retained"] = r.prefill.retained;
            j["propagated_tokens"] = r.prefill.propagated.size();
            j["cache_lengths"] = r.prefill.cache_lengths;
            j["kv_cache_bytes"] = r.kv_cache_bytes;
            j["peak_kv_cache_bytes"] = r.prefill.peak_kv_cache_bytes;
            j["chat_template"] = chat.kind;
            j["model"] = m.path;
            j["commit"] = PD_BUILD_COMMIT;
            j["machine"] = machine;
            describe_cpu_settings(m, &j);
            std::fprintf(out, "%s\n", json_line(j).c_str());
            std::fflush(out);
          }
        }
      }
  if (out != stdout) std::fclose(out);
  return 0;
}

}  // namespace pdcli
