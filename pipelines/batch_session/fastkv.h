// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the batch session: FastKV's prefill (docs/algorithms.md §11), executing a
//! PipelinePlan with the decoder's layers and the Selector API of one backend. Every layer's cache
//! is compressed per KV group (Select with Method::kFastKV and each request's budget, then
//! CompactKv); at the TSP layer the ranked group rows are summed (SumRows; all-reduced across
//! tensor-parallel ranks), the propagated tokens chosen (TopK, the window forced), and their
//! output rows, original positions and RoPE rows gathered on the backend, as PromptDistill does.

#include <algorithm>
#include <vector>

#include "pipelines/batch_session/pipelines.h"

namespace promptdistill {
namespace session {

template <class Backend, class T>
class FastKvPipeline {
 public:
  using Buffer = DeviceBuffer<Backend>;

  explicit FastKvPipeline(Pipelines<Backend, T>* pipelines)
      : p_(*pipelines),
        d_(pipelines->decoder_),
        budgets_(pipelines->ledger_),
        ranked_(pipelines->ledger_),
        summed_(pipelines->ledger_),
        tsp_indices_(pipelines->ledger_),
        tsp_counts_(pipelines->ledger_),
        tsp_positions_(pipelines->ledger_),
        keep_(pipelines->ledger_) {}

  Status run(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan& plan,
             std::vector<PrefillResult>* results, std::vector<int32_t>* first_tokens) {
    const ModelConfig& config = d_.config;
    const int64_t batch = d_.batch, heads = config.num_heads, head_dim = config.head_dim,
                  rows = config.num_kv_heads;
    const int32_t window = plan.compression.window;
    std::vector<int64_t> lengths = Pipelines<Backend, T>::sizes_of(prompts);
    int64_t n = Pipelines<Backend, T>::max_of(lengths);
    PD_RETURN_IF_ERROR(p_.start_prompts(prompts));
    PD_RETURN_IF_ERROR(d_.selection_queries.reserve(
        std::size_t(batch * window * heads * head_dim) * sizeof(T), d_.stream));
    std::vector<bool> propagates(static_cast<std::size_t>(batch), false);
    int64_t propagation_record = -1;  // which recorded selection holds the propagated positions
    for (int64_t l = 0; l < config.num_layers; ++l) {
      Cache& cache = p_.caches_.layers[std::size_t(l)];
      PD_RETURN_IF_ERROR(d_.layer(l, n, &cache, lengths));
      p_.caches_.account();
      // Each request's budget at this layer; one that holds fewer tokens keeps them all, which is
      // also what the selection returns for it (its code skips the compression there).
      std::vector<int32_t> budgets;
      std::vector<int64_t> kept, propagated;
      for (int64_t b = 0; b < batch; ++b) {
        const FastKvLayer at = plan.fastkv_layer(l, lengths[std::size_t(b)]);
        MethodPlan budgeted = plan.compression_plan;
        budgeted.k = at.budget - window;
        budgets.push_back(int32_t(at.budget));
        kept.push_back(kept_tokens(budgeted, lengths[std::size_t(b)]));
        propagated.push_back(at.propagated);
      }
      PD_RETURN_IF_ERROR(gather_windows(lengths, n, window));
      PD_RETURN_IF_ERROR(budgets_.upload(budgets, d_.stream));
      PD_RETURN_IF_ERROR(ranked_.reserve(std::size_t(batch * rows * n) * sizeof(float), d_.stream));
      SelectArgs<T> select;
      PD_RETURN_IF_ERROR(p_.select_args(plan.compression,
                                        d_.selection_queries.template as<const T>(), window, cache,
                                        lengths, n, false, &select));
      select.budget_per_request = budgets_.template as<const int32_t>();
      select.final_scores = make_view<float>(ranked_.template as<float>(), batch, rows, n);
      PD_RETURN_IF_ERROR(d_.template run<typename Backend::template Select<T>>(select));
      PD_RETURN_IF_ERROR(p_.compact(&cache, p_.selected_indices_view(rows, n),
                                    p_.selected_counts_view(rows), kept));
      PD_RETURN_IF_ERROR(p_.record(p_.selected_positions_, rows, n, kept, &p_.recorded_));
      for (int64_t b = 0; b < batch; ++b)
        (*results)[std::size_t(b)].retained.push_back(kept[std::size_t(b)]);
      bool any = false;
      for (int64_t b = 0; b < batch; ++b) {
        const bool fewer = propagated[std::size_t(b)] < lengths[std::size_t(b)];
        propagates[std::size_t(b)] = propagates[std::size_t(b)] || fewer;
        any = any || fewer;
      }
      if (!any) continue;
      PD_RETURN_IF_ERROR(propagate(lengths, propagated, n, rows, window));
      propagation_record = int64_t(p_.recorded_.size()) - 1;
      lengths = propagated;
      n = Pipelines<Backend, T>::max_of(lengths);
    }
    PD_RETURN_IF_ERROR(p_.finish(results));
    if (propagation_record >= 0)
      for (int64_t b = 0; b < batch; ++b) {
        PrefillResult& result = (*results)[std::size_t(b)];
        std::vector<std::vector<int32_t>> rows_kept =
            std::move(result.selected[std::size_t(propagation_record)]);
        result.selected.erase(result.selected.begin() + std::ptrdiff_t(propagation_record));
        if (propagates[std::size_t(b)]) result.propagated = std::move(rows_kept[0]);
      }
    std::vector<int64_t> last_rows;
    for (int64_t length : lengths) last_rows.push_back(length - 1);
    return d_.next_tokens(n, last_rows, first_tokens);
  }

 private:
  using Cache = LayerCache<Backend>;

  //! The last `window` query rows of every request (rows before 0 repeat row 0; the scoring
  //! ignores them), into selection_queries.
  Status gather_windows(const std::vector<int64_t>& lengths, int64_t n, int64_t window) {
    std::vector<std::vector<int32_t>> window_rows(lengths.size());
    for (std::size_t b = 0; b < lengths.size(); ++b)
      for (int64_t i = 0; i < window; ++i)
        window_rows[b].push_back(int32_t(std::max<int64_t>(lengths[b] - window + i, 0)));
    const int64_t width = d_.config.num_heads * d_.config.head_dim;
    return d_.gather_rows(d_.queries.template as<const T>(), n, width, window_rows,
                          d_.selection_queries.template as<T>());
  }

  //! Token-selective propagation: the ranked group rows summed, `keep[b]` tokens of request b
  //! chosen (every token for a request that propagates none), its layer output rows, original
  //! positions and RoPE rows gathered and packed; the kept positions recorded.
  Status propagate(const std::vector<int64_t>& lengths, const std::vector<int64_t>& keep, int64_t n,
                   int64_t rows, int32_t window) {
    const int64_t batch = d_.batch;
    const Stream stream = d_.stream;
    PD_RETURN_IF_ERROR(summed_.reserve(std::size_t(batch * n) * sizeof(float), stream));
    PD_RETURN_IF_ERROR(tsp_indices_.reserve(std::size_t(batch * n) * sizeof(int32_t), stream));
    PD_RETURN_IF_ERROR(tsp_positions_.reserve(std::size_t(batch * n) * sizeof(int32_t), stream));
    PD_RETURN_IF_ERROR(tsp_counts_.reserve(std::size_t(batch) * sizeof(int32_t), stream));
    SumRowsArgs sum;
    sum.group = rows;
    sum.in = make_view<const float>(ranked_.template as<const float>(), batch, rows, n);
    sum.out = make_view<float>(summed_.template as<float>(), batch, 1, n);
    sum.lengths = p_.lengths_.template as<const int32_t>();
    PD_RETURN_IF_ERROR(d_.template run<typename Backend::SumRows>(sum));
    // Under tensor parallelism each rank summed its own KV heads: the propagation ranks all of
    // them.
    if (d_.shard.parallel())
      PD_RETURN_IF_ERROR(d_.all_reduce(summed_.template as<float>(), batch * n));
    std::vector<int32_t> keep_counts;  // the TopK's k per request, the window added (k_offset)
    for (int64_t count : keep) keep_counts.push_back(int32_t(std::max<int64_t>(count, window)));
    PD_RETURN_IF_ERROR(keep_.upload(keep_counts, stream));
    const auto indices = make_view<int32_t>(tsp_indices_.template as<int32_t>(), batch, 1, n);
    const auto counts = make_view<int32_t>(tsp_counts_.template as<int32_t>(), batch, 1);
    TopKArgs top;
    top.scores = sum.out.as_const();
    top.lengths = sum.lengths;
    top.k_per_request = keep_.template as<const int32_t>();
    top.k_offset = window;
    top.keep_last = window;
    top.indices = indices;
    top.counts = counts;
    PD_RETURN_IF_ERROR(d_.template run<typename Backend::TopK>(top));
    RemapPositionsArgs remap;
    remap.positions_in =
        make_view<const int32_t>(p_.positions_.template as<const int32_t>(), batch, n);
    remap.indices = indices.as_const();
    remap.counts = counts.as_const();
    remap.positions_out = make_view<int32_t>(tsp_positions_.template as<int32_t>(), batch, 1, n);
    PD_RETURN_IF_ERROR(d_.template run<typename Backend::RemapPositions>(remap));
    GatherArgs<T> gather;
    gather.src = make_view<const T>(d_.hidden.template as<const T>(), batch, n, d_.config.hidden);
    gather.indices = indices.as_const();
    gather.counts = counts.as_const();
    gather.dst = make_view<T>(d_.kept_hidden.template as<T>(), batch, n, d_.config.hidden);
    PD_RETURN_IF_ERROR(d_.template run<typename Backend::template Gather<T>>(gather));
    // Packed at pitch max(keep), as PromptDistill packs its kept rows.
    const int64_t pitch = Pipelines<Backend, T>::max_of(keep);
    const std::size_t row_bytes = std::size_t(d_.config.hidden) * sizeof(T);
    PD_RETURN_IF_ERROR(Backend::copy_rows(
        d_.hidden.data(), std::size_t(pitch) * row_bytes, d_.kept_hidden.data(),
        std::size_t(n) * row_bytes, std::size_t(pitch) * row_bytes, std::size_t(batch), stream));
    PD_RETURN_IF_ERROR(
        Backend::copy_rows(p_.positions_.data(), std::size_t(pitch) * sizeof(int32_t),
                           tsp_positions_.data(), std::size_t(n) * sizeof(int32_t),
                           std::size_t(pitch) * sizeof(int32_t), std::size_t(batch), stream));
    PD_RETURN_IF_ERROR(d_.gather_rope(indices.as_const(), counts.as_const(), n, pitch));
    return p_.record(tsp_positions_, 1, n, keep, &p_.recorded_);
  }

  Pipelines<Backend, T>& p_;
  Decoder<Backend, T>& d_;
  Buffer budgets_, ranked_, summed_, tsp_indices_, tsp_counts_, tsp_positions_, keep_;
};

template <class Backend, class T>
Status Pipelines<Backend, T>::fastkv(const std::vector<std::vector<int32_t>>& prompts,
                                     const PipelinePlan& plan, std::vector<PrefillResult>* results,
                                     std::vector<int32_t>* first_tokens) {
  return FastKvPipeline<Backend, T>(this).run(prompts, plan, results, first_tokens);
}

}  // namespace session
}  // namespace promptdistill
