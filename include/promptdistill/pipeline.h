// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::models.
//! End-to-end prompt compression: the method configurations of docs/algorithms.md (full KV,
//! PromptDistill single/multi-stage with cache truncation, GemFilter, SnapKV, H2O, FastKV), their
//! validation, and what a prefill reports.
//!
//! Where this implementation deliberately differs from the reference code:
//! - PromptDistill's cache truncation (tt) happens at the selection point, not after the last
//!   layer. Layers <= r are never read again during the prefill, so the caches and tokens are
//!   identical (a test proves it with `truncate_after_last_layer`), and the full-length K/V of
//!   those layers is freed while the later layers run (lower peak memory).
//! - SnapKV/H2O default to one selection per KV group (mean over the group's query heads), so the
//!   cache is never GQA-expanded; `HeadGrouping::kPerQueryHead` reproduces the reference's
//!   per-query-head selection with a G-times larger expanded cache.
//! - GemFilter's filter pass stops after layer r and writes no KV cache.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "promptdistill/model.h"
#include "promptdistill/selector.h"
#include "promptdistill/status.h"

namespace promptdistill {

//! What a prefill does. Not the Selector's `Method`: a pipeline method says which layers run on
//! which tokens (full KV selects nothing; GemFilter re-prefills; SnapKV/H2O compress every layer),
//! a selection method only how one selection ranks tokens. Every pipeline method but kFull uses
//! the selection method of the same name (see PipelinePlan).
enum class PipelineMethod : int32_t {
  kFull = 0,
  kPromptDistill = 1,
  kGemFilter = 2,
  kSnapKV = 3,
  kH2O = 4,
  //! FastKV (arXiv 2502.01068, as dongwonjo/FastKV's code runs it): every layer's cache compressed
  //! SnapKV-like per KV group, and from its TSP layer on only the tokens it propagates run.
  kFastKV = 5,
};
//! "full", "promptdistill", "gemfilter", "snapkv", "h2o", "fastkv"; `parse` is the inverse.
const char* to_string(PipelineMethod m) noexcept;
Status parse(std::string_view text, PipelineMethod* out) noexcept;

//! A pipeline's settings. The member defaults are the published settings of every method (one set,
//! `published_default`), which the CLI, `eval`, the Python package and docs/algorithms.md read.
struct PipelineConfig {
  PipelineMethod method = PipelineMethod::kFull;
  //! PromptDistill: strictly increasing 0-based layers (none the last one) paired with the number
  //! of tokens chosen at each besides the always-kept last token. GemFilter uses the first pair
  //! (its filter layer and the number of tokens kept). Published: layer 13 (of Llama-3.1-8B's
  //! 32), k 1024, for both.
  std::vector<int64_t> selection_layers = {13};
  std::vector<int64_t> n_topks = {1024};
  //! PromptDistill/GemFilter: rank each selection by the mean over several layers (and heads) of
  //! the last token's logits instead of its own layer's alone, each computed as the forward passes
  //! that layer (ScorePartial accumulating, then FinishSelect). A stage at layer r takes the listed
  //! layers after the previous stage's layer up to r, and r itself must be listed. Empty: each
  //! stage scores at its own layer (the published methods).
  std::vector<int64_t> score_layers = {};
  //! PromptDistill: stages i < tt truncate the caches of every layer up to their selection layer
  //! to the tokens they keep; -1 = every stage; 0 = none. Published: 1, as the authors' README
  //! commands run it (their drivers' own argument default is 0).
  int64_t cache_truncation_end = 1;
  //! Reference-fidelity switch: truncate after the last layer (same result, higher peak memory).
  bool truncate_after_last_layer = false;
  //! SnapKV/H2O/FastKV: the budget C of every row (the tokens each keeps, window included; the
  //! reference code's max_capacity_prompt) and the observation/recent window W. Published: C 1024
  //! (the baselines' --n-topks), W 32; FastKV: C 512, W 8 (published_default sets them).
  int64_t budget = 1024;
  int32_t window = 32;
  //! FastKV: the layer whose selection the later layers run on (tsp_idx), the tokens it
  //! propagates (tsp_len, window included), and the proportional mode of its code: retain_rate > 0
  //! makes each layer's budget int(tokens * retain_rate) (after the TSP layer retain_rate /
  //! tsp_rate) and the propagated tokens int(L * tsp_rate); budget and tsp_length then do not
  //! apply. Published: its drivers' defaults, tsp_idx 15, tsp_len 2048, constant mode (0, 0).
  int64_t tsp_layer = 15;
  int64_t tsp_length = 2048;
  double tsp_rate = 0.0;
  double retain_rate = 0.0;
  //! Pooling of the scores before top-k, for every method that selects: PromptDistill and GemFilter
  //! stages and SnapKV. H2O never pools (any other value than the default is rejected).
  PoolMode pool = PoolMode::kAvg;
  int32_t pool_kernel = 5;
  //! SnapKV/H2O rows. Published: one per query head, the cache GQA-expanded as the reference code
  //! keeps it; kPerKvGroup is the library's variant that never expands (G times less KV memory).
  HeadGrouping grouping = HeadGrouping::kPerQueryHead;

  //! The published settings of `method`: the member defaults above with `method` set; FastKV's
  //! own budget, window and pooling (C 512, W 8, max pool 7, per KV group: its drivers' defaults)
  //! replace SnapKV's (docs/algorithms.md has them as a table, which a test compares with this).
  static PipelineConfig published_default(PipelineMethod method);

  //! Checks the configuration against a model and a prompt length (before any work).
  Status validate(const ModelConfig& model, int64_t prompt_length) const noexcept;
};

//! One token selection of a pipeline: the layer whose queries and keys score the tokens, and the
//! Selector configuration that ranks them.
struct SelectionStage {
  int64_t layer = 0;
  MethodConfig select;
  //! What `select` stands for (plan_method of it): kept_tokens(plan, n) is the count the stage
  //! keeps from n current tokens.
  MethodPlan plan{};
  //! PromptDistill: this stage truncates the caches of every layer up to `layer` to the tokens it
  //! keeps (stage i truncates when cache_truncation_end is -1 or i < cache_truncation_end).
  bool truncates_cache = false;
  //! The layers whose last-token logits are averaged for this selection (ascending, ending with
  //! `layer`); empty: `layer` alone, through Select. Non-empty (even `layer` alone): every listed
  //! layer's ScorePartial accumulates, and FinishSelect divides by their head terms' count.
  std::vector<int64_t> score_layers;
  bool aggregates() const noexcept { return !score_layers.empty(); }
};

//! What FastKV does at one layer whose forward ran on `tokens` tokens (PipelinePlan::fastkv_layer).
struct FastKvLayer {
  int64_t budget = 0;  //!< C: the tokens each KV head's cache keeps when it compresses
  bool compresses =
      false;               //!< tokens >= C (its code keeps every token, and propagates none, below)
  int64_t propagated = 0;  //!< tokens the next layer runs on: the TSP's count, else `tokens`
};

//! What a pipeline does, derived once from a PipelineConfig by `plan_pipeline`. Both executors
//! (`ref::EigenSession` and `BatchSession`) run from a plan, so they cannot read a configuration
//! differently.
struct PipelinePlan {
  PipelineMethod method = PipelineMethod::kFull;
  //! PromptDistill: one stage per selection layer, in layer order. GemFilter: the filter stage
  //! (its layer ends the filter pass; the kept tokens are re-prefilled at positions 0..k-1).
  std::vector<SelectionStage> stages;
  //! SnapKV/H2O: the selection applied to every layer's cache right after its forward, for
  //! prompts of at least `compression.budget` tokens (shorter prompts keep every token).
  bool compresses_every_layer = false;
  MethodConfig compression;
  MethodPlan compression_plan{};  //!< plan_method(compression)
  //! PromptDistill: gather the truncating stages' caches after the last layer, in the reference
  //! code's order (`compose_stage_maps`), instead of at each selection point.
  bool truncate_after_last_layer = false;
  //! FastKV: every layer's cache is compressed by `compression` (Method::kFastKV; its budget is
  //! the constant C, replaced per layer in the proportional mode) and layer `tsp_layer`'s output
  //! rows of the tokens it propagates continue (fastkv_layer says how many).
  bool fastkv = false;
  int64_t tsp_layer = 0, tsp_length = 0;
  double tsp_rate = 0.0, retain_rate = 0.0;

  //! FastKV at `layer` over `tokens` tokens, as its code decides it (docs/algorithms.md §11).
  FastKvLayer fastkv_layer(int64_t layer, int64_t tokens) const noexcept;

  //! SnapKV/H2O compress a prompt of `prompt_length` tokens (L >= C).
  bool compresses(int64_t prompt_length) const noexcept {
    return compresses_every_layer && prompt_length >= compression.budget;
  }
  //! Layers [first, last] whose caches truncating stage `s` gathers after the last layer: the
  //! segment (layer of stage s-1, layer of stage s].
  int64_t segment_first_layer(std::size_t s) const noexcept {
    return s == 0 ? 0 : stages[s - 1].layer + 1;
  }
};

//! Validates the method-level parts of `config` (what can be checked without a model) and
//! derives its plan.
Status plan_pipeline(const PipelineConfig& config, PipelinePlan* plan) noexcept;

//! Reference-order cache truncation. `stage_maps[s]` holds the indices that truncating stage s
//! kept, into the token set it received. Returns, for every stage s, the map that gathers the
//! caches of its segment (which still hold stage s's input set): stage_maps[s] composed with every
//! later stage's map, i.e. the indices into stage s's input set of the tokens the last truncating
//! stage keeps.
std::vector<std::vector<int32_t>> compose_stage_maps(
    const std::vector<std::vector<int32_t>>& stage_maps);

// ---- memory: a prefill refused before it runs out ---------------------------------------------

//! How an executor stores a prefill, the part of its memory a plan and a model do not decide:
//! ref::EigenSession (f32, one request, the MLP in chunks of 512 rows, attention probabilities
//! of 128 query rows per thread), BatchSession (its storage type, batch, mlp_chunk_rows and
//! decode_reserve) and Python's hf.generate (the model's dtype, no MLP chunks, the whole
//! attention matrix with eager attention).
struct PrefillMemoryModel {
  int64_t batch = 1;          //!< requests, each padded to the longest
  int64_t element_bytes = 4;  //!< activations and caches
  int64_t mlp_chunk_rows =
      512;                     //!< rows of the [rows, intermediate] MLP activations at once; 0: all
  int64_t decode_reserve = 0;  //!< cache tokens reserved per request and layer beyond the prompt
  int64_t attention_rows = 0;  //!< f32 rows of attention probabilities over the prompt held at once
  int64_t budgets = 1;  //!< > 1: a budget sweep sharing one prefill (EigenSession::prefill_sweep)
};

//! Bytes a prefill holds at its peak, by kind (upper estimates, each a sum of the buffers the
//! executors allocate).
struct PrefillMemory {
  int64_t activations =
      0;  //!< hidden states, projections, the MLP chunk, attention rows, RoPE, logits
  int64_t kv_cache = 0;  //!< the largest set of K/V caches held at once
  //! A selection's taps and scratch: its query rows and keys, the score rows over the prompt,
  //! pooling and ranking (SnapKV/H2O: a row per query head, H2O's queries of every prompt token).
  int64_t scores = 0;
  int64_t total() const noexcept;
};

//! The peak memory of a prefill of `prompt_length` tokens (the longest request) with `plan` on
//! `model`, executed as `how` says. Saturates at INT64_MAX instead of overflowing.
PrefillMemory estimate_prefill_bytes(const ModelConfig& model, const PipelinePlan& plan,
                                     int64_t prompt_length,
                                     const PrefillMemoryModel& how = {}) noexcept;

//! What the system reports it can give without swapping: /proc/meminfo's MemAvailable, in bytes;
//! -1 where it reports nothing.
int64_t available_memory_bytes() noexcept;

//! kOutOfMemory, before any work, when `need` exceeds `limit` bytes (limit < 0: unknown, never
//! refused): "<what> needs about N MiB (activations A, KV cache K, scores S) but L MiB are
//! available (<limit_source>)".
Status check_prefill_memory(const PrefillMemory& need, int64_t limit, const char* what,
                            const char* limit_source) noexcept;

struct PrefillResult {
  int32_t first_token = -1;
  int64_t prompt_tokens = 0;
  //! Tokens kept after each stage (SnapKV/H2O/FastKV: per layer, what each row of its cache keeps)
  std::vector<int64_t> retained;
  //! Every selection, [selection][row][i]: PromptDistill one per stage and GemFilter one, each
  //! with one row (the original positions kept); SnapKV/H2O one per layer with one row per KV
  //! group or query head (the positions each keeps), for prompts they compress; FastKV one per
  //! layer, one row per KV group (original positions).
  std::vector<std::vector<std::vector<int32_t>>> selected;
  std::vector<int64_t> cache_lengths;  //!< per layer after prefill
  //! FastKV: the original positions of the tokens its TSP layer propagated (empty when it
  //! propagated none: a prompt no longer than tsp_len, or shorter than that layer's budget).
  std::vector<int32_t> propagated;
  int64_t next_position = 0;  //!< position of the first generated token
  double ttft_ms = 0;
  //! Of ttft_ms, the time spent selecting tokens: scoring, top-k, the gathers of kept rows and
  //! cache truncation or compaction (ref::EigenSession::prefill; 0 where not measured).
  double selection_ms = 0;
  int64_t peak_kv_cache_bytes = 0;  //!< largest total K/V held during prefill
};

}  // namespace promptdistill
