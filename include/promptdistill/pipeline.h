// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! End-to-end prompt compression: the method configurations of algorithms.md (full KV,
//! PromptDistill single/multi-stage with cache truncation, GemFilter, SnapKV, H2O), their
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
#include <vector>

#include "promptdistill/model.h"
#include "promptdistill/selector.h"
#include "promptdistill/status.h"

namespace promptdistill {

enum class PipelineMethod : int32_t { kFull = 0, kPromptDistill = 1, kGemFilter = 2, kSnapKV = 3, kH2O = 4 };
const char* to_string(PipelineMethod m) noexcept;
//! "full", "promptdistill", "gemfilter", "snapkv", "h2o"; kInvalidArgument otherwise.
Status parse_pipeline_method(const std::string& name, PipelineMethod* out) noexcept;

struct PipelineConfig {
  PipelineMethod method = PipelineMethod::kFull;
  //! PromptDistill: strictly increasing 0-based layers (none the last one) paired with the number
  //! of tokens chosen at each besides the always-kept last token. GemFilter uses the first pair
  //! (its filter layer and the number of tokens kept).
  std::vector<int64_t> selection_layers = {13};
  std::vector<int64_t> n_topks = {1024};
  //! PromptDistill: stages i < tt truncate the caches of every layer up to their selection layer
  //! to the tokens they keep; -1 = every stage; 0 = none.
  int64_t cache_truncation_end = 0;
  //! Reference-fidelity switch: truncate after the last layer (same result, higher peak memory).
  bool truncate_after_last_layer = false;
  //! SnapKV/H2O: capacity per row (window included), observation/recent window.
  int64_t capacity = 1024;
  int32_t window = 32;
  PoolMode pool = PoolMode::kAvg;  //!< SnapKV (H2O never pools)
  int32_t pool_kernel = 5;
  HeadGrouping grouping = HeadGrouping::kPerKvGroup;

  //! Checks the configuration against a model and a prompt length (before any work).
  Status validate(const ModelConfig& model, int64_t prompt_length) const noexcept;
};

struct PrefillResult {
  int32_t first_token = -1;
  int64_t prompt_tokens = 0;
  std::vector<int64_t> retained;                      //!< tokens kept after each stage
  std::vector<std::vector<int32_t>> selected;         //!< per stage: original positions kept
  std::vector<int64_t> cache_lengths;                 //!< per layer after prefill
  int64_t next_position = 0;                          //!< position of the first generated token
  double ttft_ms = 0;
  int64_t peak_kv_cache_bytes = 0;                    //!< largest total K/V held during prefill
};

}  // namespace promptdistill
