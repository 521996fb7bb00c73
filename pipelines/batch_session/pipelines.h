// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the batch session: the methods' prefill pipelines (full KV, PromptDistill
//! multi-stage with cache truncation and scores aggregated over layers, GemFilter, SnapKV/H2O;
//! FastKV in fastkv.h), each executing a PipelinePlan with the decoder's layers and the Selector
//! API (Select or ScorePartial + FinishSelect, CompactKv) of one backend.

#include <algorithm>
#include <numeric>
#include <vector>

#include "promptdistill/pipeline.h"
#include "pipelines/batch_session/decoder.h"

namespace promptdistill {
namespace session {

template <class Backend, class T>
class FastKvPipeline;

template <class Backend, class T>
class Pipelines {
 public:
  using Buffer = DeviceBuffer<Backend>;
  using Cache = LayerCache<Backend>;

  Pipelines(Decoder<Backend, T>* decoder, LayerCaches<Backend, T>* caches, MemoryLedger* ledger)
      : decoder_(*decoder), caches_(*caches), ledger_(ledger) {
    for (Buffer* buffer : {&lengths_, &positions_, &selected_indices_, &selected_counts_,
                           &selected_positions_, &cache_lengths_, &new_lengths_, &compact_indices_,
                           &compact_counts_, &kept_ids_, &packed_, &partial_scores_})
      buffer->set_ledger(ledger);
  }

  static std::vector<int64_t> sizes_of(const std::vector<std::vector<int32_t>>& lists) {
    std::vector<int64_t> sizes;
    for (const auto& list : lists) sizes.push_back(int64_t(list.size()));
    return sizes;
  }
  static int64_t max_of(const std::vector<int64_t>& values) {
    return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
  }

  //! What a prefill of `prompts` with `plan` holds at its peak (estimate_prefill_bytes, the one
  //! estimate every driver uses, with this session's storage type, batch and options).
  PrefillMemory estimate_prefill_bytes(const std::vector<std::vector<int32_t>>& prompts,
                                       const PipelinePlan& plan) const {
    PrefillMemoryModel how;
    how.batch = int64_t(prompts.size());
    how.element_bytes = int64_t(sizeof(T));
    how.mlp_chunk_rows = decoder_.options.mlp_chunk_rows;
    how.decode_reserve = decoder_.options.decode_reserve;
    return promptdistill::estimate_prefill_bytes(decoder_.config, plan, max_of(sizes_of(prompts)),
                                                 how);
  }

  //! A full prefill of `prompts` (positions 0..L_b-1) through every layer, with the plan's
  //! SnapKV/H2O compression after each layer when it has one. Returns the first tokens.
  Status full_prefill(const std::vector<std::vector<int32_t>>& prompts,
                      const PipelinePlan* compression_plan, std::vector<PrefillResult>* results,
                      std::vector<int32_t>* first_tokens) {
    const std::vector<int64_t> prompt_lengths = sizes_of(prompts);
    PD_RETURN_IF_ERROR(start_prompts(prompts));
    return run_full_layers(prompt_lengths, compression_plan, results, first_tokens);
  }

  //! PromptDistill, single or multi-stage, with cache truncation at the selection point or, in
  //! the reference's order, after the last layer. Selections stay on the backend: the kept
  //! counts follow from the plan, and the indices, positions and RoPE rows are gathered there.
  Status promptdistill(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan& plan,
                       std::vector<PrefillResult>* results, std::vector<int32_t>* first_tokens) {
    const int64_t batch = decoder_.batch, num_heads = decoder_.config.num_heads,
                  head_dim = decoder_.config.head_dim;
    std::vector<int64_t> current_lengths = sizes_of(prompts);
    int64_t n = max_of(current_lengths);
    PD_RETURN_IF_ERROR(start_prompts(prompts));
    PD_RETURN_IF_ERROR(decoder_.selection_queries.reserve(
        std::size_t(batch * num_heads * head_dim) * sizeof(T), decoder_.stream));
    std::vector<Recorded>
        truncating_maps;  // after-last-layer mode: each truncating stage's indices
    std::size_t stage = 0;
    int64_t scored_layers = 0;  // score layers the current stage has accumulated
    for (int64_t l = 0; l < decoder_.config.num_layers; ++l) {
      PD_RETURN_IF_ERROR(decoder_.layer(l, n, &caches_.layers[std::size_t(l)], current_lengths));
      caches_.account();
      if (stage >= plan.stages.size()) continue;
      const SelectionStage& selection = plan.stages[stage];
      PD_RETURN_IF_ERROR(score_layer(selection, l, caches_.layers[std::size_t(l)], current_lengths,
                                     n, &scored_layers));
      if (l != selection.layer) continue;
      PD_RETURN_IF_ERROR(select_stage(selection, caches_.layers[std::size_t(l)], current_lengths, n,
                                      scored_layers,
                                      /*gather_hidden=*/true));
      scored_layers = 0;
      const std::vector<int64_t> kept = kept_counts(selection.plan, current_lengths);
      const int64_t kept_rows = max_of(kept);
      PD_RETURN_IF_ERROR(
          record(selected_positions_, 1, n, kept, &recorded_));  // the stage's original positions
      for (int64_t b = 0; b < batch; ++b)
        (*results)[std::size_t(b)].retained.push_back(kept[std::size_t(b)]);
      // kept_hidden holds the kept rows at pitch n; pack them at pitch kept_rows into hidden, and
      // the kept tokens' positions and RoPE rows likewise.
      const std::size_t row_bytes = std::size_t(decoder_.config.hidden) * sizeof(T);
      PD_RETURN_IF_ERROR(Backend::copy_rows(
          decoder_.hidden.data(), std::size_t(kept_rows) * row_bytes, decoder_.kept_hidden.data(),
          std::size_t(n) * row_bytes, std::size_t(kept_rows) * row_bytes, std::size_t(batch),
          decoder_.stream));
      PD_RETURN_IF_ERROR(Backend::copy_rows(
          positions_.data(), std::size_t(kept_rows) * sizeof(int32_t), selected_positions_.data(),
          std::size_t(n) * sizeof(int32_t), std::size_t(kept_rows) * sizeof(int32_t),
          std::size_t(batch), decoder_.stream));
      PD_RETURN_IF_ERROR(
          decoder_.gather_rope(selected_indices_view(1, n), selected_counts_view(1), n, kept_rows));
      if (selection.truncates_cache) {
        if (plan.truncate_after_last_layer) {
          PD_RETURN_IF_ERROR(record(selected_indices_, 1, n, kept, &truncating_maps));
        } else {
          // Every layer up to here holds exactly this stage's input set (truncating stages come
          // first).
          for (int64_t earlier = 0; earlier <= l; ++earlier)
            PD_RETURN_IF_ERROR(compact(&caches_.layers[std::size_t(earlier)],
                                       selected_indices_view(1, n), selected_counts_view(1), kept));
        }
      }
      current_lengths = kept;
      n = kept_rows;
      ++stage;
    }
    PD_RETURN_IF_ERROR(finish(results));
    if (!truncating_maps.empty())
      PD_RETURN_IF_ERROR(truncate_in_reference_order(plan, truncating_maps));
    std::vector<int64_t> last_rows;
    for (int64_t length : current_lengths) last_rows.push_back(length - 1);
    return decoder_.next_tokens(n, last_rows, first_tokens);
  }

  //! FastKV (fastkv.h, which defines it): every layer compressed per KV group, the TSP layer's
  //! propagated tokens continuing.
  Status fastkv(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan& plan,
                std::vector<PrefillResult>* results, std::vector<int32_t>* first_tokens);

  //! GemFilter: the filter pass over layers 0..r (no per-layer cache kept), the selection, then
  //! a full prefill of the kept ids (gathered on the backend) at positions 0..k-1.
  Status gemfilter(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan& plan,
                   std::vector<PrefillResult>* results, std::vector<int32_t>* first_tokens) {
    const int64_t batch = decoder_.batch, num_heads = decoder_.config.num_heads,
                  head_dim = decoder_.config.head_dim;
    const std::vector<int64_t> prompt_lengths = sizes_of(prompts);
    const int64_t n = max_of(prompt_lengths), filter_layer = plan.stages[0].layer;
    PD_RETURN_IF_ERROR(start_prompts(prompts));
    PD_RETURN_IF_ERROR(caches_.resize(&caches_.scratch, n));
    PD_RETURN_IF_ERROR(decoder_.selection_queries.reserve(
        std::size_t(batch * num_heads * head_dim) * sizeof(T), decoder_.stream));
    int64_t scored_layers = 0;
    for (int64_t l = 0; l <= filter_layer;
         ++l) {  // the scratch cache is overwritten layer after layer
      std::fill(caches_.scratch.lengths.begin(), caches_.scratch.lengths.end(), 0);
      PD_RETURN_IF_ERROR(decoder_.layer(l, n, &caches_.scratch, prompt_lengths));
      PD_RETURN_IF_ERROR(
          score_layer(plan.stages[0], l, caches_.scratch, prompt_lengths, n, &scored_layers));
    }
    PD_RETURN_IF_ERROR(select_stage(plan.stages[0], caches_.scratch, prompt_lengths, n,
                                    scored_layers, /*gather_hidden=*/false));
    caches_.empty(&caches_.scratch);
    const std::vector<int64_t> kept = kept_counts(plan.stages[0].plan, prompt_lengths);
    const int64_t kept_rows = max_of(kept);
    PD_RETURN_IF_ERROR(record(selected_indices_, 1, n, kept, &recorded_));
    for (int64_t b = 0; b < batch; ++b)
      (*results)[std::size_t(b)].retained.push_back(kept[std::size_t(b)]);
    // Pass 2 prefills the kept ids, gathered from the prompt ids on the backend.
    PD_RETURN_IF_ERROR(
        kept_ids_.reserve(std::size_t(batch * kept_rows) * sizeof(int32_t), decoder_.stream));
    GatherArgs<int32_t> gather;
    gather.src = make_view<const int32_t>(decoder_.token_ids(), batch, n, 1);
    gather.indices = selected_indices_view(1, n);
    gather.counts = selected_counts_view(1);
    gather.dst = make_view<int32_t>(kept_ids_.template as<int32_t>(), batch, kept_rows, 1);
    PD_RETURN_IF_ERROR(decoder_.template run<typename Backend::template Gather<int32_t>>(gather));
    PD_RETURN_IF_ERROR(start_rows(kept, kept_ids_.template as<const int32_t>()));
    return run_full_layers(kept, nullptr, results, first_tokens);
  }

 private:
  friend class FastKvPipeline<Backend, T>;

  //! Selections copied aside on the backend as the prefill goes, brought to the host once at
  //! its end: each holds [B, rows, count_max] int32 with the per-request counts the host knows.
  struct Recorded {
    Buffer data;
    int64_t rows = 0, count_max = 0;
    std::vector<int64_t> counts;  //!< per request (every row of a request keeps the same count)
  };

  static std::vector<int32_t> arange(int64_t n) {
    std::vector<int32_t> values(static_cast<std::size_t>(n));
    std::iota(values.begin(), values.end(), 0);
    return values;
  }

  //! Tokens a selection keeps of each request (kept_tokens), so the host knows them without
  //! reading the backend.
  static std::vector<int64_t> kept_counts(const MethodPlan& plan,
                                          const std::vector<int64_t>& lengths) {
    std::vector<int64_t> kept;
    for (int64_t length : lengths) kept.push_back(kept_tokens(plan, length));
    return kept;
  }

  //! Every prefill's start: activations for the padded batch, empty caches, the embedded
  //! prompts, their positions 0..L_b-1 and RoPE tables.
  Status start_prompts(const std::vector<std::vector<int32_t>>& prompts) {
    const int64_t n = max_of(sizes_of(prompts));
    PD_RETURN_IF_ERROR(decoder_.reserve_rows(n));
    caches_.reset(decoder_.config.num_layers, decoder_.batch);
    PD_RETURN_IF_ERROR(decoder_.embed_ids(prompts, n));
    return start_positions(sizes_of(prompts));
  }
  //! The same for ids already on the backend ([B, max length] padded).
  Status start_rows(const std::vector<int64_t>& lengths, const int32_t* ids) {
    const int64_t n = max_of(lengths);
    PD_RETURN_IF_ERROR(decoder_.reserve_rows(n));
    caches_.reset(decoder_.config.num_layers, decoder_.batch);
    PD_RETURN_IF_ERROR(decoder_.embed_device_ids(ids, n));
    return start_positions(lengths);
  }
  Status start_positions(const std::vector<int64_t>& lengths) {
    const int64_t n = max_of(lengths);
    std::vector<std::vector<int32_t>> positions;
    std::vector<int32_t> padded(std::size_t(decoder_.batch * n), 0);
    for (std::size_t b = 0; b < lengths.size(); ++b) {
      positions.push_back(arange(lengths[b]));
      std::copy(positions.back().begin(), positions.back().end(),
                padded.begin() + std::ptrdiff_t(int64_t(b) * n));
    }
    PD_RETURN_IF_ERROR(positions_.upload(padded, decoder_.stream));
    return decoder_.upload_rope(positions, n, lengths);
  }

  //! Every layer over the prompts started by start_prompts/start_rows, with SnapKV/H2O
  //! compression when `compression_plan` has one, then the first tokens.
  Status run_full_layers(const std::vector<int64_t>& prompt_lengths,
                         const PipelinePlan* compression_plan, std::vector<PrefillResult>* results,
                         std::vector<int32_t>* first_tokens) {
    const int64_t batch = decoder_.batch, num_heads = decoder_.config.num_heads,
                  head_dim = decoder_.config.head_dim;
    const int64_t n = max_of(prompt_lengths);
    // SnapKV/H2O compress a request only when L >= C (shorter ones keep everything, which is
    // also what the selection returns for them).
    const bool compress_any = compression_plan != nullptr && compression_plan->compresses(n);
    const MethodConfig method = compress_any ? compression_plan->compression : MethodConfig{};
    const std::vector<int64_t> kept =
        compress_any ? kept_counts(compression_plan->compression_plan, prompt_lengths)
                     : prompt_lengths;
    const int64_t rows =
        score_rows(method.method, method.grouping, num_heads, decoder_.config.num_kv_heads);
    int64_t query_rows = 0;
    if (compress_any) {
      query_rows = method.method == Method::kSnapKV ? method.window : n;
      PD_RETURN_IF_ERROR(decoder_.selection_queries.reserve(
          std::size_t(batch * query_rows * num_heads * head_dim) * sizeof(T), decoder_.stream));
    }
    for (int64_t l = 0; l < decoder_.config.num_layers; ++l) {
      PD_RETURN_IF_ERROR(decoder_.layer(l, n, &caches_.layers[std::size_t(l)], prompt_lengths));
      caches_.account();
      if (!compress_any) continue;
      const T* queries = decoder_.queries.template as<const T>();
      if (method.method ==
          Method::kSnapKV) {  // the last W queries of every request (rows before 0 are ignored)
        std::vector<std::vector<int32_t>> window_rows(static_cast<std::size_t>(batch));
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t i = 0; i < query_rows; ++i)
            window_rows[std::size_t(b)].push_back(
                int32_t(std::max<int64_t>(prompt_lengths[std::size_t(b)] - query_rows + i, 0)));
        PD_RETURN_IF_ERROR(decoder_.gather_rows(decoder_.queries.template as<const T>(), n,
                                                num_heads * head_dim, window_rows,
                                                decoder_.selection_queries.template as<T>()));
        queries = decoder_.selection_queries.template as<const T>();
      }
      PD_RETURN_IF_ERROR(select(method, queries, query_rows, caches_.layers[std::size_t(l)],
                                prompt_lengths, n, false));
      // Per query head (the published variant): every query head keeps its own tokens, so the
      // cache is GQA-expanded to H heads first, as the reference code stores it.
      if (rows != caches_.layers[std::size_t(l)].heads)
        PD_RETURN_IF_ERROR(expand_cache(&caches_.layers[std::size_t(l)]));
      PD_RETURN_IF_ERROR(compact(&caches_.layers[std::size_t(l)], selected_indices_view(rows, n),
                                 selected_counts_view(rows), kept));
      PD_RETURN_IF_ERROR(record(selected_indices_, rows, n, kept, &recorded_));
    }
    PD_RETURN_IF_ERROR(finish(results, compression_plan, prompt_lengths));
    std::vector<int64_t> last_rows;
    for (int64_t length : prompt_lengths) last_rows.push_back(length - 1);
    return decoder_.next_tokens(n, last_rows, first_tokens);
  }

  TensorView<const int32_t, 3> selected_indices_view(int64_t rows, int64_t n) const {
    return make_view<const int32_t>(selected_indices_.template as<const int32_t>(), decoder_.batch,
                                    rows, n);
  }
  TensorView<const int32_t, 2> selected_counts_view(int64_t rows) const {
    return make_view<const int32_t>(selected_counts_.template as<const int32_t>(), decoder_.batch,
                                    rows);
  }

  //! One selection through the Selector API, left on the backend: indices, counts and positions
  //! [B, rows, n]. `queries` holds query_rows rows per request ([B, query_rows, H, D]); the keys
  //! are `cache`'s; `lengths` are the current token counts and `positions_` their positions.
  //! With `gather_hidden`, the kept rows of `hidden` are written to `kept_hidden` ([B, n, hidden]).
  Status select(const MethodConfig& method, const T* queries, int64_t query_rows,
                const Cache& cache, const std::vector<int64_t>& lengths, int64_t n,
                bool gather_hidden) {
    SelectArgs<T> args;
    PD_RETURN_IF_ERROR(
        select_args(method, queries, query_rows, cache, lengths, n, gather_hidden, &args));
    const bool sums_every_head =
        method.method == Method::kPromptDistill || method.method == Method::kGemFilter;
    if (decoder_.shard.parallel() && sums_every_head) return select_across_ranks(args);
    return decoder_.template run<typename Backend::template Select<T>>(args);
  }

  //! The Select arguments of a selection (see `select`), its output buffers reserved and the
  //! lengths uploaded.
  Status select_args(const MethodConfig& method, const T* queries, int64_t query_rows,
                     const Cache& cache, const std::vector<int64_t>& lengths, int64_t n,
                     bool gather_hidden, SelectArgs<T>* out) {
    const ModelConfig& config = decoder_.config;
    const int64_t batch = decoder_.batch, rows = score_rows(method.method, method.grouping,
                                                            config.num_heads, config.num_kv_heads);
    const Stream stream = decoder_.stream;
    PD_RETURN_IF_ERROR(
        lengths_.upload(std::vector<int32_t>(lengths.begin(), lengths.end()), stream));
    PD_RETURN_IF_ERROR(
        selected_indices_.reserve(std::size_t(batch * rows * n) * sizeof(int32_t), stream));
    PD_RETURN_IF_ERROR(
        selected_positions_.reserve(std::size_t(batch * rows * n) * sizeof(int32_t), stream));
    PD_RETURN_IF_ERROR(
        selected_counts_.reserve(std::size_t(batch * rows) * sizeof(int32_t), stream));
    SelectArgs<T>& args = *out;
    args.config = method;
    args.q = make_view<const T>(queries, batch, query_rows, config.num_heads, config.head_dim);
    args.k = KvCacheView<const T>(caches_.view(cache, cache.keys));
    args.lengths = lengths_.template as<const int32_t>();
    args.max_length = n;
    args.positions_in = make_view<const int32_t>(positions_.template as<const int32_t>(), batch, n);
    args.indices = make_view<int32_t>(selected_indices_.template as<int32_t>(), batch, rows, n);
    args.counts = make_view<int32_t>(selected_counts_.template as<int32_t>(), batch, rows);
    args.positions = make_view<int32_t>(selected_positions_.template as<int32_t>(), batch, rows, n);
    if (gather_hidden) {
      args.hidden_in =
          make_view<const T>(decoder_.hidden.template as<const T>(), batch, n, config.hidden);
      args.hidden_out =
          make_view<T>(decoder_.kept_hidden.template as<T>(), batch, n, config.hidden);
    }
    return Status::ok();
  }

  //! PromptDistill / GemFilter under tensor parallelism: the rank's partial scores over its own
  //! heads, their all-reduce, and the finishing stage, which every rank runs on the same sums and
  //! so ends with the same selection; then the hidden-state gather Select would have fused.
  Status select_across_ranks(const SelectArgs<T>& select) {
    PD_RETURN_IF_ERROR(score_partial(select, /*accumulate=*/false));
    return finish_partials(select, decoder_.shard.total_heads);
  }

  //! The rank's head terms of `select`'s query and keys into partial_scores_ ([B, 1, n] f32):
  //! written, or added to the previous score layers' (ScorePartialArgs::accumulate).
  Status score_partial(const SelectArgs<T>& select, bool accumulate) {
    const int64_t batch = decoder_.batch, n = select.max_length;
    if (!accumulate) {
      PD_RETURN_IF_ERROR(
          partial_scores_.reserve(std::size_t(batch * n) * sizeof(float), decoder_.stream));
      // Past each length the partials are not written; zeros keep the all-reduce's inputs defined.
      PD_RETURN_IF_ERROR(Backend::fill_zero(
          partial_scores_.data(), std::size_t(batch * n) * sizeof(float), decoder_.stream));
    }
    ScorePartialArgs<T> partial;
    partial.method = select.config.method;
    partial.q = select.q;
    partial.k = select.k;
    partial.lengths = select.lengths;
    partial.head_offset = decoder_.shard.q_first;
    partial.total_heads = decoder_.shard.total_heads;
    partial.partial = make_view<float>(partial_scores_.template as<float>(), batch, 1, n);
    partial.accumulate = accumulate;
    return decoder_.template run<typename Backend::template ScorePartial<T>>(partial);
  }

  //! The summed partial scores (all-reduced across ranks) ranked by FinishSelect, dividing by
  //! `terms` head terms; then the hidden-state gather Select would have fused.
  Status finish_partials(const SelectArgs<T>& select, int64_t terms) {
    const int64_t batch = decoder_.batch, n = select.max_length;
    if (decoder_.shard.parallel())
      PD_RETURN_IF_ERROR(decoder_.all_reduce(partial_scores_.template as<float>(), batch * n));
    FinishSelectArgs finish;
    finish.config = select.config;
    finish.summed = make_view<const float>(partial_scores_.template as<const float>(), batch, 1, n);
    finish.total_heads = terms;
    finish.lengths = select.lengths;
    finish.positions_in = select.positions_in;
    finish.indices = select.indices;
    finish.counts = select.counts;
    finish.positions = select.positions;
    PD_RETURN_IF_ERROR(decoder_.template run<typename Backend::FinishSelect>(finish));
    if (select.hidden_in.data == nullptr) return Status::ok();
    GatherArgs<T> gather;
    gather.src = select.hidden_in;
    gather.indices = select.indices;
    gather.counts = select.counts;
    gather.dst = select.hidden_out;
    return decoder_.template run<typename Backend::template Gather<T>>(gather);
  }

  //! The last query row of every request at the current layer, into selection_queries.
  Status gather_last_queries(const std::vector<int64_t>& lengths, int64_t n) {
    std::vector<std::vector<int32_t>> last_rows;
    for (int64_t length : lengths) last_rows.push_back({int32_t(length - 1)});
    const int64_t width = decoder_.config.num_heads * decoder_.config.head_dim;
    return decoder_.gather_rows(decoder_.queries.template as<const T>(), n, width, last_rows,
                                decoder_.selection_queries.template as<T>());
  }

  //! Layer l of a stage that aggregates its scores over layers: when l is one of its score layers,
  //! the last queries' head terms against the layer's keys (`cache`) are added to the partials
  //! (`scored` counts the layers so far). Other stages score at their own layer (select_stage).
  Status score_layer(const SelectionStage& stage, int64_t l, const Cache& cache,
                     const std::vector<int64_t>& lengths, int64_t n, int64_t* scored) {
    if (!stage.aggregates() || std::find(stage.score_layers.begin(), stage.score_layers.end(), l) ==
                                   stage.score_layers.end())
      return Status::ok();
    PD_RETURN_IF_ERROR(gather_last_queries(lengths, n));
    SelectArgs<T> args;
    PD_RETURN_IF_ERROR(select_args(stage.select, decoder_.selection_queries.template as<const T>(),
                                   1, cache, lengths, n, false, &args));
    PD_RETURN_IF_ERROR(score_partial(args, /*accumulate=*/*scored > 0));
    ++*scored;
    return Status::ok();
  }

  //! A PromptDistill/GemFilter stage's selection at its layer: Select on its layer's last queries
  //! and keys, or FinishSelect on the partials its `scored` score layers accumulated.
  Status select_stage(const SelectionStage& stage, const Cache& cache,
                      const std::vector<int64_t>& lengths, int64_t n, int64_t scored,
                      bool gather_hidden) {
    if (!stage.aggregates()) {
      PD_RETURN_IF_ERROR(gather_last_queries(lengths, n));
      return select(stage.select, decoder_.selection_queries.template as<const T>(), 1, cache,
                    lengths, n, gather_hidden);
    }
    SelectArgs<T> args;
    PD_RETURN_IF_ERROR(select_args(stage.select, decoder_.selection_queries.template as<const T>(),
                                   1, cache, lengths, n, gather_hidden, &args));
    return finish_partials(args, scored * decoder_.shard.total_heads);
  }

  //! Keeps, in `cache`, the tokens `indices` lists (1 row: every head; H_kv rows: per head), in
  //! place (CompactKv reads the selection where it is), then shrinks the allocation to the
  //! longest request plus the decode reserve. `kept` are the counts the host expects.
  Status compact(Cache* cache, TensorView<const int32_t, 3> indices,
                 TensorView<const int32_t, 2> counts, const std::vector<int64_t>& kept) {
    const int64_t batch = decoder_.batch;
    const Stream stream = decoder_.stream;
    PD_RETURN_IF_ERROR(cache_lengths_.upload(
        std::vector<int32_t>(cache->lengths.begin(), cache->lengths.end()), stream));
    PD_RETURN_IF_ERROR(new_lengths_.reserve(std::size_t(batch) * sizeof(int32_t), stream));
    CompactKvArgs<T> args;
    args.k = caches_.view(*cache, cache->keys);
    args.v = caches_.view(*cache, cache->values);
    args.seq_lens = cache_lengths_.template as<const int32_t>();
    args.indices = indices;
    args.counts = counts;
    args.new_lengths = new_lengths_.template as<int32_t>();
    PD_RETURN_IF_ERROR(decoder_.template run<typename Backend::template CompactKv<T>>(args));
    for (int64_t b = 0; b < batch; ++b) cache->lengths[std::size_t(b)] = kept[std::size_t(b)];
    return caches_.resize(cache, max_of(kept) + decoder_.options.decode_reserve);
  }

  //! The cache's K and V GQA-expanded from H_kv to H heads (query head h gets KV head h / G).
  Status expand_cache(Cache* cache) {
    const int64_t heads = decoder_.config.num_heads;
    for (Buffer* part : {&cache->keys, &cache->values}) {
      Buffer expanded(ledger_);
      PD_RETURN_IF_ERROR(
          expanded.allocate(caches_.bytes_for(cache->capacity, heads), decoder_.stream));
      PD_RETURN_IF_ERROR(decoder_.expand_heads(part->template as<const T>(),
                                               expanded.template as<T>(), cache->capacity));
      *part = std::move(expanded);
    }
    cache->heads = heads;
    caches_.account();
    return Status::ok();
  }

  //! Copies the first max(kept) entries of every row of a selection output ([B, rows, n]) aside.
  Status record(const Buffer& selection, int64_t rows, int64_t n, const std::vector<int64_t>& kept,
                std::vector<Recorded>* into) {
    Recorded entry;
    entry.data.set_ledger(ledger_);
    entry.rows = rows;
    entry.count_max = std::max<int64_t>(max_of(kept), 1);
    entry.counts = kept;
    const std::size_t width = std::size_t(entry.count_max) * sizeof(int32_t);
    PD_RETURN_IF_ERROR(
        entry.data.allocate(std::size_t(decoder_.batch * rows) * width, decoder_.stream));
    PD_RETURN_IF_ERROR(Backend::copy_rows(entry.data.data(), width, selection.data(),
                                          std::size_t(n) * sizeof(int32_t), width,
                                          std::size_t(decoder_.batch * rows), decoder_.stream));
    into->push_back(std::move(entry));
    return Status::ok();
  }

  //! Brings every recorded selection to the host in one synchronisation (after reading the
  //! session's status word: a device-side validation error fails the prefill) and fills the
  //! results. With a compression plan, a request it does not compress (L < C) keeps every token
  //! of every layer, and reports that.
  Status finish(std::vector<PrefillResult>* results, const PipelinePlan* compression_plan = nullptr,
                const std::vector<int64_t>& prompt_lengths = {}) {
    PD_RETURN_IF_ERROR(decoder_.read_status());
    std::vector<std::vector<int32_t>> host;
    PD_RETURN_IF_ERROR(download_all(recorded_, &host));
    if (compression_plan)
      for (int64_t b = 0; b < decoder_.batch; ++b) {
        const int64_t length = prompt_lengths[std::size_t(b)];
        if (compression_plan->compresses(length)) continue;
        const MethodConfig& method = compression_plan->compression;
        const int64_t rows = score_rows(method.method, method.grouping, decoder_.config.num_heads,
                                        decoder_.config.num_kv_heads);
        PrefillResult& result = (*results)[std::size_t(b)];
        for (int64_t l = 0; l < decoder_.config.num_layers; ++l) {
          result.retained.push_back(length);
          result.selected.emplace_back(std::size_t(rows), arange(length));
        }
      }
    for (std::size_t r = 0; r < recorded_.size(); ++r)
      for (int64_t b = 0; b < decoder_.batch; ++b) {
        if (compression_plan && !compression_plan->compresses(prompt_lengths[std::size_t(b)]))
          continue;
        PrefillResult& result = (*results)[std::size_t(b)];
        std::vector<std::vector<int32_t>> rows;
        for (int64_t row = 0; row < recorded_[r].rows; ++row) {
          const auto first = host[r].begin() +
                             std::ptrdiff_t((b * recorded_[r].rows + row) * recorded_[r].count_max);
          rows.emplace_back(first, first + std::ptrdiff_t(recorded_[r].counts[std::size_t(b)]));
        }
        result.selected.push_back(std::move(rows));
        if (compression_plan) result.retained.push_back(recorded_[r].counts[std::size_t(b)]);
      }
    recorded_.clear();
    return Status::ok();
  }

  //! The recorded selections on the host, with one download: they are packed into one buffer
  //! on the backend first.
  Status download_all(const std::vector<Recorded>& recorded,
                      std::vector<std::vector<int32_t>>* out) {
    std::size_t total = 0;
    for (const Recorded& entry : recorded)
      total += std::size_t(decoder_.batch * entry.rows * entry.count_max);
    out->assign(recorded.size(), {});
    if (total == 0) return Status::ok();
    PD_RETURN_IF_ERROR(packed_.reserve(total * sizeof(int32_t), decoder_.stream));
    std::size_t offset = 0;
    for (const Recorded& entry : recorded) {
      const std::size_t bytes =
          std::size_t(decoder_.batch * entry.rows * entry.count_max) * sizeof(int32_t);
      PD_RETURN_IF_ERROR(Backend::copy_rows(packed_.template as<char>() + offset, bytes,
                                            entry.data.data(), bytes, bytes, 1, decoder_.stream));
      offset += bytes;
    }
    std::vector<int32_t> packed;
    PD_RETURN_IF_ERROR(decoder_.download(packed_, total, &packed));
    offset = 0;
    for (std::size_t r = 0; r < recorded.size(); ++r) {
      const std::size_t count =
          std::size_t(decoder_.batch * recorded[r].rows * recorded[r].count_max);
      (*out)[r].assign(packed.begin() + std::ptrdiff_t(offset),
                       packed.begin() + std::ptrdiff_t(offset + count));
      offset += count;
    }
    return Status::ok();
  }

  //! The reference code's order (PipelineConfig::truncate_after_last_layer): each truncating
  //! stage's map, composed with the later stages' on the host (`compose_stage_maps`, shared with
  //! ref::EigenSession), gathers its segment's caches after the last layer.
  Status truncate_in_reference_order(const PipelinePlan& plan, const std::vector<Recorded>& maps) {
    std::vector<std::vector<int32_t>> host;
    PD_RETURN_IF_ERROR(download_all(maps, &host));
    const int64_t batch = decoder_.batch;
    std::vector<std::vector<std::vector<int32_t>>> composed;  // [request][segment]
    for (int64_t b = 0; b < batch; ++b) {
      std::vector<std::vector<int32_t>> stage_maps;
      for (std::size_t s = 0; s < maps.size(); ++s) {
        const auto first = host[s].begin() + std::ptrdiff_t(b * maps[s].count_max);
        stage_maps.emplace_back(first, first + std::ptrdiff_t(maps[s].counts[std::size_t(b)]));
      }
      composed.push_back(compose_stage_maps(stage_maps));
    }
    const std::vector<int64_t> kept = maps.back().counts;
    const int64_t pitch = std::max<int64_t>(max_of(kept), 1);
    for (std::size_t segment = 0; segment < maps.size(); ++segment) {
      std::vector<int32_t> indices(std::size_t(batch * pitch), 0), counts;
      for (int64_t b = 0; b < batch; ++b) {
        const std::vector<int32_t>& map = composed[std::size_t(b)][segment];
        std::copy(map.begin(), map.end(), indices.begin() + std::ptrdiff_t(b * pitch));
        counts.push_back(int32_t(map.size()));
      }
      PD_RETURN_IF_ERROR(compact_indices_.upload(indices, decoder_.stream));
      PD_RETURN_IF_ERROR(compact_counts_.upload(counts, decoder_.stream));
      const auto indices_view =
          make_view<const int32_t>(compact_indices_.template as<const int32_t>(), batch, 1, pitch);
      const auto counts_view =
          make_view<const int32_t>(compact_counts_.template as<const int32_t>(), batch, 1);
      for (int64_t l = plan.segment_first_layer(segment); l <= plan.stages[segment].layer; ++l)
        PD_RETURN_IF_ERROR(
            compact(&caches_.layers[std::size_t(l)], indices_view, counts_view, kept));
    }
    return decoder_.read_status();
  }

  Decoder<Backend, T>& decoder_;
  LayerCaches<Backend, T>& caches_;
  MemoryLedger* ledger_;
  Buffer lengths_, positions_, selected_indices_, selected_counts_, selected_positions_;
  Buffer cache_lengths_, new_lengths_, compact_indices_, compact_counts_, kept_ids_, packed_;
  Buffer
      partial_scores_;  //!< [B, 1, n] f32: a tensor-parallel rank's partial scores, then their sum
  std::vector<Recorded> recorded_;  //!< what the results report, in order
};

}  // namespace session
}  // namespace promptdistill
