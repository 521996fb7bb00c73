// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The `promptdistill` command line.
//!   promptdistill select ...   verify an engine's selection against ours (Q.npy / K.npy)
//!   promptdistill demo ...     the selector on a synthetic long prompt with a planted fact
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/json_line.h"
#include "cli_args.h"
#include "generate_command.h"
#include "select_runner.h"

using namespace promptdistill;

namespace {

struct CommandUsage {
  const char* name;
  const char* usage;
};

//! Every command's usage: `promptdistill CMD --help` prints its own, `promptdistill --help` all.
constexpr CommandUsage kCommands[] = {
    {"select",
     R"(  promptdistill select --method promptdistill|gemfilter|snapkv|h2o|fastkv --q Q.npy --k K.npy --budget N
                       [--window 32] [--pool avg|max|none] [--pool-kernel 5] [--per kv-group|head]
                       [--dtype f32|f16|bf16] [--backend cpu|cuda] [--threads N] [--json]
      Q.npy: [Lq, H, D] post-RoPE queries (the last token for promptdistill/gemfilter, the last W
      for snapkv/fastkv, all L for h2o); K.npy: [L, H_kv, D] post-RoPE keys; float32 or float16.
      --budget: the budget as the reference code counts it: promptdistill: tokens chosen besides
      the always-kept last one; gemfilter: tokens kept; snapkv/h2o/fastkv: tokens per row, window
      included. (generate's --n-topks and --budget are the same number; --topk is its former
      name here, accepted with a warning.)
)"},
    {"generate",
     R"(  promptdistill generate [--model default|PATH.gguf|HF_DIR] --method full|promptdistill|gemfilter|snapkv|h2o|fastkv
                       [--selection-layers {layers} ...] [--n-topks {n_topks} ...] [--cache-truncation-end {tt}]
                       [--score-layers L ...] [--budget {budget}] [--window {window}] [--per {per}]
                       [--pool {pool}] [--pool-kernel {pool_kernel}]
                       [--tsp-layer {tsp_layer}] [--tsp-length {tsp_length}] [--tsp-rate R --retain-rate R]
                       [--prompt TEXT | --prompt-file F | --prompt-ids F] [--max-new-tokens 50] [--ignore-eos]
                       [--backend cpu|cuda] [--dtype bf16|f16|f32] [--weights-dtype f32|bf16|f16]
                       [--threads N] [--prefill-weights f32|bf16] [--decode-weights f32|f16|gguf]
                       [--kv-cache f32|f16] [--max-positions N] [--max-memory 16G] [--dump-selection] [--json]
      Prefill with the method, then greedy decoding (stopping after the model's end-of-sequence
      token, or exactly --max-new-tokens tokens with --ignore-eos). The defaults are every method's
      published settings (`promptdistill defaults`); the main job (scripts/run_main.sh) selects at
      layer 20 instead, since SmolLM2 has 30 layers where the paper's models have 32 and layer 13
      drops its fact. Options that the method does not
      use are refused: --selection-layers, --n-topks and --score-layers (promptdistill, gemfilter),
      --cache-truncation-end (promptdistill), --budget and --window (snapkv, h2o, fastkv), --per
      (snapkv, h2o), --pool and --pool-kernel (promptdistill, gemfilter, snapkv, fastkv), --tsp-*
      and --retain-rate (fastkv). --score-layers: a selection at layer r ranks by the mean of these
      layers' scores (r itself listed; each stage takes those after the previous stage). fastkv's
      defaults are its drivers' (budget {fastkv_budget}, window {fastkv_window}, pool {fastkv_pool}); --tsp-rate and
      --retain-rate (both > 0) are its proportional mode. --backend cuda: the GPU
      session, bf16 unless --dtype; --weights-dtype: round the weights (the CPU then computes with
      what a 16-bit backend stores). --threads: CPU threads (default OMP_NUM_THREADS, else one per
      core). --prefill-weights: how the CPU prefills: f32 is the exact reference; bf16 rounds the
      weights to bf16 and runs the linear layers on AMX tiles where the CPU has them (activations
      as two bf16 terms, f32 accumulation; attention stays f32). --decode-weights and --kv-cache:
      how the CPU decodes: f32 is the exact reference; f16 rounds the weights; gguf reads the
      file's own blocks (Q4_0/Q4_1/Q8_0, F16): the same weight values, a quarter to half the
      bytes, with int16-quantized activations; --kv-cache f16 halves the cache decoding reads. The
      fast modes are Tier C (docs/design.md §4). --max-positions: raise the model's context (RoPE
      unchanged), to time prompts longer than it was trained for. Without a prompt: the built-in
      long prompt (a fact hidden in a few thousand tokens of filler, and a question about it).
      --max-memory (512M, 16G, bytes): a prefill whose estimated peak (activations, KV caches,
      selection scores) is larger is refused before it starts, with the numbers; default: what the
      system reports available (MemAvailable; on CUDA the device's free memory).
)"},
    {"compare", R"(  promptdistill compare [--methods full promptdistill ...] [generate's options]
      The same prompt through several methods, side by side (the main job). An option must apply
      to at least one of the methods.
)"},
    {"eval",
     R"(  promptdistill eval passkey|needle [--lengths 1024 2048 ...] [--depths 0 25 50 75 100]
                       [--methods full promptdistill gemfilter snapkv h2o] [--budgets 64 128 256 512 1024]
                       [--selection-layers {layers}] [--haystack FILE] [--out results.jsonl [--resume]]
                       [--threads N] [--prefill-weights f32|bf16] [--decode-weights f32|f16|gguf]
                       [--kv-cache f32|f16] [--max-memory 16G]
  promptdistill eval longbench --data DIR_OR_FILE [--templates dataset2prompt.json] [--methods ...]
                       [--budgets {n_topks}] [--max-samples N] [--out results.jsonl [--resume]]
  promptdistill eval ruler [--tasks niah_single niah_multikey niah_multivalue niah_multiquery vt cwe fwe]
                       [--lengths 1024 2048 4096 8192] [--samples 25] [--first-sample 0] [--seed 0]
                       [--methods full promptdistill gemfilter snapkv h2o fastkv] [--budgets 128 256 512 1024]
                       [--chat-template auto|none] [--haystack FILE] [--max-new-tokens N] [--out results.jsonl]
      One JSON line per case (method, budget, length, depth, expected, generated, correct, ttft,
      retained); LongBench lines carry the dataset metric's score. ruler: RULER's synthetic tasks
      generated from --seed at each target length in the model's tokens (prompt + RULER's
      tokens_to_generate), wrapped in the model's chat template, scored as RULER scores them (the
      fraction of expected strings in the answer); each line has the commit, machine and settings
      (ruler has no --resume and no memory check: its grid runs in parts, scripts/run_ruler_grid.sh).
      The budgets are the methods' budgets (promptdistill/gemfilter: k; snapkv/h2o/fastkv: C per
      row). generate's method options apply, with the same published defaults (the committed SmolLM2
      grids pass --selection-layers 20). passkey, needle and longbench write each line whole and
      flushed as soon as its case is done, with the run's settings; --resume skips the cases already
      in --out (refusing a file written with other settings), so an interrupted grid continues where
      it stopped; Ctrl-C stops at once, the lines written intact. Every case's memory is checked
      (--max-memory) before the first one runs.
)"},
    {"defaults", R"(  promptdistill defaults [--json]
      Every method's published settings: the defaults of generate, compare, eval, the C++
      PipelineConfig and the Python package (a table, or one JSON line per method).
)"},
    {"demo",
     R"(  promptdistill demo [--length 2048] [--budget 128] [--backend cpu|cuda] [--dtype f32|f16|bf16] [--seed 7] [--threads N]
      Every method on a synthetic prompt whose planted "fact" tokens answer the last query.
)"},
};

std::string join_ints(const std::vector<int64_t>& values, const char* separator) {
  std::string text;
  for (int64_t v : values) text += (text.empty() ? "" : separator) + std::to_string(v);
  return text;
}

//! The usage texts with the published defaults written in (`{name}` placeholders), so that the
//! help cannot drift from PipelineConfig.
std::string usage_of(const std::string& command) {
  const PipelineConfig d, fastkv = PipelineConfig::published_default(PipelineMethod::kFastKV);
  const std::pair<const char*, std::string> values[] = {
      {"{layers}", join_ints(d.selection_layers, " ")},
      {"{n_topks}", join_ints(d.n_topks, " ")},
      {"{tt}", std::to_string(d.cache_truncation_end)},
      {"{budget}", std::to_string(d.budget)},
      {"{window}", std::to_string(d.window)},
      {"{per}",
       std::string(to_string(d.grouping)) + "|" +
           to_string(d.grouping == HeadGrouping::kPerQueryHead ? HeadGrouping::kPerKvGroup
                                                               : HeadGrouping::kPerQueryHead)},
      {"{pool}", std::string(to_string(d.pool)) + "|max|none"},
      {"{pool_kernel}", std::to_string(d.pool_kernel)},
      {"{tsp_layer}", std::to_string(d.tsp_layer)},
      {"{tsp_length}", std::to_string(d.tsp_length)},
      {"{fastkv_budget}", std::to_string(fastkv.budget)},
      {"{fastkv_window}", std::to_string(fastkv.window)},
      {"{fastkv_pool}",
       std::string(to_string(fastkv.pool)) + " " + std::to_string(fastkv.pool_kernel)}};
  std::string text = "usage:\n";
  for (const CommandUsage& c : kCommands)
    if (command.empty() || command == c.name) text += c.usage;
  for (const auto& [name, value] : values)
    for (std::size_t at = text.find(name); at != std::string::npos;
         at = text.find(name, at + value.size()))
      text.replace(at, std::string(name).size(), value);
  return text;
}

//! `promptdistill defaults`: PipelineConfig::published_default of every method that has settings,
//! as the Markdown table docs/algorithms.md carries (a test compares the two) or as JSON lines.
int cmd_defaults(const pdcli::Args& a) {
  pdcli::reject_unknown(a, {});
  const PipelineMethod methods[] = {PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter,
                                    PipelineMethod::kSnapKV, PipelineMethod::kH2O,
                                    PipelineMethod::kFastKV};
  if (a.flag("json")) {
    for (PipelineMethod m : methods) {
      const PipelineConfig c = PipelineConfig::published_default(m);
      nlohmann::json j;
      j["method"] = to_string(m);
      if (m == PipelineMethod::kPromptDistill || m == PipelineMethod::kGemFilter) {
        j["selection_layers"] = c.selection_layers;
        j["n_topks"] = c.n_topks;
        if (m == PipelineMethod::kPromptDistill) j["cache_truncation_end"] = c.cache_truncation_end;
      } else {
        j["budget"] = c.budget;
        j["window"] = c.window;
        j["per"] = to_string(c.grouping);
      }
      if (m == PipelineMethod::kFastKV) {
        j["tsp_layer"] = c.tsp_layer;
        j["tsp_length"] = c.tsp_length;
        j["tsp_rate"] = c.tsp_rate;
        j["retain_rate"] = c.retain_rate;
      }
      j["pool"] = m == PipelineMethod::kH2O ? "none" : to_string(c.pool);
      if (m != PipelineMethod::kH2O) j["pool_kernel"] = c.pool_kernel;
      std::printf("%s\n", pdcli::json_line(j).c_str());
    }
    return 0;
  }
  std::printf(
      "| method | selection layers | n_topks | cache_truncation_end | budget | window | per | pool "
      "| propagation |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (PipelineMethod m : methods) {
    const PipelineConfig c = PipelineConfig::published_default(m);
    const bool staged = m == PipelineMethod::kPromptDistill || m == PipelineMethod::kGemFilter;
    const std::string pool = m == PipelineMethod::kH2O ? "none"
                                                       : std::string(to_string(c.pool)) + " " +
                                                             std::to_string(c.pool_kernel);
    // FastKV's token-selective propagation: its layer and the tokens it keeps (constant mode).
    const std::string propagation = m == PipelineMethod::kFastKV
                                        ? "layer " + std::to_string(c.tsp_layer) + ", " +
                                              std::to_string(c.tsp_length) + " tokens"
                                        : std::string("-");
    std::printf(
        "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", to_string(m),
        staged ? join_ints(c.selection_layers, ", ").c_str() : "-",
        staged ? join_ints(c.n_topks, ", ").c_str() : "-",
        m == PipelineMethod::kPromptDistill ? std::to_string(c.cache_truncation_end).c_str() : "-",
        staged ? "-" : std::to_string(c.budget).c_str(),
        staged ? "-" : std::to_string(c.window).c_str(), staged ? "-" : to_string(c.grouping),
        pool.c_str(), propagation.c_str());
  }
  return 0;
}

using pdcli::Args;
using pdcli::fail;
using pdcli::fail_status;
using pdcli::get;
using pdcli::get_int;
using pdcli::reject_unknown;

MethodConfig parse_config(const Args& a, int64_t default_budget) {
  MethodConfig c;
  pdcli::parse_option(a, "method", "promptdistill", &c.method);
  c.budget = get_int(a, pdcli::renamed_option(a, "budget", "topk"), default_budget);
  // The Selector's own defaults (MethodConfig): one selection on the caller's cache, so per KV
  // group (per query head needs a GQA-expanded cache).
  c.window = int32_t(get_int(a, "window", c.window));
  pdcli::parse_option(a, "pool", to_string(c.pool), &c.pool);
  c.pool_kernel = int32_t(get_int(a, "pool-kernel", c.pool_kernel));
  pdcli::parse_option(a, "per", to_string(c.grouping), &c.grouping);
  MethodPlan plan;
  const Status s = plan_method(c, &plan);
  if (!s.is_ok()) fail_status(s);
  return c;
}

std::vector<float> load_f32(const std::string& path, const char* what,
                            std::vector<int64_t>* shape) {
  NpyArray arr;
  const Status s = read_npy(path, &arr);
  if (!s.is_ok()) fail(std::string(what) + ": " + s.message());
  if (arr.shape.size() != 3)
    fail(std::string(what) + ": expected 3 dimensions, got " + std::to_string(arr.shape.size()) +
         " in " + path);
  std::vector<float> out(std::size_t(arr.numel()));
  if (arr.dtype == DType::kF32) {
    std::memcpy(out.data(), arr.bytes.data(), out.size() * 4);
  } else if (arr.dtype == DType::kF16) {
    for (std::size_t i = 0; i < out.size(); ++i) {
      uint16_t bits;
      std::memcpy(&bits, &arr.bytes[2 * i], 2);
      out[i] = to_float(f16{bits});
    }
  } else {
    fail(std::string(what) + ": " + path + " must hold float32 or float16, not " +
         to_string(arr.dtype));
  }
  *shape = arr.shape;
  return out;
}

int cmd_select(const Args& a) {
  reject_unknown(a, {"method", "q", "k", "budget", "topk", "window", "pool", "pool-kernel", "per",
                     "dtype", "backend", "threads"});
  const int threads = pdcli::apply_threads(a);
  if (get(a, "q", "").empty() || get(a, "k", "").empty() ||
      (get(a, "topk", "").empty() && get(a, "budget", "").empty()))
    fail("select needs --q Q.npy, --k K.npy and --budget N");
  const MethodConfig cfg = parse_config(a, 0);
  pdcli::SelectInput in;
  std::vector<int64_t> qs, ks;
  in.q = load_f32(get(a, "q", ""), "--q", &qs);
  in.k = load_f32(get(a, "k", ""), "--k", &ks);
  in.Lq = qs[0], in.H = qs[1], in.D = qs[2], in.L = ks[0], in.Hkv = ks[1];
  if (ks[2] != in.D)
    fail("head_dim differs: Q has " + std::to_string(in.D) + ", K has " + std::to_string(ks[2]));
  if (in.L == 0) fail("K has no tokens (empty prompt)");
  if (cfg.method == Method::kH2O && in.Lq != in.L)
    fail("h2o scores every query row: Q must have L = " + std::to_string(in.L) + " rows, has " +
         std::to_string(in.Lq));
  pdcli::SelectOutput out;
  const Status s =
      pdcli::run_select(in, cfg, get(a, "backend", "cpu"), get(a, "dtype", "f32"), &out);
  if (!s.is_ok()) fail_status(s);
  const bool per_row = out.rows > 1 || cfg.method == Method::kSnapKV ||
                       cfg.method == Method::kH2O || cfg.method == Method::kFastKV;
  if (a.flag("json")) {
    nlohmann::json j;
    j["method"] = to_string(cfg.method);
    j["prompt_tokens"] = in.L;
    j["threads"] = threads;
    if (per_row) {
      j["indices"] = out.indices;
      j["positions"] = out.positions;
    } else {
      j["indices"] = out.indices[0];
      j["positions"] = out.positions[0];
      j["scores"] = out.scores;
    }
    std::printf("%s\n", pdcli::json_line(j).c_str());
  } else {
    std::printf("%s: %lld prompt tokens, %lld row(s)\n", to_string(cfg.method), (long long)in.L,
                (long long)out.rows);
    for (int64_t r = 0; r < out.rows; ++r) {
      std::printf("row %lld keeps %zu:", (long long)r, out.indices[std::size_t(r)].size());
      for (int32_t i : out.indices[std::size_t(r)]) std::printf(" %d", i);
      std::printf("\n");
    }
  }
  return 0;
}

//! A synthetic layer: random keys, a 16-token "fact" at 37% depth whose keys align with the last
//! queries, and the last queries themselves.
int cmd_demo(const Args& a) {
  reject_unknown(a, {"length", "budget", "backend", "dtype", "seed", "threads"});
  const int threads = pdcli::apply_threads(a);
  const int64_t L = get_int(a, "length", 2048), budget = get_int(a, "budget", 128);
  const int64_t H = 9, Hkv = 3, D = 64, W = 32, fact_len = 16;  // SmolLM2-135M attention shape
  if (L < 64 || L > 65536) fail("--length must be in [64, 65536]");
  const int64_t fact_at = L * 37 / 100;
  std::mt19937_64 rng(uint64_t(get_int(a, "seed", 7)));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> direction(static_cast<std::size_t>(D));
  for (auto& x : direction) x = normal(rng);
  auto make_queries = [&](int64_t rows) {
    std::vector<float> q(std::size_t(rows * H * D));
    for (std::size_t i = 0; i < q.size(); ++i)
      q[i] = 0.3f * normal(rng) + 0.6f * direction[i % std::size_t(D)];
    return q;
  };
  std::vector<float> k(std::size_t(L * Hkv * D));
  for (int64_t t = 0; t < L; ++t)
    for (int64_t i = 0; i < Hkv * D; ++i) {
      const bool fact = t >= fact_at && t < fact_at + fact_len;
      k[std::size_t(t * Hkv * D + i)] =
          0.5f * normal(rng) + (fact ? 1.2f * direction[std::size_t(i % D)] : 0.0f);
    }
  std::printf(
      "promptdistill demo: synthetic prompt of %lld tokens (H=%lld, H_kv=%lld, D=%lld), a "
      "%lld-token fact at "
      "position %lld, budget %lld, backend %s, dtype %s, %d CPU threads\n",
      (long long)L, (long long)H, (long long)Hkv, (long long)D, (long long)fact_len,
      (long long)fact_at, (long long)budget, get(a, "backend", "cpu").c_str(),
      get(a, "dtype", "f32").c_str(), threads);
  std::printf("%-14s %-10s %8s %12s %10s %10s\n", "method", "rows", "kept/row", "fact kept",
              "last kept", "time ms");
  for (Method m : {Method::kPromptDistill, Method::kGemFilter, Method::kSnapKV, Method::kH2O}) {
    MethodConfig cfg;
    cfg.method = m;
    cfg.budget = budget;
    pdcli::SelectInput in;
    in.Lq = m == Method::kSnapKV ? W : m == Method::kH2O ? L : 1;
    in.q = make_queries(in.Lq);
    in.k = k;
    in.H = H, in.Hkv = Hkv, in.D = D, in.L = L;
    pdcli::SelectOutput out;
    const Status s =
        pdcli::run_select(in, cfg, get(a, "backend", "cpu"), get(a, "dtype", "f32"), &out);
    if (!s.is_ok()) fail_status(s);
    int64_t fact_kept = 0, last_kept = 0;
    for (const auto& row : out.indices) {
      for (int32_t i : row) fact_kept += (i >= fact_at && i < fact_at + fact_len);
      last_kept += !row.empty() && row.back() == L - 1;
    }
    std::printf("%-14s %-10lld %8zu %9lld/%lld %7lld/%lld %10.2f\n", to_string(m),
                (long long)out.rows, out.indices[0].size(), (long long)fact_kept,
                (long long)(fact_len * out.rows), (long long)last_kept, (long long)out.rows,
                out.milliseconds);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // `CMD --help` (or -h) prints that command's usage, whatever else is on the line.
  if (argc >= 2) {
    const std::string command = argv[1];
    const bool known = std::any_of(std::begin(kCommands), std::end(kCommands),
                                   [&](const CommandUsage& c) { return command == c.name; });
    if (command == "help" || command == "--help" || command == "-h") {
      std::printf("%s", usage_of(argc > 2 ? argv[2] : "").c_str());
      return 0;
    }
    for (int i = 2; i < argc; ++i)
      if (known && (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h")) {
        std::printf("%s", usage_of(command).c_str());
        return 0;
      }
  }
  // `eval KIND --options`: KIND is positional.
  std::string eval_kind;
  std::vector<char*> args(argv, argv + argc);
  if (argc > 2 && std::string(argv[1]) == "eval" && std::string(argv[2]).rfind("--", 0) != 0) {
    eval_kind = argv[2];
    args.erase(args.begin() + 2);
  }
  const std::string all_usage = usage_of("");
  const Args a =
      pdcli::parse_args(int(args.size()), args.data(),
                        {"json", "dump-selection", "ignore-eos", "resume"}, all_usage.c_str());
  if (a.command == "eval") return pdcli::cmd_eval(a, eval_kind);
  if (a.command == "select") return cmd_select(a);
  if (a.command == "generate") return pdcli::cmd_generate(a);
  if (a.command == "compare") return pdcli::cmd_compare(a);
  if (a.command == "demo") return cmd_demo(a);
  if (a.command == "defaults") return cmd_defaults(a);
  if (a.command == "version" || a.command == "--version") {
    std::printf("promptdistill %d.%d.%d (CUDA backend: %s)\n", PROMPTDISTILL_VERSION_MAJOR,
                PROMPTDISTILL_VERSION_MINOR, PROMPTDISTILL_VERSION_PATCH,
                pdcli::cuda_backend_built() ? "built" : "not built");
    return 0;
  }
  fail("unknown command '" + a.command + "'\n" + all_usage);
}
