// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! `promptdistill._core`: the Selector on the CPU reference backend (host memory), the geometry
//! of a selection (what to allocate before running it) and the pipeline checks of `hf.generate`.

#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <tuple>
#include <vector>

#include "binding_ops.h"
#include "promptdistill/pipeline.h"

namespace pdpy {
namespace {

PDPY_DEFINE_BACKEND(RefBackend, pd::ref, nb::device::cpu::value, "the CPU reference backend");

//! (rows per request, tokens kept from a prompt of `length`): the output shapes of `select`,
//! computed from shapes alone (the fake implementations of the PyTorch ops use it too).
std::tuple<int64_t, int64_t> geometry(const std::string& method, int64_t budget, int64_t window, const std::string& pool,
                                      int64_t pool_kernel, const std::string& per, int64_t num_q_heads, int64_t num_kv_heads,
                                      int64_t length) {
  const pd::MethodConfig cfg = method_config(method, budget, window, pool, pool_kernel, per);
  pd::MethodPlan plan;
  raise_if_error(pd::plan_method(cfg, &plan));
  // Shapes that the run will reject still get non-negative sizes, so that allocation succeeds
  // and the run reports the library's message.
  const int64_t rows = std::max<int64_t>(0, pd::score_rows(cfg.method, cfg.grouping, num_q_heads, num_kv_heads));
  const int64_t kept = pd::kept_tokens(plan, length);
  return {rows, kept};
}

//! `PipelineConfig::validate` for a model of `num_layers` layers and `max_positions` positions.
void check_pipeline(const std::string& method, const std::vector<int64_t>& selection_layers, const std::vector<int64_t>& n_topks,
                    int64_t cache_truncation_end, int64_t capacity, int64_t window, const std::string& pool, int64_t pool_kernel,
                    const std::string& per, int64_t num_layers, int64_t max_positions, int64_t prompt_length) {
  pd::PipelineConfig c;
  c.method = parse_or_raise<pd::PipelineMethod>(method);
  c.selection_layers = selection_layers;
  c.n_topks = n_topks;
  c.cache_truncation_end = cache_truncation_end;
  c.capacity = capacity;
  if (window < 1 || window > INT32_MAX)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "window must be in [1, 2^31-1], got %lld", (long long)window));
  c.window = int32_t(window);
  c.pool = parse_or_raise<pd::PoolMode>(pool);
  c.pool_kernel = int32_t(std::min<int64_t>(pool_kernel, INT32_MAX));
  c.grouping = parse_or_raise<pd::HeadGrouping>(per);
  pd::ModelConfig model;
  model.num_layers = num_layers;
  model.max_positions = max_positions;
  raise_if_error(c.validate(model, prompt_length));
}

}  // namespace
}  // namespace pdpy

NB_MODULE(_core, m) {
  namespace nb = nanobind;
  using namespace nb::literals;
  pdpy::define_ops<pdpy::RefBackend>(m);
  m.def("geometry", &pdpy::geometry, "method"_a, "budget"_a, "window"_a, "pool"_a, "pool_kernel"_a, "per"_a, "num_q_heads"_a,
        "num_kv_heads"_a, "length"_a);
  m.def("check_pipeline", &pdpy::check_pipeline, "method"_a, "selection_layers"_a, "n_topks"_a, "cache_truncation_end"_a,
        "capacity"_a, "window"_a, "pool"_a, "pool_kernel"_a, "per"_a, "num_layers"_a, "max_positions"_a, "prompt_length"_a);
  m.attr("VERSION") = std::to_string(PROMPTDISTILL_VERSION_MAJOR) + "." + std::to_string(PROMPTDISTILL_VERSION_MINOR) + "." +
                      std::to_string(PROMPTDISTILL_VERSION_PATCH);
}
