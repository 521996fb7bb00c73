// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::cpu_pipelines.
//! The CPU reference decoder (`promptdistill::ref`, in promptdistill::cpu_reference): f32 compute
//! on f32 weights, Eigen GEMMs (multithreaded with OpenMP), explicit position ids, per-layer KV
//! caches whose lengths may differ from layer to layer. It is the oracle for the CUDA blocks and
//! the engine of the CPU pipelines. GEMMs and attention are Tier C (no bitwise claim).

#include <cstdint>
#include <vector>

#include "promptdistill/model.h"
#include "promptdistill/status.h"

namespace promptdistill {
namespace ref {

//! One layer's cache: post-RoPE keys and values, [length, heads, D] each, in token order.
//! `heads` is the model's H_kv, or H for a GQA-expanded cache (SnapKV/H2O per query head, as the
//! reference code stores it); tokens appended to an expanded cache are expanded too.
struct KvLayerCache {
  std::vector<float> k, v;
  int64_t length = 0;
  int64_t heads = 0;  //!< 0 until the first append (then H_kv)
  void clear() {
    k.clear();
    v.clear();
    length = 0;
  }
  std::size_t bytes() const { return (k.capacity() + v.capacity()) * sizeof(float); }
  //! Keeps only the tokens at `indices` (ascending), in order; frees the rest.
  void keep(const std::vector<int32_t>& indices, int64_t head_dim);
  //! Per-head selections (`rows` = heads lists of equal length, ascending): head h keeps
  //! rows[h]. With `expand_to` > heads, the cache becomes GQA-expanded (query head q reads KV
  //! head q / (expand_to / heads)) before the per-head selection.
  void keep_per_head(const std::vector<std::vector<int32_t>>& rows, int64_t head_dim, int64_t expand_to = 0);
};

//! What a layer hands back besides its output (for token selection).
struct LayerTaps {
  int64_t q_rows = 0;        //!< how many of the last rows' post-RoPE queries to keep
  std::vector<float> q;      //!< [q_rows, H, D]
  bool want_keys = false;    //!< keep this forward's post-RoPE keys
  std::vector<float> keys;   //!< [n, H_kv, D]
};

class Transformer {
 public:
  explicit Transformer(const ModelWeights* weights) : w_(weights) {}
  const ModelConfig& config() const { return w_->config; }

  //! x = embedding rows of `ids` ([n, hidden]); ids outside the vocabulary are an error.
  Status embed(const int32_t* ids, int64_t n, std::vector<float>* x) const noexcept;

  //! Layer `l` over the n rows of x in place. Token i sits at positions[i]; `total_length` is the
  //! sequence length for LongRoPE's factor choice. If `cache` is non-null, the new tokens see every
  //! cached token plus the new tokens up to themselves, and are appended to it; if null, they see
  //! only the new tokens up to themselves and nothing is stored.
  Status layer(int64_t l, std::vector<float>* x, int64_t n, const int32_t* positions, int64_t total_length,
               KvLayerCache* cache, LayerTaps* taps) const noexcept;

  //! Final norm and LM head of one hidden row: logits [vocab].
  Status logits(const float* row, std::vector<float>* out) const noexcept;

 private:
  const ModelWeights* w_;
};

//! Index of the largest logit (the first one on ties).
int32_t argmax(const std::vector<float>& logits) noexcept;

}  // namespace ref
}  // namespace promptdistill
