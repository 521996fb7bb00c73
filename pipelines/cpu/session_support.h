// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU pipelines (pipelines/cpu/session_ref.cpp, session_sweep_ref.cpp): a
//! selection through the Selector API on host vectors, and small helpers.

#include <chrono>
#include <cstring>
#include <numeric>
#include <vector>

#include "promptdistill/model.h"
#include "promptdistill/pipeline.h"
#include "promptdistill/selector.h"
#include "promptdistill/transformer_ref.h"

namespace promptdistill {
namespace ref {
namespace session_support {

using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

//! A selection through the Selector API: per row, the kept indices (into the current tokens,
//! ascending) and the positions they carry.
struct Selection {
  std::vector<std::vector<int32_t>> indices, positions;
};

//! With `ranked_scores`, also the scores that ranked the tokens ([rows, n], pooled), so that other
//! budgets can be chosen from them with TopK alone (choose_from_scores).
inline Status select_tokens(const MethodConfig& cfg, const ModelConfig& mc,
                            const std::vector<float>& q, int64_t q_rows,
                            const std::vector<float>& keys, int64_t n,
                            const std::vector<int32_t>& positions_in, Selection* out,
                            std::vector<float>* ranked_scores = nullptr) {
  const int64_t H = mc.num_heads, Hkv = mc.num_kv_heads, D = mc.head_dim;
  const int64_t R = score_rows(cfg.method, cfg.grouping, H, Hkv);
  std::vector<int32_t> lengths{int32_t(n)}, idx(std::size_t(R * n)),
      counts(static_cast<std::size_t>(R)), pos(std::size_t(R * n));
  SelectArgs<float> a;
  a.config = cfg;
  a.q = make_view<const float>(q.data(), 1, q_rows, H, D);
  a.k = KvCacheView<const float>::contiguous_bshd(keys.data(), 1, n, Hkv, D);
  a.lengths = lengths.data();
  a.max_length = n;
  a.positions_in = make_view<const int32_t>(positions_in.data(), 1, n);
  a.indices = make_view(idx.data(), 1, R, n);
  a.counts = make_view(counts.data(), 1, R);
  a.positions = make_view(pos.data(), 1, R, n);
  if (ranked_scores) {
    ranked_scores->assign(std::size_t(R * n), 0.0f);
    a.final_scores = make_view(ranked_scores->data(), 1, R, n);
  }
  HostWorkspace ws;
  PD_RETURN_IF_ERROR(ws.reserve(Select<float>::workspace_size(a)));
  PD_RETURN_IF_ERROR(Select<float>::run(a, ws.workspace()));
  out->indices.assign(std::size_t(R), {});
  out->positions.assign(std::size_t(R), {});
  for (int64_t r = 0; r < R; ++r) {
    const auto b = idx.begin() + r * n, p = pos.begin() + r * n;
    out->indices[std::size_t(r)].assign(b, b + counts[std::size_t(r)]);
    out->positions[std::size_t(r)].assign(p, p + counts[std::size_t(r)]);
  }
  return Status::ok();
}

//! What a PromptDistill/GemFilter stage ranks: its layer's taps (Select), or, when it aggregates
//! scores over layers, the head terms of every score layer summed so far (FinishSelect).
struct StageScores {
  LayerTaps taps;             //!< the selection layer's last query and keys
  std::vector<float> summed;  //!< [n] (aggregating stages)
  int64_t terms = 0;          //!< head terms in each sum: H per score layer
};

//! A score layer's head terms of the last query against the current n keys, added to `scores`
//! (ScorePartial: from +0 over the heads, then added to the previous layers' sums).
inline Status accumulate_scores(Method method, const ModelConfig& mc, const LayerTaps& taps,
                                int64_t n, StageScores* scores) {
  const int64_t H = mc.num_heads, D = mc.head_dim;
  if (scores->terms == 0) scores->summed.assign(std::size_t(n), 0.0f);
  std::vector<int32_t> lengths{int32_t(n)};
  ScorePartialArgs<float> a;
  a.method = method;
  a.q = make_view<const float>(taps.q.data(), 1, 1, H, D);
  a.k = KvCacheView<const float>::contiguous_bshd(taps.keys.data(), 1, n, mc.num_kv_heads, D);
  a.lengths = lengths.data();
  a.total_heads = H;
  a.partial = make_view(scores->summed.data(), 1, 1, n);
  a.accumulate = scores->terms > 0;
  HostWorkspace ws;
  PD_RETURN_IF_ERROR(ws.reserve(ScorePartial<float>::workspace_size(a)));
  PD_RETURN_IF_ERROR(ScorePartial<float>::run(a, ws.workspace()));
  scores->terms += H;
  return Status::ok();
}

//! The selection of a PromptDistill/GemFilter stage with configuration `cfg` (the stage's own, or
//! a sweep's budget of it) from what it scored.
inline Status select_stage(const SelectionStage& stage, const MethodConfig& cfg,
                           const ModelConfig& mc, const StageScores& scores, int64_t n,
                           const std::vector<int32_t>& positions_in, Selection* out) {
  if (!stage.aggregates())
    return select_tokens(cfg, mc, scores.taps.q, 1, scores.taps.keys, n, positions_in, out);
  std::vector<int32_t> lengths{int32_t(n)}, idx(static_cast<std::size_t>(n)), counts(1),
      pos(static_cast<std::size_t>(n));
  FinishSelectArgs a;
  a.config = cfg;
  a.summed = make_view<const float>(scores.summed.data(), 1, 1, n);
  a.total_heads = scores.terms;
  a.lengths = lengths.data();
  a.positions_in = make_view<const int32_t>(positions_in.data(), 1, n);
  a.indices = make_view(idx.data(), 1, 1, n);
  a.counts = make_view(counts.data(), 1, 1);
  a.positions = make_view(pos.data(), 1, 1, n);
  HostWorkspace ws;
  PD_RETURN_IF_ERROR(ws.reserve(FinishSelect::workspace_size(a)));
  PD_RETURN_IF_ERROR(FinishSelect::run(a, ws.workspace()));
  out->indices = {std::vector<int32_t>(idx.begin(), idx.begin() + counts[0])};
  out->positions = {std::vector<int32_t>(pos.begin(), pos.begin() + counts[0])};
  return Status::ok();
}

//! FastKV's token-selective propagation from a layer's ranked rows ([rows, n]: the pooled
//! per-head scores summed per KV group, as Select(kFastKV) left them): the rows summed (SumRows),
//! then `keep` tokens, the last `window` forced and the rest by score (TopK). Indices ascending.
inline Status propagate_tokens(const std::vector<float>& ranked, int64_t rows, int64_t n,
                               int64_t keep, int32_t window, std::vector<int32_t>* out) {
  std::vector<int32_t> lengths{int32_t(n)}, idx(static_cast<std::size_t>(n)), counts(1);
  std::vector<float> summed(std::size_t(n), 0.0f);
  SumRowsArgs sum;
  sum.group = rows;
  sum.in = make_view<const float>(ranked.data(), 1, rows, n);
  sum.out = make_view(summed.data(), 1, 1, n);
  sum.lengths = lengths.data();
  HostWorkspace ws;
  PD_RETURN_IF_ERROR(ws.reserve(SumRows::workspace_size(sum)));
  PD_RETURN_IF_ERROR(SumRows::run(sum, ws.workspace()));
  TopKArgs top;
  top.scores = make_view<const float>(summed.data(), 1, 1, n);
  top.lengths = lengths.data();
  top.k = keep - window;
  top.keep_last = window;
  top.indices = make_view(idx.data(), 1, 1, n);
  top.counts = make_view(counts.data(), 1, 1);
  PD_RETURN_IF_ERROR(ws.reserve(TopK::workspace_size(top)));
  PD_RETURN_IF_ERROR(TopK::run(top, ws.workspace()));
  out->assign(idx.begin(), idx.begin() + counts[0]);
  return Status::ok();
}

inline std::vector<float> gather_rows(const std::vector<float>& x, const std::vector<int32_t>& idx,
                                      int64_t width) {
  std::vector<float> out(idx.size() * std::size_t(width));
  for (std::size_t i = 0; i < idx.size(); ++i)
    std::memcpy(&out[i * std::size_t(width)], &x[std::size_t(idx[i]) * std::size_t(width)],
                std::size_t(width) * sizeof(float));
  return out;
}

inline std::vector<int32_t> arange(int64_t n) {
  std::vector<int32_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

//! The rows a selection keeps when its pooled scores are known: TopK alone, as Select would run it
//! for the configuration `plan` stands for (the budget is the only difference between the
//! selections of a sweep).
inline Status choose_from_scores(const MethodPlan& plan, const std::vector<float>& ranked_scores,
                                 int64_t rows, int64_t n, std::vector<std::vector<int32_t>>* out) {
  std::vector<int32_t> lengths{int32_t(n)}, idx(std::size_t(rows * n)),
      counts(static_cast<std::size_t>(rows));
  TopKArgs a;
  a.scores = make_view<const float>(ranked_scores.data(), 1, rows, n);
  a.lengths = lengths.data();
  a.k = plan.k;
  a.keep_last = plan.keep_last;
  a.indices = make_view(idx.data(), 1, rows, n);
  a.counts = make_view(counts.data(), 1, rows);
  HostWorkspace ws;
  PD_RETURN_IF_ERROR(ws.reserve(TopK::workspace_size(a)));
  PD_RETURN_IF_ERROR(TopK::run(a, ws.workspace()));
  out->assign(std::size_t(rows), {});
  for (int64_t r = 0; r < rows; ++r)
    (*out)[std::size_t(r)].assign(idx.begin() + r * n,
                                  idx.begin() + r * n + counts[std::size_t(r)]);
  return Status::ok();
}

}  // namespace session_support
}  // namespace ref
}  // namespace promptdistill
