// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the batch session: the per-layer K/V caches of a batch, contiguous
//! [B, capacity, H_kv, D] with per-request lengths, and their memory accounting.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "promptdistill/kv_cache.h"
#include "pipelines/batch_session/device_buffer.h"

namespace promptdistill {
namespace session {

template <class Backend>
struct LayerCache {
  DeviceBuffer<Backend> keys, values;
  int64_t capacity = 0;          //!< tokens each request can hold
  std::vector<int64_t> lengths;  //!< tokens each request holds
  //! H_kv, or H once SnapKV/H2O per query head has GQA-expanded it (query head h then reads
  //! head h: the published baselines' cache, G times larger).
  int64_t heads = 0;
};

//! Every layer's cache, plus GemFilter's scratch cache (one layer's K/V during its filter pass,
//! overwritten layer after layer and never kept).
template <class Backend, class T>
class LayerCaches {
 public:
  LayerCaches(MemoryLedger* ledger, int64_t num_kv_heads, int64_t head_dim, Stream stream)
      : ledger_(ledger), num_kv_heads_(num_kv_heads), head_dim_(head_dim), stream_(stream) {
    scratch.keys.set_ledger(ledger);
    scratch.values.set_ledger(ledger);
  }

  std::vector<LayerCache<Backend>> layers;
  LayerCache<Backend> scratch;

  //! Empties every layer's cache for a batch of `batch` requests; layers allocate what they need
  //! when they first run, so the layers after a selection only ever hold the kept tokens.
  void reset(int64_t num_layers, int64_t batch) {
    batch_ = batch;
    layers.resize(std::size_t(num_layers));
    for (LayerCache<Backend>& cache : layers) empty(&cache);
    empty(&scratch);
    bytes_ = peak_bytes_ = 0;
  }
  void empty(LayerCache<Backend>* cache) {
    cache->keys.set_ledger(ledger_);
    cache->values.set_ledger(ledger_);
    cache->keys.release();
    cache->values.release();
    cache->capacity = 0;
    cache->lengths.assign(std::size_t(batch_), 0);
    cache->heads = num_kv_heads_;
  }

  KvCacheView<T> view(const LayerCache<Backend>& cache, const DeviceBuffer<Backend>& part) const {
    return KvCacheView<T>::contiguous_bshd(part.template as<T>(), batch_, cache.capacity,
                                           cache.heads, head_dim_);
  }
  std::size_t bytes_for(int64_t capacity, int64_t heads) const {
    return std::size_t(batch_ * capacity * heads * head_dim_) * sizeof(T);
  }

  //! Re-allocates `cache` to `capacity` tokens per request, keeping the first min(old, new) tokens.
  Status resize(LayerCache<Backend>* cache, int64_t capacity) {
    if (capacity == cache->capacity && cache->keys) return Status::ok();
    const std::size_t token_bytes = std::size_t(cache->heads * head_dim_) * sizeof(T);
    const int64_t keep = std::min(capacity, cache->capacity);
    for (DeviceBuffer<Backend>* part : {&cache->keys, &cache->values}) {
      DeviceBuffer<Backend> fresh(ledger_);
      PD_RETURN_IF_ERROR(fresh.allocate(bytes_for(capacity, cache->heads), stream_));
      if (*part && keep > 0)
        PD_RETURN_IF_ERROR(
            Backend::copy_rows(fresh.data(), std::size_t(capacity) * token_bytes, part->data(),
                               std::size_t(cache->capacity) * token_bytes,
                               std::size_t(keep) * token_bytes, std::size_t(batch_), stream_));
      *part = std::move(fresh);
    }
    cache->capacity = capacity;
    account();
    return Status::ok();
  }

  //! Recounts the K/V bytes held (every layer and the scratch cache) and updates the peak.
  void account() {
    int64_t total = 0;
    for (const LayerCache<Backend>& cache : layers)
      total += int64_t(cache.keys.bytes() + cache.values.bytes());
    total += int64_t(scratch.keys.bytes() + scratch.values.bytes());
    bytes_ = total;
    peak_bytes_ = std::max(peak_bytes_, bytes_);
  }
  int64_t peak_bytes() const { return peak_bytes_; }
  //! Bytes the layer caches hold (a new prefill may reuse them).
  int64_t layer_bytes() const {
    int64_t total = 0;
    for (const LayerCache<Backend>& cache : layers)
      total += int64_t(cache.keys.bytes() + cache.values.bytes());
    return total;
  }

 private:
  MemoryLedger* ledger_;
  int64_t num_kv_heads_, head_dim_;
  Stream stream_;
  int64_t batch_ = 0;
  int64_t bytes_ = 0, peak_bytes_ = 0;
};

}  // namespace session
}  // namespace promptdistill
