// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the batch session: one greedy decode step of a batch, with the argmax on the
//! backend and the step recorded once and replayed (BatchSessionOptions::decode_graph).
//!
//! A step has a host part and a backend part. The host part grows the caches that need it (the
//! only allocations), computes the step's inputs (the ids, every layer's lengths after the step,
//! the RoPE rows of the positions) into pinned memory and copies them up in one transfer. The
//! backend part (embedding, every layer, the final norm, the LM head, ArgMax into B ids) reads
//! only those inputs and buffers that stay put, so it can be recorded: on CUDA a graph captured
//! after one step run op by op (every buffer and plan then exists), replayed while the memory
//! ledger's generation shows no allocation since; a cache that outgrows its reserve records the
//! step again. The step ends with the one host synchronisation: the B next tokens come back.

#include <functional>
#include <memory>
#include <vector>

#include "pipelines/batch_session/decoder.h"

namespace promptdistill {
namespace session {

//! Sets `*stream` to `replacement` for its lifetime (the recording stream of a CUDA capture).
class StreamScope {
 public:
  StreamScope(Stream* stream, Stream replacement) : stream_(stream), saved_(*stream) {
    *stream = replacement;
  }
  ~StreamScope() { *stream_ = saved_; }
  StreamScope(const StreamScope&) = delete;
  StreamScope& operator=(const StreamScope&) = delete;

 private:
  Stream* stream_;
  Stream saved_;
};

template <class Backend, class T>
class DecodeLoop {
 public:
  DecodeLoop(Decoder<Backend, T>* decoder, LayerCaches<Backend, T>* caches, MemoryLedger* ledger)
      : decoder_(decoder), caches_(caches), ledger_(ledger) {
    inputs_.set_ledger(ledger);
    next_ids_.set_ledger(ledger);
  }

  //! Forgets the recorded step and the counters (every prefill re-allocates the caches).
  void reset() {
    graph_.reset();
    replays_ = 0;
    graph_status_ = Status::ok();
  }
  int64_t replays() const { return replays_; }
  const Status& graph_status() const { return graph_status_; }

  //! Feeds tokens[b] at positions[b] (every layer's cache of request b holds `positions[b]`
  //! tokens' worth of its own length) and returns the greedy next tokens.
  Status step(const std::vector<int32_t>& tokens, const std::vector<int64_t>& positions,
              std::vector<int32_t>* next) {
    Decoder<Backend, T>& d = *decoder_;
    const int64_t batch = d.batch, layers = d.config.num_layers;
    const Layout layout = layout_of(batch, layers, d.config.head_dim / 2);
    PD_RETURN_IF_ERROR(inputs_host_.reserve(layout.bytes));
    // Host part: every cache grows (if it must) to hold one more token per request.
    std::vector<int32_t> q_lens, kv_lens;
    const std::vector<int64_t> one_each(std::size_t(batch), 1);
    for (int64_t l = 0; l < layers; ++l) {
      PD_RETURN_IF_ERROR(d.grow_for(&caches_->layers[std::size_t(l)], one_each, &q_lens, &kv_lens));
      std::copy(kv_lens.begin(), kv_lens.end(),
                inputs_host_.template at<int32_t>(layout.kv_lens) + l * batch);
    }
    std::copy(tokens.begin(), tokens.end(), inputs_host_.template at<int32_t>(layout.ids));
    std::fill_n(inputs_host_.template at<int32_t>(layout.q_lens), batch, 1);
    std::vector<std::vector<int32_t>> rope_positions;
    std::vector<int64_t> total_lengths;
    for (int64_t position : positions) {
      rope_positions.push_back({int32_t(position)});
      total_lengths.push_back(position + 1);
    }
    PD_RETURN_IF_ERROR(d.rope_rows(rope_positions, 1, total_lengths,
                                   inputs_host_.template at<float>(layout.rope_cos),
                                   inputs_host_.template at<float>(layout.rope_sin)));
    PD_RETURN_IF_ERROR(inputs_.reserve(layout.bytes, d.stream));
    PD_RETURN_IF_ERROR(next_ids_.reserve(std::size_t(batch) * sizeof(int32_t), d.stream));
    PD_RETURN_IF_ERROR(d.reserve_rows(1));
    PD_RETURN_IF_ERROR(d.reserve_greedy());
    PD_RETURN_IF_ERROR(
        Backend::upload(inputs_.data(), inputs_host_.data(), layout.bytes, d.stream));

    // Backend part: replayed, or run op by op (and then recorded for the next steps).
    const bool record = d.options.decode_graph && !d.shard.parallel() &&
                        !d.options.check_every_op && graph_status_.is_ok();
    if (record && graph_ && graph_generation_ == ledger_->generation) {
      ledger_->recording =
          true;  // the CPU reference runs the recorded call now: hold it to the rules
      const Status replayed = Backend::launch_graph(graph_, d.stream);
      ledger_->recording = false;
      PD_RETURN_IF_ERROR(replayed);
      ++replays_;
    } else {
      graph_.reset();
      PD_RETURN_IF_ERROR(backend_part(layout));
      if (record) {
        ledger_->recording = true;
        const Status recorded = Backend::record_graph(
            d.stream,
            [this, layout](Stream s) {
              StreamScope scope(&decoder_->stream, s);
              return backend_part(layout);
            },
            &graph_);
        ledger_->recording = false;
        if (recorded.is_ok()) {
          graph_generation_ = ledger_->generation;
        } else {  // decode on without a graph, and say why
          graph_.reset();
          graph_status_ =
              Status(recorded.code(), "decode steps are not recorded: %s", recorded.message());
        }
      }
    }
    for (int64_t l = 0; l < layers; ++l) {
      const int32_t* lengths = inputs_host_.template at<int32_t>(layout.kv_lens) + l * batch;
      std::vector<int64_t>& cache_lengths = caches_->layers[std::size_t(l)].lengths;
      for (int64_t b = 0; b < batch; ++b) cache_lengths[std::size_t(b)] = lengths[b];
    }
    return d.download(next_ids_, std::size_t(batch), next);  // the step's one synchronisation
  }

 private:
  //! Byte offsets of the step's inputs in one buffer (host and backend alike), 256-byte aligned:
  //! ids [B], q_lens [B] (ones), kv_lens [layers, B], RoPE cos and sin [B, D/2].
  struct Layout {
    std::size_t ids = 0, q_lens = 0, kv_lens = 0, rope_cos = 0, rope_sin = 0, bytes = 0;
  };
  static Layout layout_of(int64_t batch, int64_t layers, int64_t half) {
    Layout l;
    const auto take = [&](std::size_t bytes) {
      const std::size_t at = l.bytes;
      l.bytes += WorkspacePlanner::round_up(bytes);
      return at;
    };
    l.ids = take(std::size_t(batch) * sizeof(int32_t));
    l.q_lens = take(std::size_t(batch) * sizeof(int32_t));
    l.kv_lens = take(std::size_t(layers * batch) * sizeof(int32_t));
    l.rope_cos = take(std::size_t(batch * half) * sizeof(float));
    l.rope_sin = take(std::size_t(batch * half) * sizeof(float));
    return l;
  }

  //! Everything of the step that runs on the backend, from the uploaded inputs to next_ids_.
  Status backend_part(const Layout& layout) {
    Decoder<Backend, T>& d = *decoder_;
    const auto* base = static_cast<const unsigned char*>(inputs_.data());
    const auto* kv_lens = reinterpret_cast<const int32_t*>(base + layout.kv_lens);
    PD_RETURN_IF_ERROR(d.embed_device_ids(reinterpret_cast<const int32_t*>(base + layout.ids), 1));
    for (int64_t l = 0; l < d.config.num_layers; ++l)
      PD_RETURN_IF_ERROR(d.layer_ops(l, 1, &caches_->layers[std::size_t(l)],
                                     reinterpret_cast<const int32_t*>(base + layout.q_lens),
                                     kv_lens + l * d.batch,
                                     reinterpret_cast<const float*>(base + layout.rope_cos),
                                     reinterpret_cast<const float*>(base + layout.rope_sin)));
    return d.greedy_ops(next_ids_.template as<int32_t>());
  }

  Decoder<Backend, T>* decoder_;
  LayerCaches<Backend, T>* caches_;
  MemoryLedger* ledger_;
  DeviceBuffer<Backend> inputs_, next_ids_;
  HostBuffer<Backend> inputs_host_;
  std::shared_ptr<void> graph_;
  int64_t graph_generation_ = -1;
  int64_t replays_ = 0;
  Status graph_status_;
};

}  // namespace session
}  // namespace promptdistill
