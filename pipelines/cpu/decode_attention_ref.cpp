// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The attention of one decode token over its layer's cache (decode_support.h): the exact path
//! (the prefill's kernel for one row) and the fast path (chunked softmax, f32 or f16 keys and
//! values, AVX2 where the build targets x86-64-v3).

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define PD_DECODE_AVX2 1
#endif

#include "pipelines/cpu/decode_support.h"
#include "pipelines/cpu/prefill_attention_ref.h"
#include "promptdistill/dtype.h"

namespace promptdistill {
namespace ref {
namespace {

constexpr int64_t kChunk =
    256;  //!< keys per softmax partial (fixed: results do not depend on threads)
constexpr int64_t kHeadBatch = 4;  //!< query heads of one KV group handled per pass over the keys

float widen(float x) { return x; }
float widen(uint16_t bits) { return to_float(f16{bits}); }

#if defined(PD_DECODE_AVX2)
__m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

//! scores[j][t - t0] = q_j . k_t * scale for the `nb` query heads at q (stride D apart).
template <class T>
void chunk_scores(const float* q, int64_t nb, const T* keys, int64_t stride, int64_t t0, int64_t t1,
                  int64_t D, float scale, float (*scores)[kChunk]) {
  for (int64_t t = t0; t < t1; ++t) {
    const T* k = keys + t * stride;
#if defined(PD_DECODE_AVX2)
    if (D % 8 == 0) {
      __m256 acc[kHeadBatch];
      for (int64_t j = 0; j < nb; ++j) acc[j] = _mm256_setzero_ps();
      for (int64_t d = 0; d < D; d += 8) {
        const __m256 kv = load8(k + d);
        for (int64_t j = 0; j < nb; ++j)
          acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(q + j * D + d), kv, acc[j]);
      }
      for (int64_t j = 0; j < nb; ++j) scores[j][t - t0] = hsum(acc[j]) * scale;
      continue;
    }
#endif
    for (int64_t j = 0; j < nb; ++j) {
      float s = 0;
      for (int64_t d = 0; d < D; ++d) s += q[j * D + d] * widen(k[d]);
      scores[j][t - t0] = s * scale;
    }
  }
}

//! acc[j][:] = sum_t p[j][t - t0] v_t for the nb heads.
template <class T>
void chunk_values(const float (*p)[kChunk], int64_t nb, const T* values, int64_t stride, int64_t t0,
                  int64_t t1, int64_t D, float* acc, int64_t acc_stride) {
#if defined(PD_DECODE_AVX2)
  if (D % 8 == 0) {
    for (int64_t d = 0; d < D; d += 8) {
      __m256 a[kHeadBatch];
      for (int64_t j = 0; j < nb; ++j) a[j] = _mm256_setzero_ps();
      for (int64_t t = t0; t < t1; ++t) {
        const __m256 v = load8(values + t * stride + d);
        for (int64_t j = 0; j < nb; ++j)
          a[j] = _mm256_fmadd_ps(_mm256_set1_ps(p[j][t - t0]), v, a[j]);
      }
      for (int64_t j = 0; j < nb; ++j) _mm256_storeu_ps(acc + j * acc_stride + d, a[j]);
    }
    return;
  }
#endif
  for (int64_t j = 0; j < nb; ++j)
    for (int64_t d = 0; d < D; ++d) {
      float a = 0;
      for (int64_t t = t0; t < t1; ++t) a += p[j][t - t0] * widen(values[t * stride + d]);
      acc[j * acc_stride + d] = a;
    }
}

//! Per (KV head, chunk) task: each query head's chunk maximum, sum of exponentials and weighted
//! values; then per query head the chunks combined in order.
template <class T>
void fast_attention(const ModelConfig& c, const float* q, const T* keys, const T* values,
                    int64_t cache_heads, int64_t cols, DecodeWorkspace::Impl* ws, float* attn) {
  const int64_t H = c.num_heads, D = c.head_dim, q_per_kv = H / cache_heads,
                stride = cache_heads * D;
  const int64_t chunks = (cols + kChunk - 1) / kChunk, part = 2 + D;
  const float scale = 1.0f / std::sqrt(float(D));
  float* partials = ws->partials.data();
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < cache_heads * chunks; ++task) {
    const int64_t g = task / chunks, chunk = task % chunks;
    const int64_t t0 = chunk * kChunk, t1 = std::min(cols, t0 + kChunk), n = t1 - t0;
    float scores[kHeadBatch][kChunk];
    for (int64_t j0 = 0; j0 < q_per_kv; j0 += kHeadBatch) {
      const int64_t nb = std::min(kHeadBatch, q_per_kv - j0), h0 = g * q_per_kv + j0;
      chunk_scores(q + h0 * D, nb, keys + g * D, stride, t0, t1, D, scale, scores);
      for (int64_t j = 0; j < nb; ++j) {
        Eigen::Map<Eigen::ArrayXf> s(scores[j], n);
        const float m = s.maxCoeff();
        s = (s - m).exp();
        float* out = partials + ((h0 + j) * chunks + chunk) * part;
        out[0] = m;
        out[1] = s.sum();
      }
      chunk_values(scores, nb, values + g * D, stride, t0, t1, D,
                   partials + (h0 * chunks + chunk) * part + 2, chunks * part);
    }
  }
  for (int64_t hh = 0; hh < H; ++hh) {
    const float* p = partials + hh * chunks * part;
    float m = p[0];
    for (int64_t i = 1; i < chunks; ++i) m = std::max(m, p[i * part]);
    float total = 0;
    float* out = attn + hh * D;
    std::fill(out, out + D, 0.0f);
    for (int64_t i = 0; i < chunks; ++i) {
      const float w = std::exp(p[i * part] - m);
      total += w * p[i * part + 1];
      for (int64_t d = 0; d < D; ++d) out[d] += w * p[i * part + 2 + d];
    }
    const float inv = 1.0f / total;
    for (int64_t d = 0; d < D; ++d) out[d] *= inv;
  }
}

}  // namespace

Status decode_attention(const ModelConfig& c, const float* q, const KvLayerCache& cache, bool exact,
                        DecodeWorkspace::Impl* ws, float* attn) {
  if (exact) {
    attention::Shape s;
    s.heads = c.num_heads, s.kv_heads = cache.heads, s.head_dim = c.head_dim;
    const int64_t need = attention::decode_scratch_floats(s, threads());
    if (ws->attention_scratch.size() < need) PD_RETURN_IF_ERROR(ws->attention_scratch.resize(need));
    return attention::decode(s, q, cache.k.data(), cache.v.data(), cache.length, attn,
                             ws->attention_scratch.data(), ws->attention_scratch.size());
  }
  if (cache.half) {
    fast_attention(c, q, cache.k16.data(), cache.v16.data(), cache.heads, cache.length, ws, attn);
  } else {
    fast_attention(c, q, cache.k.data(), cache.v.data(), cache.heads, cache.length, ws, attn);
  }
  return Status::ok();
}

}  // namespace ref
}  // namespace promptdistill
