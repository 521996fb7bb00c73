// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::cpu_pipelines.
//! `ref::EigenSession`: prefill (full KV, PromptDistill, GemFilter, SnapKV, H2O, FastKV) and greedy
//! decoding on the CPU reference decoder, batch 1. Token selection runs through the Selector API
//! (`ref::Select`), the same operation the CUDA backend and the engines use.

#include <cstdint>
#include <functional>
#include <vector>

#include "promptdistill/pipeline.h"
#include "promptdistill/transformer_ref.h"

namespace promptdistill {
namespace ref {

namespace session_support {
struct StageScores;
}  // namespace session_support

//! The batch-1 pipelines on the Eigen decoder (`ref::Transformer`): the CPU path of the CLI and
//! the quality grids. (`BatchSession` is the other driver: ragged batches on the block ops.)
class EigenSession {
 public:
  explicit EigenSession(const ModelWeights* weights) : weights_(weights), model_(weights) {}

  //! Runs the prompt through the model with `config`'s method; leaves the per-layer caches ready
  //! for decoding. Fails before any work on a bad configuration or prompt.
  Status prefill(const std::vector<int32_t>& prompt, const PipelineConfig& config,
                 PrefillResult* out) noexcept;
  //! Feeds `token` at the next position and returns the greedy next token.
  Status decode_step(int32_t token, int32_t* next) noexcept;
  //! Greedy generation after a prefill, as the reference generation loops do it: `first` (the
  //! prefill's token, always kept), then up to max_new_tokens - 1 more; a decoded token in `stop`
  //! ends the generation and is not returned. Returns the tokens and the mean decode time per step.
  Status generate(int32_t first, int64_t max_new_tokens, const std::vector<int32_t>& stop,
                  std::vector<int32_t>* out, double* decode_ms_per_token) noexcept;

  //! Called by prefill_sweep for each budget, with the session in the state `prefill` with that
  //! budget leaves it (so the visitor can `generate`). An error it returns ends the sweep.
  using SweepVisitor = std::function<Status(std::size_t budget_index, const PrefillResult& result)>;
  //! One prefill for several budgets of one method, as a budget sweep needs them: for budgets[i]
  //! (PromptDistill/GemFilter: the k of `config`'s single stage; SnapKV/H2O: the budget C), the
  //! result and the caches equal those of `prefill` with that budget, bit for bit. What does not
  //! depend on the budget runs once: SnapKV/H2O's whole forward and scoring (only the top-k and
  //! the compaction are per budget), PromptDistill's layers up to the selection layer, GemFilter's
  //! filter pass. ttft_ms is the shared part's time plus the budget's own. PromptDistill with
  //! truncation after the last layer (a reference-fidelity mode) runs one prefill per budget. A
  //! sweep needs one stage and a method with a budget; every budget's configuration is checked
  //! before any work.
  Status prefill_sweep(const std::vector<int32_t>& prompt, const PipelineConfig& config,
                       const std::vector<int64_t>& budgets, const SweepVisitor& visit) noexcept;

  //! The prefill's packed weights (PrefillWeights, shared between sessions; must outlive the
  //! session): f32 (the exact reference) or the opt-in bf16. Without it the session packs the f32
  //! weights itself, once, before its first prefill's clock starts.
  void set_prefill_weights(const PrefillWeights* weights) {
    model_ = Transformer(weights_, weights);
  }
  //! How decode steps run (Transformer::decode): the exact f32 reference by default, or faster
  //! weights and a 16-bit cache (Tier C). `options.weights` must outlive the session. With a
  //! 16-bit cache, prefill converts its caches at its end (inside ttft_ms).
  void set_decode_options(const DecodeOptions& options) { decode_options_ = options; }
  const DecodeOptions& decode_options() const { return decode_options_; }
  //! Sizes the decode workspace and the caches for `max_new_tokens` more tokens (generate does
  //! it), so that the steps allocate nothing; converts the caches to the decode storage.
  Status prepare_decode(int64_t max_new_tokens) noexcept;

  const std::vector<KvLayerCache>& caches() const { return caches_; }
  //! Called after every layer of a prefill with (layers done, layers in total), e.g. for a
  //! progress bar. Never called when empty.
  void set_progress(std::function<void(int64_t, int64_t)> progress) {
    progress_ = std::move(progress);
  }
  int64_t next_position() const { return next_position_; }

 private:
  Status run_layers(std::vector<float>* x, int64_t n, const std::vector<int32_t>& positions,
                    int64_t first, int64_t last, bool write_cache, int64_t* peak);
  Status prefill_promptdistill(const std::vector<int32_t>& prompt, const PipelinePlan& plan,
                               PrefillResult* out);
  Status prefill_gemfilter(const std::vector<int32_t>& prompt, const PipelinePlan& plan,
                           PrefillResult* out);
  Status prefill_kv_compression(const std::vector<int32_t>& prompt, const PipelinePlan& plan,
                                PrefillResult* out);
  Status prefill_fastkv(const std::vector<int32_t>& prompt, const PipelinePlan& plan,
                        PrefillResult* out);
  Status sweep_fastkv(const std::vector<int32_t>& prompt, const PipelineConfig& config,
                      const std::vector<int64_t>& budgets, const std::vector<PipelinePlan>& plans,
                      const SweepVisitor& visit);
  Status scored_layer(int64_t l, const SelectionStage* stage, std::vector<float>* x, int64_t n,
                      const std::vector<int32_t>& positions, int64_t total, KvLayerCache* cache,
                      session_support::StageScores* scores);
  Status sweep_kv_compression(const std::vector<int32_t>& prompt,
                              const std::vector<PipelinePlan>& plans, const SweepVisitor& visit);
  Status sweep_promptdistill(const std::vector<int32_t>& prompt,
                             const std::vector<PipelinePlan>& plans, const SweepVisitor& visit);
  Status sweep_gemfilter(const std::vector<int32_t>& prompt, const std::vector<PipelinePlan>& plans,
                         const SweepVisitor& visit);
  Status gemfilter_filter_pass(const std::vector<int32_t>& prompt, const SelectionStage& stage,
                               session_support::StageScores* scores);
  Status gemfilter_select_and_reprefill(const std::vector<int32_t>& prompt,
                                        const SelectionStage& stage, const MethodConfig& select,
                                        const session_support::StageScores& scores,
                                        PrefillResult* r);
  Status finish_budget(std::size_t index, double ttft_ms, PrefillResult* r,
                       const SweepVisitor& visit);
  Status first_token(const std::vector<float>& x, int64_t n, int32_t* token);
  int64_t cache_bytes() const;

  const ModelWeights* weights_;
  Transformer model_;
  std::vector<KvLayerCache> caches_;
  DecodeOptions decode_options_;
  DecodeWorkspace decode_ws_;
  int64_t next_position_ = 0;
  std::function<void(int64_t, int64_t)> progress_;
  int64_t layers_done_ = 0, layers_total_ = 0;
  void tick() {
    if (progress_) progress_(++layers_done_, layers_total_);
  }
};

//! The former name of EigenSession, kept for one release.
using Session [[deprecated("ref::Session was renamed ref::EigenSession")]] = EigenSession;

}  // namespace ref
}  // namespace promptdistill
