// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the batch session: the decoder of a padded batch, composed only of one backend's
//! block operations (blocks.h) — the weights on the backend, the activations, one layer's forward
//! over [B, n] rows with its KV append, and the greedy next token.

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "promptdistill/batch_session.h"
#include "promptdistill/detail/block_checks.h"
#include "promptdistill/detail/numerics.h"
#include "promptdistill/detail/selector_checks.h"
#include "pipelines/batch_session/layer_caches.h"
#include "pipelines/batch_session/tensor_parallel.h"

namespace promptdistill {
namespace session {

template <class Backend, class T>
class Decoder {
 public:
  using Buffer = DeviceBuffer<Backend>;
  using Cache = LayerCache<Backend>;

  //! One decoder layer's weights on the backend, rounded to T.
  struct LayerWeightBuffers {
    Buffer attn_norm, wq, wk, wv, bq, bk, bv, wo, mlp_norm, gate, up, down;
  };

  //! `model_config` is what this rank runs: the whole model, or under tensor parallelism its heads
  //! and intermediate columns (`tensor_shard` says which).
  Decoder(const ModelConfig& model_config, const TensorShard& tensor_shard,
          const BatchSessionOptions& session_options, Stream session_stream, MemoryLedger* ledger,
          LayerCaches<Backend, T>* caches)
      : config(model_config),
        shard(tensor_shard),
        options(session_options),
        stream(session_stream),
        ledger_(ledger),
        caches_(caches) {
    for (Buffer* buffer : activation_buffers()) buffer->set_ledger(ledger);
    for (Buffer* buffer : {&embed_table_, &final_norm_, &lm_head_, &token_ids_, &rope_cos_,
                           &rope_sin_, &rope_cos_next_, &rope_sin_next_, &last_rows_,
                           &last_rows_f32_, &logits_, &q_lens_, &kv_lens_, &gather_indices_,
                           &gather_counts_, &sticky_status_, &expanded_keys_, &expanded_values_})
      buffer->set_ledger(ledger);
  }

  const ModelConfig config;
  const TensorShard shard;
  const BatchSessionOptions options;
  //! The session's stream; a decode step being recorded (CUDA graph capture) swaps in the
  //! capturing stream for the duration (decode_loop.h).
  Stream stream;

  // Activations of the padded batch, [B, n, ...] (sized for the largest n seen; see reserve_rows).
  Buffer hidden;             //!< [B, n, hidden]: the residual stream
  Buffer kept_hidden;        //!< [B, n, hidden]: the selection's gather of `hidden` (PromptDistill)
  Buffer normed;             //!< [B, n, hidden]: RMSNorm output
  Buffer queries;            //!< [B, n, H, D] post-RoPE
  Buffer new_keys;           //!< [B, n, H_kv, D] post-RoPE
  Buffer new_values;         //!< [B, n, H_kv, D]
  Buffer attention_out;      //!< [B, n, H, D]
  Buffer mlp_gate;           //!< [chunk, intermediate]
  Buffer mlp_up;             //!< [chunk, intermediate]
  Buffer selection_queries;  //!< [B, rows, H, D]: the queries a selection scores with
  Buffer workspace;          //!< the ops' caller-owned scratch (grown to the largest request)

  int64_t batch = 0;
  int64_t weight_bytes = 0;
  //! Host synchronisations (downloads and status reads) since the last `reset_status()`.
  int64_t host_syncs = 0;
  //! [B, vocab] f32: the logits the last greedy step chose from.
  std::vector<float> last_logits;

  //! The buffers a new prefill frees first (so that each prefill's peak is its own).
  std::vector<Buffer*> activation_buffers() {
    return {&hidden,        &kept_hidden, &normed, &queries,           &new_keys, &new_values,
            &attention_out, &mlp_gate,    &mlp_up, &selection_queries, &workspace};
  }

  // ---- weights ---------------------------------------------------------------------------------

  //! Uploads a checkpoint's weights, rounded to T (the LM head stays f32: logits decide greedy
  //! ties); `layers`, when given, replaces the checkpoint's layers (a tensor-parallel rank's
  //! slices).
  Status upload_weights(const ModelWeights& weights,
                        const std::vector<LayerWeights>* layers = nullptr) {
    const auto upload = [&](Buffer* buffer, const std::vector<float>* host, int64_t, float) {
      return upload_rounded(buffer, *host);
    };
    PD_RETURN_IF_ERROR(for_each_weight(&weights, upload, layers));
    PD_RETURN_IF_ERROR(lm_head_.upload(weights.output_matrix(), stream));
    weight_bytes += int64_t(lm_head_.bytes());
    return Status::ok();
  }

  //! Draws weights of the configuration's shape on the backend itself (detail/random_weights.h):
  //! element i of tensor t is a function of (seed, t, i) alone, so every backend draws the same
  //! bits and no host copy of the model exists. Norm weights are ones, biases zeros.
  Status draw_weights(uint64_t seed) {
    uint64_t tensor = 0;
    const std::vector<float> ones(std::size_t(config.hidden), 1.0f);
    const auto draw = [&](Buffer* buffer, const std::vector<float>*, int64_t n,
                          float scale) -> Status {
      const uint64_t tensor_seed = seed * 1000003u + tensor++;
      if (scale == kOnes) return upload_rounded(buffer, ones);
      const Status reserved =
          buffer->reserve(std::size_t(n) * sizeof(T), stream);  // zero-filled: the biases
      if (!reserved.is_ok()) return reserved;
      weight_bytes += int64_t(buffer->bytes());
      return scale == 0.0f
                 ? Status::ok()
                 : Backend::fill_random(buffer->template as<T>(), n, scale, tensor_seed, stream);
    };
    PD_RETURN_IF_ERROR(for_each_weight(nullptr, draw));
    // The f32 LM head: the embedding's draws when tied (as upload_weights copies the same table).
    const int64_t head = config.vocab * config.hidden;
    PD_RETURN_IF_ERROR(lm_head_.reserve(std::size_t(head) * sizeof(float), stream));
    weight_bytes += int64_t(lm_head_.bytes());
    const uint64_t head_seed =
        config.tied_embeddings ? seed * 1000003u + tensor - 2 : seed * 1000003u + tensor;
    const float head_scale = config.tied_embeddings ? 1.0f : 1.0f / std::sqrt(float(config.hidden));
    return Backend::fill_random(lm_head_.template as<float>(), head, head_scale, head_seed, stream);
  }

  // ---- running operations
  // ------------------------------------------------------------------------

  Workspace workspace_view() const { return Workspace{workspace.data(), workspace.bytes()}; }

  //! Runs an operation with the shared workspace. An op with scratch starts its workspace with a
  //! status word (device-side validation); its error, if any, is kept in the sticky status word
  //! without a host synchronisation, and `read_status()` reports the first one.
  template <class Op, class Args>
  Status run(const Args& args) {
    PD_RETURN_IF_ERROR(Op::can_implement(args));
    const std::size_t bytes = Op::workspace_size(args);
    PD_RETURN_IF_ERROR(workspace.reserve(bytes, stream));
    PD_RETURN_IF_ERROR(Op::run(args, workspace_view(), stream));
    if (bytes == 0)
      return Status::ok();  // no status word (the workspace may hold another op's scratch)
    PD_RETURN_IF_ERROR(Backend::accumulate_status(workspace_view(), sticky_status_.data(), stream));
    if (!options.check_every_op) return Status::ok();
    ++host_syncs;
    return Backend::device_status(workspace_view(), stream);
  }

  //! Sums `count` elements of `buffer` over the tensor-parallel ranks, in place (nothing with one
  //! rank).
  template <class U>
  Status all_reduce(U* data, int64_t count) {
    if (!shard.parallel()) return Status::ok();
    return options.all_reduce(data, count, dtype_of<U>::value, stream);
  }

  //! Clears the sticky status word and the sync counter (every prefill's start).
  Status reset_status() {
    host_syncs = 0;
    PD_RETURN_IF_ERROR(
        sticky_status_.reserve(sizeof(promptdistill::detail::DeviceStatusWord), stream));
    return Backend::fill_zero(sticky_status_.data(), sticky_status_.bytes(), stream);
  }
  //! The first device-side validation error since `reset_status()` (a host synchronisation).
  Status read_status() {
    std::vector<promptdistill::detail::DeviceStatusWord> word;
    PD_RETURN_IF_ERROR(sticky_status_.download(1, &word, stream, &host_syncs));
    return promptdistill::detail::status_from_word(word[0]);
  }

  //! The first `count` elements of `buffer` on the host (a counted host synchronisation).
  template <class U>
  Status download(const Buffer& buffer, std::size_t count, std::vector<U>* host) {
    return buffer.download(count, host, stream, &host_syncs);
  }

  // ---- activations and inputs
  // --------------------------------------------------------------------

  //! Sizes the activations for B x n padded rows.
  Status reserve_rows(int64_t n) {
    const std::size_t rows = std::size_t(batch * n), element = sizeof(T);
    const std::size_t chunk = std::size_t(std::min<int64_t>(int64_t(rows), options.mlp_chunk_rows));
    const std::size_t q_width = std::size_t(config.num_heads * config.head_dim);
    const std::size_t kv_width = std::size_t(config.num_kv_heads * config.head_dim);
    PD_RETURN_IF_ERROR(hidden.reserve(rows * std::size_t(config.hidden) * element, stream));
    PD_RETURN_IF_ERROR(kept_hidden.reserve(rows * std::size_t(config.hidden) * element, stream));
    PD_RETURN_IF_ERROR(normed.reserve(rows * std::size_t(config.hidden) * element, stream));
    PD_RETURN_IF_ERROR(queries.reserve(rows * q_width * element, stream));
    PD_RETURN_IF_ERROR(attention_out.reserve(rows * q_width * element, stream));
    PD_RETURN_IF_ERROR(new_keys.reserve(rows * kv_width * element, stream));
    PD_RETURN_IF_ERROR(new_values.reserve(rows * kv_width * element, stream));
    PD_RETURN_IF_ERROR(
        mlp_gate.reserve(chunk * std::size_t(config.intermediate) * element, stream));
    return mlp_up.reserve(chunk * std::size_t(config.intermediate) * element, stream);
  }

  //! cos/sin of every padded row: request b's rows take positions[b] (rows past them position 0).
  Status upload_rope(const std::vector<std::vector<int32_t>>& positions, int64_t n,
                     const std::vector<int64_t>& total_lengths) {
    const std::size_t half = std::size_t(config.head_dim / 2);
    std::vector<float> cos_rows(std::size_t(batch * n) * half), sin_rows(cos_rows.size());
    PD_RETURN_IF_ERROR(rope_rows(positions, n, total_lengths, cos_rows.data(), sin_rows.data()));
    PD_RETURN_IF_ERROR(rope_cos_.upload(cos_rows, stream));
    return rope_sin_.upload(sin_rows, stream);
  }
  //! The same tables on the host, [B * n, D/2] each, into `cos_rows` and `sin_rows`.
  Status rope_rows(const std::vector<std::vector<int32_t>>& positions, int64_t n,
                   const std::vector<int64_t>& total_lengths, float* cos_rows,
                   float* sin_rows) const {
    const std::size_t half = std::size_t(config.head_dim / 2);
    std::fill(cos_rows, cos_rows + std::size_t(batch * n) * half, 1.0f);
    std::fill(sin_rows, sin_rows + std::size_t(batch * n) * half, 0.0f);
    std::vector<float> request_cos, request_sin;
    for (int64_t b = 0; b < batch; ++b) {
      const std::vector<int32_t>& request_positions = positions[std::size_t(b)];
      PD_RETURN_IF_ERROR(rope_tables(config, request_positions.data(),
                                     int64_t(request_positions.size()),
                                     total_lengths[std::size_t(b)], &request_cos, &request_sin));
      std::copy(request_cos.begin(), request_cos.end(), cos_rows + std::size_t(b * n) * half);
      std::copy(request_sin.begin(), request_sin.end(), sin_rows + std::size_t(b * n) * half);
    }
    return Status::ok();
  }

  //! Embeds request b's ids into rows [b * n, b * n + ids[b].size()) of `hidden`.
  Status embed_ids(const std::vector<std::vector<int32_t>>& ids, int64_t n) {
    std::vector<int32_t> padded(std::size_t(batch * n), 0);
    for (int64_t b = 0; b < batch; ++b)
      std::copy(ids[std::size_t(b)].begin(), ids[std::size_t(b)].end(),
                padded.begin() + std::ptrdiff_t(b * n));
    PD_RETURN_IF_ERROR(token_ids_.upload(padded, stream));
    return embed_device_ids(token_ids_.template as<const int32_t>(), n);
  }
  //! Embeds the padded ids [B, n] that are already on the backend (e.g. gathered by a selection).
  Status embed_device_ids(const int32_t* ids, int64_t n) {
    EmbedArgs<T> embed;
    embed.table =
        make_view<const T>(embed_table_.template as<const T>(), config.vocab, config.hidden);
    embed.ids = make_view<const int32_t>(ids, batch * n);
    embed.out = make_view<T>(hidden.template as<T>(), batch * n, config.hidden);
    return run<typename Backend::template Embed<T>>(embed);
  }
  //! The padded prompt ids [B, n] of the last `embed_ids`.
  const int32_t* token_ids() const { return token_ids_.template as<const int32_t>(); }

  //! After a selection: the RoPE rows of the kept tokens, gathered on the backend from the
  //! current [B, n] tables with the selection's indices (the same values the host would compute
  //! for their positions), packed at pitch n_kept.
  Status gather_rope(TensorView<const int32_t, 3> indices, TensorView<const int32_t, 2> counts,
                     int64_t n, int64_t n_kept) {
    const int64_t half = config.head_dim / 2;
    for (auto [current, next] : {std::pair<Buffer*, Buffer*>{&rope_cos_, &rope_cos_next_},
                                 {&rope_sin_, &rope_sin_next_}}) {
      PD_RETURN_IF_ERROR(next->reserve(std::size_t(batch * n_kept * half) * sizeof(float), stream));
      GatherArgs<float> gather;
      gather.src = make_view<const float>(current->template as<const float>(), batch, n, half);
      gather.indices = indices;
      gather.counts = counts;
      gather.dst = make_view<float>(next->template as<float>(), batch, n_kept, half);
      PD_RETURN_IF_ERROR(run<typename Backend::template Gather<float>>(gather));
      std::swap(*current, *next);
    }
    return Status::ok();
  }

  // ---- one layer
  // ----------------------------------------------------------------------------------

  //! Layer l over the B x n padded rows of `hidden`; request b has new_rows[b] new tokens,
  //! appended to `cache` after its current lengths. The RoPE tables must be uploaded.
  Status layer(int64_t l, int64_t n, Cache* cache, const std::vector<int64_t>& new_rows) {
    std::vector<int32_t> q_lens, kv_lens;
    PD_RETURN_IF_ERROR(grow_for(cache, new_rows, &q_lens, &kv_lens));
    // Consecutive layers usually share their lengths (a prefill stage; a decode step over equally
    // long caches): upload only when they change.
    if (q_lens != uploaded_q_lens_ || !q_lens_) PD_RETURN_IF_ERROR(q_lens_.upload(q_lens, stream));
    if (kv_lens != uploaded_kv_lens_ || !kv_lens_)
      PD_RETURN_IF_ERROR(kv_lens_.upload(kv_lens, stream));
    uploaded_q_lens_ = q_lens;
    uploaded_kv_lens_ = kv_lens;
    PD_RETURN_IF_ERROR(layer_ops(
        l, n, cache, q_lens_.template as<const int32_t>(), kv_lens_.template as<const int32_t>(),
        rope_cos_.template as<const float>(), rope_sin_.template as<const float>()));
    for (int64_t b = 0; b < batch; ++b) cache->lengths[std::size_t(b)] = kv_lens[std::size_t(b)];
    return Status::ok();
  }

  //! The new and total lengths of every request of `cache` after new_rows[b] more tokens, and
  //! the cache grown (re-allocated) to hold them.
  Status grow_for(Cache* cache, const std::vector<int64_t>& new_rows, std::vector<int32_t>* q_lens,
                  std::vector<int32_t>* kv_lens) {
    int64_t longest = 0;
    q_lens->assign(std::size_t(batch), 0);
    kv_lens->assign(std::size_t(batch), 0);
    for (int64_t b = 0; b < batch; ++b) {
      (*q_lens)[std::size_t(b)] = int32_t(new_rows[std::size_t(b)]);
      (*kv_lens)[std::size_t(b)] =
          int32_t(cache->lengths[std::size_t(b)] + new_rows[std::size_t(b)]);
      longest = std::max<int64_t>(longest, (*kv_lens)[std::size_t(b)]);
    }
    if (longest > cache->capacity)
      PD_RETURN_IF_ERROR(
          caches_->resize(cache, std::max(longest + options.decode_reserve, 2 * cache->capacity)));
    return Status::ok();
  }

  //! Layer l's operations alone, with the lengths ([B] each) and RoPE rows ([B * n, D/2]) already
  //! on the backend: no host work, so a decode step can record it. `cache` must hold kv_lens.
  Status layer_ops(int64_t l, int64_t n, Cache* cache, const int32_t* q_lens,
                   const int32_t* kv_lens, const float* rope_cos, const float* rope_sin) {
    const LayerWeightBuffers& weights = layer_weights_[std::size_t(l)];
    const int64_t rows = batch * n, width = config.hidden, head_dim = config.head_dim;
    const int64_t q_width = config.num_heads * head_dim, kv_width = config.num_kv_heads * head_dim;
    RmsNormArgs<T> norm;
    norm.x = make_view<const T>(hidden.template as<const T>(), rows, width);
    norm.weight = make_view<const T>(weights.attn_norm.template as<const T>(), width);
    norm.eps = float(config.rms_eps);
    norm.out = make_view<T>(normed.template as<T>(), rows, width);
    PD_RETURN_IF_ERROR(run<typename Backend::template RmsNorm<T>>(norm));
    PD_RETURN_IF_ERROR(linear(normed.template as<const T>(), rows, width, weights.wq, q_width,
                              weights.bq, queries.template as<T>(), false));
    PD_RETURN_IF_ERROR(linear(normed.template as<const T>(), rows, width, weights.wk, kv_width,
                              weights.bk, new_keys.template as<T>(), false));
    PD_RETURN_IF_ERROR(linear(normed.template as<const T>(), rows, width, weights.wv, kv_width,
                              weights.bv, new_values.template as<T>(), false));
    for (auto [buffer, heads] : {std::pair<Buffer*, int64_t>{&queries, config.num_heads},
                                 {&new_keys, config.num_kv_heads}}) {
      RopeArgs<T> rope;
      rope.x = make_view<T>(buffer->template as<T>(), rows, heads, head_dim);
      rope.cos = make_view<const float>(rope_cos, rows, head_dim / 2);
      rope.sin = make_view<const float>(rope_sin, rows, head_dim / 2);
      PD_RETURN_IF_ERROR(run<typename Backend::template Rope<T>>(rope));
    }
    // A GQA-expanded cache (SnapKV/H2O per query head) takes the new rows expanded the same way.
    const T* append_keys = new_keys.template as<const T>();
    const T* append_values = new_values.template as<const T>();
    if (cache->heads != config.num_kv_heads) {
      const std::size_t expanded = std::size_t(rows * cache->heads * head_dim) * sizeof(T);
      PD_RETURN_IF_ERROR(expanded_keys_.reserve(expanded, stream));
      PD_RETURN_IF_ERROR(expanded_values_.reserve(expanded, stream));
      PD_RETURN_IF_ERROR(
          expand_heads(new_keys.template as<const T>(), expanded_keys_.template as<T>(), n));
      PD_RETURN_IF_ERROR(
          expand_heads(new_values.template as<const T>(), expanded_values_.template as<T>(), n));
      append_keys = expanded_keys_.template as<const T>();
      append_values = expanded_values_.template as<const T>();
    }
    AppendKvArgs<T> append;
    append.k_new = make_view<const T>(append_keys, batch, n, cache->heads, head_dim);
    append.v_new = make_view<const T>(append_values, batch, n, cache->heads, head_dim);
    append.k = caches_->view(*cache, cache->keys);
    append.v = caches_->view(*cache, cache->values);
    append.q_lens = q_lens;
    append.kv_lens = kv_lens;
    PD_RETURN_IF_ERROR(run<typename Backend::template AppendKv<T>>(append));
    AttentionArgs<T> attention;
    attention.algo = options.attention;
    attention.q =
        make_view<const T>(queries.template as<const T>(), batch, n, config.num_heads, head_dim);
    attention.k = caches_->view(*cache, cache->keys);
    attention.v = caches_->view(*cache, cache->values);
    attention.q_lens = q_lens;
    attention.kv_lens = kv_lens;
    attention.max_kv_len = cache->capacity;
    attention.out =
        make_view<T>(attention_out.template as<T>(), batch, n, config.num_heads, head_dim);
    PD_RETURN_IF_ERROR(run<typename Backend::template Attention<T>>(attention));
    // Under tensor parallelism the output and down projections give each rank's partial sums over
    // its heads / intermediate columns: rank 0 adds them to the residual stream, the others write
    // theirs over it (its input is already normalised), and the all-reduce sums them.
    const bool add_residual = shard.rank == 0;
    PD_RETURN_IF_ERROR(linear(attention_out.template as<const T>(), rows, q_width, weights.wo,
                              width, Buffer{}, hidden.template as<T>(), add_residual));
    PD_RETURN_IF_ERROR(all_reduce(hidden.template as<T>(), rows * width));

    norm.weight = make_view<const T>(weights.mlp_norm.template as<const T>(), width);
    PD_RETURN_IF_ERROR(run<typename Backend::template RmsNorm<T>>(norm));
    for (int64_t first_row = 0; first_row < rows; first_row += options.mlp_chunk_rows) {
      const int64_t chunk = std::min(options.mlp_chunk_rows, rows - first_row);
      const T* chunk_in = normed.template as<const T>() + first_row * width;
      PD_RETURN_IF_ERROR(linear(chunk_in, chunk, width, weights.gate, config.intermediate, Buffer{},
                                mlp_gate.template as<T>(), false));
      PD_RETURN_IF_ERROR(linear(chunk_in, chunk, width, weights.up, config.intermediate, Buffer{},
                                mlp_up.template as<T>(), false));
      SwiGluArgs<T> activation;
      activation.gate =
          make_view<const T>(mlp_gate.template as<const T>(), chunk, config.intermediate);
      activation.up = make_view<const T>(mlp_up.template as<const T>(), chunk, config.intermediate);
      activation.out = make_view<T>(mlp_gate.template as<T>(), chunk, config.intermediate);
      PD_RETURN_IF_ERROR(run<typename Backend::template SwiGlu<T>>(activation));
      PD_RETURN_IF_ERROR(linear(mlp_gate.template as<const T>(), chunk, config.intermediate,
                                weights.down, width, Buffer{},
                                hidden.template as<T>() + first_row * width, add_residual));
    }
    return all_reduce(hidden.template as<T>(), rows * width);
  }

  // ---- rows and tokens
  // ------------------------------------------------------------------------------

  //! dst[b, t, h] = src[b, t, h / G] for t < tokens: K or V rows of H_kv heads GQA-expanded to the
  //! H heads of a per-query-head cache. src and dst are [B, tokens, heads, D] with a request pitch
  //! of `tokens` tokens. Row r = (b, t, KV head) of src is rows r G .. r G + G - 1 of dst, so query
  //! head g of every group is one pitched copy of all of src: G copies on the stream, no index
  //! table (nothing uploaded, no host synchronisation), capturable.
  Status expand_heads(const T* src, T* dst, int64_t tokens) {
    const int64_t group = config.num_heads / config.num_kv_heads;
    const std::size_t row_bytes = std::size_t(config.head_dim) * sizeof(T);
    const std::size_t rows = std::size_t(batch * tokens * config.num_kv_heads);
    for (int64_t g = 0; g < group; ++g)
      PD_RETURN_IF_ERROR(Backend::copy_rows(dst + g * config.head_dim,
                                            std::size_t(group) * row_bytes, src, row_bytes,
                                            row_bytes, rows, stream));
    return Status::ok();
  }

  //! Copies rows rows[b] (the same count for every request) of src [B, n, width] into
  //! dst [B, count, width].
  Status gather_rows(const T* src, int64_t n, int64_t width,
                     const std::vector<std::vector<int32_t>>& rows, T* dst) {
    const int64_t count = int64_t(rows[0].size());
    std::vector<int32_t> indices,
        counts(static_cast<std::size_t>(batch), static_cast<int32_t>(count));
    for (const std::vector<int32_t>& request_rows : rows)
      indices.insert(indices.end(), request_rows.begin(), request_rows.end());
    PD_RETURN_IF_ERROR(gather_indices_.upload(indices, stream));
    PD_RETURN_IF_ERROR(gather_counts_.upload(counts, stream));
    GatherArgs<T> gather;
    gather.src = make_view<const T>(src, batch, n, width);
    gather.indices =
        make_view<const int32_t>(gather_indices_.template as<const int32_t>(), batch, 1, count);
    gather.counts = make_view<const int32_t>(gather_counts_.template as<const int32_t>(), batch, 1);
    gather.dst = make_view<T>(dst, batch, count, width);
    // The session built these indices itself (last rows, SnapKV windows): no status read, no sync.
    return run<typename Backend::template Gather<T>>(gather);
  }

  //! Greedy next token of every request from row last_row[b] of `hidden` ([B, n, hidden]), with
  //! the logits brought to the host (last_logits): the prefill's first tokens.
  Status next_tokens(int64_t n, const std::vector<int64_t>& last_row, std::vector<int32_t>* out) {
    std::vector<std::vector<int32_t>> rows;
    for (int64_t row : last_row) rows.push_back({int32_t(row)});
    PD_RETURN_IF_ERROR(reserve_greedy());
    PD_RETURN_IF_ERROR(gather_rows(hidden.template as<const T>(), n, config.hidden, rows,
                                   normed.template as<T>()));
    PD_RETURN_IF_ERROR(logits_ops(normed.template as<const T>()));
    PD_RETURN_IF_ERROR(download(logits_, std::size_t(batch * config.vocab), &last_logits));
    out->assign(std::size_t(batch), 0);
    for (int64_t b = 0; b < batch; ++b) {
      // ArgMax's order (the first maximum, the first NaN), as greedy_ops takes it on the backend.
      const float* row = last_logits.data() + b * config.vocab;
      int32_t best = 0;
      for (int64_t v = 1; v < config.vocab; ++v)
        if (promptdistill::detail::argmax_ranks_before(row[v], v, row[best], best))
          best = int32_t(v);
      (*out)[std::size_t(b)] = best;
    }
    return Status::ok();
  }

  //! The buffers of the final norm, the LM head and the logits, for a batch of `batch` rows.
  Status reserve_greedy() {
    PD_RETURN_IF_ERROR(last_rows_.reserve(std::size_t(batch * config.hidden) * sizeof(T), stream));
    PD_RETURN_IF_ERROR(
        last_rows_f32_.reserve(std::size_t(batch * config.hidden) * sizeof(float), stream));
    return logits_.reserve(std::size_t(batch * config.vocab) * sizeof(float), stream);
  }

  //! A decode step's greedy tokens (n = 1: request b's row is row b of `hidden`) into `ids` [B]
  //! on the backend: the final norm, the LM head and ArgMax, no host work (recordable). The
  //! logits stay on the backend. reserve_greedy() first.
  Status greedy_ops(int32_t* ids) {
    PD_RETURN_IF_ERROR(logits_ops(hidden.template as<const T>()));
    ArgMaxArgs<float> argmax;
    argmax.x = make_view<const float>(logits_.template as<const float>(), batch, config.vocab);
    argmax.out = make_view<int32_t>(ids, batch);
    return run<typename Backend::template ArgMax<float>>(argmax);
  }

 private:
  //! logits_ [B, vocab] = LM head (final norm (rows [B, hidden])), in f32.
  Status logits_ops(const T* rows) {
    RmsNormArgs<T> norm;
    norm.x = make_view<const T>(rows, batch, config.hidden);
    norm.weight = make_view<const T>(final_norm_.template as<const T>(), config.hidden);
    norm.eps = float(config.rms_eps);
    norm.out = make_view<T>(last_rows_.template as<T>(), batch, config.hidden);
    PD_RETURN_IF_ERROR(run<typename Backend::template RmsNorm<T>>(norm));
    PD_RETURN_IF_ERROR(Backend::template to_f32<T>(last_rows_.template as<const T>(),
                                                   last_rows_f32_.template as<float>(),
                                                   batch * config.hidden, stream));
    return linear_with<float>(lm_head_plans_, last_rows_f32_.template as<const float>(), batch,
                              config.hidden, lm_head_.template as<const float>(), config.vocab,
                              nullptr, logits_.template as<float>(), false);
  }

  using PlanKey = std::tuple<int64_t, int64_t, int64_t, bool, bool,
                             int64_t>;  // rows, in, out, bias, residual, x stride
  template <class U>
  using PlanCache = std::map<PlanKey, std::unique_ptr<typename Backend::template LinearPlan<U>>>;

  //! A `scale` that means "ones" (norm weights) to for_each_weight's loader.
  static constexpr float kOnes = -1.0f;

  //! Every weight of the model, in one fixed order: load(buffer, host tensor or null, elements,
  //! random scale). Without a host tensor the scale says what to draw: > 0 random with that
  //! scale (keeping activations O(1)), 0 zeros (biases), kOnes ones (norm weights).
  template <class Load>
  Status for_each_weight(const ModelWeights* host, Load&& load,
                         const std::vector<LayerWeights>* host_layers = nullptr) {
    const int64_t width = config.hidden, q_width = config.num_heads * config.head_dim;
    const int64_t kv_width = config.num_kv_heads * config.head_dim, inner = config.intermediate;
    const float in_scale = 1.0f / std::sqrt(float(width));
    layer_weights_.resize(std::size_t(config.num_layers));
    for (int64_t l = 0; l < config.num_layers; ++l) {
      const LayerWeights* src =
          host ? &(host_layers ? *host_layers : host->layers)[std::size_t(l)] : nullptr;
      LayerWeightBuffers& dst = layer_weights_[std::size_t(l)];
      for (Buffer* buffer : {&dst.attn_norm, &dst.wq, &dst.wk, &dst.wv, &dst.bq, &dst.bk, &dst.bv,
                             &dst.wo, &dst.mlp_norm, &dst.gate, &dst.up, &dst.down})
        buffer->set_ledger(ledger_);
      PD_RETURN_IF_ERROR(load(&dst.attn_norm, src ? &src->attn_norm : nullptr, width, kOnes));
      PD_RETURN_IF_ERROR(load(&dst.wq, src ? &src->wq : nullptr, q_width * width, in_scale));
      PD_RETURN_IF_ERROR(load(&dst.wk, src ? &src->wk : nullptr, kv_width * width, in_scale));
      PD_RETURN_IF_ERROR(load(&dst.wv, src ? &src->wv : nullptr, kv_width * width, in_scale));
      if (src ? !src->bq.empty() : config.qkv_bias) {
        PD_RETURN_IF_ERROR(load(&dst.bq, src ? &src->bq : nullptr, q_width, 0.0f));
        PD_RETURN_IF_ERROR(load(&dst.bk, src ? &src->bk : nullptr, kv_width, 0.0f));
        PD_RETURN_IF_ERROR(load(&dst.bv, src ? &src->bv : nullptr, kv_width, 0.0f));
      }
      PD_RETURN_IF_ERROR(load(&dst.wo, src ? &src->wo : nullptr, width * q_width,
                              0.5f / std::sqrt(float(q_width))));
      PD_RETURN_IF_ERROR(load(&dst.mlp_norm, src ? &src->mlp_norm : nullptr, width, kOnes));
      PD_RETURN_IF_ERROR(load(&dst.gate, src ? &src->w_gate : nullptr, inner * width, in_scale));
      PD_RETURN_IF_ERROR(load(&dst.up, src ? &src->w_up : nullptr, inner * width, in_scale));
      PD_RETURN_IF_ERROR(load(&dst.down, src ? &src->w_down : nullptr, width * inner,
                              0.5f / std::sqrt(float(inner))));
    }
    PD_RETURN_IF_ERROR(
        load(&embed_table_, host ? &host->embed : nullptr, config.vocab * width, 1.0f));
    return load(&final_norm_, host ? &host->final_norm : nullptr, width, kOnes);
  }

  Status upload_rounded(Buffer* buffer, const std::vector<float>& src) {
    std::vector<T> host(src.size());
    for (std::size_t i = 0; i < src.size(); ++i) host[i] = num::from_f32<T>(src[i]);
    PD_RETURN_IF_ERROR(buffer->upload(host, stream));
    weight_bytes += int64_t(buffer->bytes());
    return Status::ok();
  }

  //! y = x W^T (+ bias) (+ y) through a LinearPlan made once per shape.
  template <class U>
  Status linear_with(PlanCache<U>& plans, const U* x, int64_t rows, int64_t in, const U* weight,
                     int64_t out, const U* bias, U* y, bool residual) {
    if (rows == 0) return Status::ok();
    const PlanKey key{rows, in, out, bias != nullptr, residual, in};
    auto it = plans.find(key);
    if (it == plans.end()) {
      auto plan = std::make_unique<typename Backend::template LinearPlan<U>>();
      LinearShape shape;
      shape.rows = rows;
      shape.in = in;
      shape.out = out;
      shape.bias = bias != nullptr;
      shape.residual = residual;
      PD_RETURN_IF_ERROR(Backend::template LinearPlan<U>::create(shape, plan.get()));
      it = plans.emplace(key, std::move(plan)).first;
    }
    LinearArgs<U> args;
    args.x = make_view<const U>(x, rows, in);
    args.w = make_view<const U>(weight, out, in);
    if (bias) args.bias = make_view<const U>(bias, out);
    if (residual) args.residual = make_view<const U>(y, rows, out);
    args.y = make_view<U>(y, rows, out);
    PD_RETURN_IF_ERROR(workspace.reserve(it->second->workspace_size(), stream));
    return it->second->run(args, workspace_view(), stream);
  }
  Status linear(const T* x, int64_t rows, int64_t in, const Buffer& weight, int64_t out,
                const Buffer& bias, T* y, bool residual) {
    return linear_with<T>(plans_, x, rows, in, weight.template as<const T>(), out,
                          bias ? bias.template as<const T>() : nullptr, y, residual);
  }

  MemoryLedger* ledger_;
  LayerCaches<Backend, T>* caches_;
  std::vector<LayerWeightBuffers> layer_weights_;
  Buffer embed_table_, final_norm_, lm_head_;
  Buffer token_ids_, rope_cos_, rope_sin_, rope_cos_next_, rope_sin_next_, last_rows_,
      last_rows_f32_, logits_;
  Buffer q_lens_, kv_lens_, gather_indices_, gather_counts_, sticky_status_;
  Buffer expanded_keys_, expanded_values_;
  PlanCache<T> plans_;
  PlanCache<float> lm_head_plans_;
  std::vector<int32_t> uploaded_q_lens_,
      uploaded_kv_lens_;  //!< what q_lens_ / kv_lens_ hold on the backend
};

}  // namespace session
}  // namespace promptdistill
