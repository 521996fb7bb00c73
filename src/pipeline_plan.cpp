// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The pipeline planner: a PipelineConfig is checked and turned into the selections a prefill
//! runs (`plan_pipeline`), and truncating stages' index maps are composed in one place
//! (`compose_stage_maps`). `ref::EigenSession` and `BatchSession` both execute plans made here.

#include "promptdistill/pipeline.h"

#include "promptdistill/detail/parse_enum.h"

namespace promptdistill {

const char* to_string(PipelineMethod m) noexcept {
  switch (m) {
    case PipelineMethod::kFull: return "full";
    case PipelineMethod::kPromptDistill: return "promptdistill";
    case PipelineMethod::kGemFilter: return "gemfilter";
    case PipelineMethod::kSnapKV: return "snapkv";
    case PipelineMethod::kH2O: return "h2o";
  }
  return "unknown";
}

Status parse(std::string_view text, PipelineMethod* out) noexcept {
  static constexpr PipelineMethod kAll[] = {PipelineMethod::kFull, PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter,
                                            PipelineMethod::kSnapKV, PipelineMethod::kH2O};
  return detail::parse_enum(text, kAll, "method", out);
}

PipelineConfig PipelineConfig::published_default(PipelineMethod method) {
  PipelineConfig config;
  config.method = method;
  return config;
}

Status plan_pipeline(const PipelineConfig& config, PipelinePlan* out) noexcept {
  try {
    PipelinePlan plan;
    plan.method = config.method;
    switch (config.method) {
      case PipelineMethod::kFull: break;
      case PipelineMethod::kPromptDistill:
      case PipelineMethod::kGemFilter: {
        const bool gemfilter = config.method == PipelineMethod::kGemFilter;
        if (config.selection_layers.empty()) return Status(StatusCode::kInvalidArgument, "selection_layers is empty");
        if (config.selection_layers.size() != config.n_topks.size())
          return Status(StatusCode::kInvalidArgument, "selection_layers has %zu entries but n_topks has %zu",
                        config.selection_layers.size(), config.n_topks.size());
        if (gemfilter && config.selection_layers.size() != 1)
          return Status(StatusCode::kInvalidArgument, "gemfilter takes one filter layer and one k");
        if (config.cache_truncation_end < -1)
          return Status(StatusCode::kInvalidArgument, "cache_truncation_end must be -1, 0 or a stage count, got %lld",
                        (long long)config.cache_truncation_end);
        for (std::size_t i = 0; i < config.selection_layers.size(); ++i) {
          const int64_t layer = config.selection_layers[i];
          if (layer < 0) return Status(StatusCode::kInvalidArgument, "selection layer %lld is negative", (long long)layer);
          if (i > 0 && layer <= config.selection_layers[i - 1])
            return Status(StatusCode::kInvalidArgument, "selection layers must be strictly increasing (%lld after %lld)",
                          (long long)layer, (long long)config.selection_layers[i - 1]);
          if (config.n_topks[i] <= 0)
            return Status(StatusCode::kInvalidArgument, "n_topks[%zu] = %lld must be > 0", i, (long long)config.n_topks[i]);
          SelectionStage stage;
          stage.layer = layer;
          stage.select.method = gemfilter ? Method::kGemFilter : Method::kPromptDistill;
          stage.select.budget = config.n_topks[i];
          stage.select.pool = config.pool;
          stage.select.pool_kernel = config.pool_kernel;
          stage.truncates_cache =
              !gemfilter && (config.cache_truncation_end == -1 || int64_t(i) < config.cache_truncation_end);
          PD_RETURN_IF_ERROR(plan_method(stage.select, &stage.plan));
          plan.stages.push_back(stage);
        }
        plan.truncate_after_last_layer = !gemfilter && config.truncate_after_last_layer;
        break;
      }
      case PipelineMethod::kSnapKV:
      case PipelineMethod::kH2O: {
        if (config.budget <= 0)
          return Status(StatusCode::kInvalidArgument, "budget must be > 0, got %lld", (long long)config.budget);
        if (config.method == PipelineMethod::kH2O && (config.pool != PoolMode::kAvg || config.pool_kernel != 5))
          return Status(StatusCode::kInvalidArgument,
                        "h2o ranks accumulated attention without pooling: pool and pool_kernel do not apply");
        plan.compresses_every_layer = true;
        plan.compression.method = config.method == PipelineMethod::kSnapKV ? Method::kSnapKV : Method::kH2O;
        plan.compression.budget = config.budget;
        plan.compression.window = config.window;
        plan.compression.pool = config.pool;
        plan.compression.pool_kernel = config.pool_kernel;
        plan.compression.grouping = config.grouping;
        PD_RETURN_IF_ERROR(plan_method(plan.compression, &plan.compression_plan));
        break;
      }
      default: return Status(StatusCode::kInvalidArgument, "unknown pipeline method %d", int(config.method));
    }
    *out = std::move(plan);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "plan_pipeline: out of host memory");
  }
}

std::vector<std::vector<int32_t>> compose_stage_maps(const std::vector<std::vector<int32_t>>& stage_maps) {
  std::vector<std::vector<int32_t>> composed(stage_maps.size());
  for (std::size_t s = 0; s < stage_maps.size(); ++s) {
    // The last stage's indices point into its own input set; walk them back through every
    // earlier stage down to s, so they point into stage s's input set.
    std::vector<int32_t> map = stage_maps.back();
    for (std::size_t j = stage_maps.size() - 1; j-- > s;)
      for (int32_t& index : map) index = stage_maps[j][std::size_t(index)];
    composed[s] = std::move(map);
  }
  return composed;
}

Status PipelineConfig::validate(const ModelConfig& model, int64_t prompt_length) const noexcept {
  if (prompt_length < 1) return Status(StatusCode::kInvalidArgument, "empty prompt");
  if (prompt_length > model.max_positions)
    return Status(StatusCode::kInvalidArgument, "prompt of %lld tokens exceeds the model's context of %lld",
                  (long long)prompt_length, (long long)model.max_positions);
  PipelinePlan plan;
  PD_RETURN_IF_ERROR(plan_pipeline(*this, &plan));
  const int64_t num_layers = model.num_layers;
  for (const SelectionStage& stage : plan.stages) {
    if (stage.layer >= num_layers)
      return Status(StatusCode::kInvalidArgument, "selection layer %lld is outside [0, %lld)", (long long)stage.layer,
                    (long long)num_layers);
    if (method == PipelineMethod::kPromptDistill && stage.layer == num_layers - 1)
      return Status(StatusCode::kInvalidArgument,
                    "selection layer %lld is the last layer (nothing would run on the kept tokens)", (long long)stage.layer);
  }
  return Status::ok();
}

}  // namespace promptdistill
