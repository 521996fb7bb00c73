// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Model configuration checks and the RoPE tables (default, llama3 scaling, LongRoPE).

#include <cmath>

#include "promptdistill/model.h"

#include "promptdistill/detail/numerics.h"

namespace promptdistill {

const char* to_string(Architecture a) noexcept {
  switch (a) {
    case Architecture::kLlama: return "llama";
    case Architecture::kQwen2: return "qwen2";
    case Architecture::kPhi3: return "phi3";
  }
  return "unknown";
}

Status ModelConfig::validate() const noexcept {
  if (num_layers < 1 || hidden < 1 || num_heads < 1 || num_kv_heads < 1 || head_dim < 2 ||
      intermediate < 1 || vocab < 1)
    return Status(
        StatusCode::kCorruptFile,
        "model config: sizes must be positive (layers %lld, hidden %lld, heads %lld/%lld, "
        "head_dim %lld, intermediate %lld, vocab %lld)",
        (long long)num_layers, (long long)hidden, (long long)num_heads, (long long)num_kv_heads,
        (long long)head_dim, (long long)intermediate, (long long)vocab);
  if (num_heads % num_kv_heads != 0)
    return Status(StatusCode::kCorruptFile,
                  "model config: %lld heads are not a multiple of %lld KV heads",
                  (long long)num_heads, (long long)num_kv_heads);
  if (head_dim % 2 != 0)
    return Status(StatusCode::kCorruptFile, "model config: head_dim %lld is odd",
                  (long long)head_dim);
  if (!(rms_eps > 0) || !(rope.theta > 0))
    return Status(StatusCode::kCorruptFile, "model config: rms_eps and rope theta must be > 0");
  if (num_layers > 4096 || hidden > (1 << 20) || vocab > (1 << 24) || head_dim > 1024)
    return Status(StatusCode::kCorruptFile, "model config: implausible sizes");
  if (rope.scaling == RopeScaling::kLongRope &&
      (int64_t(rope.short_factor.size()) != head_dim / 2 ||
       int64_t(rope.long_factor.size()) != head_dim / 2))
    return Status(StatusCode::kCorruptFile,
                  "model config: LongRoPE needs %lld short and long factors",
                  (long long)(head_dim / 2));
  if (rope.scaling == RopeScaling::kLlama3 &&
      (rope.original_max_positions < 1 || !(rope.factor > 0)))
    return Status(
        StatusCode::kCorruptFile,
        "model config: llama3 RoPE scaling needs a factor and original_max_position_embeddings");
  return Status::ok();
}

Status rope_tables(const ModelConfig& c, const int32_t* positions, int64_t count,
                   int64_t total_length, std::vector<float>* cos_out,
                   std::vector<float>* sin_out) noexcept {
  try {
    const int64_t half = c.head_dim / 2;
    // Inverse frequencies in f32, as transformers computes them: 1 / base^(2i/d).
    std::vector<float> inv(static_cast<std::size_t>(half));
    for (int64_t i = 0; i < half; ++i)
      inv[std::size_t(i)] = float(1.0 / std::pow(c.rope.theta, double(2 * i) / double(c.head_dim)));
    float scale = 1.0f;
    const RopeConfig& r = c.rope;
    if (r.scaling == RopeScaling::kLlama3) {
      const double low_wavelen = double(r.original_max_positions) / r.low_freq_factor;
      const double high_wavelen = double(r.original_max_positions) / r.high_freq_factor;
      for (auto& f : inv) {
        const double wavelen = 2.0 * M_PI / double(f);
        if (wavelen > low_wavelen) {
          f = float(double(f) / r.factor);
        } else if (wavelen >= high_wavelen) {
          const double smooth = (double(r.original_max_positions) / wavelen - r.low_freq_factor) /
                                (r.high_freq_factor - r.low_freq_factor);
          f = float((1.0 - smooth) * double(f) / r.factor + smooth * double(f));
        }
      }
    } else if (r.scaling == RopeScaling::kLongRope) {
      const auto& ext = total_length > r.original_max_positions ? r.long_factor : r.short_factor;
      for (int64_t i = 0; i < half; ++i)
        inv[std::size_t(i)] =
            float(1.0 / (ext[std::size_t(i)] *
                         std::pow(c.rope.theta, double(2 * i) / double(c.head_dim))));
      double attention = r.attention_factor;
      if (attention == 1.0 && c.max_positions > r.original_max_positions &&
          r.original_max_positions > 0) {
        const double factor = double(c.max_positions) / double(r.original_max_positions);
        attention = std::sqrt(1.0 + std::log(factor) / std::log(double(r.original_max_positions)));
      }
      scale = float(attention);
    }
    cos_out->resize(std::size_t(count * half));
    sin_out->resize(std::size_t(count * half));
    for (int64_t p = 0; p < count; ++p)
      for (int64_t i = 0; i < half; ++i) {
        const float angle = float(positions[p]) * inv[std::size_t(i)];
        (*cos_out)[std::size_t(p * half + i)] = std::cos(angle) * scale;
        (*sin_out)[std::size_t(p * half + i)] = std::sin(angle) * scale;
      }
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "rope tables: out of host memory");
  }
}

namespace {
template <class T>
void round_all(ModelWeights* w) {
  auto round = [](std::vector<float>& v) {
    for (float& x : v) x = num::round_through<T>(x);
  };
  round(w->embed);
  round(w->final_norm);
  if (!w->lm_head.empty()) round(w->lm_head);
  for (LayerWeights& L : w->layers)
    for (std::vector<float>* v : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv,
                                  &L.mlp_norm, &L.w_gate, &L.w_up, &L.w_down})
      round(*v);
}
}  // namespace

Status round_weights(ModelWeights* w, DType dtype) noexcept {
  switch (dtype) {
    case DType::kF32: return Status::ok();
    case DType::kBF16: round_all<bf16>(w); return Status::ok();
    case DType::kF16: round_all<f16>(w); return Status::ok();
    default:
      return Status(StatusCode::kInvalidArgument,
                    "round_weights: %s is not a floating-point storage type", to_string(dtype));
  }
}

}  // namespace promptdistill
