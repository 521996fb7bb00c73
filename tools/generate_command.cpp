// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "generate_command.h"

#include "tools/json_line.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "promptdistill/batch_session.h"
#include "promptdistill/gguf.h"
#include "tools/prompts.h"
#include "promptdistill/session_ref.h"
#include "promptdistill/tokenizer.h"

namespace pdcli {

using namespace promptdistill;

namespace {
constexpr std::initializer_list<const char*> kGenerateOptions = {
    "model",        "method",         "selection-layers", "n-topks",         "cache-truncation-end",
    "score-layers", "budget",         "capacity",         "window",          "per",
    "pool",         "pool-kernel",    "tsp-layer",        "tsp-length",      "tsp-rate",
    "retain-rate",  "prompt",         "prompt-file",      "prompt-ids",      "max-new-tokens",
    "backend",      "prompt-words",   "methods",          "weights-dtype",   "dtype",
    "threads",      "decode-weights", "kv-cache",         "prefill-weights", "max-positions",
    "max-memory"};

}  // namespace

std::string default_model_path() {
  if (const char* env = std::getenv("PROMPTDISTILL_MODEL")) return env;
  return PD_DEFAULT_MODEL;
}

void load_model(const std::string& spec, LoadedModel* m) {
  m->path = spec == "default" ? default_model_path() : spec;
  struct stat st {};
  if (stat(m->path.c_str(), &st) != 0)
    fail("model '" + m->path + "' not found" +
         (spec == "default" ? " (run scripts/fetch_model.sh)" : ""));
  if (S_ISDIR(st.st_mode)) {
    const Status s = load_hf_model(m->path, &m->weights);
    if (!s) fail_status(s);
    // tokenizer.json (Llama-3, Qwen2, Llama-2/Phi-3 families); without one, --prompt-ids works.
    const std::string tok = m->path + "/tokenizer.json";
    if (stat(tok.c_str(), &st) == 0) {
      const Status t = Tokenizer::from_hf_json(tok, &m->tokenizer);
      if (!t)
        m->tokenizer_problem = t.message();
      else if (m->tokenizer.vocab_size() > m->weights.config.vocab)
        fail("the tokenizer in " + tok + " has " + std::to_string(m->tokenizer.vocab_size()) +
             " tokens, more than the model's vocabulary of " +
             std::to_string(m->weights.config.vocab));
      else
        m->has_tokenizer = true;
    }
    return;
  }
  const Status s = load_gguf_model(m->path, &m->weights);
  if (!s) fail_status(s);
  GgufFile f;
  if (GgufFile::open(m->path, &f).is_ok() && Tokenizer::from_gguf(f, &m->tokenizer).is_ok())
    m->has_tokenizer = true;
}

void load_model(const Args& a, LoadedModel* m) {
  m->max_memory_bytes = max_memory_option(a);  // checked before the model is read
  load_model(get(a, "model", "default"), m);
  // --weights-dtype bf16|f16: the CPU decoder computes with 16-bit-rounded weights (what the CUDA
  // session stores), to separate weight rounding from activation rounding when comparing.
  const std::string dtype = get(a, "weights-dtype", "f32");
  DType t = DType::kF32;
  if (dtype == "bf16")
    t = DType::kBF16;
  else if (dtype == "f16")
    t = DType::kF16;
  else if (dtype != "f32")
    fail("--weights-dtype must be f32, bf16 or f16, got '" + dtype + "'");
  const Status s = round_weights(&m->weights, t);
  if (!s) fail_status(s);
  // The CPU decode modes (transformer_ref.h): exact f32 unless asked.
  ref::DecodeWeightFormat format = ref::DecodeWeightFormat::kF32;
  if (Status p = ref::parse(get(a, "decode-weights", "f32"), &format); !p)
    fail("--decode-weights: " + std::string(p.message()));
  if (Status p = ref::parse(get(a, "kv-cache", "f32"), &m->decode.kv); !p)
    fail("--kv-cache: " + std::string(p.message()));
  if (get(a, "backend", "cpu") != "cpu" &&
      (a.values.count("decode-weights") || a.values.count("kv-cache")))
    fail("--decode-weights and --kv-cache choose how the CPU backend decodes");
  if (format == ref::DecodeWeightFormat::kGguf && dtype != "f32")
    fail("--decode-weights gguf keeps the file's own tensors; it cannot follow --weights-dtype " +
         dtype);
  // --max-positions: raise the model's context (RoPE unchanged: positions past the trained ones
  // extrapolate), e.g. to time a prompt longer than the model was trained for.
  if (a.values.count("max-positions")) {
    const int64_t n = get_int(a, "max-positions", 0);
    if (n < 1 || n > (int64_t(1) << 24))
      fail("--max-positions must be between 1 and 16777216, got " + std::to_string(n));
    m->weights.config.max_positions = n;
  }
  ref::PrefillWeightFormat prefill = ref::PrefillWeightFormat::kF32;
  if (Status p = ref::parse(get(a, "prefill-weights", "f32"), &prefill); !p)
    fail("--prefill-weights: " + std::string(p.message()));
  if (get(a, "backend", "cpu") != "cpu" &&
      (a.values.count("prefill-weights") || a.values.count("max-positions")))
    fail("--prefill-weights and --max-positions are for the CPU backend");
  if (get(a, "backend", "cpu") == "cpu") {
    const Status p = ref::PrefillWeights::create(m->weights, prefill, &m->prefill_weights);
    if (!p) fail_status(p);
  }
  if (format != ref::DecodeWeightFormat::kF32) {
    struct stat st {};
    const bool gguf_file = stat(m->path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
    const Status d = ref::DecodeWeights::create(
        m->weights, format, gguf_file ? m->path : std::string(), &m->decode_weights);
    if (!d) fail_status(d);
    m->decode.weights = &m->decode_weights;
  }
}

int apply_threads(const Args& a) {
  const int64_t n = get_int(a, "threads", 0);
  if (n < 0 || n > 4096)
    fail("--threads must be between 1 and 4096 (0 keeps the default), got " + std::to_string(n));
  ref::set_threads(int(n));
  return ref::threads();
}

void describe_cpu_settings(const LoadedModel& m, nlohmann::json* j) {
  (*j)["threads"] = ref::threads();
  (*j)["decode_weights"] =
      m.decode.weights != nullptr ? m.decode.weights->describe() : std::string("f32");
  (*j)["kv_cache"] = to_string(m.decode.kv);
  (*j)["prefill_weights"] = m.prefill_weights.describe();
  (*j)["cpu_kernels"] = ref::cpu_kernels();
}

namespace {
Prompt resolve_prompt(const Args& a, const LoadedModel& m) {
  Prompt p;
  std::string text;
  const int given = int(a.values.count("prompt")) + int(a.values.count("prompt-file")) +
                    int(a.values.count("prompt-ids"));
  if (given > 1) fail("give one of --prompt, --prompt-file and --prompt-ids");
  if (a.values.count("prompt-ids")) {
    std::ifstream in(get(a, "prompt-ids", ""));
    if (!in) fail("cannot open --prompt-ids file '" + get(a, "prompt-ids", "") + "'");
    long long id;
    while (in >> id) {
      if (id < 0 || id >= m.weights.config.vocab)
        fail("--prompt-ids: token " + std::to_string(id) + " is outside the vocabulary");
      p.ids.push_back(int32_t(id));
    }
    if (!in.eof()) fail("--prompt-ids: expected whitespace-separated integers");
    return p;
  }
  if (a.values.count("prompt")) {
    text.clear();
    for (const auto& part : a.values.at("prompt")) text += (text.empty() ? "" : " ") + part;
  } else if (a.values.count("prompt-file")) {
    std::ifstream in(get(a, "prompt-file", ""));
    if (!in) fail("cannot open --prompt-file '" + get(a, "prompt-file", "") + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  } else {
    const HaystackPrompt h = haystack_prompt(get_int(a, "prompt-words", 2400), 0.4, 7);
    text = h.text;
    p.expected = h.expected;
  }
  if (!m.has_tokenizer)
    fail(m.tokenizer_problem.empty()
             ? "this model folder has no tokenizer.json: use --prompt-ids"
             : "cannot use this model's tokenizer (" + m.tokenizer_problem + "): use --prompt-ids");
  const Status s = m.tokenizer.encode(text, &p.ids);
  if (!s) fail_status(s);
  return p;
}

}  // namespace

PipelineConfig parse_pipeline(const Args& a, const std::string& method) {
  PipelineMethod parsed;
  Status s = parse(method, &parsed);
  if (!s) fail_status(s);
  // The published settings (the only defaults), then what the command line gives.
  PipelineConfig c = PipelineConfig::published_default(parsed);
  c.selection_layers = get_ints(a, "selection-layers", c.selection_layers);
  c.n_topks = get_ints(a, "n-topks", c.n_topks);
  c.cache_truncation_end = get_int(a, "cache-truncation-end", c.cache_truncation_end);
  // Method options are set on the methods that read them (compare and eval run several).
  if (c.method == PipelineMethod::kPromptDistill || c.method == PipelineMethod::kGemFilter)
    c.score_layers = get_ints(a, "score-layers", c.score_layers);
  c.budget = get_int(a, renamed_option(a, "budget", "capacity"), c.budget);
  c.window = int32_t(get_int(a, "window", c.window));
  if (c.method != PipelineMethod::kFastKV)
    parse_option(a, "per", to_string(c.grouping), &c.grouping);
  c.tsp_layer = get_int(a, "tsp-layer", c.tsp_layer);
  c.tsp_length = get_int(a, "tsp-length", c.tsp_length);
  c.tsp_rate = get_double(a, "tsp-rate", c.tsp_rate);
  c.retain_rate = get_double(a, "retain-rate", c.retain_rate);
  // Pooling applies to the methods that pool (in compare and eval, to those among several);
  // H2O never pools, and reject_inapplicable refuses --pool when no method reads it.
  if (c.method != PipelineMethod::kH2O) {
    parse_option(a, "pool", to_string(c.pool), &c.pool);
    c.pool_kernel = int32_t(get_int(a, "pool-kernel", c.pool_kernel));
  }
  return c;
}

void reject_inapplicable(const Args& a, const std::vector<std::string>& methods) {
  // Which pipelines read each method option; one that none of the methods reads is refused
  // rather than accepted and ignored.
  struct Use {
    const char* option;
    std::vector<PipelineMethod> read_by;
  };
  const Use uses[] = {
      {"selection-layers", {PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter}},
      {"n-topks", {PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter}},
      {"cache-truncation-end", {PipelineMethod::kPromptDistill}},
      {"score-layers", {PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter}},
      {"budget", {PipelineMethod::kSnapKV, PipelineMethod::kH2O, PipelineMethod::kFastKV}},
      {"capacity", {PipelineMethod::kSnapKV, PipelineMethod::kH2O}},  // the former name of --budget
      {"window", {PipelineMethod::kSnapKV, PipelineMethod::kH2O, PipelineMethod::kFastKV}},
      {"per", {PipelineMethod::kSnapKV, PipelineMethod::kH2O}},
      {"pool",
       {PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter, PipelineMethod::kSnapKV,
        PipelineMethod::kFastKV}},
      {"pool-kernel",
       {PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter, PipelineMethod::kSnapKV,
        PipelineMethod::kFastKV}},
      {"tsp-layer", {PipelineMethod::kFastKV}},
      {"tsp-length", {PipelineMethod::kFastKV}},
      {"tsp-rate", {PipelineMethod::kFastKV}},
      {"retain-rate", {PipelineMethod::kFastKV}},
  };
  std::vector<PipelineMethod> given;
  for (const std::string& name : methods) {
    PipelineMethod m;
    const Status s = parse(name, &m);
    if (!s) fail_status(s);
    given.push_back(m);
  }
  for (const Use& use : uses) {
    if (!a.values.count(use.option)) continue;
    bool read = false;
    for (PipelineMethod m : given)
      read = read || std::find(use.read_by.begin(), use.read_by.end(), m) != use.read_by.end();
    if (read) continue;
    std::string readers, names;
    for (PipelineMethod m : use.read_by)
      readers += std::string(readers.empty() ? "" : ", ") + to_string(m);
    for (const std::string& name : methods) names += (names.empty() ? "" : ", ") + name;
    fail(std::string("--") + use.option + " does not apply to " + names + " (only to " + readers +
         ")");
  }
}

namespace {
//! Resets the kernel's peak-RSS counter (Linux /proc/self/clear_refs "5"), so each run's peak is
//! its own.
void reset_peak_rss() {
  if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}
int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  return 0;
}

}  // namespace

namespace {
//! The K/V a session's caches hold (f32): length x heads x head_dim, keys and values, every layer.
int64_t held_kv_bytes(const ref::EigenSession& session, const ModelConfig& config) {
  int64_t bytes = 0;
  for (const auto& cache : session.caches())
    bytes += cache.length * cache.heads * config.head_dim * 2 * int64_t(sizeof(float));
  return bytes;
}

//! One prefill + greedy decode on a device backend's BatchSession with storage type T.
template <class Session>
Status run_session(const LoadedModel& m, const Prompt& p, const PipelineConfig& c, int64_t max_new,
                   const std::vector<int32_t>& stop, RunOutput* out) {
  std::unique_ptr<Session> session;
  BatchSessionOptions options;
  options.memory_limit_bytes = m.max_memory_bytes;  // 0: the device's free memory
  PD_RETURN_IF_ERROR(Session::create(&m.weights, options, nullptr, &session));
  std::vector<PrefillResult> res;
  PD_RETURN_IF_ERROR(session->prefill({p.ids}, c, &res));
  out->prefill = res[0];
  std::vector<std::vector<int32_t>> generated;
  PD_RETURN_IF_ERROR(session->generate({out->prefill.first_token}, max_new, stop, &generated,
                                       &out->decode_ms_per_token));
  out->generated = generated[0];
  out->peak_memory = session->peak_memory_bytes();
  return Status::ok();
}
}  // namespace

RunOutput run_one(const LoadedModel& m, const Prompt& p, const PipelineConfig& c, int64_t max_new,
                  const std::string& backend, const std::string& dtype, bool ignore_eos) {
  const std::vector<int32_t> stop =
      ignore_eos ? std::vector<int32_t>{} : m.weights.config.eos_tokens;
  if (!dtype.empty() && dtype != "bf16" && dtype != "f16" && dtype != "f32")
    fail("--dtype must be bf16, f16 or f32, got '" + dtype + "'");
  if (backend == "cpu" && !dtype.empty())
    fail(
        "--dtype is for a device backend (--backend cuda); the CPU backend computes in f32 "
        "(--weights-dtype rounds its weights)");
  RunOutput out;
  if (backend != "cpu") {
    // A device backend runs the batch session: bf16 (or --dtype f16/f32) weights and activations,
    // f32 accumulation and logits; peak memory = device memory the session held (weights,
    // caches, activations, workspaces).
    const Status s = with_backend(backend, [&](auto device) -> Status {
      using B = decltype(device);
      if constexpr (B::kHostMemory) {
        return Status(StatusCode::kInternal, "--backend %s runs the Eigen session", B::kName);
      } else {
        if (dtype == "f16") return run_session<BatchSession<B, f16>>(m, p, c, max_new, stop, &out);
        if (dtype == "f32")
          return run_session<BatchSession<B, float>>(m, p, c, max_new, stop, &out);
        return run_session<BatchSession<B, bf16>>(m, p, c, max_new, stop, &out);
      }
    });
    if (!s) fail_status(s);
    out.memory_kind = "device";
  } else {
    check_cpu_memory(m, c, int64_t(p.ids.size()), max_new, 1, "the prefill");
    reset_peak_rss();
    ref::EigenSession session(&m.weights);
    session.set_prefill_weights(&m.prefill_weights);
    session.set_decode_options(m.decode);
    const bool bar =
        isatty(fileno(stderr)) && p.ids.size() >= 1024;  // long runs on a terminal only
    if (bar)
      session.set_progress([&](int64_t done, int64_t total) {
        const int width = 30, filled = int(width * done / std::max<int64_t>(total, 1));
        std::fprintf(stderr, "\r%-14s [%.*s%*s] %lld/%lld layers", to_string(c.method), filled,
                     "##############################", width - filled, "", (long long)done,
                     (long long)total);
        if (done == total) std::fprintf(stderr, "\r%*s\r", 70, "");
      });
    Status s = session.prefill(p.ids, c, &out.prefill);
    if (!s) fail_status(s);
    out.kv_cache_bytes = held_kv_bytes(session, m.weights.config);
    s = session.generate(out.prefill.first_token, max_new, stop, &out.generated,
                         &out.decode_ms_per_token);
    if (!s) fail_status(s);
    out.peak_memory = peak_rss_bytes();
    out.memory_kind = "resident";
  }
  if (m.has_tokenizer) m.tokenizer.decode(out.generated, &out.text, /*skip_special=*/true);
  return out;
}

std::vector<RunOutput> run_sweep(const LoadedModel& m, const Prompt& p,
                                 const PipelineConfig& config, const std::vector<int64_t>& budgets,
                                 int64_t max_new, bool ignore_eos) {
  const std::vector<int32_t> stop =
      ignore_eos ? std::vector<int32_t>{} : m.weights.config.eos_tokens;
  std::vector<RunOutput> outputs(budgets.size());
  check_cpu_memory(m, config, int64_t(p.ids.size()), max_new, int64_t(budgets.size()),
                   "the shared prefill of a budget sweep");
  ref::EigenSession session(&m.weights);
  session.set_prefill_weights(&m.prefill_weights);
  session.set_decode_options(m.decode);
  const Status s = session.prefill_sweep(
      p.ids, config, budgets, [&](std::size_t i, const PrefillResult& result) {
        RunOutput& out = outputs[i];
        out.prefill = result;
        out.kv_cache_bytes = held_kv_bytes(session, m.weights.config);
        PD_RETURN_IF_ERROR(session.generate(result.first_token, max_new, stop, &out.generated,
                                            &out.decode_ms_per_token));
        out.memory_kind = "resident";  // one process serves every budget: no peak of its own
        if (m.has_tokenizer) m.tokenizer.decode(out.generated, &out.text, /*skip_special=*/true);
        return Status::ok();
      });
  if (!s) fail_status(s);
  return outputs;
}

namespace {
std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (auto x : v) s += (s.empty() ? "" : "/") + std::to_string(x);
  return s.empty() ? "-" : s;
}

}  // namespace

int cmd_generate(const Args& a) {
  reject_unknown(a, kGenerateOptions);
  if (a.values.count("methods"))
    fail("generate runs one --method (compare runs several --methods)");
  reject_inapplicable(a, {get(a, "method", "full")});
  apply_threads(a);
  LoadedModel m;
  load_model(a, &m);
  const Prompt p = resolve_prompt(a, m);
  const PipelineConfig c = parse_pipeline(a, get(a, "method", "full"));
  const Status valid = c.validate(m.weights.config, int64_t(p.ids.size()));
  if (!valid) fail_status(valid);
  const RunOutput r = run_one(m, p, c, get_int(a, "max-new-tokens", 50), get(a, "backend", "cpu"),
                              get(a, "dtype", ""), a.flag("ignore-eos"));
  if (a.flag("json")) {
    nlohmann::json j;
    j["method"] = to_string(c.method);
    j["prompt_tokens"] = r.prefill.prompt_tokens;
    j["retained"] = r.prefill.retained;
    if (a.flag("dump-selection")) {
      // PromptDistill/GemFilter: [stage][i] (one row each); SnapKV/H2O: [layer][row][i], every
      // KV group's (or query head's) row.
      nlohmann::json dump = nlohmann::json::array();
      const bool per_row = c.method == PipelineMethod::kSnapKV ||
                           c.method == PipelineMethod::kH2O || c.method == PipelineMethod::kFastKV;
      for (const auto& selection : r.prefill.selected)
        dump.push_back(per_row ? nlohmann::json(selection) : nlohmann::json(selection[0]));
      j["selected_indices"] = dump;
    }
    // SnapKV/H2O: which variant ran (the published one selects per query head); FastKV's rows are
    // per KV group, and it reports the positions its TSP layer propagated.
    const bool grouped = c.method == PipelineMethod::kSnapKV || c.method == PipelineMethod::kH2O ||
                         c.method == PipelineMethod::kFastKV;
    j["per"] = grouped ? nlohmann::json(to_string(c.grouping)) : nlohmann::json(nullptr);
    if (c.method == PipelineMethod::kFastKV) {
      j["propagated_tokens"] = r.prefill.propagated.size();
      if (a.flag("dump-selection")) j["propagated"] = r.prefill.propagated;
    }
    if (!c.score_layers.empty()) j["score_layers"] = c.score_layers;
    // How generation ended, as the reference loops do it: the prefill's token is always kept; a
    // decoded stop token ends the output and is not in generated_ids (nor in text).
    j["stop_tokens"] = a.flag("ignore-eos") ? std::vector<int32_t>{} : m.weights.config.eos_tokens;
    j["stop_token_in_output"] = false;
    j["ignore_eos"] = a.flag("ignore-eos");
    j["cache_lengths"] = r.prefill.cache_lengths;
    j["generated_ids"] = r.generated;
    j["text"] = r.text;
    j["ttft_ms"] = r.prefill.ttft_ms;
    j["selection_ms"] = r.prefill.selection_ms;
    j["decode_ms_per_token"] = r.decode_ms_per_token;
    j["peak_memory_bytes"] = r.peak_memory;
    j["peak_memory_kind"] = r.memory_kind;
    j["backend"] = get(a, "backend", "cpu");
    describe_cpu_settings(m, &j);
    j["peak_kv_cache_bytes"] = r.prefill.peak_kv_cache_bytes;
    if (!p.expected.empty()) j["expected"] = p.expected;
    std::printf("%s\n", pdcli::json_line(j).c_str());
    return 0;
  }
  std::printf(
      "%s: %lld prompt tokens, kept %s, TTFT %.0f ms, decode %.1f ms/token, peak %s memory %.0f "
      "MiB, peak KV %.1f MiB\n",
      to_string(c.method), (long long)r.prefill.prompt_tokens, join(r.prefill.retained).c_str(),
      r.prefill.ttft_ms, r.decode_ms_per_token, r.memory_kind.c_str(),
      double(r.peak_memory) / 1048576.0, double(r.prefill.peak_kv_cache_bytes) / 1048576.0);
  std::printf("%s\n", r.text.c_str());
  return 0;
}

int cmd_compare(const Args& a) {
  reject_unknown(a, kGenerateOptions);
  if (a.values.count("method")) fail("compare runs --methods (generate runs one --method)");
  std::vector<std::string> methods = {"full", "promptdistill"};
  if (a.values.count("methods")) methods = a.values.at("methods");
  reject_inapplicable(a, methods);
  const int threads = apply_threads(a);
  LoadedModel m;
  load_model(a, &m);
  const Prompt p = resolve_prompt(a, m);
  const int64_t max_new = get_int(a, "max-new-tokens", 12);
  for (const auto& method :
       methods) {  // every method's configuration and memory before the first runs
    const PipelineConfig c = parse_pipeline(a, method);
    if (const Status valid = c.validate(m.weights.config, int64_t(p.ids.size())); !valid)
      fail_status(valid);
    if (get(a, "backend", "cpu") == "cpu")
      check_cpu_memory(m, c, int64_t(p.ids.size()), max_new, 1, "compare");
  }
  std::printf("model %s (%lld layers), prompt of %zu tokens%s%s\n", m.path.c_str(),
              (long long)m.weights.config.num_layers, p.ids.size(),
              p.expected.empty() ? "" : "; the answer should contain ", p.expected.c_str());
  if (get(a, "backend", "cpu") == "cpu")
    std::printf("CPU: %d threads, kernels %s; prefill weights %s; decode weights %s, KV cache %s\n",
                threads, ref::cpu_kernels().c_str(), m.prefill_weights.describe().c_str(),
                m.decode.weights != nullptr ? m.decode.weights->describe().c_str() : "f32 (exact)",
                to_string(m.decode.kv));
  std::printf("%-22s %-12s %10s %12s %10s %10s  %s\n", "method", "kept", "TTFT ms", "decode ms/t",
              get(a, "backend", "cpu") == "cuda" ? "GPU MiB" : "RSS MiB", "KV MiB", "answer");
  for (const auto& method : methods) {
    const PipelineConfig c = parse_pipeline(a, method);
    const RunOutput r = run_one(m, p, c, max_new, get(a, "backend", "cpu"), get(a, "dtype", ""),
                                a.flag("ignore-eos"));
    std::string answer = r.text;
    for (auto& ch : answer)
      if (ch == '\n') ch = ' ';
    const bool correct = !p.expected.empty() && r.text.find(p.expected) != std::string::npos;
    // SnapKV/H2O say which variant ran: per query head (published) or per KV group; a selection
    // aggregated over layers says over which.
    const bool grouped = c.method == PipelineMethod::kSnapKV || c.method == PipelineMethod::kH2O;
    std::string name =
        grouped ? method + " (per " +
                      (c.grouping == HeadGrouping::kPerQueryHead ? "head" : "KV group") + ")"
                : method;
    if (!c.score_layers.empty())
      name += " (layers " + std::to_string(c.score_layers.front()) + "-" +
              std::to_string(c.score_layers.back()) + ")";
    // Per-layer methods keep the same count in every layer: shown once; FastKV adds what it
    // propagated.
    std::vector<int64_t> kept = r.prefill.retained.empty()
                                    ? std::vector<int64_t>{r.prefill.prompt_tokens}
                                    : r.prefill.retained;
    if (kept.size() > 4 &&
        std::all_of(kept.begin(), kept.end(), [&](int64_t k) { return k == kept[0]; }))
      kept.resize(1);
    std::string kept_text = join(kept);
    if (c.method == PipelineMethod::kFastKV && !r.prefill.propagated.empty())
      kept_text += " tsp " + std::to_string(r.prefill.propagated.size());
    std::printf("%-22s %-12s %10.0f %12.1f %10.0f %10.1f  \"%s\"%s\n", name.c_str(),
                kept_text.c_str(), r.prefill.ttft_ms, r.decode_ms_per_token,
                double(r.peak_memory) / 1048576.0,
                double(r.prefill.peak_kv_cache_bytes) / 1048576.0, answer.c_str(),
                p.expected.empty() ? ""
                : correct          ? "  [correct]"
                                   : "  [wrong]");
  }
  return 0;
}

}  // namespace pdcli
