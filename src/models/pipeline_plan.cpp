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
    case PipelineMethod::kFastKV: return "fastkv";
  }
  return "unknown";
}

Status parse(std::string_view text, PipelineMethod* out) noexcept {
  static constexpr PipelineMethod kAll[] = {
      PipelineMethod::kFull,   PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter,
      PipelineMethod::kSnapKV, PipelineMethod::kH2O,           PipelineMethod::kFastKV};
  return detail::parse_enum(text, kAll, "method", out);
}

PipelineConfig PipelineConfig::published_default(PipelineMethod method) {
  PipelineConfig config;
  config.method = method;
  if (method == PipelineMethod::kFastKV) {
    // dongwonjo/FastKV's drivers (eval/run_ruler.py, run_longbench.py): --max_capacity_prompts
    // 512, --window_size 8, --kernel_size 7, --pooling maxpool, one selection per KV group.
    config.budget = 512;
    config.window = 8;
    config.pool = PoolMode::kMax;
    config.pool_kernel = 7;
    config.grouping = HeadGrouping::kPerKvGroup;
  }
  return config;
}

FastKvLayer PipelinePlan::fastkv_layer(int64_t layer, int64_t tokens) const noexcept {
  // FastKV's update_kv: in the proportional mode the budget is int(q_len * retain_rate) with
  // retain_rate / tsp_rate after the TSP layer, and the TSP length int(q_len * tsp_rate); a layer
  // whose q_len is below its budget keeps everything and propagates nothing.
  FastKvLayer out;
  const bool proportional = retain_rate > 0.0;
  if (proportional)
    out.budget =
        int64_t(double(tokens) * (layer <= tsp_layer ? retain_rate : retain_rate / tsp_rate));
  else
    out.budget = compression.budget;
  out.compresses = tokens >= out.budget;
  const int64_t tsp = proportional ? int64_t(double(tokens) * tsp_rate) : tsp_length;
  out.propagated = layer == tsp_layer && out.compresses && tokens > tsp ? tsp : tokens;
  return out;
}

namespace {

//! FastKV's settings: constant (budget, tsp_length) or proportional (retain_rate, tsp_rate), as
//! its code's eviction_mode has them; the compression is Method::kFastKV.
Status plan_fastkv(const PipelineConfig& config, PipelinePlan* plan) {
  const bool proportional = config.retain_rate != 0.0 || config.tsp_rate != 0.0;
  if (proportional && !(config.retain_rate > 0.0 && config.retain_rate <= 1.0 &&
                        config.tsp_rate > 0.0 && config.tsp_rate <= 1.0))
    return Status(StatusCode::kInvalidArgument,
                  "fastkv's proportional mode needs retain_rate and tsp_rate in (0, 1], got %g and "
                  "%g (both 0: the "
                  "constant mode, budget and tsp_length)",
                  config.retain_rate, config.tsp_rate);
  if (config.tsp_layer < 0)
    return Status(StatusCode::kInvalidArgument, "tsp_layer %lld is negative",
                  (long long)config.tsp_layer);
  if (!proportional && config.tsp_length <= config.window)
    return Status(StatusCode::kInvalidArgument,
                  "tsp_length %lld must exceed the window %d (the window is propagated)",
                  (long long)config.tsp_length, config.window);
  plan->fastkv = true;
  plan->tsp_layer = config.tsp_layer;
  plan->tsp_length = config.tsp_length;
  plan->tsp_rate = config.tsp_rate;
  plan->retain_rate = config.retain_rate;
  plan->compression.method = Method::kFastKV;
  plan->compression.budget = config.budget;
  plan->compression.window = config.window;
  plan->compression.pool = config.pool;
  plan->compression.pool_kernel = config.pool_kernel;
  plan->compression.grouping = config.grouping;
  return plan_method(plan->compression, &plan->compression_plan);
}

//! The score layers of each stage: the listed layers in (previous stage's layer, stage's layer].
Status plan_score_layers(const PipelineConfig& config, PipelinePlan* plan) {
  const std::vector<int64_t>& layers = config.score_layers;
  if (layers.empty()) return Status::ok();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0)
      return Status(StatusCode::kInvalidArgument, "score layer %lld is negative",
                    (long long)layers[i]);
    if (i > 0 && layers[i] <= layers[i - 1])
      return Status(StatusCode::kInvalidArgument,
                    "score layers must be strictly increasing (%lld after %lld)",
                    (long long)layers[i], (long long)layers[i - 1]);
  }
  if (layers.back() > plan->stages.back().layer)
    return Status(StatusCode::kInvalidArgument,
                  "score layer %lld comes after the last selection layer %lld",
                  (long long)layers.back(), (long long)plan->stages.back().layer);
  int64_t previous = -1;
  for (SelectionStage& stage : plan->stages) {
    for (int64_t layer : layers)
      if (layer > previous && layer <= stage.layer) stage.score_layers.push_back(layer);
    if (stage.score_layers.empty() || stage.score_layers.back() != stage.layer)
      return Status(StatusCode::kInvalidArgument,
                    "score layers must list the selection layer %lld itself (a selection at layer "
                    "r averages layers "
                    "up to r)",
                    (long long)stage.layer);
    previous = stage.layer;
  }
  return Status::ok();
}

}  // namespace

Status plan_pipeline(const PipelineConfig& config, PipelinePlan* out) noexcept {
  try {
    PipelinePlan plan;
    plan.method = config.method;
    if (!config.score_layers.empty() && config.method != PipelineMethod::kPromptDistill &&
        config.method != PipelineMethod::kGemFilter)
      return Status(StatusCode::kInvalidArgument,
                    "score_layers apply to promptdistill and gemfilter, not to %s",
                    to_string(config.method));
    switch (config.method) {
      case PipelineMethod::kFull: break;
      case PipelineMethod::kPromptDistill:
      case PipelineMethod::kGemFilter: {
        const bool gemfilter = config.method == PipelineMethod::kGemFilter;
        if (config.selection_layers.empty())
          return Status(StatusCode::kInvalidArgument, "selection_layers is empty");
        if (config.selection_layers.size() != config.n_topks.size())
          return Status(StatusCode::kInvalidArgument,
                        "selection_layers has %zu entries but n_topks has %zu",
                        config.selection_layers.size(), config.n_topks.size());
        if (gemfilter && config.selection_layers.size() != 1)
          return Status(StatusCode::kInvalidArgument, "gemfilter takes one filter layer and one k");
        if (config.cache_truncation_end < -1)
          return Status(StatusCode::kInvalidArgument,
                        "cache_truncation_end must be -1, 0 or a stage count, got %lld",
                        (long long)config.cache_truncation_end);
        for (std::size_t i = 0; i < config.selection_layers.size(); ++i) {
          const int64_t layer = config.selection_layers[i];
          if (layer < 0)
            return Status(StatusCode::kInvalidArgument, "selection layer %lld is negative",
                          (long long)layer);
          if (i > 0 && layer <= config.selection_layers[i - 1])
            return Status(StatusCode::kInvalidArgument,
                          "selection layers must be strictly increasing (%lld after %lld)",
                          (long long)layer, (long long)config.selection_layers[i - 1]);
          if (config.n_topks[i] <= 0)
            return Status(StatusCode::kInvalidArgument, "n_topks[%zu] = %lld must be > 0", i,
                          (long long)config.n_topks[i]);
          SelectionStage stage;
          stage.layer = layer;
          stage.select.method = gemfilter ? Method::kGemFilter : Method::kPromptDistill;
          stage.select.budget = config.n_topks[i];
          stage.select.pool = config.pool;
          stage.select.pool_kernel = config.pool_kernel;
          stage.truncates_cache = !gemfilter && (config.cache_truncation_end == -1 ||
                                                 int64_t(i) < config.cache_truncation_end);
          PD_RETURN_IF_ERROR(plan_method(stage.select, &stage.plan));
          plan.stages.push_back(stage);
        }
        plan.truncate_after_last_layer = !gemfilter && config.truncate_after_last_layer;
        PD_RETURN_IF_ERROR(plan_score_layers(config, &plan));
        break;
      }
      case PipelineMethod::kSnapKV:
      case PipelineMethod::kH2O: {
        if (config.budget <= 0)
          return Status(StatusCode::kInvalidArgument, "budget must be > 0, got %lld",
                        (long long)config.budget);
        if (config.method == PipelineMethod::kH2O &&
            (config.pool != PoolMode::kAvg || config.pool_kernel != 5))
          return Status(
              StatusCode::kInvalidArgument,
              "h2o ranks accumulated attention without pooling: pool and pool_kernel do not apply");
        plan.compresses_every_layer = true;
        plan.compression.method =
            config.method == PipelineMethod::kSnapKV ? Method::kSnapKV : Method::kH2O;
        plan.compression.budget = config.budget;
        plan.compression.window = config.window;
        plan.compression.pool = config.pool;
        plan.compression.pool_kernel = config.pool_kernel;
        plan.compression.grouping = config.grouping;
        PD_RETURN_IF_ERROR(plan_method(plan.compression, &plan.compression_plan));
        break;
      }
      case PipelineMethod::kFastKV: PD_RETURN_IF_ERROR(plan_fastkv(config, &plan)); break;
      default:
        return Status(StatusCode::kInvalidArgument, "unknown pipeline method %d",
                      int(config.method));
    }
    *out = std::move(plan);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "plan_pipeline: out of host memory");
  }
}

std::vector<std::vector<int32_t>> compose_stage_maps(
    const std::vector<std::vector<int32_t>>& stage_maps) {
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
    return Status(StatusCode::kInvalidArgument,
                  "prompt of %lld tokens exceeds the model's context of %lld",
                  (long long)prompt_length, (long long)model.max_positions);
  PipelinePlan plan;
  PD_RETURN_IF_ERROR(plan_pipeline(*this, &plan));
  const int64_t num_layers = model.num_layers;
  for (const SelectionStage& stage : plan.stages) {
    if (stage.layer >= num_layers)
      return Status(StatusCode::kInvalidArgument, "selection layer %lld is outside [0, %lld)",
                    (long long)stage.layer, (long long)num_layers);
    if (method == PipelineMethod::kPromptDistill && stage.layer == num_layers - 1)
      return Status(StatusCode::kInvalidArgument,
                    "selection layer %lld is the last layer (nothing would run on the kept tokens)",
                    (long long)stage.layer);
  }
  if (plan.fastkv) {
    if (plan.tsp_layer >= num_layers)
      return Status(StatusCode::kInvalidArgument, "tsp_layer %lld is outside [0, %lld)",
                    (long long)plan.tsp_layer, (long long)num_layers);
    // Budgets and propagation as the prefill will meet them (the proportional ones depend on the
    // prompt): each compressing layer's budget, and the propagated count, must exceed the window.
    int64_t tokens = prompt_length;
    for (int64_t layer = 0; layer < num_layers; ++layer) {
      const FastKvLayer at = plan.fastkv_layer(layer, tokens);
      if (at.compresses && at.budget <= window)
        return Status(StatusCode::kInvalidArgument,
                      "fastkv: the budget at layer %lld, %lld tokens of %lld (retain_rate %g), "
                      "does not exceed the "
                      "window %d (a prompt of %lld tokens is too short for it)",
                      (long long)layer, (long long)at.budget, (long long)tokens, plan.retain_rate,
                      window, (long long)prompt_length);
      if (at.propagated < tokens && at.propagated <= window)
        return Status(StatusCode::kInvalidArgument,
                      "fastkv: layer %lld would propagate %lld tokens, not more than the window %d",
                      (long long)layer, (long long)at.propagated, window);
      tokens = at.propagated;
    }
  }
  return Status::ok();
}

}  // namespace promptdistill
