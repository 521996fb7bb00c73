// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the batch session: Megatron-style tensor parallelism. Which heads and MLP columns a
//! rank holds (`TensorShard`), the model configuration its decoder runs (the rank's heads and
//! intermediate size), and its slices of a checkpoint's layer weights: the rows of the q/k/v
//! projections (and biases) of its heads, the columns of the output projection, the rows of the
//! gate/up projections and the columns of the down projection of its intermediate columns.

#include <cstdint>
#include <vector>

#include "promptdistill/batch_session.h"
#include "promptdistill/model.h"

namespace promptdistill {
namespace session {

struct TensorShard {
  int64_t size = 1, rank = 0;
  int64_t total_heads = 0, total_kv_heads = 0;  //!< H and H_kv of the whole model
  int64_t q_first = 0, kv_first = 0,
          inner_first = 0;  //!< the rank's first query head, KV head, intermediate column
  bool parallel() const { return size > 1; }
  //! More ranks than KV heads: each KV head (and so each KV group) spans several ranks.
  bool splits_kv_groups() const { return size > total_kv_heads; }
};

//! The shard of rank `options.tp_rank` of `options.tp_size` and the configuration it runs.
inline Status plan_shard(const ModelConfig& full, const BatchSessionOptions& options,
                         TensorShard* shard, ModelConfig* local) {
  const int64_t R = options.tp_size, r = options.tp_rank;
  if (R < 1 || r < 0 || r >= R)
    return Status(StatusCode::kInvalidArgument,
                  "tensor parallelism: tp_rank %lld must be in [0, tp_size %lld)", (long long)r,
                  (long long)R);
  TensorShard s;
  s.size = R;
  s.rank = r;
  s.total_heads = full.num_heads;
  s.total_kv_heads = full.num_kv_heads;
  *local = full;
  if (R == 1) {
    *shard = s;
    return Status::ok();
  }
  if (!options.all_reduce)
    return Status(StatusCode::kInvalidArgument,
                  "tensor parallelism: tp_size %lld needs an all_reduce", (long long)R);
  const int64_t H = full.num_heads, Hkv = full.num_kv_heads, inner = full.intermediate;
  if (H % R != 0 || inner % R != 0 || (Hkv % R != 0 && R % Hkv != 0))
    return Status(StatusCode::kUnsupported,
                  "tensor parallelism: %lld query heads, %lld KV heads and %lld intermediate "
                  "columns do not split over %lld "
                  "ranks (each a multiple of the ranks, or the ranks a multiple of the KV heads)",
                  (long long)H, (long long)Hkv, (long long)inner, (long long)R);
  const int64_t group = H / Hkv;
  local->num_heads = H / R;
  local->num_kv_heads =
      Hkv % R == 0 ? Hkv / R : 1;  // more ranks than KV heads: the rank's one, replicated
  local->intermediate = inner / R;
  s.q_first = r * local->num_heads;
  s.kv_first = s.q_first / group;
  s.inner_first = r * local->intermediate;
  *shard = s;
  return Status::ok();
}

//! Rows [first, first + count) of a row-major [rows, width] matrix (empty stays empty: no bias).
inline std::vector<float> row_slice(const std::vector<float>& m, int64_t width, int64_t first,
                                    int64_t count) {
  if (m.empty()) return {};
  return std::vector<float>(m.begin() + std::ptrdiff_t(first * width),
                            m.begin() + std::ptrdiff_t((first + count) * width));
}
//! Columns [first, first + count) of a row-major [rows, width] matrix.
inline std::vector<float> column_slice(const std::vector<float>& m, int64_t width, int64_t first,
                                       int64_t count) {
  const int64_t rows = int64_t(m.size()) / width;
  std::vector<float> out;
  out.reserve(std::size_t(rows * count));
  for (int64_t i = 0; i < rows; ++i)
    out.insert(out.end(), m.begin() + std::ptrdiff_t(i * width + first),
               m.begin() + std::ptrdiff_t(i * width + first + count));
  return out;
}

//! The rank's slices of every layer's weights (embeddings, final norm and LM head are replicated
//! and stay where they are).
inline std::vector<LayerWeights> shard_layers(const ModelWeights& full, const TensorShard& s,
                                              const ModelConfig& local) {
  const int64_t D = full.config.head_dim, width = full.config.hidden,
                inner = full.config.intermediate;
  std::vector<LayerWeights> layers;
  for (const LayerWeights& w : full.layers) {
    LayerWeights l;
    l.attn_norm = w.attn_norm;
    l.mlp_norm = w.mlp_norm;
    l.wq = row_slice(w.wq, width, s.q_first * D, local.num_heads * D);
    l.wk = row_slice(w.wk, width, s.kv_first * D, local.num_kv_heads * D);
    l.wv = row_slice(w.wv, width, s.kv_first * D, local.num_kv_heads * D);
    l.bq = row_slice(w.bq, 1, s.q_first * D, local.num_heads * D);
    l.bk = row_slice(w.bk, 1, s.kv_first * D, local.num_kv_heads * D);
    l.bv = row_slice(w.bv, 1, s.kv_first * D, local.num_kv_heads * D);
    l.wo = column_slice(w.wo, full.config.num_heads * D, s.q_first * D, local.num_heads * D);
    l.w_gate = row_slice(w.w_gate, width, s.inner_first, local.intermediate);
    l.w_up = row_slice(w.w_up, width, s.inner_first, local.intermediate);
    l.w_down = column_slice(w.w_down, inner, s.inner_first, local.intermediate);
    layers.push_back(std::move(l));
  }
  return layers;
}

}  // namespace session
}  // namespace promptdistill
