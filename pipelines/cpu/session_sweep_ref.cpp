// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! ref::EigenSession::prefill_sweep: one prefill serving every budget of a sweep. Each budget's
//! result is built by the same operations, in the same order, as ref::EigenSession::prefill would
//! run them (the same Selector calls on the same scores, the same cache gathers, the same peak
//! accounting), so the results are equal bit for bit; only the work that does not depend on the
//! budget is done once.

#include "promptdistill/session_ref.h"

#include "pipelines/cpu/session_support.h"

#include <algorithm>

namespace promptdistill {
namespace ref {

using session_support::arange;
using session_support::choose_from_scores;
using session_support::Clock;
using session_support::gather_rows;
using session_support::ms_since;
using session_support::propagate_tokens;
using session_support::select_stage;
using session_support::select_tokens;
using session_support::Selection;
using session_support::StageScores;

namespace {

//! `config` with `budget` as its budget (the single stage's k, or SnapKV/H2O's budget).
PipelineConfig with_budget(PipelineConfig config, int64_t budget) {
  if (config.method == PipelineMethod::kSnapKV || config.method == PipelineMethod::kH2O ||
      config.method == PipelineMethod::kFastKV)
    config.budget = budget;
  else
    config.n_topks = {budget};
  return config;
}

//! Which layers compress under `plan` for a prompt of L tokens (the token counts follow from the
//! plan alone: L up to the TSP layer, then what it propagates).
std::vector<bool> fastkv_pattern(const PipelinePlan& plan, int64_t L, int64_t num_layers) {
  std::vector<bool> pattern;
  for (int64_t l = 0, tokens = L; l < num_layers; ++l) {
    const FastKvLayer at = plan.fastkv_layer(l, tokens);
    pattern.push_back(at.compresses);
    tokens = at.propagated;
  }
  return pattern;
}

}  // namespace

Status EigenSession::prefill_sweep(const std::vector<int32_t>& prompt, const PipelineConfig& config,
                                   const std::vector<int64_t>& budgets,
                                   const SweepVisitor& visit) noexcept {
  try {
    if ((config.method == PipelineMethod::kPromptDistill ||
         config.method == PipelineMethod::kGemFilter) &&
        config.n_topks.size() != 1)
      return Status(
          StatusCode::kInvalidArgument,
          "a budget sweep varies the k of one selection stage; this configuration has %zu stages",
          config.n_topks.size());
    if (config.method == PipelineMethod::kFull && !budgets.empty())
      return Status(StatusCode::kInvalidArgument, "full KV has no budget to sweep");
    if (config.method == PipelineMethod::kFastKV && config.retain_rate != 0.0 && !budgets.empty())
      return Status(StatusCode::kInvalidArgument,
                    "fastkv's proportional mode sets every layer's budget from retain_rate: no "
                    "budget to sweep");
    std::vector<PipelinePlan> plans(budgets.size());
    for (std::size_t i = 0; i < budgets.size(); ++i) {
      const PipelineConfig budgeted = with_budget(config, budgets[i]);
      Status s = budgeted.validate(weights_->config, int64_t(prompt.size()));
      if (!s.is_ok())
        return Status(s.code(), "budget %lld: %s", (long long)budgets[i], s.message());
      PD_RETURN_IF_ERROR(plan_pipeline(budgeted, &plans[i]));
    }
    for (int32_t id : prompt)
      if (id < 0 || id >= weights_->config.vocab)
        return Status(StatusCode::kInvalidArgument,
                      "prompt token %d is outside the vocabulary [0, %lld)", id,
                      (long long)weights_->config.vocab);
    if (budgets.empty()) return Status::ok();
    PD_RETURN_IF_ERROR(model_.prepare());  // packing the weights is not part of a prefill's time
    const bool shares =
        !(config.method == PipelineMethod::kPromptDistill && plans[0].truncate_after_last_layer);
    if (!shares) {
      for (std::size_t i = 0; i < budgets.size(); ++i) {
        PrefillResult result;
        PD_RETURN_IF_ERROR(prefill(prompt, with_budget(config, budgets[i]), &result));
        PD_RETURN_IF_ERROR(visit(i, result));
      }
      return Status::ok();
    }
    layers_done_ = 0;
    switch (config.method) {
      case PipelineMethod::kPromptDistill: return sweep_promptdistill(prompt, plans, visit);
      case PipelineMethod::kGemFilter: return sweep_gemfilter(prompt, plans, visit);
      case PipelineMethod::kFastKV: return sweep_fastkv(prompt, config, budgets, plans, visit);
      default: return sweep_kv_compression(prompt, plans, visit);
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "prefill_sweep: out of host memory");
  }
}

//! SnapKV/H2O: the forward never depends on the budget (the prefill attends over every token;
//! only the caches kept for decoding are compressed). So every layer runs once, its scores are
//! ranked once (Select, whose pooled scores are kept), and each budget's rows are chosen from
//! those scores with TopK, as Select would choose them.
Status EigenSession::sweep_kv_compression(const std::vector<int32_t>& prompt,
                                          const std::vector<PipelinePlan>& plans,
                                          const SweepVisitor& visit) {
  const ModelConfig& mc = weights_->config;
  const int64_t L = int64_t(prompt.size()), D = mc.head_dim, N = mc.num_layers;
  const MethodConfig& method = plans[0].compression;  // the budgets differ only in method.budget
  const int64_t rows = score_rows(method.method, method.grouping, mc.num_heads, mc.num_kv_heads);
  std::size_t scoring_plan = plans.size();  // a plan that compresses, if any
  for (std::size_t i = 0; i < plans.size(); ++i)
    if (plans[i].compresses(L) && scoring_plan == plans.size()) scoring_plan = i;
  const bool score = scoring_plan < plans.size();
  layers_total_ = N;
  const auto start = Clock::now();
  std::vector<float> x;
  PD_RETURN_IF_ERROR(model_.embed(prompt.data(), L, &x));
  const std::vector<int32_t> positions = arange(L);
  caches_ = std::vector<KvLayerCache>(std::size_t(N));  // fresh: no capacity kept from before
  std::vector<KvLayerCache> full(static_cast<std::size_t>(N));
  std::vector<std::vector<float>> ranked(
      static_cast<std::size_t>(N));  // per layer: [rows, L] pooled scores
  for (int64_t l = 0; l < N; ++l) {
    LayerTaps taps;
    taps.q_rows = method.method == Method::kSnapKV ? std::min<int64_t>(method.window, L) : L;
    taps.want_keys = score;
    PD_RETURN_IF_ERROR(model_.layer(l, &x, L, positions.data(), L, &caches_[std::size_t(l)],
                                    score ? &taps : nullptr));
    tick();
    if (score) {
      Selection unused;
      PD_RETURN_IF_ERROR(select_tokens(plans[scoring_plan].compression, mc, taps.q, taps.q_rows,
                                       taps.keys, L, positions, &unused, &ranked[std::size_t(l)]));
    }
    full[std::size_t(l)] = std::move(caches_[std::size_t(l)]);
  }
  int32_t first = 0;
  PD_RETURN_IF_ERROR(first_token(x, L, &first));
  const double shared_ms = ms_since(start);
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const auto own_start = Clock::now();
    const bool compress = plans[i].compresses(L);
    PrefillResult r;
    r.prompt_tokens = L;
    caches_ = std::vector<KvLayerCache>(std::size_t(N));  // fresh: no capacity kept from before
    for (int64_t l = 0; l < N;
         ++l) {  // the order prefill_kv_compression measures and compresses in
      caches_[std::size_t(l)] =
          KvLayerCache(full[std::size_t(l)]);  // a fresh copy, as the forward made it
      r.peak_kv_cache_bytes = std::max(r.peak_kv_cache_bytes, cache_bytes());
      if (!compress) {
        r.retained.push_back(L);
        r.selected.push_back(std::vector<std::vector<int32_t>>(std::size_t(rows), positions));
        continue;
      }
      std::vector<std::vector<int32_t>> kept;
      PD_RETURN_IF_ERROR(
          choose_from_scores(plans[i].compression_plan, ranked[std::size_t(l)], rows, L, &kept));
      caches_[std::size_t(l)].keep_per_head(
          kept, D, method.grouping == HeadGrouping::kPerQueryHead ? mc.num_heads : 0);
      r.retained.push_back(int64_t(kept[0].size()));
      r.selected.push_back(std::move(kept));
    }
    r.first_token = first;
    r.next_position = L;
    PD_RETURN_IF_ERROR(finish_budget(i, shared_ms + ms_since(own_start), &r, visit));
  }
  return Status::ok();
}

//! PromptDistill, one stage: layers 0..r are the same for every k; from the selection on, each
//! budget continues from a copy of that state.
Status EigenSession::sweep_promptdistill(const std::vector<int32_t>& prompt,
                                         const std::vector<PipelinePlan>& plans,
                                         const SweepVisitor& visit) {
  const ModelConfig& mc = weights_->config;
  const int64_t L = int64_t(prompt.size()), D = mc.head_dim, N = mc.num_layers,
                r_layer = plans[0].stages[0].layer;
  layers_total_ = (r_layer + 1) + int64_t(plans.size()) * (N - r_layer - 1);
  const auto start = Clock::now();
  std::vector<float> x;
  PD_RETURN_IF_ERROR(model_.embed(prompt.data(), L, &x));
  const std::vector<int32_t> positions = arange(L);
  caches_ = std::vector<KvLayerCache>(std::size_t(N));  // fresh: no capacity kept from before
  int64_t shared_peak = 0;
  StageScores scores;
  for (int64_t l = 0; l <= r_layer; ++l) {
    PD_RETURN_IF_ERROR(scored_layer(l, &plans[0].stages[0], &x, L, positions, L,
                                    &caches_[std::size_t(l)], &scores));
    shared_peak = std::max(shared_peak, cache_bytes());
  }
  const std::vector<KvLayerCache> shared_caches = caches_;
  const double shared_ms = ms_since(start);
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const auto own_start = Clock::now();
    const SelectionStage& stage = plans[i].stages[0];
    caches_ = std::vector<KvLayerCache>(
        shared_caches);  // fresh copies: no capacity kept from the last budget
    PrefillResult r;
    r.prompt_tokens = L;
    r.peak_kv_cache_bytes = shared_peak;
    Selection s;
    PD_RETURN_IF_ERROR(select_stage(stage, stage.select, mc, scores, L, positions, &s));
    const std::vector<int32_t>& idx = s.indices[0];
    std::vector<float> kept_x = gather_rows(x, idx, mc.hidden);
    const std::vector<int32_t>& kept_positions = s.positions[0];
    const int64_t n = int64_t(idx.size());
    r.retained.push_back(n);
    r.selected.push_back({kept_positions});
    if (stage.truncates_cache)
      for (int64_t l = 0; l <= r_layer; ++l) caches_[std::size_t(l)].keep(idx, D);
    for (int64_t l = r_layer + 1; l < N; ++l) {
      PD_RETURN_IF_ERROR(
          model_.layer(l, &kept_x, n, kept_positions.data(), L, &caches_[std::size_t(l)], nullptr));
      r.peak_kv_cache_bytes = std::max(r.peak_kv_cache_bytes, cache_bytes());
      tick();
    }
    PD_RETURN_IF_ERROR(first_token(kept_x, n, &r.first_token));
    r.next_position = L;
    PD_RETURN_IF_ERROR(finish_budget(i, shared_ms + ms_since(own_start), &r, visit));
  }
  return Status::ok();
}

//! GemFilter: the filter pass (layers 0..r, no cache) and its scores are shared; each budget
//! selects and re-prefills its own kept ids.
Status EigenSession::sweep_gemfilter(const std::vector<int32_t>& prompt,
                                     const std::vector<PipelinePlan>& plans,
                                     const SweepVisitor& visit) {
  const int64_t N = weights_->config.num_layers, r_layer = plans[0].stages[0].layer;
  layers_total_ = (r_layer + 1) + int64_t(plans.size()) * N;
  const auto start = Clock::now();
  StageScores scores;
  PD_RETURN_IF_ERROR(gemfilter_filter_pass(prompt, plans[0].stages[0], &scores));
  const double shared_ms = ms_since(start);
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const auto own_start = Clock::now();
    PrefillResult r;
    r.prompt_tokens = int64_t(prompt.size());
    caches_ = std::vector<KvLayerCache>(std::size_t(N));  // fresh: no capacity kept from before
    PD_RETURN_IF_ERROR(gemfilter_select_and_reprefill(prompt, plans[i].stages[0],
                                                      plans[i].stages[0].select, scores, &r));
    PD_RETURN_IF_ERROR(finish_budget(i, shared_ms + ms_since(own_start), &r, visit));
  }
  return Status::ok();
}

//! FastKV (constant budget): the forward depends on the budget only through whether a layer
//! compresses at all, which also gates the propagation. The budgets that agree on it at every
//! layer with the most others share one forward (its caches and ranked rows kept), and each
//! chooses its rows with TopK, as Select would; any other budget runs its own prefill.
Status EigenSession::sweep_fastkv(const std::vector<int32_t>& prompt, const PipelineConfig& config,
                                  const std::vector<int64_t>& budgets,
                                  const std::vector<PipelinePlan>& plans,
                                  const SweepVisitor& visit) {
  const ModelConfig& mc = weights_->config;
  const int64_t L = int64_t(prompt.size()), D = mc.head_dim, N = mc.num_layers,
                rows = mc.num_kv_heads;
  std::vector<std::vector<bool>> patterns;
  for (const PipelinePlan& plan : plans) patterns.push_back(fastkv_pattern(plan, L, N));
  std::size_t shared = 0;
  for (std::size_t i = 1; i < plans.size(); ++i)
    if (std::count(patterns.begin(), patterns.end(), patterns[i]) >
        std::count(patterns.begin(), patterns.end(), patterns[shared]))
      shared = i;
  const PipelinePlan& plan = plans[shared];
  layers_total_ = N;
  const auto start = Clock::now();
  std::vector<float> x;
  PD_RETURN_IF_ERROR(model_.embed(prompt.data(), L, &x));
  std::vector<int32_t> positions = arange(L);
  caches_ = std::vector<KvLayerCache>(std::size_t(N));  // fresh: no capacity kept from before
  std::vector<KvLayerCache> full(static_cast<std::size_t>(N));
  std::vector<std::vector<float>> ranked(
      static_cast<std::size_t>(N));  // per compressing layer: [rows, n]
  std::vector<std::vector<int32_t>> layer_positions(static_cast<std::size_t>(N));
  std::vector<bool> compresses(static_cast<std::size_t>(N), false);
  std::vector<int32_t> propagated;
  int64_t n = L;
  for (int64_t l = 0; l < N; ++l) {
    const FastKvLayer at = plan.fastkv_layer(l, n);
    compresses[std::size_t(l)] = at.compresses;
    layer_positions[std::size_t(l)] = positions;
    LayerTaps taps;
    taps.q_rows = std::min<int64_t>(plan.compression.window, n);
    taps.want_keys = at.compresses;
    PD_RETURN_IF_ERROR(model_.layer(l, &x, n, positions.data(), L, &caches_[std::size_t(l)],
                                    at.compresses ? &taps : nullptr));
    tick();
    if (at.compresses) {
      Selection unused;
      PD_RETURN_IF_ERROR(select_tokens(plan.compression, mc, taps.q, taps.q_rows, taps.keys, n,
                                       positions, &unused, &ranked[std::size_t(l)]));
    }
    full[std::size_t(l)] = std::move(caches_[std::size_t(l)]);
    if (at.propagated == n) continue;
    std::vector<int32_t> idx;
    PD_RETURN_IF_ERROR(propagate_tokens(ranked[std::size_t(l)], rows, n, at.propagated,
                                        plan.compression.window, &idx));
    x = gather_rows(x, idx, mc.hidden);
    propagated.resize(idx.size());
    for (std::size_t i = 0; i < idx.size(); ++i) propagated[i] = positions[std::size_t(idx[i])];
    positions = propagated;
    n = int64_t(idx.size());
  }
  int32_t first = 0;
  PD_RETURN_IF_ERROR(first_token(x, n, &first));
  const double shared_ms = ms_since(start);
  for (std::size_t i = 0; i < plans.size(); ++i) {
    if (patterns[i] != patterns[shared]) {  // another forward: this budget's own prefill
      PrefillResult own;
      PD_RETURN_IF_ERROR(prefill(prompt, with_budget(config, budgets[i]), &own));
      PD_RETURN_IF_ERROR(visit(i, own));
      continue;
    }
    const auto own_start = Clock::now();
    PrefillResult r;
    r.prompt_tokens = L;
    caches_ = std::vector<KvLayerCache>(std::size_t(N));
    for (int64_t l = 0; l < N; ++l) {  // the order prefill_fastkv measures and compresses in
      caches_[std::size_t(l)] = KvLayerCache(full[std::size_t(l)]);
      r.peak_kv_cache_bytes = std::max(r.peak_kv_cache_bytes, cache_bytes());
      const std::vector<int32_t>& at_positions = layer_positions[std::size_t(l)];
      if (!compresses[std::size_t(l)]) {
        r.retained.push_back(int64_t(at_positions.size()));
        r.selected.push_back(std::vector<std::vector<int32_t>>(std::size_t(rows), at_positions));
        continue;
      }
      std::vector<std::vector<int32_t>> kept;
      PD_RETURN_IF_ERROR(choose_from_scores(plans[i].compression_plan, ranked[std::size_t(l)], rows,
                                            int64_t(at_positions.size()), &kept));
      caches_[std::size_t(l)].keep_per_head(kept, D);
      r.retained.push_back(int64_t(kept[0].size()));
      for (auto& row : kept)
        for (int32_t& index : row) index = at_positions[std::size_t(index)];
      r.selected.push_back(std::move(kept));
    }
    r.propagated = propagated;
    r.first_token = first;
    r.next_position = L;
    PD_RETURN_IF_ERROR(finish_budget(i, shared_ms + ms_since(own_start), &r, visit));
  }
  return Status::ok();
}

//! What every budget of a sweep ends with: its result's cache lengths and time, the session's next
//! position, and the visit.
Status EigenSession::finish_budget(std::size_t index, double ttft_ms, PrefillResult* r,
                                   const SweepVisitor& visit) {
  for (const auto& cache : caches_) r->cache_lengths.push_back(cache.length);
  r->ttft_ms = ttft_ms;
  next_position_ = r->next_position;
  return visit(index, *r);
}

}  // namespace ref
}  // namespace promptdistill
