// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The decode step of the CPU decoder (Transformer::decode): one token through every layer on
//! workspace buffers. In the exact mode each operation is the one `layer` runs for that row (the
//! same packed weights and per-output fma chains, the same attention kernel), so the bits equal
//! the prefill's row.

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <initializer_list>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "promptdistill/detail/parse_enum.h"
#include "pipelines/cpu/decode_support.h"
#include "pipelines/cpu/decoder_ops.h"
#include "pipelines/cpu/prefill_attention_ref.h"
#include "pipelines/cpu/prefill_support.h"

namespace promptdistill {
namespace ref {
namespace {

int default_threads() {
#if defined(_OPENMP)
  static const int initial =
      omp_get_max_threads();  // OMP_NUM_THREADS or the core count, before any change
  return initial;
#else
  return 1;
#endif
}

using matvec::Product;

//! What block-format products read besides x: its int16 blocks and (Q4_1) its block sums.
struct BlockInput {
  const matvec::Input16* xq = nullptr;
  const float* sums = nullptr;
};

Product product(const matvec::Matrix& m, const float* x, const BlockInput& in, float* y) {
  Product p;
  p.m = &m, p.x = x, p.xq = in.xq, p.block_sums = in.sums, p.y = y;
  return p;
}

}  // namespace

void set_threads(int n) noexcept {
  const int count = n > 0 ? n : default_threads();
#if defined(_OPENMP)
  omp_set_num_threads(count);
#endif
  Eigen::setNbThreads(count);
}

int threads() noexcept {
  (void)default_threads();
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

const char* to_string(KvStorage s) noexcept { return s == KvStorage::kF16 ? "f16" : "f32"; }

Status parse(std::string_view name, KvStorage* out) noexcept {
  static constexpr KvStorage kAll[] = {KvStorage::kF32, KvStorage::kF16};
  return detail::parse_enum(name, kAll, "KV cache storage", out);
}

bool DecodeOptions::exact() const {
  return (weights == nullptr || weights->format() == DecodeWeightFormat::kF32) &&
         kv == KvStorage::kF32;
}

DecodeWorkspace::DecodeWorkspace() : impl_(std::make_unique<Impl>()) {}
DecodeWorkspace::~DecodeWorkspace() = default;
DecodeWorkspace::DecodeWorkspace(DecodeWorkspace&&) noexcept = default;
DecodeWorkspace& DecodeWorkspace::operator=(DecodeWorkspace&&) noexcept = default;
int64_t DecodeWorkspace::max_context() const { return impl_->max_context; }
const std::vector<float>& DecodeWorkspace::logits() const { return impl_->logits; }

Status DecodeWorkspace::reserve(const ModelConfig& c, int64_t max_context) noexcept {
  try {
    Impl& w = *impl_;
    if (max_context <= w.max_context) return Status::ok();
    const int64_t H = c.num_heads, D = c.head_dim, half = D / 2;
    // RoPE rows: position p decodes at sequence length p + 1, which only LongRoPE reads (its
    // short or long factors); the rows equal those rope_tables gives one step at a time.
    std::vector<int32_t> positions(static_cast<std::size_t>(max_context));
    for (int64_t p = 0; p < max_context; ++p) positions[std::size_t(p)] = int32_t(p);
    w.rope_cos.resize(std::size_t(max_context * half));
    w.rope_sin.resize(w.rope_cos.size());
    const int64_t split = c.rope.scaling == RopeScaling::kLongRope
                              ? std::min(max_context, c.rope.original_max_positions)
                              : max_context;
    std::vector<float> cos, sin;
    if (split > 0) {
      PD_RETURN_IF_ERROR(rope_tables(c, positions.data(), split, split, &cos, &sin));
      std::copy(cos.begin(), cos.end(), w.rope_cos.begin());
      std::copy(sin.begin(), sin.end(), w.rope_sin.begin());
    }
    if (split < max_context) {
      PD_RETURN_IF_ERROR(
          rope_tables(c, positions.data() + split, max_context - split, max_context, &cos, &sin));
      std::copy(cos.begin(), cos.end(), w.rope_cos.begin() + split * half);
      std::copy(sin.begin(), sin.end(), w.rope_sin.begin() + split * half);
    }
    const int64_t widest = std::max({c.hidden, H * D, c.intermediate});
    for (auto* v : {&w.x, &w.h, &w.q, &w.k, &w.v, &w.attn, &w.o, &w.gate, &w.up, &w.down})
      v->resize(std::size_t(widest));
    w.logits.resize(std::size_t(c.vocab));
    w.block_sums.resize(std::size_t(widest / matvec::kBlock + 1));
    w.xq.reserve(widest / matvec::kBlock * matvec::kBlock);
    attention::Shape shape;
    shape.heads = H, shape.kv_heads = c.num_kv_heads, shape.head_dim = D;
    const int64_t scratch = attention::decode_scratch_floats(shape, threads());
    if (w.attention_scratch.size() < scratch)
      PD_RETURN_IF_ERROR(w.attention_scratch.resize(scratch));
    w.partials.resize(std::size_t(H * ((max_context + 255) / 256) * (2 + D)));
    w.max_context = max_context;
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "decode workspace: out of host memory");
  }
}

Status Transformer::decode(int32_t token, int64_t position, std::vector<KvLayerCache>* caches,
                           const DecodeOptions& options, DecodeWorkspace* ws,
                           int32_t* next) const noexcept {
  try {
    const ModelConfig& c = w_->config;
    if (token < 0 || token >= c.vocab)
      return Status(StatusCode::kInvalidArgument, "token id %d is outside the vocabulary [0, %lld)",
                    token, (long long)c.vocab);
    if (int64_t(caches->size()) != c.num_layers)
      return Status(StatusCode::kInvalidArgument, "decode: %zu caches for %lld layers",
                    caches->size(), (long long)c.num_layers);
    if (position < 0 || position >= c.max_positions)
      return Status(StatusCode::kInvalidArgument,
                    "decode: position %lld is outside the model's context of %lld",
                    (long long)position, (long long)c.max_positions);
    const DecodeWeights::Impl* dw = options.weights != nullptr ? options.weights->impl() : nullptr;
    if (options.weights != nullptr && (dw == nullptr || int64_t(dw->layers.size()) != c.num_layers))
      return Status(StatusCode::kInvalidArgument,
                    "decode: the decode weights were not created for this model");
    const bool half = options.kv == KvStorage::kF16;
    for (const KvLayerCache& cache : *caches)
      if (cache.half != half && cache.length > 0)
        return Status(StatusCode::kInvalidArgument,
                      "decode: the caches hold %s, the options ask for %s",
                      cache.half ? "f16" : "f32", to_string(options.kv));
    if (ws->max_context() <
        position + 1) {  // grows (allocates) only when the caller did not reserve
      PD_RETURN_IF_ERROR(ws->reserve(c, std::max<int64_t>(position + 1, 2 * ws->max_context())));
    }
    DecodeWorkspace::Impl& w = *ws->impl();
    const bool exact = options.exact();
    Status packed;
    const PrefillWeights::Impl* P = exact ? exact_weights(&packed) : nullptr;
    PD_RETURN_IF_ERROR(packed);
    const int64_t hd = c.hidden, H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim, qd = H * D,
                  kvd = Hkv * D;
    float* x = w.x.data();
    std::memcpy(x, &w_->embed[std::size_t(int64_t(token) * hd)], std::size_t(hd) * sizeof(float));
    const float* cos = &w.rope_cos[std::size_t(position * (D / 2))];
    const float* sin = &w.rope_sin[std::size_t(position * (D / 2))];
    // A layer's products, from the decode weights or as views of the f32 weights (the exact path).
    const auto matrices = [&](int64_t l, const matvec::Matrix*(&m)[7], matvec::Matrix(&views)[7]) {
      if (dw != nullptr) {
        const auto& D_ = dw->layers[std::size_t(l)];
        const matvec::Matrix* from[7] = {&D_.wq,     &D_.wk,   &D_.wv,    &D_.wo,
                                         &D_.w_gate, &D_.w_up, &D_.w_down};
        std::copy(from, from + 7, m);
        return;
      }
      const LayerWeights& L = w_->layers[std::size_t(l)];
      views[0] = matvec::Matrix::view_f32(L.wq.data(), qd, hd);
      views[1] = matvec::Matrix::view_f32(L.wk.data(), kvd, hd);
      views[2] = matvec::Matrix::view_f32(L.wv.data(), kvd, hd);
      views[3] = matvec::Matrix::view_f32(L.wo.data(), hd, qd);
      views[4] = matvec::Matrix::view_f32(L.w_gate.data(), c.intermediate, hd);
      views[5] = matvec::Matrix::view_f32(L.w_up.data(), c.intermediate, hd);
      views[6] = matvec::Matrix::view_f32(L.w_down.data(), hd, c.intermediate);
      for (int i = 0; i < 7; ++i) m[i] = &views[i];
    };
    // The input of block-format products, quantized (and summed, for Q4_1) once for all the
    // products that read it.
    const auto input = [&](std::initializer_list<const matvec::Matrix*> readers, const float* v,
                           int64_t n) {
      BlockInput in;
      bool blocks = false, sums = false;
      for (const matvec::Matrix* r : readers) {
        blocks = blocks || matvec::is_quantized(r->format());
        sums = sums || matvec::needs_block_sums(r->format());
      }
      if (blocks) {
        matvec::quantize_input(v, n, &w.xq);
        in.xq = &w.xq;
      }
      if (sums) {
        matvec::block_sums(v, n, w.block_sums.data());
        in.sums = w.block_sums.data();
      }
      return in;
    };
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const LayerWeights& L = w_->layers[std::size_t(l)];
      KvLayerCache& cache = (*caches)[std::size_t(l)];
      const matvec::Matrix* m[7] = {};
      matvec::Matrix views[7];
      if (!exact) matrices(l, m, views);

      PD_RETURN_IF_ERROR(ops::rmsnorm(x, 1, hd, L.attn_norm, c.rms_eps, w.h.data()));
      const PrefillWeights::Impl::Layer* W = exact ? &P->layers[std::size_t(l)] : nullptr;
      if (exact) {  // the prefill's packed weights and chains (gemm_ref.h): one row of `layer`
        const gemm::Output qkv[3] = {{w.q.data(), qd}, {w.k.data(), kvd}, {w.v.data(), kvd}};
        PD_RETURN_IF_ERROR(gemm::run(W->qkv, w.h.data(), 1, hd, qkv));
      } else {
        const BlockInput hq = input({m[0], m[1], m[2]}, w.h.data(), hd);
        const Product qkv[3] = {product(*m[0], w.h.data(), hq, w.q.data()),
                                product(*m[1], w.h.data(), hq, w.k.data()),
                                product(*m[2], w.h.data(), hq, w.v.data())};
        matvec::run(qkv, 3);
      }
      if (!L.bq.empty())
        for (int64_t i = 0; i < qd; ++i) w.q[std::size_t(i)] += L.bq[std::size_t(i)];
      if (!L.bk.empty())
        for (int64_t i = 0; i < kvd; ++i) w.k[std::size_t(i)] += L.bk[std::size_t(i)];
      if (!L.bv.empty())
        for (int64_t i = 0; i < kvd; ++i) w.v[std::size_t(i)] += L.bv[std::size_t(i)];
      PD_RETURN_IF_ERROR(ops::rope(w.q.data(), 1, H, D, cos, sin));
      PD_RETURN_IF_ERROR(ops::rope(w.k.data(), 1, Hkv, D, cos, sin));

      // Append (GQA-expanded caches repeat each KV head for its query group).
      if (cache.heads == 0) cache.heads = Hkv;
      cache.half = half;
      const int64_t rep = cache.heads / Hkv;
      for (int64_t hh = 0; hh < cache.heads; ++hh) {
        const float* ks = &w.k[std::size_t((hh / rep) * D)];
        const float* vs = &w.v[std::size_t((hh / rep) * D)];
        if (half) {
          for (int64_t d = 0; d < D; ++d) cache.k16.push_back(to_f16(ks[d]).bits);
          for (int64_t d = 0; d < D; ++d) cache.v16.push_back(to_f16(vs[d]).bits);
        } else {
          cache.k.insert(cache.k.end(), ks, ks + D);
          cache.v.insert(cache.v.end(), vs, vs + D);
        }
      }
      cache.length += 1;
      PD_RETURN_IF_ERROR(decode_attention(c, w.q.data(), cache, exact, &w, w.attn.data()));

      if (exact) {
        const gemm::Output o[1] = {{w.o.data(), hd}};
        PD_RETURN_IF_ERROR(gemm::run(W->wo, w.attn.data(), 1, qd, o));
      } else {
        const Product o =
            product(*m[3], w.attn.data(), input({m[3]}, w.attn.data(), qd), w.o.data());
        matvec::run(&o, 1);
      }
      for (int64_t i = 0; i < hd; ++i) x[i] += w.o[std::size_t(i)];

      PD_RETURN_IF_ERROR(ops::rmsnorm(x, 1, hd, L.mlp_norm, c.rms_eps, w.h.data()));
      if (exact) {
        const gemm::Output gate_up[2] = {{w.gate.data(), c.intermediate},
                                         {w.up.data(), c.intermediate}};
        PD_RETURN_IF_ERROR(gemm::run(W->gate_up, w.h.data(), 1, hd, gate_up));
      } else {
        const BlockInput mq = input({m[4], m[5]}, w.h.data(), hd);
        const Product gate_up[2] = {product(*m[4], w.h.data(), mq, w.gate.data()),
                                    product(*m[5], w.h.data(), mq, w.up.data())};
        matvec::run(gate_up, 2);
      }
      PD_RETURN_IF_ERROR(ops::swiglu(w.gate.data(), w.up.data(), c.intermediate));
      if (exact) {
        const gemm::Output down[1] = {{w.down.data(), hd}};
        PD_RETURN_IF_ERROR(gemm::run(W->down, w.gate.data(), 1, c.intermediate, down));
      } else {
        const Product down = product(*m[6], w.gate.data(),
                                     input({m[6]}, w.gate.data(), c.intermediate), w.down.data());
        matvec::run(&down, 1);
      }
      for (int64_t i = 0; i < hd; ++i) x[i] += w.down[std::size_t(i)];
    }
    PD_RETURN_IF_ERROR(ops::rmsnorm(x, 1, hd, w_->final_norm, c.rms_eps, w.h.data()));
    const matvec::Matrix head_view =
        matvec::Matrix::view_f32(w_->output_matrix().data(), c.vocab, hd);
    const matvec::Matrix& head = dw != nullptr ? dw->output : head_view;
    const Product lm = product(head, w.h.data(), input({&head}, w.h.data(), hd), w.logits.data());
    matvec::run(&lm, 1);
    *next = argmax(w.logits);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "decode: out of host memory");
  }
}

}  // namespace ref
}  // namespace promptdistill
