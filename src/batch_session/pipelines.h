// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the batch session: the methods' prefill pipelines (full KV, PromptDistill
//! multi-stage with cache truncation, GemFilter, SnapKV/H2O), each executing a PipelinePlan with
//! the decoder's layers and the Selector API (Select, CompactKv) of one backend.

#include <algorithm>
#include <numeric>
#include <vector>

#include "promptdistill/pipeline.h"
#include "src/batch_session/decoder.h"

namespace promptdistill {
namespace session {

template <class Backend, class T>
class Pipelines {
 public:
  using Buffer = DeviceBuffer<Backend>;
  using Cache = LayerCache<Backend>;

  Pipelines(Decoder<Backend, T>* decoder, LayerCaches<Backend, T>* caches, MemoryLedger* ledger)
      : decoder_(*decoder), caches_(*caches) {
    for (Buffer* buffer : {&lengths_, &positions_, &selected_indices_, &selected_counts_, &selected_positions_, &new_lengths_,
                           &compact_indices_, &compact_counts_})
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

  //! Bytes a prefill of `prompts` with `plan` will allocate at its peak: the padded activations
  //! and the largest set of caches the method holds at once (a slight over-estimate).
  int64_t estimate_prefill_bytes(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan& plan) const {
    const ModelConfig& config = decoder_.config;
    const int64_t batch = int64_t(prompts.size()), n = max_of(sizes_of(prompts)), rows = batch * n;
    const int64_t element = int64_t(sizeof(T)), head_dim = config.head_dim;
    const int64_t chunk = std::min(rows, decoder_.options.mlp_chunk_rows);
    const int64_t activations =
        rows * element * (3 * config.hidden + 2 * config.num_heads * head_dim + 2 * config.num_kv_heads * head_dim) +
        2 * chunk * config.intermediate * element + rows * head_dim * int64_t(sizeof(float)) +
        batch * config.vocab * int64_t(sizeof(float));
    const int64_t token_bytes = batch * 2 * config.num_kv_heads * head_dim * element;
    const int64_t layers = config.num_layers, reserve = decoder_.options.decode_reserve;
    int64_t tokens = layers * (n + reserve);  // full KV, SnapKV, H2O (compression happens after each layer)
    if (plan.method == PipelineMethod::kPromptDistill) {
      const int64_t layer = plan.stages[0].layer, kept = std::min(n, plan.stages[0].select.budget + 1);
      tokens = (layer + 1) * (n + reserve) + (layers - layer - 1) * (kept + reserve);
    } else if (plan.method == PipelineMethod::kGemFilter) {
      tokens = std::max(n, layers * (std::min(n, plan.stages[0].select.budget) + reserve));
    }
    return activations + tokens * token_bytes;
  }

  //! A full prefill of `prompts` (positions 0..L_b-1) through every layer, with the plan's
  //! SnapKV/H2O compression after each layer when it has one. Returns the first tokens.
  Status full_prefill(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan* compression_plan,
                      std::vector<PrefillResult>* results, std::vector<int32_t>* first_tokens) {
    const int64_t batch = decoder_.batch, num_heads = decoder_.config.num_heads, head_dim = decoder_.config.head_dim;
    const std::vector<int64_t> prompt_lengths = sizes_of(prompts);
    const int64_t n = max_of(prompt_lengths);
    std::vector<std::vector<int32_t>> positions;
    PD_RETURN_IF_ERROR(start_prompts(prompts, &positions));
    // SnapKV/H2O compress a request only when L >= C (shorter ones keep everything, which is
    // also what the selection returns for them).
    const bool compress_any = compression_plan != nullptr && compression_plan->compresses(n);
    const MethodConfig method = compress_any ? compression_plan->compression : MethodConfig{};
    int64_t query_rows = 0;
    if (compress_any) {
      query_rows = method.method == Method::kSnapKV ? method.window : n;
      PD_RETURN_IF_ERROR(
          decoder_.selection_queries.reserve(std::size_t(batch * query_rows * num_heads * head_dim) * sizeof(T), decoder_.stream));
    }
    for (int64_t l = 0; l < decoder_.config.num_layers; ++l) {
      PD_RETURN_IF_ERROR(decoder_.layer(l, n, &caches_.layers[std::size_t(l)], prompt_lengths));
      caches_.account();
      if (!compress_any) continue;
      const T* queries = decoder_.queries.template as<const T>();
      if (method.method == Method::kSnapKV) {  // the last W queries of every request (rows before 0 are ignored)
        std::vector<std::vector<int32_t>> window_rows(static_cast<std::size_t>(batch));
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t i = 0; i < query_rows; ++i)
            window_rows[std::size_t(b)].push_back(int32_t(std::max<int64_t>(prompt_lengths[std::size_t(b)] - query_rows + i, 0)));
        PD_RETURN_IF_ERROR(decoder_.gather_rows(decoder_.queries.template as<const T>(), n, num_heads * head_dim, window_rows,
                                                decoder_.selection_queries.template as<T>()));
        queries = decoder_.selection_queries.template as<const T>();
      }
      Picked picked;
      PD_RETURN_IF_ERROR(select(method, queries, query_rows, caches_.layers[std::size_t(l)], prompt_lengths, n, positions, false, &picked));
      PD_RETURN_IF_ERROR(compact(&caches_.layers[std::size_t(l)], picked.indices));
      for (int64_t b = 0; b < batch; ++b) {
        if (!compression_plan->compresses(prompt_lengths[std::size_t(b)])) continue;
        (*results)[std::size_t(b)].retained.push_back(int64_t(picked.indices[std::size_t(b)][0].size()));
        (*results)[std::size_t(b)].selected.push_back(picked.indices[std::size_t(b)][0]);
      }
    }
    std::vector<int64_t> last_rows;
    for (int64_t length : prompt_lengths) last_rows.push_back(length - 1);
    return decoder_.next_tokens(n, last_rows, first_tokens);
  }

  //! PromptDistill, single or multi-stage, with cache truncation at the selection point or, in
  //! the reference's order, after the last layer.
  Status promptdistill(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan& plan,
                       std::vector<PrefillResult>* results, std::vector<int32_t>* first_tokens) {
    const int64_t batch = decoder_.batch, num_heads = decoder_.config.num_heads, head_dim = decoder_.config.head_dim;
    const std::vector<int64_t> prompt_lengths = sizes_of(prompts);
    std::vector<int64_t> current_lengths = prompt_lengths;
    int64_t n = max_of(prompt_lengths);
    std::vector<std::vector<int32_t>> positions;
    PD_RETURN_IF_ERROR(start_prompts(prompts, &positions));
    PD_RETURN_IF_ERROR(decoder_.selection_queries.reserve(std::size_t(batch * num_heads * head_dim) * sizeof(T), decoder_.stream));
    std::vector<std::vector<std::vector<int32_t>>> stage_maps(static_cast<std::size_t>(batch));  // [request][truncating stage]
    std::size_t stage = 0;
    for (int64_t l = 0; l < decoder_.config.num_layers; ++l) {
      PD_RETURN_IF_ERROR(decoder_.layer(l, n, &caches_.layers[std::size_t(l)], current_lengths));
      caches_.account();
      if (!(stage < plan.stages.size() && l == plan.stages[stage].layer)) continue;
      std::vector<std::vector<int32_t>> last_rows;
      for (int64_t length : current_lengths) last_rows.push_back({int32_t(length - 1)});
      PD_RETURN_IF_ERROR(decoder_.gather_rows(decoder_.queries.template as<const T>(), n, num_heads * head_dim, last_rows,
                                              decoder_.selection_queries.template as<T>()));
      Picked picked;
      PD_RETURN_IF_ERROR(select(plan.stages[stage].select, decoder_.selection_queries.template as<const T>(), 1,
                                caches_.layers[std::size_t(l)], current_lengths, n, positions, true, &picked));
      std::vector<int64_t> kept;
      for (int64_t b = 0; b < batch; ++b) {
        kept.push_back(int64_t(picked.indices[std::size_t(b)][0].size()));
        positions[std::size_t(b)] = picked.positions[std::size_t(b)][0];
        (*results)[std::size_t(b)].retained.push_back(kept.back());
        (*results)[std::size_t(b)].selected.push_back(positions[std::size_t(b)]);
      }
      const int64_t kept_rows = max_of(kept);
      // kept_hidden holds the kept rows at pitch n; pack them at pitch kept_rows into hidden.
      const std::size_t row_bytes = std::size_t(decoder_.config.hidden) * sizeof(T);
      PD_RETURN_IF_ERROR(Backend::copy_rows(decoder_.hidden.data(), std::size_t(kept_rows) * row_bytes, decoder_.kept_hidden.data(),
                                            std::size_t(n) * row_bytes, std::size_t(kept_rows) * row_bytes, std::size_t(batch),
                                            decoder_.stream));
      if (plan.stages[stage].truncates_cache) {
        std::vector<std::vector<std::vector<int32_t>>> kept_map;
        for (int64_t b = 0; b < batch; ++b) kept_map.push_back({picked.indices[std::size_t(b)][0]});
        if (plan.truncate_after_last_layer) {
          for (int64_t b = 0; b < batch; ++b) stage_maps[std::size_t(b)].push_back(picked.indices[std::size_t(b)][0]);
        } else {
          for (int64_t earlier = 0; earlier <= l; ++earlier) PD_RETURN_IF_ERROR(compact(&caches_.layers[std::size_t(earlier)], kept_map));
        }
      }
      current_lengths = kept;
      n = kept_rows;
      PD_RETURN_IF_ERROR(decoder_.upload_rope(positions, n, prompt_lengths));
      ++stage;
    }
    // Reference order: each request's composed maps gather its segments' caches after the last layer.
    std::vector<std::vector<std::vector<int32_t>>> composed;  // [request][segment]
    for (int64_t b = 0; b < batch; ++b) composed.push_back(compose_stage_maps(stage_maps[std::size_t(b)]));
    for (std::size_t segment = 0; !composed.empty() && segment < composed[0].size(); ++segment) {
      std::vector<std::vector<std::vector<int32_t>>> segment_map;
      for (int64_t b = 0; b < batch; ++b) segment_map.push_back({composed[std::size_t(b)][segment]});
      for (int64_t l = plan.segment_first_layer(segment); l <= plan.stages[segment].layer; ++l)
        PD_RETURN_IF_ERROR(compact(&caches_.layers[std::size_t(l)], segment_map));
    }
    std::vector<int64_t> last_rows;
    for (int64_t length : current_lengths) last_rows.push_back(length - 1);
    return decoder_.next_tokens(n, last_rows, first_tokens);
  }

  //! GemFilter: the filter pass over layers 0..r (no per-layer cache kept), the selection, then
  //! a full prefill of the kept ids at positions 0..k-1.
  Status gemfilter(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan& plan, std::vector<PrefillResult>* results,
                   std::vector<int32_t>* first_tokens) {
    const int64_t batch = decoder_.batch, num_heads = decoder_.config.num_heads, head_dim = decoder_.config.head_dim;
    const std::vector<int64_t> prompt_lengths = sizes_of(prompts);
    const int64_t n = max_of(prompt_lengths), filter_layer = plan.stages[0].layer;
    std::vector<std::vector<int32_t>> positions;
    PD_RETURN_IF_ERROR(start_prompts(prompts, &positions));
    PD_RETURN_IF_ERROR(caches_.resize(&caches_.scratch, n));
    for (int64_t l = 0; l <= filter_layer; ++l) {  // the scratch cache is overwritten layer after layer
      std::fill(caches_.scratch.lengths.begin(), caches_.scratch.lengths.end(), 0);
      PD_RETURN_IF_ERROR(decoder_.layer(l, n, &caches_.scratch, prompt_lengths));
    }
    std::vector<std::vector<int32_t>> last_rows;
    for (int64_t length : prompt_lengths) last_rows.push_back({int32_t(length - 1)});
    PD_RETURN_IF_ERROR(decoder_.selection_queries.reserve(std::size_t(batch * num_heads * head_dim) * sizeof(T), decoder_.stream));
    PD_RETURN_IF_ERROR(decoder_.gather_rows(decoder_.queries.template as<const T>(), n, num_heads * head_dim, last_rows,
                                            decoder_.selection_queries.template as<T>()));
    Picked picked;
    PD_RETURN_IF_ERROR(select(plan.stages[0].select, decoder_.selection_queries.template as<const T>(), 1, caches_.scratch,
                              prompt_lengths, n, positions, false, &picked));
    caches_.scratch.keys.release();
    caches_.scratch.values.release();
    caches_.scratch.capacity = 0;
    std::vector<std::vector<int32_t>> kept_ids;
    for (int64_t b = 0; b < batch; ++b) {
      const std::vector<int32_t>& indices = picked.indices[std::size_t(b)][0];
      std::vector<int32_t> ids;
      for (int32_t i : indices) ids.push_back(prompts[std::size_t(b)][std::size_t(i)]);
      kept_ids.push_back(ids);
      (*results)[std::size_t(b)].retained.push_back(int64_t(indices.size()));
      (*results)[std::size_t(b)].selected.push_back(indices);
    }
    return full_prefill(kept_ids, nullptr, results, first_tokens);
  }

 private:
  //! A selection brought back to the host: [request][row][i].
  struct Picked {
    std::vector<std::vector<std::vector<int32_t>>> indices, positions;
  };

  static std::vector<int32_t> arange(int64_t n) {
    std::vector<int32_t> values(static_cast<std::size_t>(n));
    std::iota(values.begin(), values.end(), 0);
    return values;
  }

  //! Every prefill's start: activations for the padded batch, empty caches, the embedded
  //! prompts and their RoPE tables at positions 0..L_b-1 (returned in `positions`).
  Status start_prompts(const std::vector<std::vector<int32_t>>& prompts, std::vector<std::vector<int32_t>>* positions) {
    const std::vector<int64_t> prompt_lengths = sizes_of(prompts);
    const int64_t n = max_of(prompt_lengths);
    positions->clear();
    for (int64_t length : prompt_lengths) positions->push_back(arange(length));
    PD_RETURN_IF_ERROR(decoder_.reserve_rows(n));
    caches_.reset(decoder_.config.num_layers, decoder_.batch);
    PD_RETURN_IF_ERROR(decoder_.embed_ids(prompts, n));
    return decoder_.upload_rope(*positions, n, prompt_lengths);
  }

  //! One selection through the Selector API. `queries` holds query_rows rows per request
  //! ([B, query_rows, H, D]); the keys are `cache`'s; `lengths` are the current token counts.
  //! With `gather_hidden`, the kept rows of `hidden` are written to `kept_hidden` ([B, n, hidden]).
  Status select(const MethodConfig& method, const T* queries, int64_t query_rows, const Cache& cache,
                const std::vector<int64_t>& lengths, int64_t n, const std::vector<std::vector<int32_t>>& positions_host,
                bool gather_hidden, Picked* out) {
    const ModelConfig& config = decoder_.config;
    const int64_t batch = decoder_.batch, rows = score_rows(method.method, method.grouping, config.num_heads, config.num_kv_heads);
    const Stream stream = decoder_.stream;
    std::vector<int32_t> lengths32(lengths.begin(), lengths.end()), padded_positions(std::size_t(batch * n), 0);
    for (int64_t b = 0; b < batch; ++b)
      std::copy(positions_host[std::size_t(b)].begin(), positions_host[std::size_t(b)].end(),
                padded_positions.begin() + std::ptrdiff_t(b * n));
    PD_RETURN_IF_ERROR(lengths_.upload(lengths32, stream));
    PD_RETURN_IF_ERROR(positions_.upload(padded_positions, stream));
    PD_RETURN_IF_ERROR(selected_indices_.reserve(std::size_t(batch * rows * n) * sizeof(int32_t), stream));
    PD_RETURN_IF_ERROR(selected_positions_.reserve(std::size_t(batch * rows * n) * sizeof(int32_t), stream));
    PD_RETURN_IF_ERROR(selected_counts_.reserve(std::size_t(batch * rows) * sizeof(int32_t), stream));
    SelectArgs<T> args;
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
      args.hidden_in = make_view<const T>(decoder_.hidden.template as<const T>(), batch, n, config.hidden);
      args.hidden_out = make_view<T>(decoder_.kept_hidden.template as<T>(), batch, n, config.hidden);
    }
    PD_RETURN_IF_ERROR(decoder_.template run_checked<typename Backend::template Select<T>>(args));
    std::vector<int32_t> counts, indices, kept_positions;
    PD_RETURN_IF_ERROR(selected_counts_.download(std::size_t(batch * rows), &counts, stream));
    PD_RETURN_IF_ERROR(selected_indices_.download(std::size_t(batch * rows * n), &indices, stream));
    PD_RETURN_IF_ERROR(selected_positions_.download(std::size_t(batch * rows * n), &kept_positions, stream));
    out->indices.assign(std::size_t(batch), {});
    out->positions.assign(std::size_t(batch), {});
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t row = 0; row < rows; ++row) {
        const std::size_t base = std::size_t((b * rows + row) * n), count = std::size_t(counts[std::size_t(b * rows + row)]);
        out->indices[std::size_t(b)].emplace_back(indices.begin() + std::ptrdiff_t(base), indices.begin() + std::ptrdiff_t(base + count));
        out->positions[std::size_t(b)].emplace_back(kept_positions.begin() + std::ptrdiff_t(base),
                                                    kept_positions.begin() + std::ptrdiff_t(base + count));
      }
    return Status::ok();
  }

  //! Keeps, in `cache`, the tokens kept[b][row] (one row: every head; H_kv rows: per head), then
  //! shrinks the allocation to the longest request plus the decode reserve.
  Status compact(Cache* cache, const std::vector<std::vector<std::vector<int32_t>>>& kept) {
    const int64_t batch = decoder_.batch, rows = int64_t(kept[0].size());
    const Stream stream = decoder_.stream;
    int64_t longest = 0;
    for (const auto& request_rows : kept) longest = std::max<int64_t>(longest, int64_t(request_rows[0].size()));
    const int64_t pitch = std::max<int64_t>(longest, 1);
    std::vector<int32_t> indices(std::size_t(batch * rows * pitch), 0), counts(std::size_t(batch * rows));
    std::vector<int32_t> lengths32(cache->lengths.begin(), cache->lengths.end());
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t row = 0; row < rows; ++row) {
        const std::vector<int32_t>& list = kept[std::size_t(b)][std::size_t(row)];
        std::copy(list.begin(), list.end(), indices.begin() + std::ptrdiff_t((b * rows + row) * pitch));
        counts[std::size_t(b * rows + row)] = int32_t(list.size());
      }
    PD_RETURN_IF_ERROR(compact_indices_.upload(indices, stream));
    PD_RETURN_IF_ERROR(compact_counts_.upload(counts, stream));
    PD_RETURN_IF_ERROR(lengths_.upload(lengths32, stream));
    PD_RETURN_IF_ERROR(new_lengths_.reserve(std::size_t(batch) * sizeof(int32_t), stream));
    CompactKvArgs<T> args;
    args.k = caches_.view(*cache, cache->keys);
    args.v = caches_.view(*cache, cache->values);
    args.seq_lens = lengths_.template as<const int32_t>();
    args.indices = make_view<const int32_t>(compact_indices_.template as<const int32_t>(), batch, rows, pitch);
    args.counts = make_view<const int32_t>(compact_counts_.template as<const int32_t>(), batch, rows);
    args.new_lengths = new_lengths_.template as<int32_t>();
    PD_RETURN_IF_ERROR(decoder_.template run_checked<typename Backend::template CompactKv<T>>(args));
    for (int64_t b = 0; b < batch; ++b) cache->lengths[std::size_t(b)] = int64_t(kept[std::size_t(b)][0].size());
    return caches_.resize(cache, longest + decoder_.options.decode_reserve);
  }

  Decoder<Backend, T>& decoder_;
  LayerCaches<Backend, T>& caches_;
  Buffer lengths_, positions_, selected_indices_, selected_counts_, selected_positions_, new_lengths_;
  Buffer compact_indices_, compact_counts_;
};

}  // namespace session
}  // namespace promptdistill
