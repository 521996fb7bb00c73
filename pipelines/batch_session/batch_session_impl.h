// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the batch session: `BatchSession<Backend, T>`'s state and public members. Included
//! only by the translation units that instantiate it (pipelines/cpu/batch_session_ref.cpp for
//! the CPU, pipelines/cuda/session.cu for CUDA), so both backends run exactly this code.

#include <chrono>
#include <cstdio>
#include <new>
#include <vector>

#include "promptdistill/batch_session.h"
#include "pipelines/batch_session/decode_loop.h"
#include "pipelines/batch_session/fastkv.h"
#include "pipelines/batch_session/pipelines.h"

namespace promptdistill {

template <class Backend, class T>
struct BatchSession<Backend, T>::Impl {
  using Clock = std::chrono::steady_clock;

  //! `config`: what this rank runs (session::plan_shard).
  Impl(const ModelConfig& config, const session::TensorShard& shard,
       const BatchSessionOptions& options, Stream stream)
      : caches(&ledger, config.num_kv_heads, config.head_dim, stream),
        decoder(config, shard, options, stream, &ledger, &caches),
        pipelines(&decoder, &caches, &ledger),
        decode(&decoder, &caches, &ledger) {}

  // Declared first so that it outlives every buffer that reports to it.
  session::MemoryLedger ledger;
  session::LayerCaches<Backend, T> caches;
  session::Decoder<Backend, T> decoder;
  session::Pipelines<Backend, T> pipelines;
  session::DecodeLoop<Backend, T> decode;
  std::vector<int64_t> next_position;  //!< per request, after a prefill
};

template <class Backend, class T>
BatchSession<Backend, T>::~BatchSession() = default;

template <class Backend, class T>
int64_t BatchSession<Backend, T>::memory_bytes() const noexcept {
  return impl_ ? impl_->ledger.held : 0;
}
template <class Backend, class T>
int64_t BatchSession<Backend, T>::peak_memory_bytes() const noexcept {
  return impl_ ? impl_->ledger.peak : 0;
}
template <class Backend, class T>
int64_t BatchSession<Backend, T>::weight_bytes() const noexcept {
  return impl_ ? impl_->decoder.weight_bytes : 0;
}

template <class Backend, class T>
int64_t BatchSession<Backend, T>::host_syncs() const noexcept {
  return impl_ ? impl_->decoder.host_syncs : 0;
}

template <class Backend, class T>
int64_t BatchSession<Backend, T>::decode_graph_replays() const noexcept {
  return impl_ ? impl_->decode.replays() : 0;
}

template <class Backend, class T>
Status BatchSession<Backend, T>::decode_graph_status() const noexcept {
  return impl_ ? impl_->decode.graph_status() : Status::ok();
}

template <class Backend, class T>
const std::vector<float>& BatchSession<Backend, T>::last_logits() const noexcept {
  static const std::vector<float> none;
  return impl_ ? impl_->decoder.last_logits : none;
}

template <class Backend, class T>
Status BatchSession<Backend, T>::create(const ModelWeights* weights,
                                        const BatchSessionOptions& options, Stream stream,
                                        std::unique_ptr<BatchSession>* out) noexcept {
  if (weights == nullptr) return Status(StatusCode::kInvalidArgument, "session: weights is null");
  return create_session(weights->config, weights, 0, options, stream, out);
}

template <class Backend, class T>
Status BatchSession<Backend, T>::create_random(const ModelConfig& config, uint64_t seed,
                                               const BatchSessionOptions& options, Stream stream,
                                               std::unique_ptr<BatchSession>* out) noexcept {
  return create_session(config, nullptr, seed, options, stream, out);
}

template <class Backend, class T>
Status BatchSession<Backend, T>::create_session(const ModelConfig& config,
                                                const ModelWeights* weights, uint64_t seed,
                                                const BatchSessionOptions& options, Stream stream,
                                                std::unique_ptr<BatchSession>* out) noexcept {
  try {
    PD_RETURN_IF_ERROR(config.validate());
    if (options.mlp_chunk_rows < 1 || options.decode_reserve < 0)
      return Status(StatusCode::kInvalidArgument,
                    "session options: mlp_chunk_rows must be >= 1 and decode_reserve >= 0");
    session::TensorShard shard;
    ModelConfig local;
    PD_RETURN_IF_ERROR(session::plan_shard(config, options, &shard, &local));
    if (shard.parallel() && weights == nullptr)
      return Status(StatusCode::kUnsupported,
                    "tensor parallelism slices a checkpoint's weights: create the session from "
                    "weights (create_random "
                    "draws whole tensors)");
    std::unique_ptr<BatchSession> session(new BatchSession());
    session->impl_ = std::make_unique<Impl>(local, shard, options, stream);
    session::Decoder<Backend, T>& decoder = session->impl_->decoder;
    if (shard.parallel()) {
      const std::vector<LayerWeights> layers = session::shard_layers(*weights, shard, local);
      PD_RETURN_IF_ERROR(decoder.upload_weights(*weights, &layers));
    } else {
      PD_RETURN_IF_ERROR(weights ? decoder.upload_weights(*weights) : decoder.draw_weights(seed));
    }
    *out = std::move(session);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "session: out of host memory");
  }
}

template <class Backend, class T>
Status BatchSession<Backend, T>::prefill(const std::vector<std::vector<int32_t>>& prompts,
                                         const PipelineConfig& config,
                                         std::vector<PrefillResult>* out) noexcept {
  try {
    Impl& impl = *impl_;
    session::Decoder<Backend, T>& decoder = impl.decoder;
    const ModelConfig& model = decoder.config;
    if (prompts.empty()) return Status(StatusCode::kInvalidArgument, "prefill: the batch is empty");
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      Status s = config.validate(model, int64_t(prompts[b].size()));
      if (!s.is_ok()) return Status(s.code(), "request %zu: %s", b, s.message());
      for (int32_t id : prompts[b])
        if (id < 0 || id >= model.vocab)
          return Status(StatusCode::kInvalidArgument,
                        "request %zu: token %d is outside the vocabulary [0, %lld)", b, id,
                        (long long)model.vocab);
    }
    PipelinePlan plan;
    PD_RETURN_IF_ERROR(plan_pipeline(config, &plan));
    if ((plan.compresses_every_layer || plan.fastkv) &&
        plan.compression.grouping == HeadGrouping::kPerKvGroup && decoder.shard.splits_kv_groups())
      return Status(StatusCode::kUnsupported,
                    "%s per KV group under tensor parallelism needs whole KV groups on every rank: "
                    "%lld ranks split the "
                    "query heads of %lld KV heads (use at most %lld ranks)",
                    to_string(plan.compression.method), (long long)decoder.shard.size,
                    (long long)decoder.shard.total_kv_heads,
                    (long long)decoder.shard.total_kv_heads);
    batch_ = int64_t(prompts.size());
    {
      // Memory check before any work. The previous prefill's caches and activations are freed
      // first, so they count as available.
      const PrefillMemory need = impl.pipelines.estimate_prefill_bytes(prompts, plan);
      int64_t reusable = impl.caches.layer_bytes();
      for (const auto* buffer : decoder.activation_buffers()) reusable += int64_t(buffer->bytes());
      const bool given = decoder.options.memory_limit_bytes > 0;
      const int64_t limit =
          given ? decoder.options.memory_limit_bytes : Backend::available_bytes() + reusable;
      char what[96];
      std::snprintf(what, sizeof what, "prefill of %lld x %lld tokens", (long long)batch_,
                    (long long)impl.pipelines.max_of(impl.pipelines.sizes_of(prompts)));
      PD_RETURN_IF_ERROR(check_prefill_memory(
          need, limit, what,
          given ? "BatchSessionOptions::memory_limit_bytes" : "free memory of the backend"));
    }
    decoder.batch = batch_;
    impl.caches.reset(model.num_layers, batch_);  // frees the previous prefill's caches
    // ... and its activations, so that each prefill's peak is its own.
    for (auto* buffer : decoder.activation_buffers()) buffer->release();
    impl.ledger.reset_peak();
    impl.decode.reset();
    PD_RETURN_IF_ERROR(decoder.reset_status());
    std::vector<PrefillResult> results(prompts.size());
    std::vector<int32_t> first_tokens;
    const auto start = Impl::Clock::now();
    switch (plan.method) {
      case PipelineMethod::kFull:
        PD_RETURN_IF_ERROR(impl.pipelines.full_prefill(prompts, nullptr, &results, &first_tokens));
        break;
      case PipelineMethod::kPromptDistill:
        PD_RETURN_IF_ERROR(impl.pipelines.promptdistill(prompts, plan, &results, &first_tokens));
        break;
      case PipelineMethod::kGemFilter:
        PD_RETURN_IF_ERROR(impl.pipelines.gemfilter(prompts, plan, &results, &first_tokens));
        break;
      case PipelineMethod::kSnapKV:
      case PipelineMethod::kH2O:
        PD_RETURN_IF_ERROR(impl.pipelines.full_prefill(prompts, &plan, &results, &first_tokens));
        break;
      case PipelineMethod::kFastKV:
        PD_RETURN_IF_ERROR(impl.pipelines.fastkv(prompts, plan, &results, &first_tokens));
        break;
    }
    const double ttft_ms =
        std::chrono::duration<double, std::milli>(Impl::Clock::now() - start).count();
    impl.next_position.assign(prompts.size(), 0);
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      PrefillResult& result = results[b];
      result.first_token = first_tokens[b];
      result.prompt_tokens = int64_t(prompts[b].size());
      result.next_position =
          plan.method == PipelineMethod::kGemFilter ? result.retained[0] : result.prompt_tokens;
      impl.next_position[b] = result.next_position;
      for (const auto& cache : impl.caches.layers) result.cache_lengths.push_back(cache.lengths[b]);
      result.ttft_ms = ttft_ms;
      result.peak_kv_cache_bytes = impl.caches.peak_bytes();
    }
    *out = std::move(results);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "prefill: out of host memory");
  }
}

template <class Backend, class T>
Status BatchSession<Backend, T>::decode_step(const std::vector<int32_t>& tokens,
                                             std::vector<int32_t>* next) noexcept {
  try {
    Impl& impl = *impl_;
    session::Decoder<Backend, T>& decoder = impl.decoder;
    const ModelConfig& model = decoder.config;
    if (impl.next_position.empty())
      return Status(StatusCode::kInvalidArgument, "decode_step before prefill");
    if (int64_t(tokens.size()) != batch_)
      return Status(StatusCode::kShapeMismatch, "decode_step: %zu tokens for a batch of %lld",
                    tokens.size(), (long long)batch_);
    for (int64_t b = 0; b < batch_; ++b) {
      const int64_t position = impl.next_position[std::size_t(b)];
      if (position >= model.max_positions)
        return Status(StatusCode::kInvalidArgument,
                      "request %lld: position %lld reaches the model's context of %lld",
                      (long long)b, (long long)position, (long long)model.max_positions);
      if (tokens[std::size_t(b)] < 0 || tokens[std::size_t(b)] >= model.vocab)
        return Status(StatusCode::kInvalidArgument,
                      "request %lld: token %d is outside the vocabulary [0, %lld)", (long long)b,
                      tokens[std::size_t(b)], (long long)model.vocab);
    }
    PD_RETURN_IF_ERROR(impl.decode.step(tokens, impl.next_position, next));
    for (int64_t& position : impl.next_position) ++position;
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "decode: out of host memory");
  }
}

template <class Backend, class T>
Status BatchSession<Backend, T>::generate(const std::vector<int32_t>& first, int64_t max_new_tokens,
                                          const std::vector<int32_t>& stop,
                                          std::vector<std::vector<int32_t>>* out,
                                          double* decode_ms_per_step) noexcept {
  try {
    out->assign(first.size(), {});
    *decode_ms_per_step = 0;
    if (int64_t(first.size()) != batch_)
      return Status(StatusCode::kShapeMismatch, "generate: %zu first tokens for a batch of %lld",
                    first.size(), (long long)batch_);
    if (max_new_tokens <= 0) return Status::ok();
    std::vector<int32_t> tokens = first;
    std::vector<bool> done(first.size(), false);
    const auto start = Impl::Clock::now();
    int64_t steps = 0;
    bool all_done = true;
    for (std::size_t b = 0; b < tokens.size();
         ++b) {  // the prefill's tokens are kept whatever they are
      (*out)[b].push_back(tokens[b]);
      done[b] = int64_t((*out)[b].size()) >= max_new_tokens;
      all_done = all_done && done[b];
    }
    while (!all_done) {
      PD_RETURN_IF_ERROR(decode_step(
          tokens, &tokens));  // finished requests keep stepping; their tokens are dropped
      ++steps;
      all_done = true;
      for (std::size_t b = 0; b < tokens.size(); ++b) {
        if (done[b]) continue;
        if (std::find(stop.begin(), stop.end(), tokens[b]) != stop.end()) {
          done[b] = true;  // a stop token ends the request and is not returned
          continue;
        }
        (*out)[b].push_back(tokens[b]);
        done[b] = int64_t((*out)[b].size()) >= max_new_tokens;
        all_done = all_done && done[b];
      }
    }
    if (steps > 0)
      *decode_ms_per_step =
          std::chrono::duration<double, std::milli>(Impl::Clock::now() - start).count() /
          double(steps);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "generate: out of host memory");
  }
}

template <class Backend, class T>
int64_t BatchSession<Backend, T>::cache_length(int64_t layer, int64_t b) const noexcept {
  if (!impl_ || layer < 0 || layer >= int64_t(impl_->caches.layers.size()) || b < 0 || b >= batch_)
    return -1;
  return impl_->caches.layers[std::size_t(layer)].lengths[std::size_t(b)];
}

template <class Backend, class T>
Status BatchSession<Backend, T>::read_cache(int64_t layer, int64_t b, std::vector<float>* k,
                                            std::vector<float>* v) const noexcept {
  try {
    const Impl& impl = *impl_;
    if (layer < 0 || layer >= int64_t(impl.caches.layers.size()) || b < 0 || b >= batch_)
      return Status(StatusCode::kOutOfRange, "read_cache: layer %lld / request %lld out of range",
                    (long long)layer, (long long)b);
    const auto& cache = impl.caches.layers[std::size_t(layer)];
    const std::size_t token_elements = std::size_t(cache.heads * impl.decoder.config.head_dim);
    const std::size_t length = std::size_t(cache.lengths[std::size_t(b)]);
    for (auto [dst, part] :
         {std::pair<std::vector<float>*, const session::DeviceBuffer<Backend>*>{k, &cache.keys},
          {v, &cache.values}}) {
      std::vector<T> host(length * token_elements);
      if (length > 0)
        PD_RETURN_IF_ERROR(Backend::download(
            host.data(),
            part->template as<const T>() + std::size_t(b * cache.capacity) * token_elements,
            host.size() * sizeof(T), impl.decoder.stream));
      dst->resize(host.size());
      for (std::size_t i = 0; i < host.size(); ++i) (*dst)[i] = num::to_f32(host[i]);
    }
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "read_cache: out of host memory");
  }
}

}  // namespace promptdistill
