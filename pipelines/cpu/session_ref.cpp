// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The CPU pipelines of docs/algorithms.md §2-§6 on the reference decoder.

#include "promptdistill/session_ref.h"

#include "pipelines/cpu/session_support.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>

namespace promptdistill {
namespace ref {

using session_support::accumulate_scores;
using session_support::arange;
using session_support::Clock;
using session_support::gather_rows;
using session_support::ms_since;
using session_support::propagate_tokens;
using session_support::select_stage;
using session_support::select_tokens;
using session_support::Selection;
using session_support::StageScores;

int64_t EigenSession::cache_bytes() const {
  int64_t total = 0;
  for (const auto& c : caches_) total += int64_t(c.bytes());
  return total;
}

Status EigenSession::run_layers(std::vector<float>* x, int64_t n,
                                const std::vector<int32_t>& positions, int64_t first, int64_t last,
                                bool write_cache, int64_t* peak) {
  const int64_t total = positions.empty() ? 0 : int64_t(positions.back()) + 1;
  for (int64_t l = first; l < last; ++l) {
    PD_RETURN_IF_ERROR(model_.layer(l, x, n, positions.data(), total,
                                    write_cache ? &caches_[std::size_t(l)] : nullptr, nullptr));
    if (peak) *peak = std::max(*peak, cache_bytes());
    tick();
  }
  return Status::ok();
}

Status EigenSession::first_token(const std::vector<float>& x, int64_t n, int32_t* token) {
  std::vector<float> logits;
  PD_RETURN_IF_ERROR(model_.logits(&x[std::size_t((n - 1) * weights_->config.hidden)], &logits));
  *token = argmax(logits);
  return Status::ok();
}

Status EigenSession::prefill(const std::vector<int32_t>& prompt, const PipelineConfig& c,
                             PrefillResult* out) noexcept {
  try {
    PD_RETURN_IF_ERROR(c.validate(weights_->config, int64_t(prompt.size())));
    PipelinePlan plan;
    PD_RETURN_IF_ERROR(plan_pipeline(c, &plan));
    for (int32_t id : prompt)
      if (id < 0 || id >= weights_->config.vocab)
        return Status(StatusCode::kInvalidArgument,
                      "prompt token %d is outside the vocabulary [0, %lld)", id,
                      (long long)weights_->config.vocab);
    PD_RETURN_IF_ERROR(model_.prepare());  // packing the weights is not part of a prefill's time
    // Fresh caches: assigning empty ones would keep the previous prefill's memory (capacity).
    caches_ = std::vector<KvLayerCache>(std::size_t(weights_->config.num_layers));
    layers_done_ = 0;
    layers_total_ = weights_->config.num_layers +
                    (c.method == PipelineMethod::kGemFilter ? plan.stages[0].layer + 1 : 0);
    PrefillResult r;
    r.prompt_tokens = int64_t(prompt.size());
    const auto t0 = Clock::now();
    switch (c.method) {
      case PipelineMethod::kFull: {
        std::vector<float> x;
        PD_RETURN_IF_ERROR(model_.embed(prompt.data(), int64_t(prompt.size()), &x));
        PD_RETURN_IF_ERROR(run_layers(&x, int64_t(prompt.size()), arange(int64_t(prompt.size())), 0,
                                      weights_->config.num_layers, true, &r.peak_kv_cache_bytes));
        PD_RETURN_IF_ERROR(first_token(x, int64_t(prompt.size()), &r.first_token));
        r.next_position = int64_t(prompt.size());
        break;
      }
      case PipelineMethod::kPromptDistill:
        PD_RETURN_IF_ERROR(prefill_promptdistill(prompt, plan, &r));
        break;
      case PipelineMethod::kGemFilter:
        PD_RETURN_IF_ERROR(prefill_gemfilter(prompt, plan, &r));
        break;
      case PipelineMethod::kSnapKV:
      case PipelineMethod::kH2O:
        PD_RETURN_IF_ERROR(prefill_kv_compression(prompt, plan, &r));
        break;
      case PipelineMethod::kFastKV: PD_RETURN_IF_ERROR(prefill_fastkv(prompt, plan, &r)); break;
    }
    if (decode_options_.kv == KvStorage::kF16)
      for (auto& cache : caches_) cache.to_half();
    r.ttft_ms = ms_since(t0);
    for (const auto& cache : caches_) r.cache_lengths.push_back(cache.length);
    next_position_ = r.next_position;
    *out = std::move(r);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "prefill: out of host memory");
  }
}

//! Layer `l` of a PromptDistill/GemFilter stage's forward over n rows: its taps when the stage
//! scores there (its own layer, or one of its score layers, whose head terms are accumulated).
Status EigenSession::scored_layer(int64_t l, const SelectionStage* stage, std::vector<float>* x,
                                  int64_t n, const std::vector<int32_t>& positions, int64_t total,
                                  KvLayerCache* cache, StageScores* scores) {
  const bool scoring =
      stage != nullptr &&
      (l == stage->layer || std::find(stage->score_layers.begin(), stage->score_layers.end(), l) !=
                                stage->score_layers.end());
  LayerTaps taps;
  taps.q_rows = 1;
  taps.want_keys = true;
  PD_RETURN_IF_ERROR(
      model_.layer(l, x, n, positions.data(), total, cache, scoring ? &taps : nullptr));
  tick();
  if (!scoring) return Status::ok();
  if (stage->aggregates())
    return accumulate_scores(stage->select.method, weights_->config, taps, n, scores);
  scores->taps = std::move(taps);
  return Status::ok();
}

//! PromptDistill (single and multi-stage): layers up to each selection layer on the current
//! tokens, select (last token forced; by the selection layer's scores, or their mean over the
//! stage's score layers), gather the selection layer's output rows and original positions,
//! continue on the kept rows.
Status EigenSession::prefill_promptdistill(const std::vector<int32_t>& prompt,
                                           const PipelinePlan& plan, PrefillResult* r) {
  const ModelConfig& mc = weights_->config;
  const int64_t N = mc.num_layers, D = mc.head_dim;
  int64_t n = int64_t(prompt.size());
  std::vector<float> x;
  PD_RETURN_IF_ERROR(model_.embed(prompt.data(), n, &x));
  std::vector<int32_t> positions = arange(n);
  std::vector<std::vector<int32_t>> stage_maps;  // per truncating stage, indices into its input set
  std::size_t stage = 0;
  StageScores scores;
  for (int64_t l = 0; l < N; ++l) {
    const SelectionStage* current = stage < plan.stages.size() ? &plan.stages[stage] : nullptr;
    PD_RETURN_IF_ERROR(scored_layer(l, current, &x, n, positions, int64_t(prompt.size()),
                                    &caches_[std::size_t(l)], &scores));
    r->peak_kv_cache_bytes = std::max(r->peak_kv_cache_bytes, cache_bytes());
    if (current == nullptr || l != current->layer) continue;
    const auto started = Clock::now();
    Selection s;
    PD_RETURN_IF_ERROR(select_stage(*current, current->select, mc, scores, n, positions, &s));
    scores = StageScores{};
    const std::vector<int32_t>& idx = s.indices[0];
    x = gather_rows(x, idx, mc.hidden);
    positions = s.positions[0];
    n = int64_t(idx.size());
    r->retained.push_back(n);
    r->selected.push_back({positions});
    if (plan.stages[stage].truncates_cache) {
      if (plan.truncate_after_last_layer) {
        stage_maps.push_back(idx);
      } else {
        // Every layer up to here holds exactly this stage's input set (truncating stages come
        // first).
        for (int64_t ll = 0; ll <= l; ++ll) caches_[std::size_t(ll)].keep(idx, D);
      }
    }
    r->selection_ms += ms_since(started);
    ++stage;
  }
  // Reference order: the composed maps gather each segment's caches after the last layer.
  const auto started = Clock::now();
  const std::vector<std::vector<int32_t>> maps = compose_stage_maps(stage_maps);
  for (std::size_t m = 0; m < maps.size(); ++m)
    for (int64_t ll = plan.segment_first_layer(m); ll <= plan.stages[m].layer; ++ll)
      caches_[std::size_t(ll)].keep(maps[m], D);
  r->selection_ms += ms_since(started);
  PD_RETURN_IF_ERROR(first_token(x, n, &r->first_token));
  r->next_position = int64_t(prompt.size());
  return Status::ok();
}

//! GemFilter: filter pass over layers 0..r without a KV cache, top-k of the unscaled head-summed
//! logits (last token not forced), then a fresh prefill of the kept ids at positions 0..k-1.
Status EigenSession::prefill_gemfilter(const std::vector<int32_t>& prompt, const PipelinePlan& plan,
                                       PrefillResult* r) {
  StageScores scores;
  PD_RETURN_IF_ERROR(gemfilter_filter_pass(prompt, plan.stages[0], &scores));
  return gemfilter_select_and_reprefill(prompt, plan.stages[0], plan.stages[0].select, scores, r);
}

Status EigenSession::gemfilter_filter_pass(const std::vector<int32_t>& prompt,
                                           const SelectionStage& stage, StageScores* scores) {
  const int64_t L = int64_t(prompt.size());
  std::vector<float> x;
  PD_RETURN_IF_ERROR(model_.embed(prompt.data(), L, &x));
  const std::vector<int32_t> positions = arange(L);
  for (int64_t l = 0; l <= stage.layer; ++l)
    PD_RETURN_IF_ERROR(scored_layer(l, &stage, &x, L, positions, L, nullptr, scores));
  return Status::ok();
}

Status EigenSession::gemfilter_select_and_reprefill(const std::vector<int32_t>& prompt,
                                                    const SelectionStage& stage,
                                                    const MethodConfig& select,
                                                    const StageScores& scores, PrefillResult* r) {
  const ModelConfig& mc = weights_->config;
  const int64_t L = int64_t(prompt.size());
  const auto started = Clock::now();
  Selection s;
  PD_RETURN_IF_ERROR(select_stage(stage, select, mc, scores, L, arange(L), &s));
  const std::vector<int32_t>& idx = s.indices[0];
  r->retained.push_back(int64_t(idx.size()));
  r->selected.push_back({idx});
  std::vector<int32_t> ids(idx.size());
  for (std::size_t i = 0; i < idx.size(); ++i) ids[i] = prompt[std::size_t(idx[i])];
  r->selection_ms += ms_since(started);
  const int64_t k = int64_t(ids.size());
  std::vector<float> x;
  PD_RETURN_IF_ERROR(model_.embed(ids.data(), k, &x));
  PD_RETURN_IF_ERROR(run_layers(&x, k, arange(k), 0, mc.num_layers, true, &r->peak_kv_cache_bytes));
  PD_RETURN_IF_ERROR(first_token(x, k, &r->first_token));
  r->next_position = k;
  return Status::ok();
}

//! SnapKV/H2O: a full prefill; every layer's cache is compressed right after its forward (SnapKV:
//! the last W queries' softmax; H2O: column sums over all queries), per KV group or per query
//! head, when L >= C.
Status EigenSession::prefill_kv_compression(const std::vector<int32_t>& prompt,
                                            const PipelinePlan& plan, PrefillResult* r) {
  const ModelConfig& mc = weights_->config;
  const int64_t L = int64_t(prompt.size()), D = mc.head_dim;
  const MethodConfig& sel = plan.compression;
  std::vector<float> x;
  PD_RETURN_IF_ERROR(model_.embed(prompt.data(), L, &x));
  const std::vector<int32_t> positions = arange(L);
  const bool compress = plan.compresses(L);
  for (int64_t l = 0; l < mc.num_layers; ++l) {
    LayerTaps taps;
    taps.q_rows = sel.method == Method::kSnapKV ? std::min<int64_t>(sel.window, L) : L;
    taps.want_keys = compress;
    PD_RETURN_IF_ERROR(model_.layer(l, &x, L, positions.data(), L, &caches_[std::size_t(l)],
                                    compress ? &taps : nullptr));
    r->peak_kv_cache_bytes = std::max(r->peak_kv_cache_bytes, cache_bytes());
    tick();
    if (!compress) {  // L < C: every row keeps every token, and says so
      const int64_t rows = score_rows(sel.method, sel.grouping, mc.num_heads, mc.num_kv_heads);
      r->retained.push_back(L);
      r->selected.push_back(std::vector<std::vector<int32_t>>(std::size_t(rows), positions));
      continue;
    }
    const auto started = Clock::now();
    Selection s;
    PD_RETURN_IF_ERROR(select_tokens(sel, mc, taps.q, taps.q_rows, taps.keys, L, positions, &s));
    caches_[std::size_t(l)].keep_per_head(
        s.indices, D, sel.grouping == HeadGrouping::kPerQueryHead ? mc.num_heads : 0);
    r->selection_ms += ms_since(started);
    r->retained.push_back(int64_t(s.indices[0].size()));
    r->selected.push_back(s.indices);
  }
  PD_RETURN_IF_ERROR(first_token(x, L, &r->first_token));
  r->next_position = L;
  return Status::ok();
}

//! FastKV: every layer runs on the current tokens and its cache is compressed per KV group
//! (Select(kFastKV) with the layer's budget) when the layer holds at least that budget; at the TSP
//! layer the group rows, summed, choose the tokens whose output rows (and original positions)
//! the later layers run on.
Status EigenSession::prefill_fastkv(const std::vector<int32_t>& prompt, const PipelinePlan& plan,
                                    PrefillResult* r) {
  const ModelConfig& mc = weights_->config;
  const int64_t L = int64_t(prompt.size()), D = mc.head_dim, rows = mc.num_kv_heads;
  int64_t n = L;
  std::vector<float> x;
  PD_RETURN_IF_ERROR(model_.embed(prompt.data(), L, &x));
  std::vector<int32_t> positions = arange(L);
  for (int64_t l = 0; l < mc.num_layers; ++l) {
    const FastKvLayer at = plan.fastkv_layer(l, n);
    LayerTaps taps;
    taps.q_rows = std::min<int64_t>(plan.compression.window, n);
    taps.want_keys = at.compresses;
    PD_RETURN_IF_ERROR(model_.layer(l, &x, n, positions.data(), L, &caches_[std::size_t(l)],
                                    at.compresses ? &taps : nullptr));
    r->peak_kv_cache_bytes = std::max(r->peak_kv_cache_bytes, cache_bytes());
    tick();
    if (!at.compresses) {  // its code keeps every token of this layer, and propagates none
      r->retained.push_back(n);
      r->selected.push_back(std::vector<std::vector<int32_t>>(std::size_t(rows), positions));
      continue;
    }
    MethodConfig cfg = plan.compression;
    cfg.budget = at.budget;
    Selection s;
    std::vector<float> ranked;
    PD_RETURN_IF_ERROR(
        select_tokens(cfg, mc, taps.q, taps.q_rows, taps.keys, n, positions, &s, &ranked));
    caches_[std::size_t(l)].keep_per_head(s.indices, D);
    r->retained.push_back(int64_t(s.indices[0].size()));
    r->selected.push_back(s.positions);
    if (at.propagated == n) continue;
    std::vector<int32_t> idx;
    PD_RETURN_IF_ERROR(
        propagate_tokens(ranked, rows, n, at.propagated, plan.compression.window, &idx));
    x = gather_rows(x, idx, mc.hidden);
    std::vector<int32_t> kept(idx.size());
    for (std::size_t i = 0; i < idx.size(); ++i) kept[i] = positions[std::size_t(idx[i])];
    positions = kept;
    r->propagated = kept;
    n = int64_t(idx.size());
  }
  PD_RETURN_IF_ERROR(first_token(x, n, &r->first_token));
  r->next_position = L;
  return Status::ok();
}

Status EigenSession::prepare_decode(int64_t max_new_tokens) noexcept {
  try {
    if (caches_.empty()) return Status(StatusCode::kInvalidArgument, "decode before prefill");
    const ModelConfig& mc = weights_->config;
    const int64_t context =
        std::min(mc.max_positions, next_position_ + std::max<int64_t>(max_new_tokens, 1));
    PD_RETURN_IF_ERROR(decode_ws_.reserve(mc, context));
    for (auto& cache : caches_) {
      if (decode_options_.kv == KvStorage::kF16) cache.to_half();
      // Each cache grows by one token per step from its own length (selections shorten some).
      cache.reserve(cache.length + (context - next_position_), mc.head_dim);
    }
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "decode: out of host memory");
  }
}

Status EigenSession::decode_step(int32_t token, int32_t* next) noexcept {
  if (caches_.empty()) return Status(StatusCode::kInvalidArgument, "decode_step before prefill");
  const ModelConfig& mc = weights_->config;
  if (next_position_ >= mc.max_positions)
    return Status(StatusCode::kInvalidArgument, "position %lld reaches the model's context of %lld",
                  (long long)next_position_, (long long)mc.max_positions);
  if (decode_options_.kv == KvStorage::kF16 && !caches_[0].half)
    PD_RETURN_IF_ERROR(prepare_decode(1));
  PD_RETURN_IF_ERROR(
      model_.decode(token, next_position_, &caches_, decode_options_, &decode_ws_, next));
  ++next_position_;
  return Status::ok();
}

Status EigenSession::generate(int32_t first, int64_t max_new_tokens,
                              const std::vector<int32_t>& stop, std::vector<int32_t>* out,
                              double* decode_ms_per_token) noexcept {
  try {
    out->clear();
    *decode_ms_per_token = 0;
    if (max_new_tokens <= 0) return Status::ok();
    PD_RETURN_IF_ERROR(prepare_decode(max_new_tokens));
    int32_t token = first;
    const auto t0 = Clock::now();
    int64_t steps = 0;
    out->push_back(token);  // the prefill's token is kept whatever it is
    while (int64_t(out->size()) < max_new_tokens) {
      PD_RETURN_IF_ERROR(decode_step(token, &token));
      ++steps;
      if (std::find(stop.begin(), stop.end(), token) != stop.end()) break;  // not returned
      out->push_back(token);
    }
    if (steps > 0) *decode_ms_per_token = ms_since(t0) / double(steps);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "generate: out of host memory");
  }
}

}  // namespace ref
}  // namespace promptdistill
