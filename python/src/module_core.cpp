// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! `promptdistill._core`: the Selector on the CPU reference backend (host memory), the geometry
//! of a selection (what to allocate before running it), and the pipelines' published defaults,
//! checks and plans that `promptdistill.plan` and the drivers written in Python read.

#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <climits>

#include <tuple>
#include <vector>

#include "binding_ops.h"
#include "promptdistill/pipeline.h"

namespace pdpy {
namespace {

static_assert(pd::RefBackend::kDLPackDevice == nb::device::cpu::value,
              "the CPU backend's arrays are DLPack CPU arrays");

//! (rows per request, tokens kept from a prompt of `length`): the output shapes of `select`,
//! computed from shapes alone (the fake implementations of the PyTorch ops use it too).
std::tuple<int64_t, int64_t> geometry(const std::string& method, int64_t budget, int64_t window,
                                      const std::string& pool, int64_t pool_kernel,
                                      const std::string& per, int64_t num_q_heads,
                                      int64_t num_kv_heads, int64_t length) {
  const pd::MethodConfig cfg = method_config(method, budget, window, pool, pool_kernel, per);
  pd::MethodPlan plan;
  raise_if_error(pd::plan_method(cfg, &plan));
  // Shapes that the run will reject still get non-negative sizes, so that allocation succeeds
  // and the run reports the library's message.
  const int64_t rows =
      std::max<int64_t>(0, pd::score_rows(cfg.method, cfg.grouping, num_q_heads, num_kv_heads));
  const int64_t kept = pd::kept_tokens(plan, length);
  return {rows, kept};
}

//! The settings added after the first release, as trailing keywords with their C++ defaults, so
//! that callers of the earlier positional form keep working.
struct LaterSettings {
  std::vector<int64_t> score_layers;
  int64_t tsp_layer = pd::PipelineConfig{}.tsp_layer, tsp_length = pd::PipelineConfig{}.tsp_length;
  double tsp_rate = 0.0, retain_rate = 0.0;
};

//! A PipelineConfig from the Python keywords (every name as the C++ member).
pd::PipelineConfig pipeline_config(const std::string& method,
                                   const std::vector<int64_t>& selection_layers,
                                   const std::vector<int64_t>& n_topks,
                                   int64_t cache_truncation_end, int64_t budget, int64_t window,
                                   const std::string& pool, int64_t pool_kernel,
                                   const std::string& per, const LaterSettings& later = {}) {
  pd::PipelineConfig c;
  c.score_layers = later.score_layers;
  c.tsp_layer = later.tsp_layer;
  c.tsp_length = later.tsp_length;
  c.tsp_rate = later.tsp_rate;
  c.retain_rate = later.retain_rate;
  c.method = parse_or_raise<pd::PipelineMethod>(method);
  c.selection_layers = selection_layers;
  c.n_topks = n_topks;
  c.cache_truncation_end = cache_truncation_end;
  c.budget = budget;
  if (window < 1 || window > INT32_MAX)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "window must be in [1, 2^31-1], got %lld",
                     (long long)window));
  c.window = int32_t(window);
  c.pool = parse_or_raise<pd::PoolMode>(pool);
  if (pool_kernel < 1 || pool_kernel > INT32_MAX)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "pool kernel must be odd and >= 1, got %lld",
                     (long long)pool_kernel));
  c.pool_kernel = int32_t(pool_kernel);
  c.grouping = parse_or_raise<pd::HeadGrouping>(per);
  return c;
}

//! PipelineConfig::published_default(method) as a dict of the Python keywords.
nb::dict published_default(const std::string& method) {
  const pd::PipelineConfig c =
      pd::PipelineConfig::published_default(parse_or_raise<pd::PipelineMethod>(method));
  nb::dict d;
  d["method"] = std::string(pd::to_string(c.method));
  d["selection_layers"] = nb::cast(c.selection_layers);
  d["n_topks"] = nb::cast(c.n_topks);
  d["cache_truncation_end"] = c.cache_truncation_end;
  d["budget"] = c.budget;
  d["window"] = int64_t(c.window);
  d["pool"] = std::string(pd::to_string(c.pool));
  d["pool_kernel"] = int64_t(c.pool_kernel);
  d["per"] = std::string(pd::to_string(c.grouping));
  d["score_layers"] = nb::cast(c.score_layers);
  d["tsp_layer"] = c.tsp_layer;
  d["tsp_length"] = c.tsp_length;
  d["tsp_rate"] = c.tsp_rate;
  d["retain_rate"] = c.retain_rate;
  return d;
}

//! `PipelineConfig::validate` for a model of `num_layers` layers and `max_positions` positions.
void check_pipeline(const std::string& method, const std::vector<int64_t>& selection_layers,
                    const std::vector<int64_t>& n_topks, int64_t cache_truncation_end,
                    int64_t budget, int64_t window, const std::string& pool, int64_t pool_kernel,
                    const std::string& per, int64_t num_layers, int64_t max_positions,
                    int64_t prompt_length, const std::vector<int64_t>& score_layers,
                    int64_t tsp_layer, int64_t tsp_length, double tsp_rate, double retain_rate) {
  const pd::PipelineConfig c = pipeline_config(
      method, selection_layers, n_topks, cache_truncation_end, budget, window, pool, pool_kernel,
      per, {score_layers, tsp_layer, tsp_length, tsp_rate, retain_rate});
  pd::ModelConfig model;
  model.num_layers = num_layers;
  model.max_positions = max_positions;
  raise_if_error(c.validate(model, prompt_length));
}

//! What a MethodPlan tells a driver, as a dict: the selection method and the Selector settings,
//! the candidates chosen (k) and forced tail (keep_last) that kept_tokens reads.
nb::dict describe_selection(const pd::MethodConfig& c, const pd::MethodPlan& plan) {
  nb::dict d;
  d["method"] = std::string(pd::to_string(c.method));
  d["budget"] = c.budget;
  d["window"] = int64_t(c.window);
  d["pool"] = std::string(pd::to_string(plan.pool));
  d["pool_kernel"] = int64_t(plan.pool_kernel);
  d["per"] = std::string(pd::to_string(c.grouping));
  d["k"] = plan.k;
  d["keep_last"] = int64_t(plan.keep_last);
  return d;
}

//! plan_pipeline of a configuration checked against a model of `num_layers` layers: the stages
//! (layer, truncates_cache and the selection) and the SnapKV/H2O compression, as dicts.
nb::dict pipeline_plan(const std::string& method, const std::vector<int64_t>& selection_layers,
                       const std::vector<int64_t>& n_topks, int64_t cache_truncation_end,
                       int64_t budget, int64_t window, const std::string& pool, int64_t pool_kernel,
                       const std::string& per, int64_t num_layers,
                       const std::vector<int64_t>& score_layers, int64_t tsp_layer,
                       int64_t tsp_length, double tsp_rate, double retain_rate) {
  const pd::PipelineConfig c = pipeline_config(
      method, selection_layers, n_topks, cache_truncation_end, budget, window, pool, pool_kernel,
      per, {score_layers, tsp_layer, tsp_length, tsp_rate, retain_rate});
  if (num_layers < 1)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "num_layers must be >= 1, got %lld",
                     (long long)num_layers));
  pd::ModelConfig model;
  model.num_layers = num_layers;
  model.max_positions = INT64_MAX;
  // The layers against the model. The prompt is checked per request (check_pipeline): here one long
  // enough for every check that depends on it (FastKV's proportional budgets must exceed the
  // window).
  raise_if_error(c.validate(model, int64_t(1) << 20));
  pd::PipelinePlan plan;
  raise_if_error(pd::plan_pipeline(c, &plan));
  nb::list stages;
  for (const pd::SelectionStage& stage : plan.stages) {
    nb::dict d = describe_selection(stage.select, stage.plan);
    d["layer"] = stage.layer;
    d["truncates_cache"] = stage.truncates_cache;
    d["score_layers"] = nb::cast(stage.score_layers);
    stages.append(d);
  }
  nb::dict out;
  out["method"] = std::string(pd::to_string(plan.method));
  out["stages"] = stages;
  const bool compresses = plan.compresses_every_layer || plan.fastkv;
  out["compression"] = compresses
                           ? nb::object(describe_selection(plan.compression, plan.compression_plan))
                           : nb::none();
  out["fastkv"] = plan.fastkv ? nb::object(nb::make_tuple(plan.tsp_layer, plan.tsp_length,
                                                          plan.tsp_rate, plan.retain_rate))
                              : nb::none();
  out["truncate_after_last_layer"] = plan.truncate_after_last_layer;
  // PipelinePlan::compresses(L) holds exactly from this prompt length on (SnapKV/H2O; FastKV
  // decides per layer: fastkv_layer).
  out["compresses_from"] =
      plan.compresses_every_layer ? nb::object(nb::int_(plan.compression.budget)) : nb::none();
  return out;
}

//! PipelinePlan::fastkv_layer of a FastKV plan's settings (budget: the constant C): (C, compresses,
//! propagated) at `layer` over `tokens` tokens.
std::tuple<int64_t, bool, int64_t> fastkv_layer(int64_t budget, int64_t tsp_layer,
                                                int64_t tsp_length, double tsp_rate,
                                                double retain_rate, int64_t layer, int64_t tokens) {
  pd::PipelinePlan plan;
  plan.fastkv = true;
  plan.compression.budget = budget;
  plan.tsp_layer = tsp_layer;
  plan.tsp_length = tsp_length;
  plan.tsp_rate = tsp_rate;
  plan.retain_rate = retain_rate;
  const pd::FastKvLayer at = plan.fastkv_layer(layer, tokens);
  return {at.budget, at.compresses, at.propagated};
}

//! kept_tokens of the MethodPlan with candidates chosen `k` and forced tail `keep_last`.
int64_t kept_tokens(int64_t k, int64_t keep_last, int64_t prompt_length) {
  pd::MethodPlan plan{};
  plan.k = k;
  plan.keep_last = int32_t(std::min<int64_t>(std::max<int64_t>(keep_last, 0), INT32_MAX));
  return pd::kept_tokens(plan, prompt_length);
}

//! estimate_prefill_bytes of a configuration on a model of these dimensions, as a dict
//! (activations, kv_cache, scores, total), for a prefill of `prompt_length` tokens.
nb::dict estimate_prefill_bytes(const std::string& method,
                                const std::vector<int64_t>& selection_layers,
                                const std::vector<int64_t>& n_topks, int64_t cache_truncation_end,
                                int64_t budget, int64_t window, const std::string& pool,
                                int64_t pool_kernel, const std::string& per,
                                const std::vector<int64_t>& model_dims, int64_t prompt_length,
                                int64_t batch, int64_t element_bytes, int64_t mlp_chunk_rows,
                                int64_t decode_reserve, int64_t attention_rows, int64_t budgets,
                                const std::vector<int64_t>& score_layers, int64_t tsp_layer,
                                int64_t tsp_length, double tsp_rate, double retain_rate) {
  const pd::PipelineConfig c = pipeline_config(
      method, selection_layers, n_topks, cache_truncation_end, budget, window, pool, pool_kernel,
      per, {score_layers, tsp_layer, tsp_length, tsp_rate, retain_rate});
  if (model_dims.size() != 7)
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "model dimensions: 7 values expected, got %zu", model_dims.size()));
  pd::ModelConfig model;
  model.num_layers = model_dims[0], model.hidden = model_dims[1], model.num_heads = model_dims[2];
  model.num_kv_heads = model_dims[3], model.head_dim = model_dims[4],
  model.intermediate = model_dims[5];
  model.vocab = model_dims[6];
  for (int64_t d : model_dims)
    if (d < 1) raise(pd::Status(pd::StatusCode::kInvalidArgument, "model dimensions must be >= 1"));
  if (model.num_heads % model.num_kv_heads != 0)
    raise(pd::Status(pd::StatusCode::kShapeMismatch,
                     "query heads %lld are not a multiple of KV heads %lld",
                     (long long)model.num_heads, (long long)model.num_kv_heads));
  model.max_positions = INT64_MAX;
  raise_if_error(c.validate(model, std::max<int64_t>(prompt_length, 1)));
  pd::PipelinePlan plan;
  raise_if_error(pd::plan_pipeline(c, &plan));
  if (prompt_length < 0 || batch < 1 || element_bytes < 1 || mlp_chunk_rows < 0 ||
      decode_reserve < 0 || attention_rows < 0 || budgets < 1)
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "prompt_length, mlp_chunk_rows, decode_reserve and attention_rows must be >= "
                     "0, batch, element_bytes "
                     "and budgets >= 1"));
  pd::PrefillMemoryModel how;
  how.batch = batch, how.element_bytes = element_bytes, how.mlp_chunk_rows = mlp_chunk_rows;
  how.decode_reserve = decode_reserve, how.attention_rows = attention_rows, how.budgets = budgets;
  const pd::PrefillMemory need = pd::estimate_prefill_bytes(model, plan, prompt_length, how);
  nb::dict d;
  d["activations"] = need.activations;
  d["kv_cache"] = need.kv_cache;
  d["scores"] = need.scores;
  d["total"] = need.total();
  return d;
}

}  // namespace
}  // namespace pdpy

NB_MODULE(_core, m) {
  namespace nb = nanobind;
  using namespace nb::literals;
  pdpy::define_ops<promptdistill::RefBackend>(m);
  m.def("geometry", &pdpy::geometry, "method"_a, "budget"_a, "window"_a, "pool"_a, "pool_kernel"_a,
        "per"_a, "num_q_heads"_a, "num_kv_heads"_a, "length"_a);
  m.def("published_default", &pdpy::published_default, "method"_a);
  const promptdistill::PipelineConfig d;
  m.def("pipeline_plan", &pdpy::pipeline_plan, "method"_a, "selection_layers"_a, "n_topks"_a,
        "cache_truncation_end"_a, "budget"_a, "window"_a, "pool"_a, "pool_kernel"_a, "per"_a,
        "num_layers"_a, "score_layers"_a = std::vector<int64_t>{}, "tsp_layer"_a = d.tsp_layer,
        "tsp_length"_a = d.tsp_length, "tsp_rate"_a = d.tsp_rate, "retain_rate"_a = d.retain_rate);
  m.def("kept_tokens", &pdpy::kept_tokens, "k"_a, "keep_last"_a, "prompt_length"_a);
  m.def("fastkv_layer", &pdpy::fastkv_layer, "budget"_a, "tsp_layer"_a, "tsp_length"_a,
        "tsp_rate"_a, "retain_rate"_a, "layer"_a, "tokens"_a);
  m.def("check_pipeline", &pdpy::check_pipeline, "method"_a, "selection_layers"_a, "n_topks"_a,
        "cache_truncation_end"_a, "budget"_a, "window"_a, "pool"_a, "pool_kernel"_a, "per"_a,
        "num_layers"_a, "max_positions"_a, "prompt_length"_a,
        "score_layers"_a = std::vector<int64_t>{}, "tsp_layer"_a = d.tsp_layer,
        "tsp_length"_a = d.tsp_length, "tsp_rate"_a = d.tsp_rate, "retain_rate"_a = d.retain_rate);
  m.def("estimate_prefill_bytes", &pdpy::estimate_prefill_bytes, "method"_a, "selection_layers"_a,
        "n_topks"_a, "cache_truncation_end"_a, "budget"_a, "window"_a, "pool"_a, "pool_kernel"_a,
        "per"_a, "model_dims"_a, "prompt_length"_a, "batch"_a, "element_bytes"_a,
        "mlp_chunk_rows"_a, "decode_reserve"_a, "attention_rows"_a, "budgets"_a,
        "score_layers"_a = std::vector<int64_t>{}, "tsp_layer"_a = d.tsp_layer,
        "tsp_length"_a = d.tsp_length, "tsp_rate"_a = d.tsp_rate, "retain_rate"_a = d.retain_rate);
  m.def("available_memory_bytes", &promptdistill::available_memory_bytes);
  m.attr("VERSION") = std::to_string(PROMPTDISTILL_VERSION_MAJOR) + "." +
                      std::to_string(PROMPTDISTILL_VERSION_MINOR) + "." +
                      std::to_string(PROMPTDISTILL_VERSION_PATCH);
}
