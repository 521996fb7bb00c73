// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Model loading and single runs shared by the generate, compare and eval commands.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_args.h"
#include "promptdistill/model.h"
#include "promptdistill/pipeline.h"
#include "promptdistill/tokenizer.h"
#include "promptdistill/transformer_ref.h"

namespace pdcli {

struct LoadedModel {
  promptdistill::ModelWeights weights;
  bool has_tokenizer = false;
  std::string tokenizer_problem;  //!< why a tokenizer.json could not be used
  promptdistill::Tokenizer tokenizer;
  std::string path;
  //! --decode-weights / --kv-cache: how the CPU sessions decode (exact f32 by default).
  promptdistill::ref::DecodeWeights decode_weights;
  promptdistill::ref::DecodeOptions decode;
  //! --max-memory in bytes (0: what the system reports available, checked at each run).
  int64_t max_memory_bytes = 0;
  //! --prefill-weights: the CPU sessions' packed prefill weights (f32 by default), made once.
  promptdistill::ref::PrefillWeights prefill_weights;
};
struct Prompt {
  std::vector<int32_t> ids;
  std::string expected;  //!< built-in prompt: the answer it asks for
};
struct RunOutput {
  promptdistill::PrefillResult prefill;
  std::vector<int32_t> generated;
  std::string text;
  double decode_ms_per_token = 0;
  int64_t peak_memory = 0;  //!< resident memory (cpu) or device memory the session held (cuda)
  //! CPU: the K/V the caches hold after the prefill (what decoding starts from; f32, every layer,
  //! GQA-expanded heads counted); 0 on a device backend.
  int64_t kv_cache_bytes = 0;
  std::string memory_kind;  //!< "resident" or "device"
};

std::string default_model_path();
//! "default", a .gguf file or a Hugging Face folder; exits with an error line on failure.
void load_model(const std::string& spec, LoadedModel* m);
//! --model (and --weights-dtype, which rounds the weights to bf16/f16; --decode-weights and
//! --kv-cache, the CPU decode modes) from a command's options.
void load_model(const Args& a, LoadedModel* m);
//! --threads N (every command): the CPU threads; 0 or absent keeps the default (OMP_NUM_THREADS,
//! else one per core). Returns the count in use, which the JSON outputs record.
int apply_threads(const Args& a);
//! The decode settings a JSON result records: threads, decode_weights, kv_cache.
void describe_cpu_settings(const LoadedModel& m, nlohmann::json* j);
//! The method's configuration from generate's options.
promptdistill::PipelineConfig parse_pipeline(const Args& a, const std::string& method);
//! One prefill + greedy decode on the backend; exits with an error line on failure.
//! `dtype` (--dtype): the CUDA session's storage type, bf16 (default, "") / f16 / f32.
//! `ignore_eos`: decode exactly max_new tokens (otherwise stop after the model's end-of-sequence
//! token, which is kept in the output as the reference generation loops keep it).
RunOutput run_one(const LoadedModel& m, const Prompt& p, const promptdistill::PipelineConfig& c,
                  int64_t max_new, const std::string& backend, const std::string& dtype = "",
                  bool ignore_eos = false);
//! One CPU prefill shared by every budget of a sweep (ref::EigenSession::prefill_sweep), then each
//! budget's greedy decode: what run_one gives for each budget, with ttft_ms the shared prefill's
//! time plus the budget's own. `config` carries the method and every option but the budget.
std::vector<RunOutput> run_sweep(const LoadedModel& m, const Prompt& p,
                                 const promptdistill::PipelineConfig& config,
                                 const std::vector<int64_t>& budgets, int64_t max_new,
                                 bool ignore_eos);
//! Exits with an error line when an option is given that none of `methods` reads.
void reject_inapplicable(const Args& a, const std::vector<std::string>& methods);
//! "512M", "16G", "1.5GiB" or bytes; exits with an error line on anything else.
int64_t parse_memory_size(const std::string& text);
//! --max-memory in bytes, 0 when not given.
int64_t max_memory_option(const Args& a);
//! Refuses (error line, exit 2) a CPU prefill of `prompt_tokens` with `c` whose estimated peak
//! (activations, KV caches, scores) exceeds --max-memory, or else what the system reports
//! available, before any work. `budgets` > 1: a sweep sharing one prefill. `what` names the run.
void check_cpu_memory(const LoadedModel& m, const promptdistill::PipelineConfig& c,
                      int64_t prompt_tokens, int64_t max_new, int64_t budgets,
                      const std::string& what);
//! `promptdistill eval passkey|needle|longbench`.
int cmd_eval(const Args& a, const std::string& kind);
//! `eval ruler` (tools/ruler_command.cpp).
int cmd_eval_ruler(const Args& a);

//! `promptdistill generate`: one method, one prompt, greedy decoding; text or --json output.
int cmd_generate(const Args& a);
//! `promptdistill compare`: several methods on the same prompt, side by side.
int cmd_compare(const Args& a);
}  // namespace pdcli
