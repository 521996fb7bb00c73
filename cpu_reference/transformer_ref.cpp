// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! CPU reference decoder layer: RMSNorm, Q/K/V (+bias), RoPE at explicit positions, causal GQA
//! attention over the layer's cache plus the new tokens, output projection, SwiGLU MLP.

#include "promptdistill/transformer_ref.h"

#include "cpu_reference/decoder_ops.h"
#include "cpu_reference/matvec_ref.h"
#include "promptdistill/detail/block_checks.h"

#include <Eigen/Core>
#include <cmath>
#include <cstring>

namespace promptdistill {
namespace ref {
namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapM = Eigen::Map<RowMajor>;
using MapC = Eigen::Map<const RowMajor>;

//! out[n, out_dim] = x[n, in] * W^T (W row-major [out_dim, in]) (+ bias). One row is a
//! matrix-vector product split across threads by output rows (matvec_ref.h: the same bits as
//! Eigen's single-threaded GEMV, which Eigen never splits).
void linear(const float* x, int64_t n, int64_t in, const std::vector<float>& w, int64_t out_dim,
            const std::vector<float>& bias, float* out) {
  MapM y(out, n, out_dim);
  if (n == 1) {
    const matvec::Matrix m = matvec::Matrix::view_f32(w.data(), out_dim, in);
    matvec::Product p;
    p.m = &m, p.x = x, p.y = out;
    matvec::run(&p, 1);
  } else {
    y.noalias() = MapC(x, n, in) * MapC(w.data(), out_dim, in).transpose();
  }
  if (!bias.empty()) y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias.data(), out_dim);
}

}  // namespace

namespace {

//! KvLayerCache::keep on one storage (f32 or f16 bits).
template <class T>
void keep_rows(std::vector<T>* values, const std::vector<int32_t>& indices, std::size_t row) {
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] == int32_t(i)) continue;  // ascending indices: idx[i] >= i, so this is safe in place
    std::memmove(&(*values)[i * row], &(*values)[std::size_t(indices[i]) * row], row * sizeof(T));
  }
  values->resize(indices.size() * row);
  values->shrink_to_fit();
}

//! KvLayerCache::keep_per_head on one storage.
template <class T>
void keep_heads(std::vector<T>* values, const std::vector<std::vector<int32_t>>& rows, int64_t heads, int64_t out_heads,
                int64_t head_dim) {
  const int64_t group = out_heads / heads;
  const int64_t count = rows.empty() ? 0 : int64_t(rows[0].size());
  std::vector<T> out(std::size_t(count * out_heads * head_dim));
  for (int64_t h = 0; h < out_heads; ++h) {
    const auto& sel = rows[std::size_t(rows.size() == std::size_t(out_heads) ? h : h / group)];
    for (int64_t i = 0; i < count; ++i) {
      const std::size_t from = std::size_t((int64_t(sel[std::size_t(i)]) * heads + h / group) * head_dim);
      const std::size_t to = std::size_t((i * out_heads + h) * head_dim);
      std::memcpy(&out[to], &(*values)[from], std::size_t(head_dim) * sizeof(T));
    }
  }
  values->swap(out);
}

}  // namespace

void KvLayerCache::keep(const std::vector<int32_t>& indices, int64_t head_dim) {
  const std::size_t row = std::size_t(heads * head_dim);
  if (half) {
    keep_rows(&k16, indices, row);
    keep_rows(&v16, indices, row);
  } else {
    keep_rows(&k, indices, row);
    keep_rows(&v, indices, row);
  }
  length = int64_t(indices.size());
}

void KvLayerCache::keep_per_head(const std::vector<std::vector<int32_t>>& rows, int64_t head_dim, int64_t expand_to) {
  const int64_t out_heads = expand_to > heads ? expand_to : heads;
  if (half) {
    keep_heads(&k16, rows, heads, out_heads, head_dim);
    keep_heads(&v16, rows, heads, out_heads, head_dim);
  } else {
    keep_heads(&k, rows, heads, out_heads, head_dim);
    keep_heads(&v, rows, heads, out_heads, head_dim);
  }
  heads = out_heads;
  length = rows.empty() ? 0 : int64_t(rows[0].size());
}

void KvLayerCache::to_half() {
  if (half) return;
  k16.resize(k.size());
  v16.resize(v.size());
  for (std::size_t i = 0; i < k.size(); ++i) k16[i] = to_f16(k[i]).bits;
  for (std::size_t i = 0; i < v.size(); ++i) v16[i] = to_f16(v[i]).bits;
  std::vector<float>().swap(k);
  std::vector<float>().swap(v);
  half = true;
}

void KvLayerCache::reserve(int64_t tokens, int64_t head_dim) {
  const std::size_t values = std::size_t(tokens * heads * head_dim);
  if (half) {
    k16.reserve(values);
    v16.reserve(values);
  } else {
    k.reserve(values);
    v.reserve(values);
  }
}

Status Transformer::embed(const int32_t* ids, int64_t n, std::vector<float>* x) const noexcept {
  const ModelConfig& c = w_->config;
  try {
    x->resize(std::size_t(n * c.hidden));
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "embed: out of host memory");
  }
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= c.vocab)
      return Status(StatusCode::kInvalidArgument, "token id %d at position %lld is outside the vocabulary [0, %lld)", ids[i],
                    (long long)i, (long long)c.vocab);
    std::memcpy(&(*x)[std::size_t(i * c.hidden)], &w_->embed[std::size_t(int64_t(ids[i]) * c.hidden)],
                std::size_t(c.hidden) * sizeof(float));
  }
  return Status::ok();
}

Status Transformer::layer(int64_t l, std::vector<float>* xs, int64_t n, const int32_t* positions, int64_t total_length,
                          KvLayerCache* cache, LayerTaps* taps) const noexcept {
  try {
    if (cache != nullptr && cache->half)
      return Status(StatusCode::kInvalidArgument, "layer %lld: the cache holds f16 decode storage; only decode appends to it", (long long)l);
    const ModelConfig& c = w_->config;
    const LayerWeights& L = w_->layers[std::size_t(l)];
    const int64_t hd = c.hidden, H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
    const int64_t qd = H * D, kvd = Hkv * D;
    float* x = xs->data();

    std::vector<float> h(std::size_t(n * hd)), q(std::size_t(n * qd)), k(std::size_t(n * kvd)), v(std::size_t(n * kvd));
    PD_RETURN_IF_ERROR(ops::rmsnorm(x, n, hd, L.attn_norm, c.rms_eps, h.data()));
    linear(h.data(), n, hd, L.wq, qd, L.bq, q.data());
    linear(h.data(), n, hd, L.wk, kvd, L.bk, k.data());
    linear(h.data(), n, hd, L.wv, kvd, L.bv, v.data());
    std::vector<float> cos, sin;
    PD_RETURN_IF_ERROR(rope_tables(c, positions, n, total_length, &cos, &sin));
    PD_RETURN_IF_ERROR(ops::rope(q.data(), n, H, D, cos.data(), sin.data()));
    PD_RETURN_IF_ERROR(ops::rope(k.data(), n, Hkv, D, cos.data(), sin.data()));
    if (taps != nullptr) {
      const int64_t rows = taps->q_rows < n ? taps->q_rows : n;
      taps->q.assign(q.end() - rows * qd, q.end());
      if (taps->want_keys) taps->keys = k;
    }

    // Keys/values visible to the new tokens: the cache (if any) followed by the new ones.
    const int64_t past = cache != nullptr ? cache->length : 0;
    const int64_t total = past + n;
    const float *kp = k.data(), *vp = v.data();
    int64_t cache_heads = Hkv;
    if (cache != nullptr) {
      if (cache->heads == 0) cache->heads = Hkv;
      cache_heads = cache->heads;
      if (cache_heads == Hkv) {
        cache->k.insert(cache->k.end(), k.begin(), k.end());
        cache->v.insert(cache->v.end(), v.begin(), v.end());
      } else {  // GQA-expanded cache: repeat each KV head for its query group
        const int64_t rep = cache_heads / Hkv;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t hh = 0; hh < cache_heads; ++hh) {
            const float* ks = &k[std::size_t((i * Hkv + hh / rep) * D)];
            const float* vs = &v[std::size_t((i * Hkv + hh / rep) * D)];
            cache->k.insert(cache->k.end(), ks, ks + D);
            cache->v.insert(cache->v.end(), vs, vs + D);
          }
      }
      cache->length = total;
      kp = cache->k.data();
      vp = cache->v.data();
    }
    const int64_t kv_stride = cache_heads * D, q_per_kv = H / cache_heads;
    std::vector<float> attn(std::size_t(n * qd));
    const float scale = 1.0f / std::sqrt(float(D));
    // Causal attention in blocks of query rows: a block only multiplies the keys its last row can
    // see (about half the work of the full n x total product), and the softmax uses Eigen's
    // vectorised exp.
    constexpr int64_t kRowBlock = 128;
    const int64_t row_blocks = (n + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(dynamic)
    for (int64_t task = 0; task < H * row_blocks; ++task) {
      const int64_t hh = task / row_blocks, r0 = (task % row_blocks) * kRowBlock;
      const int64_t rows = std::min(kRowBlock, n - r0), g = hh / q_per_kv, cols = past + r0 + rows;
      using Strided = Eigen::Map<const RowMajor, 0, Eigen::OuterStride<>>;
      const Strided Q(q.data() + r0 * qd + hh * D, rows, D, Eigen::OuterStride<>(qd));
      const Strided K(kp + g * D, cols, D, Eigen::OuterStride<>(kv_stride));
      const Strided V(vp + g * D, cols, D, Eigen::OuterStride<>(kv_stride));
      RowMajor s = (Q * K.transpose()) * scale;  // [rows, cols]
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t visible = past + r0 + i + 1;
        auto row = s.row(i).head(visible).array();
        const float m = row.maxCoeff();
        row = (row - m).exp();
        row /= row.sum();
        s.row(i).tail(cols - visible).setZero();
      }
      Eigen::Map<RowMajor, 0, Eigen::OuterStride<>> out(attn.data() + r0 * qd + hh * D, rows, D, Eigen::OuterStride<>(qd));
      out.noalias() = s * V;
    }
    std::vector<float> o(std::size_t(n * hd));
    linear(attn.data(), n, qd, L.wo, hd, {}, o.data());
    for (int64_t i = 0; i < n * hd; ++i) x[i] += o[std::size_t(i)];

    // MLP in row chunks so that the [rows, intermediate] activations stay bounded.
    constexpr int64_t kChunk = 512;
    PD_RETURN_IF_ERROR(ops::rmsnorm(x, n, hd, L.mlp_norm, c.rms_eps, h.data()));
    std::vector<float> gate(std::size_t(std::min(n, kChunk) * c.intermediate)), up(gate.size()), down(std::size_t(std::min(n, kChunk) * hd));
    for (int64_t r0 = 0; r0 < n; r0 += kChunk) {
      const int64_t rows = std::min(kChunk, n - r0);
      linear(h.data() + r0 * hd, rows, hd, L.w_gate, c.intermediate, {}, gate.data());
      linear(h.data() + r0 * hd, rows, hd, L.w_up, c.intermediate, {}, up.data());
      PD_RETURN_IF_ERROR(ops::swiglu(gate.data(), up.data(), rows * c.intermediate));
      linear(gate.data(), rows, c.intermediate, L.w_down, hd, {}, down.data());
      for (int64_t i = 0; i < rows * hd; ++i) x[r0 * hd + i] += down[std::size_t(i)];
    }
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "layer %lld: out of host memory", (long long)l);
  }
}

Status Transformer::logits(const float* row, std::vector<float>* out) const noexcept {
  try {
    const ModelConfig& c = w_->config;
    std::vector<float> h(std::size_t(c.hidden));
    PD_RETURN_IF_ERROR(ops::rmsnorm(row, 1, c.hidden, w_->final_norm, c.rms_eps, h.data()));
    out->resize(std::size_t(c.vocab));
    linear(h.data(), 1, c.hidden, w_->output_matrix(), c.vocab, {}, out->data());
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "logits: out of host memory");
  }
}

int32_t argmax(const std::vector<float>& logits) noexcept {
  int32_t best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i)
    if (detail::argmax_ranks_before(logits[i], int64_t(i), logits[std::size_t(best)], best)) best = int32_t(i);
  return best;
}

}  // namespace ref
}  // namespace promptdistill
