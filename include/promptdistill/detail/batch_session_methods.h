// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! The pipelines of BatchSession::Impl and BatchSession's public members; included by
//! batch_session_impl.h (split only to keep each file readable).

#include <cmath>

#include "promptdistill/detail/batch_session_impl.h"

namespace promptdistill {

// ---- pipelines ---------------------------------------------------------------------------------------

//! A full prefill of `prompts` (positions 0..L_b-1) through every layer; optional SnapKV/H2O
//! compression after each layer. Returns the first tokens.
template <class Backend, class T>
Status BatchSession<Backend, T>::Impl::full_prefill(const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig* compress_cfg,
                                                    std::vector<PrefillResult>* res, std::vector<int32_t>* first) {
  const std::vector<int64_t> L = sizes_of(prompts);
  const int64_t n = max_of(L);
  std::vector<std::vector<int32_t>> pos;
  PD_RETURN_IF_ERROR(start_prompts(prompts, &pos));
  MethodConfig m;
  int64_t q_rows = 0;
  // SnapKV/H2O compress a request only when L >= C (shorter ones keep everything, which is
  // also what the selection returns for them).
  if (compress_cfg && max_of(L) < compress_cfg->capacity) compress_cfg = nullptr;
  if (compress_cfg) {
    const bool snap = compress_cfg->method == PipelineMethod::kSnapKV;
    m.method = snap ? Method::kSnapKV : Method::kH2O;
    m.budget = compress_cfg->capacity;
    m.window = compress_cfg->window;
    m.pool = compress_cfg->pool;
    m.pool_kernel = compress_cfg->pool_kernel;
    m.grouping = compress_cfg->grouping;
    q_rows = snap ? m.window : n;
    PD_RETURN_IF_ERROR(ensure(&qsel, std::size_t(B() * q_rows * H() * D()) * sizeof(T)));
  }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    PD_RETURN_IF_ERROR(layer(l, n, &caches[std::size_t(l)], L));
    account_kv();
    if (!compress_cfg) continue;
    const T* qv = as<const T>(q);
    if (m.method == Method::kSnapKV) {  // the last W queries of every request (rows before 0 are ignored)
      std::vector<std::vector<int32_t>> rows(static_cast<std::size_t>(B()));
      for (int64_t b = 0; b < B(); ++b)
        for (int64_t i = 0; i < q_rows; ++i) rows[std::size_t(b)].push_back(int32_t(std::max<int64_t>(L[std::size_t(b)] - q_rows + i, 0)));
      PD_RETURN_IF_ERROR(gather_rows(as<const T>(q), n, H() * D(), rows, as<T>(qsel)));
      qv = as<const T>(qsel);
    }
    Picked p;
    PD_RETURN_IF_ERROR(select(m, qv, q_rows, caches[std::size_t(l)], L, n, pos, false, &p));
    PD_RETURN_IF_ERROR(compact(&caches[std::size_t(l)], p.idx));
    for (int64_t b = 0; b < B(); ++b) {
      if (L[std::size_t(b)] < compress_cfg->capacity) continue;
      (*res)[std::size_t(b)].retained.push_back(int64_t(p.idx[std::size_t(b)][0].size()));
      (*res)[std::size_t(b)].selected.push_back(p.idx[std::size_t(b)][0]);
    }
  }
  std::vector<int64_t> last_row;
  for (int64_t l : L) last_row.push_back(l - 1);
  return next_tokens(n, last_row, first);
}

template <class Backend, class T>
Status BatchSession<Backend, T>::Impl::promptdistill(const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig& cfg,
                                                     std::vector<PrefillResult>* res, std::vector<int32_t>* first) {
  const std::vector<int64_t> L = sizes_of(prompts);
  std::vector<int64_t> cur = L;
  int64_t n = max_of(L);
  std::vector<std::vector<int32_t>> pos;
  PD_RETURN_IF_ERROR(start_prompts(prompts, &pos));
  PD_RETURN_IF_ERROR(ensure(&qsel, std::size_t(B() * H() * D()) * sizeof(T)));
  std::vector<std::vector<std::vector<std::vector<int32_t>>>> stage_maps;  // truncating stages (after-last-layer mode)
  std::size_t stage = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    PD_RETURN_IF_ERROR(layer(l, n, &caches[std::size_t(l)], cur));
    account_kv();
    if (!(stage < cfg.selection_layers.size() && l == cfg.selection_layers[stage])) continue;
    std::vector<std::vector<int32_t>> last_rows;
    for (int64_t v : cur) last_rows.push_back({int32_t(v - 1)});
    PD_RETURN_IF_ERROR(gather_rows(as<const T>(q), n, H() * D(), last_rows, as<T>(qsel)));
    MethodConfig m;
    m.method = Method::kPromptDistill;
    m.budget = cfg.n_topks[stage];
    Picked p;
    PD_RETURN_IF_ERROR(select(m, as<const T>(qsel), 1, caches[std::size_t(l)], cur, n, pos, true, &p));
    std::vector<int64_t> kept;
    for (int64_t b = 0; b < B(); ++b) {
      kept.push_back(int64_t(p.idx[std::size_t(b)][0].size()));
      pos[std::size_t(b)] = p.pos[std::size_t(b)][0];
      (*res)[std::size_t(b)].retained.push_back(kept.back());
      (*res)[std::size_t(b)].selected.push_back(pos[std::size_t(b)]);
    }
    const int64_t n_new = max_of(kept);
    // x2 holds the kept rows at pitch n; pack them at pitch n_new into x.
    const std::size_t row = std::size_t(c.hidden) * sizeof(T);
    PD_RETURN_IF_ERROR(Backend::copy_rows(x.p, std::size_t(n_new) * row, x2.p, std::size_t(n) * row, std::size_t(n_new) * row,
                                          std::size_t(B()), stream));
    const bool truncating = cfg.cache_truncation_end == -1 || int64_t(stage) < cfg.cache_truncation_end;
    if (truncating) {
      std::vector<std::vector<std::vector<int32_t>>> map;
      for (int64_t b = 0; b < B(); ++b) map.push_back({p.idx[std::size_t(b)][0]});
      if (cfg.truncate_after_last_layer) {
        stage_maps.push_back(map);
      } else {
        for (int64_t ll = 0; ll <= l; ++ll) PD_RETURN_IF_ERROR(compact(&caches[std::size_t(ll)], map));
      }
    }
    cur = kept;
    n = n_new;
    PD_RETURN_IF_ERROR(upload_rope(pos, n, L));
    ++stage;
  }
  // Reference order: compose each truncating stage's map with the later ones, after the last layer.
  for (std::size_t s = 0; s < stage_maps.size(); ++s) {
    auto map = stage_maps.back();
    for (std::size_t j = stage_maps.size() - 1; j-- > s;)
      for (int64_t b = 0; b < B(); ++b)
        for (auto& v : map[std::size_t(b)][0]) v = stage_maps[j][std::size_t(b)][0][std::size_t(v)];
    const int64_t lo = s == 0 ? 0 : cfg.selection_layers[s - 1] + 1;
    for (int64_t ll = lo; ll <= cfg.selection_layers[s]; ++ll) PD_RETURN_IF_ERROR(compact(&caches[std::size_t(ll)], map));
  }
  std::vector<int64_t> last_row;
  for (int64_t v : cur) last_row.push_back(v - 1);
  return next_tokens(n, last_row, first);
}

template <class Backend, class T>
Status BatchSession<Backend, T>::Impl::gemfilter(const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig& cfg, std::vector<PrefillResult>* res,
                                                 std::vector<int32_t>* first) {
  const std::vector<int64_t> L = sizes_of(prompts);
  const int64_t n = max_of(L), r = cfg.selection_layers[0];
  std::vector<std::vector<int32_t>> pos;
  PD_RETURN_IF_ERROR(start_prompts(prompts, &pos));
  PD_RETURN_IF_ERROR(resize_cache(&scratch_cache, n));
  for (int64_t l = 0; l <= r; ++l) {  // filter pass: the scratch cache is overwritten layer after layer
    std::fill(scratch_cache.len.begin(), scratch_cache.len.end(), 0);
    PD_RETURN_IF_ERROR(layer(l, n, &scratch_cache, L));
  }
  std::vector<std::vector<int32_t>> last_rows;
  for (int64_t v : L) last_rows.push_back({int32_t(v - 1)});
  PD_RETURN_IF_ERROR(ensure(&qsel, std::size_t(B() * H() * D()) * sizeof(T)));
  PD_RETURN_IF_ERROR(gather_rows(as<const T>(q), n, H() * D(), last_rows, as<T>(qsel)));
  MethodConfig m;
  m.method = Method::kGemFilter;
  m.budget = cfg.n_topks[0];
  Picked p;
  PD_RETURN_IF_ERROR(select(m, as<const T>(qsel), 1, scratch_cache, L, n, pos, false, &p));
  release(&scratch_cache.k);
  release(&scratch_cache.v);
  scratch_cache.capacity = 0;
  std::vector<std::vector<int32_t>> kept_ids;
  for (int64_t b = 0; b < B(); ++b) {
    const auto& idx = p.idx[std::size_t(b)][0];
    std::vector<int32_t> ids_b;
    for (int32_t i : idx) ids_b.push_back(prompts[std::size_t(b)][std::size_t(i)]);
    kept_ids.push_back(ids_b);
    (*res)[std::size_t(b)].retained.push_back(int64_t(idx.size()));
    (*res)[std::size_t(b)].selected.push_back(idx);
  }
  return full_prefill(kept_ids, nullptr, res, first);
}

// ---- BatchSession ------------------------------------------------------------------------------------

template <class Backend, class T>
BatchSession<Backend, T>::~BatchSession() {
  if (!impl_) return;
  Impl& m = *impl_;
  for (auto& L : m.layers)
    for (auto* b : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.bq, &L.bk, &L.bv, &L.wo, &L.mlp_norm, &L.gate, &L.up, &L.down})
      m.release(b);
  for (auto& cc : m.caches) {
    m.release(&cc.k);
    m.release(&cc.v);
  }
  for (auto* b : {&m.embed, &m.final_norm, &m.lm_head, &m.scratch_cache.k, &m.scratch_cache.v, &m.x, &m.x2, &m.h, &m.q, &m.kn,
                  &m.vn, &m.attn, &m.gate, &m.up, &m.cos, &m.sin, &m.ids, &m.qsel, &m.last, &m.last_f32, &m.logits, &m.lens,
                  &m.kv_lens, &m.q_lens, &m.positions, &m.sel_idx, &m.sel_counts, &m.sel_pos, &m.new_lens, &m.gather_idx,
                  &m.gather_counts, &m.workspace})
    m.release(b);
}

namespace detail {

//! Every weight of `config`'s model: load(buffer, host tensor or null, elements, random scale).
//! Without a host tensor, the scale says what to draw: > 0 random, 0 zeros (biases), kOnes ones
//! (norm weights).
constexpr float kOnes = -1.0f;
template <class Impl, class Load>
Status for_each_weight(Impl& m, const ModelConfig& c, const ModelWeights* host, Load&& load) {
  const int64_t H = c.hidden, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim, I = c.intermediate;
  const float in_scale = 1.0f / std::sqrt(float(H));
  m.layers.resize(std::size_t(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights* src = host ? &host->layers[std::size_t(l)] : nullptr;
    auto& dst = m.layers[std::size_t(l)];
    PD_RETURN_IF_ERROR(load(&dst.attn_norm, src ? &src->attn_norm : nullptr, H, kOnes));
    PD_RETURN_IF_ERROR(load(&dst.wq, src ? &src->wq : nullptr, qd * H, in_scale));
    PD_RETURN_IF_ERROR(load(&dst.wk, src ? &src->wk : nullptr, kvd * H, in_scale));
    PD_RETURN_IF_ERROR(load(&dst.wv, src ? &src->wv : nullptr, kvd * H, in_scale));
    if (src ? !src->bq.empty() : c.qkv_bias) {
      PD_RETURN_IF_ERROR(load(&dst.bq, src ? &src->bq : nullptr, qd, 0.0f));
      PD_RETURN_IF_ERROR(load(&dst.bk, src ? &src->bk : nullptr, kvd, 0.0f));
      PD_RETURN_IF_ERROR(load(&dst.bv, src ? &src->bv : nullptr, kvd, 0.0f));
    }
    PD_RETURN_IF_ERROR(load(&dst.wo, src ? &src->wo : nullptr, H * qd, 0.5f / std::sqrt(float(qd))));
    PD_RETURN_IF_ERROR(load(&dst.mlp_norm, src ? &src->mlp_norm : nullptr, H, kOnes));
    PD_RETURN_IF_ERROR(load(&dst.gate, src ? &src->w_gate : nullptr, I * H, in_scale));
    PD_RETURN_IF_ERROR(load(&dst.up, src ? &src->w_up : nullptr, I * H, in_scale));
    PD_RETURN_IF_ERROR(load(&dst.down, src ? &src->w_down : nullptr, H * I, 0.5f / std::sqrt(float(I))));
  }
  PD_RETURN_IF_ERROR(load(&m.embed, host ? &host->embed : nullptr, c.vocab * H, 1.0f));
  return load(&m.final_norm, host ? &host->final_norm : nullptr, H, kOnes);
}

}  // namespace detail

template <class Backend, class T>
Status BatchSession<Backend, T>::create(const ModelWeights* weights, const BatchSessionOptions& options, Stream stream,
                                        std::unique_ptr<BatchSession>* out) noexcept {
  return create_session(weights->config, weights, 0, options, stream, out);
}

template <class Backend, class T>
Status BatchSession<Backend, T>::create_random(const ModelConfig& config, uint64_t seed, const BatchSessionOptions& options,
                                               Stream stream, std::unique_ptr<BatchSession>* out) noexcept {
  return create_session(config, nullptr, seed, options, stream, out);
}

template <class Backend, class T>
Status BatchSession<Backend, T>::create_session(const ModelConfig& config, const ModelWeights* weights, uint64_t seed,
                                                const BatchSessionOptions& options, Stream stream,
                                                std::unique_ptr<BatchSession>* out) noexcept {
  try {
    PD_RETURN_IF_ERROR(config.validate());
    if (options.mlp_chunk_rows < 1 || options.decode_reserve < 0)
      return Status(StatusCode::kInvalidArgument, "session options: mlp_chunk_rows must be >= 1 and decode_reserve >= 0");
    std::unique_ptr<BatchSession> s(new BatchSession());
    s->impl_ = std::make_unique<Impl>();
    Impl& m = *s->impl_;
    m.owner = s.get();
    m.w = weights;
    m.c = config;
    m.opt = options;
    m.stream = stream;
    if (weights != nullptr) {
      const Status uploaded = detail::for_each_weight(m, config, weights, [&](typename Impl::Buf* b, const std::vector<float>* host,
                                                                              int64_t, float) { return m.upload_weights(b, *host); });
      PD_RETURN_IF_ERROR(uploaded);
      PD_RETURN_IF_ERROR(m.upload(&m.lm_head, weights->output_matrix()));  // f32: logits decide greedy ties
      s->weight_bytes_ += int64_t(m.lm_head.bytes);
      *out = std::move(s);
      return Status::ok();
    }
    uint64_t tensor = 0;
    const std::vector<float> ones(std::size_t(config.hidden), 1.0f);
    const Status drawn = detail::for_each_weight(m, config, nullptr, [&](typename Impl::Buf* b, const std::vector<float>*,
                                                                        int64_t n, float scale) -> Status {
      const uint64_t tensor_seed = seed * 1000003u + tensor++;
      if (scale == detail::kOnes) return m.upload_weights(b, ones);  // norm weights
      PD_RETURN_IF_ERROR(m.ensure(b, std::size_t(n) * sizeof(T)));   // zeroed: biases
      s->weight_bytes_ += int64_t(b->bytes);
      return scale == 0.0f ? Status::ok() : Backend::fill_random(Impl::template as<T>(*b), n, scale, tensor_seed, stream);
    });
    PD_RETURN_IF_ERROR(drawn);
    // The f32 LM head: the embedding's draws when tied (as create() uploads the same table twice).
    const int64_t head = config.vocab * config.hidden;
    PD_RETURN_IF_ERROR(m.ensure(&m.lm_head, std::size_t(head) * sizeof(float)));
    s->weight_bytes_ += int64_t(m.lm_head.bytes);
    const uint64_t head_seed = config.tied_embeddings ? seed * 1000003u + tensor - 2 : seed * 1000003u + tensor;
    const float head_scale = config.tied_embeddings ? 1.0f : 1.0f / std::sqrt(float(config.hidden));
    PD_RETURN_IF_ERROR(Backend::fill_random(Impl::template as<float>(m.lm_head), head, head_scale, head_seed, stream));
    *out = std::move(s);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "session: out of host memory");
  }
}

template <class Backend, class T>
Status BatchSession<Backend, T>::prefill(const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig& cfg,
                                         std::vector<PrefillResult>* out) noexcept {
  try {
    Impl& m = *impl_;
    if (prompts.empty()) return Status(StatusCode::kInvalidArgument, "prefill: the batch is empty");
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      Status s = cfg.validate(m.c, int64_t(prompts[b].size()));
      if (!s.is_ok()) return Status(s.code(), "request %zu: %s", b, s.message());
      for (int32_t id : prompts[b])
        if (id < 0 || id >= m.c.vocab)
          return Status(StatusCode::kInvalidArgument, "request %zu: token %d is outside the vocabulary [0, %lld)", b, id,
                        (long long)m.c.vocab);
    }
    if ((cfg.method == PipelineMethod::kSnapKV || cfg.method == PipelineMethod::kH2O) &&
        cfg.grouping == HeadGrouping::kPerQueryHead && m.c.num_heads != m.c.num_kv_heads)
      return Status(StatusCode::kUnsupported,
                    "the batch session compresses per KV group; per-query-head selection needs a GQA-expanded cache "
                    "(use ref::Session for that reference-fidelity mode)");
    batch_ = int64_t(prompts.size());
    {
      // Memory check before any work. The previous prefill's caches and activations are freed
      // first, so they count as available.
      const int64_t need = m.estimate_prefill_bytes(prompts, cfg);
      int64_t reusable = 0;
      for (const auto& cc : m.caches) reusable += int64_t(cc.k.bytes + cc.v.bytes);
      for (auto* b : {&m.x, &m.x2, &m.h, &m.q, &m.kn, &m.vn, &m.attn, &m.gate, &m.up, &m.qsel, &m.workspace})
        reusable += int64_t(b->bytes);
      const int64_t limit = m.opt.memory_limit_bytes > 0 ? m.opt.memory_limit_bytes : Backend::available_bytes() + reusable;
      if (need > limit)
        return Status(StatusCode::kOutOfMemory,
                      "prefill of %lld x %lld tokens needs about %.1f MiB for caches and activations, %.1f MiB are available",
                      (long long)batch_, (long long)m.max_of(m.sizes_of(prompts)), double(need) / 1048576.0,
                      double(limit) / 1048576.0);
    }
    for (auto* b : {&m.scratch_cache.k, &m.scratch_cache.v}) m.release(b);
    m.scratch_cache.capacity = 0;
    m.caches.resize(std::size_t(m.c.num_layers));
    m.new_caches();  // frees the previous prefill's caches
    // ... and its activations, so that each prefill's peak is its own.
    for (auto* b : {&m.x, &m.x2, &m.h, &m.q, &m.kn, &m.vn, &m.attn, &m.gate, &m.up, &m.qsel, &m.workspace}) m.release(b);
    peak_ = held_;
    std::vector<PrefillResult> res(prompts.size());
    std::vector<int32_t> first;
    const auto t0 = Impl::Clock::now();
    switch (cfg.method) {
      case PipelineMethod::kFull: PD_RETURN_IF_ERROR(m.full_prefill(prompts, nullptr, &res, &first)); break;
      case PipelineMethod::kPromptDistill: PD_RETURN_IF_ERROR(m.promptdistill(prompts, cfg, &res, &first)); break;
      case PipelineMethod::kGemFilter: PD_RETURN_IF_ERROR(m.gemfilter(prompts, cfg, &res, &first)); break;
      case PipelineMethod::kSnapKV:
      case PipelineMethod::kH2O: PD_RETURN_IF_ERROR(m.full_prefill(prompts, &cfg, &res, &first)); break;
    }
    const double ttft = std::chrono::duration<double, std::milli>(Impl::Clock::now() - t0).count();
    m.next_position.assign(prompts.size(), 0);
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      PrefillResult& r = res[b];
      r.first_token = first[b];
      r.prompt_tokens = int64_t(prompts[b].size());
      r.next_position = cfg.method == PipelineMethod::kGemFilter ? r.retained[0] : r.prompt_tokens;
      m.next_position[b] = r.next_position;
      for (const auto& cc : m.caches) r.cache_lengths.push_back(cc.len[b]);
      r.ttft_ms = ttft;
      r.peak_kv_cache_bytes = m.peak_kv;
    }
    *out = std::move(res);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "prefill: out of host memory");
  }
}

template <class Backend, class T>
Status BatchSession<Backend, T>::decode_step(const std::vector<int32_t>& tokens, std::vector<int32_t>* next) noexcept {
  try {
    Impl& m = *impl_;
    if (m.next_position.empty()) return Status(StatusCode::kInvalidArgument, "decode_step before prefill");
    if (int64_t(tokens.size()) != batch_)
      return Status(StatusCode::kShapeMismatch, "decode_step: %zu tokens for a batch of %lld", tokens.size(), (long long)batch_);
    std::vector<std::vector<int32_t>> ids, pos;
    std::vector<int64_t> total, ones(std::size_t(batch_), 1);
    for (int64_t b = 0; b < batch_; ++b) {
      if (m.next_position[std::size_t(b)] >= m.c.max_positions)
        return Status(StatusCode::kInvalidArgument, "request %lld: position %lld reaches the model's context of %lld", (long long)b,
                      (long long)m.next_position[std::size_t(b)], (long long)m.c.max_positions);
      if (tokens[std::size_t(b)] < 0 || tokens[std::size_t(b)] >= m.c.vocab)
        return Status(StatusCode::kInvalidArgument, "request %lld: token %d is outside the vocabulary [0, %lld)", (long long)b,
                      tokens[std::size_t(b)], (long long)m.c.vocab);
      ids.push_back({tokens[std::size_t(b)]});
      pos.push_back({int32_t(m.next_position[std::size_t(b)])});
      total.push_back(m.next_position[std::size_t(b)] + 1);
    }
    PD_RETURN_IF_ERROR(m.reserve_rows(1));
    PD_RETURN_IF_ERROR(m.embed_ids(ids, 1));
    PD_RETURN_IF_ERROR(m.upload_rope(pos, 1, total));
    for (int64_t l = 0; l < m.c.num_layers; ++l) PD_RETURN_IF_ERROR(m.layer(l, 1, &m.caches[std::size_t(l)], ones));
    for (auto& p : m.next_position) ++p;
    return m.next_tokens(1, std::vector<int64_t>(std::size_t(batch_), 0), next);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "decode: out of host memory");
  }
}

template <class Backend, class T>
Status BatchSession<Backend, T>::generate(const std::vector<int32_t>& first, int64_t max_new_tokens,
                                          const std::vector<int32_t>& stop, std::vector<std::vector<int32_t>>* out,
                                          double* decode_ms_per_step) noexcept {
  try {
    out->assign(first.size(), {});
    *decode_ms_per_step = 0;
    if (int64_t(first.size()) != batch_)
      return Status(StatusCode::kShapeMismatch, "generate: %zu first tokens for a batch of %lld", first.size(), (long long)batch_);
    if (max_new_tokens <= 0) return Status::ok();
    std::vector<int32_t> tokens = first;
    std::vector<bool> done(first.size(), false);
    const auto t0 = Impl::Clock::now();
    int64_t steps = 0;
    while (true) {
      bool all_done = true;
      for (std::size_t b = 0; b < tokens.size(); ++b) {
        if (done[b]) continue;
        (*out)[b].push_back(tokens[b]);
        if (int64_t((*out)[b].size()) >= max_new_tokens || std::find(stop.begin(), stop.end(), tokens[b]) != stop.end())
          done[b] = true;
        all_done = all_done && done[b];
      }
      if (all_done) break;
      PD_RETURN_IF_ERROR(decode_step(tokens, &tokens));  // finished requests keep stepping; their tokens are dropped
      ++steps;
    }
    if (steps > 0)
      *decode_ms_per_step = std::chrono::duration<double, std::milli>(Impl::Clock::now() - t0).count() / double(steps);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "generate: out of host memory");
  }
}

template <class Backend, class T>
int64_t BatchSession<Backend, T>::cache_length(int64_t layer, int64_t b) const noexcept {
  if (!impl_ || layer < 0 || layer >= int64_t(impl_->caches.size()) || b < 0 || b >= batch_) return -1;
  return impl_->caches[std::size_t(layer)].len[std::size_t(b)];
}

template <class Backend, class T>
Status BatchSession<Backend, T>::read_cache(int64_t layer, int64_t b, std::vector<float>* k, std::vector<float>* v) const noexcept {
  try {
    const Impl& m = *impl_;
    if (layer < 0 || layer >= int64_t(m.caches.size()) || b < 0 || b >= batch_)
      return Status(StatusCode::kOutOfRange, "read_cache: layer %lld / request %lld out of range", (long long)layer, (long long)b);
    const auto& cc = m.caches[std::size_t(layer)];
    const std::size_t row = std::size_t(m.Hkv() * m.D()), len = std::size_t(cc.len[std::size_t(b)]);
    for (auto [dst, part] : {std::pair<std::vector<float>*, const typename Impl::Buf*>{k, &cc.k}, {v, &cc.v}}) {
      std::vector<T> host(len * row);
      if (len > 0)
        PD_RETURN_IF_ERROR(Backend::download(host.data(), static_cast<const T*>(part->p) + std::size_t(b * cc.capacity) * row,
                                             host.size() * sizeof(T), m.stream));
      dst->resize(host.size());
      for (std::size_t i = 0; i < host.size(); ++i) (*dst)[i] = num::to_f32(host[i]);
    }
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "read_cache: out of host memory");
  }
}

}  // namespace promptdistill
