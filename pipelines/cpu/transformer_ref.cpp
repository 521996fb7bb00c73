// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! CPU reference decoder layer: RMSNorm, Q/K/V (+bias), RoPE at explicit positions, causal GQA
//! attention over the layer's cache plus the new tokens, output projection, SwiGLU MLP. The linear
//! layers and the attention are the kernels of cpu_kernels.h (gemm_ref.h, prefill_attention_ref.h);
//! the element-wise parts are the ref:: block ops (decoder_ops.h).

#include "promptdistill/transformer_ref.h"

#include <cmath>
#include <cstring>
#include <mutex>

#include "pipelines/cpu/decoder_ops.h"
#include "pipelines/cpu/gemm_ref.h"
#include "pipelines/cpu/matvec_ref.h"
#include "pipelines/cpu/prefill_attention_ref.h"
#include "pipelines/cpu/prefill_support.h"
#include "promptdistill/detail/block_checks.h"

namespace promptdistill {
namespace ref {
namespace {

//! rows x width values += bias (per column), if there is a bias: what decode adds too.
void add_bias(float* y, int64_t rows, int64_t width, const std::vector<float>& bias) {
  if (bias.empty()) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < width; ++j) y[r * width + j] += bias[std::size_t(j)];
}

}  // namespace

//! A layer's buffers, kept from one call to the next (grown, never shrunk) so that a prefill does
//! not fault in fresh pages for every layer.
struct LayerScratch {
  std::vector<float> h, q, k, v, attn, o, gate, up, down, gemm, attention;
};

struct Transformer::OwnPacking {
  std::once_flag once;
  PrefillWeights weights;
  Status status;
  std::mutex scratch_mutex;  // a second thread in layer() at the same time gets buffers of its own
  LayerScratch scratch;
};

namespace {
float* grow(std::vector<float>* v, int64_t n) {
  if (v->size() < std::size_t(n)) v->resize(std::size_t(n));
  return v->data();
}
}  // namespace

Transformer::Transformer(const ModelWeights* weights, const PrefillWeights* prefill)
    : w_(weights), prefill_(prefill), own_(std::make_shared<OwnPacking>()) {}

const PrefillWeights::Impl* Transformer::exact_weights(Status* status) const noexcept {
  if (prefill_ != nullptr && prefill_->impl() != nullptr &&
      prefill_->format() == PrefillWeightFormat::kF32)
    return prefill_->impl();
  std::call_once(own_->once, [this] {
    own_->status = PrefillWeights::create(*w_, PrefillWeightFormat::kF32, &own_->weights);
  });
  *status = own_->status;
  return own_->status ? own_->weights.impl() : nullptr;
}

Status Transformer::prepare() const noexcept {
  Status s;
  (void)exact_weights(&s);
  return s;
}

PrefillWeightFormat Transformer::prefill_format() const {
  return prefill_ != nullptr && prefill_->impl() != nullptr ? prefill_->format()
                                                            : PrefillWeightFormat::kF32;
}

namespace {

//! KvLayerCache::keep on one storage (f32 or f16 bits).
template <class T>
void keep_rows(std::vector<T>* values, const std::vector<int32_t>& indices, std::size_t row) {
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] == int32_t(i))
      continue;  // ascending indices: idx[i] >= i, so this is safe in place
    std::memmove(&(*values)[i * row], &(*values)[std::size_t(indices[i]) * row], row * sizeof(T));
  }
  values->resize(indices.size() * row);
  values->shrink_to_fit();
}

//! KvLayerCache::keep_per_head on one storage.
template <class T>
void keep_heads(std::vector<T>* values, const std::vector<std::vector<int32_t>>& rows,
                int64_t heads, int64_t out_heads, int64_t head_dim) {
  const int64_t group = out_heads / heads;
  const int64_t count = rows.empty() ? 0 : int64_t(rows[0].size());
  std::vector<T> out(std::size_t(count * out_heads * head_dim));
  for (int64_t h = 0; h < out_heads; ++h) {
    const auto& sel = rows[std::size_t(rows.size() == std::size_t(out_heads) ? h : h / group)];
    for (int64_t i = 0; i < count; ++i) {
      const std::size_t from =
          std::size_t((int64_t(sel[std::size_t(i)]) * heads + h / group) * head_dim);
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

void KvLayerCache::keep_per_head(const std::vector<std::vector<int32_t>>& rows, int64_t head_dim,
                                 int64_t expand_to) {
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
      return Status(StatusCode::kInvalidArgument,
                    "token id %d at position %lld is outside the vocabulary [0, %lld)", ids[i],
                    (long long)i, (long long)c.vocab);
    std::memcpy(&(*x)[std::size_t(i * c.hidden)],
                &w_->embed[std::size_t(int64_t(ids[i]) * c.hidden)],
                std::size_t(c.hidden) * sizeof(float));
  }
  return Status::ok();
}

Status Transformer::layer(int64_t l, std::vector<float>* xs, int64_t n, const int32_t* positions,
                          int64_t total_length, KvLayerCache* cache,
                          LayerTaps* taps) const noexcept {
  try {
    if (cache != nullptr && cache->half)
      return Status(StatusCode::kInvalidArgument,
                    "layer %lld: the cache holds f16 decode storage; only decode appends to it",
                    (long long)l);
    Status packed;
    const PrefillWeights::Impl* P = prefill_ != nullptr && prefill_->impl() != nullptr
                                        ? prefill_->impl()
                                        : exact_weights(&packed);
    PD_RETURN_IF_ERROR(packed);
    const ModelConfig& c = w_->config;
    const LayerWeights& L = w_->layers[std::size_t(l)];
    const PrefillWeights::Impl::Layer& W = P->layers[std::size_t(l)];
    const int64_t hd = c.hidden, H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
    const int64_t qd = H * D, kvd = Hkv * D;
    float* x = xs->data();

    std::unique_lock<std::mutex> lock(own_->scratch_mutex, std::try_to_lock);
    LayerScratch local;
    LayerScratch& S = lock.owns_lock() ? own_->scratch : local;
    float* h = grow(&S.h, n * hd);
    float* q = grow(&S.q, n * qd);
    float* k = grow(&S.k, n * kvd);
    float* v = grow(&S.v, n * kvd);
    PD_RETURN_IF_ERROR(ops::rmsnorm(x, n, hd, L.attn_norm, c.rms_eps, h));
    const gemm::Output qkv[3] = {{q, qd}, {k, kvd}, {v, kvd}};
    PD_RETURN_IF_ERROR(gemm::run(W.qkv, h, n, hd, qkv, &S.gemm));
    add_bias(q, n, qd, L.bq);
    add_bias(k, n, kvd, L.bk);
    add_bias(v, n, kvd, L.bv);
    std::vector<float> cos, sin;
    PD_RETURN_IF_ERROR(rope_tables(c, positions, n, total_length, &cos, &sin));
    PD_RETURN_IF_ERROR(ops::rope(q, n, H, D, cos.data(), sin.data()));
    PD_RETURN_IF_ERROR(ops::rope(k, n, Hkv, D, cos.data(), sin.data()));
    if (taps != nullptr) {
      const int64_t rows = taps->q_rows < n ? taps->q_rows : n;
      taps->q.assign(q + (n - rows) * qd, q + n * qd);
      if (taps->want_keys) taps->keys.assign(k, k + n * kvd);
    }

    // Keys/values visible to the new tokens: the cache (if any) followed by the new ones.
    const int64_t past = cache != nullptr ? cache->length : 0;
    const float *kp = k, *vp = v;
    int64_t cache_heads = Hkv;
    if (cache != nullptr) {
      if (cache->heads == 0) cache->heads = Hkv;
      cache_heads = cache->heads;
      if (cache_heads == Hkv) {
        cache->k.insert(cache->k.end(), k, k + n * kvd);
        cache->v.insert(cache->v.end(), v, v + n * kvd);
      } else {  // GQA-expanded cache: repeat each KV head for its query group
        const int64_t rep = cache_heads / Hkv;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t hh = 0; hh < cache_heads; ++hh) {
            const float* ks = k + (i * Hkv + hh / rep) * D;
            const float* vs = v + (i * Hkv + hh / rep) * D;
            cache->k.insert(cache->k.end(), ks, ks + D);
            cache->v.insert(cache->v.end(), vs, vs + D);
          }
      }
      cache->length = past + n;
      kp = cache->k.data();
      vp = cache->v.data();
    }
    float* attn = grow(&S.attn, n * qd);
    attention::Shape shape;
    shape.heads = H, shape.kv_heads = cache_heads, shape.head_dim = D;
    PD_RETURN_IF_ERROR(attention::prefill(shape, q, n, kp, vp, past, attn, &S.attention));
    float* o = grow(&S.o, n * hd);
    const gemm::Output wo[1] = {{o, hd}};
    PD_RETURN_IF_ERROR(gemm::run(W.wo, attn, n, qd, wo, &S.gemm));
    for (int64_t i = 0; i < n * hd; ++i) x[i] += o[i];

    // MLP in row chunks so that the [rows, intermediate] activations stay bounded.
    constexpr int64_t kChunk = 512;
    PD_RETURN_IF_ERROR(ops::rmsnorm(x, n, hd, L.mlp_norm, c.rms_eps, h));
    const int64_t chunk = std::min(n, kChunk);
    float* gate = grow(&S.gate, chunk * c.intermediate);
    float* up = grow(&S.up, chunk * c.intermediate);
    float* down = grow(&S.down, chunk * hd);
    for (int64_t r0 = 0; r0 < n; r0 += kChunk) {
      const int64_t rows = std::min(kChunk, n - r0);
      const gemm::Output gate_up[2] = {{gate, c.intermediate}, {up, c.intermediate}};
      PD_RETURN_IF_ERROR(gemm::run(W.gate_up, h + r0 * hd, rows, hd, gate_up, &S.gemm));
      PD_RETURN_IF_ERROR(ops::swiglu(gate, up, rows * c.intermediate));
      const gemm::Output out[1] = {{down, hd}};
      PD_RETURN_IF_ERROR(gemm::run(W.down, gate, rows, c.intermediate, out, &S.gemm));
      for (int64_t i = 0; i < rows * hd; ++i) x[r0 * hd + i] += down[i];
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
    // The LM head: Eigen's GEMV on row slices (matvec_ref.h), as the decode step computes it.
    const matvec::Matrix m =
        matvec::Matrix::view_f32(w_->output_matrix().data(), c.vocab, c.hidden);
    matvec::Product p;
    p.m = &m, p.x = h.data(), p.y = out->data();
    matvec::run(&p, 1);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "logits: out of host memory");
  }
}

int32_t argmax(const std::vector<float>& logits) noexcept {
  int32_t best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i)
    if (detail::argmax_ranks_before(logits[i], int64_t(i), logits[std::size_t(best)], best))
      best = int32_t(i);
  return best;
}

}  // namespace ref
}  // namespace promptdistill
