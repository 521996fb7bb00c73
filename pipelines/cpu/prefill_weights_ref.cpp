// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! PrefillWeights: a model's linear weights packed for the prefill's kernels.

#include <cstdio>
#include <cstring>

#include "pipelines/cpu/prefill_support.h"
#include "promptdistill/detail/parse_enum.h"
#include "promptdistill/dtype.h"

namespace promptdistill {
namespace ref {
namespace {

//! f32 weights rounded to bf16 (nearest even), kept as f32 values.
std::vector<float> bf16_values(const std::vector<float>& w) {
  std::vector<float> out(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) out[i] = to_float(to_bf16(w[i]));
  return out;
}

}  // namespace

std::string cpu_kernels() {
  std::string s = kernels::choice();
  if (kernels::amx_bf16_available()) s += " + amx-bf16";
  return s;
}

const char* to_string(PrefillWeightFormat f) noexcept {
  switch (f) {
    case PrefillWeightFormat::kF32: return "f32";
    case PrefillWeightFormat::kBf16: return "bf16";
  }
  return "unknown";
}

Status parse(std::string_view name, PrefillWeightFormat* out) noexcept {
  static constexpr PrefillWeightFormat kAll[] = {PrefillWeightFormat::kF32,
                                                 PrefillWeightFormat::kBf16};
  return detail::parse_enum(name, kAll, "prefill weight format", out);
}

PrefillWeights::PrefillWeights() = default;
PrefillWeights::~PrefillWeights() = default;
PrefillWeights::PrefillWeights(PrefillWeights&&) noexcept = default;
PrefillWeights& PrefillWeights::operator=(PrefillWeights&&) noexcept = default;

PrefillWeightFormat PrefillWeights::format() const {
  return impl_ ? impl_->format : PrefillWeightFormat::kF32;
}

int64_t PrefillWeights::bytes() const {
  if (!impl_) return 0;
  int64_t total = 0;
  for (const auto& L : impl_->layers)
    total += L.qkv.bytes() + L.wo.bytes() + L.gate_up.bytes() + L.down.bytes();
  return total;
}

std::string PrefillWeights::describe() const {
  if (!impl_) return "none";
  return std::string(to_string(impl_->format)) + ", " + impl_->kernels;
}

Status PrefillWeights::create(const ModelWeights& w, PrefillWeightFormat format,
                              PrefillWeights* out) noexcept {
  try {
    const ModelConfig& c = w.config;
    const int64_t hd = c.hidden, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
    const kernels::Table& t = kernels::active();
    auto impl = std::make_unique<Impl>();
    impl->format = format;
    impl->layers.resize(std::size_t(c.num_layers));
    const bool tiles = format == PrefillWeightFormat::kBf16 && kernels::amx_bf16_available();
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const LayerWeights& L = w.layers[std::size_t(l)];
      Impl::Layer& P = impl->layers[std::size_t(l)];
      // Without AMX tiles, the bf16 weights' values packed for the f32 kernels.
      const bool round = format == PrefillWeightFormat::kBf16 && !tiles;
      std::vector<float> q, k, v, o, g, u, d;
      const auto values = [&](const std::vector<float>& src,
                              std::vector<float>* keep) -> const float* {
        if (!round) return src.data();
        *keep = bf16_values(src);
        return keep->data();
      };
      const auto pack = [&](const gemm::Part* parts, int count, int64_t cols,
                            gemm::PackedMatrix* dst) {
        return tiles ? gemm::PackedMatrix::pack_bf16_tiles(parts, count, cols, dst)
                     : gemm::PackedMatrix::pack(parts, count, cols, t.nr, t.kc, dst);
      };
      const gemm::Part qkv[3] = {
          {values(L.wq, &q), qd}, {values(L.wk, &k), kvd}, {values(L.wv, &v), kvd}};
      PD_RETURN_IF_ERROR(pack(qkv, 3, hd, &P.qkv));
      const gemm::Part wo[1] = {{values(L.wo, &o), hd}};
      PD_RETURN_IF_ERROR(pack(wo, 1, qd, &P.wo));
      const gemm::Part gate_up[2] = {{values(L.w_gate, &g), c.intermediate},
                                     {values(L.w_up, &u), c.intermediate}};
      PD_RETURN_IF_ERROR(pack(gate_up, 2, hd, &P.gate_up));
      const gemm::Part down[1] = {{values(L.w_down, &d), hd}};
      PD_RETURN_IF_ERROR(pack(down, 1, c.intermediate, &P.down));
    }
    char text[128];
    if (tiles)
      std::snprintf(text, sizeof text, "AMX tiles (bf16 weights, activations as two bf16 terms)");
    else if (format == PrefillWeightFormat::kBf16)
      std::snprintf(text, sizeof text,
                    "bf16 weight values on the f32 %s kernels (no AMX-BF16 here)",
                    kernels::to_string(t.isa));
    else
      std::snprintf(text, sizeof text, "panels of %d (%s kernels)", t.nr,
                    kernels::to_string(t.isa));
    impl->kernels = text;
    out->impl_ = std::move(impl);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "prefill weights: out of host memory");
  }
}

}  // namespace ref
}  // namespace promptdistill
