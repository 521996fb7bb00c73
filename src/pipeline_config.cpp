// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "promptdistill/pipeline.h"

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

Status parse_pipeline_method(const std::string& name, PipelineMethod* out) noexcept {
  for (PipelineMethod m : {PipelineMethod::kFull, PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter,
                           PipelineMethod::kSnapKV, PipelineMethod::kH2O})
    if (name == to_string(m)) {
      *out = m;
      return Status::ok();
    }
  return Status(StatusCode::kInvalidArgument, "method must be full, promptdistill, gemfilter, snapkv or h2o, got '%.40s'",
                name.c_str());
}

Status PipelineConfig::validate(const ModelConfig& model, int64_t L) const noexcept {
  if (L < 1) return Status(StatusCode::kInvalidArgument, "empty prompt");
  if (L > model.max_positions)
    return Status(StatusCode::kInvalidArgument, "prompt of %lld tokens exceeds the model's context of %lld", (long long)L,
                  (long long)model.max_positions);
  const int64_t N = model.num_layers;
  if (method == PipelineMethod::kPromptDistill || method == PipelineMethod::kGemFilter) {
    if (selection_layers.empty()) return Status(StatusCode::kInvalidArgument, "selection_layers is empty");
    if (selection_layers.size() != n_topks.size())
      return Status(StatusCode::kInvalidArgument, "selection_layers has %zu entries but n_topks has %zu", selection_layers.size(),
                    n_topks.size());
    if (method == PipelineMethod::kGemFilter && selection_layers.size() != 1)
      return Status(StatusCode::kInvalidArgument, "gemfilter takes one filter layer and one k");
    for (std::size_t i = 0; i < selection_layers.size(); ++i) {
      const int64_t r = selection_layers[i];
      if (r < 0 || r >= N)
        return Status(StatusCode::kInvalidArgument, "selection layer %lld is outside [0, %lld)", (long long)r, (long long)N);
      if (method == PipelineMethod::kPromptDistill && r == N - 1)
        return Status(StatusCode::kInvalidArgument, "selection layer %lld is the last layer (nothing would run on the kept tokens)",
                      (long long)r);
      if (i > 0 && r <= selection_layers[i - 1])
        return Status(StatusCode::kInvalidArgument, "selection layers must be strictly increasing (%lld after %lld)", (long long)r,
                      (long long)selection_layers[i - 1]);
      if (n_topks[i] <= 0) return Status(StatusCode::kInvalidArgument, "n_topks[%zu] = %lld must be > 0", i, (long long)n_topks[i]);
    }
    if (cache_truncation_end < -1)
      return Status(StatusCode::kInvalidArgument, "cache_truncation_end must be -1, 0 or a stage count, got %lld",
                    (long long)cache_truncation_end);
  }
  if (method == PipelineMethod::kSnapKV || method == PipelineMethod::kH2O) {
    MethodConfig c;
    c.method = method == PipelineMethod::kSnapKV ? Method::kSnapKV : Method::kH2O;
    c.budget = capacity;
    c.window = window;
    c.pool = pool;
    c.pool_kernel = pool_kernel;
    c.grouping = grouping;
    if (capacity <= 0) return Status(StatusCode::kInvalidArgument, "capacity must be > 0, got %lld", (long long)capacity);
    MethodPlan plan;
    PD_RETURN_IF_ERROR(plan_method(c, &plan));
  }
  return Status::ok();
}

}  // namespace promptdistill
