// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! DecodeWeights: a model's linear weights in the format of the decode path.

#include <set>

#include "promptdistill/detail/parse_enum.h"
#include "pipelines/cpu/decode_support.h"

namespace promptdistill {
namespace ref {
namespace {

using matvec::Matrix;

Status convert(const std::vector<float>& w, int64_t rows, int64_t cols, DecodeWeightFormat format,
               Matrix* out) {
  switch (format) {
    case DecodeWeightFormat::kF16: return Matrix::from_f32_as_f16(w.data(), rows, cols, out);
    default: *out = Matrix::view_f32(w.data(), rows, cols); return Status::ok();
  }
}

//! A file's tensor as stored; types without a kernel (F32, BF16) are held as f16 of the f32
//! weights.
Status from_blocks(BlockMatrix blocks, const std::vector<float>& w, Matrix* out) {
  if (blocks.type == GgmlType::kF32 || blocks.type == GgmlType::kBF16)
    return Matrix::from_f32_as_f16(w.data(), blocks.rows, blocks.cols, out);
  return Matrix::from_gguf(blocks.type, std::move(blocks.bytes), blocks.rows, blocks.cols, out);
}

}  // namespace

const char* to_string(DecodeWeightFormat f) noexcept {
  switch (f) {
    case DecodeWeightFormat::kF32: return "f32";
    case DecodeWeightFormat::kF16: return "f16";
    case DecodeWeightFormat::kGguf: return "gguf";
  }
  return "unknown";
}

Status parse(std::string_view name, DecodeWeightFormat* out) noexcept {
  static constexpr DecodeWeightFormat kAll[] = {DecodeWeightFormat::kF32, DecodeWeightFormat::kF16,
                                                DecodeWeightFormat::kGguf};
  return detail::parse_enum(name, kAll, "decode weight format", out);
}

DecodeWeights::DecodeWeights() = default;
DecodeWeights::~DecodeWeights() = default;
DecodeWeights::DecodeWeights(DecodeWeights&&) noexcept = default;
DecodeWeights& DecodeWeights::operator=(DecodeWeights&&) noexcept = default;

DecodeWeightFormat DecodeWeights::format() const {
  return impl_ ? impl_->format : DecodeWeightFormat::kF32;
}

int64_t DecodeWeights::bytes() const {
  if (!impl_) return 0;
  int64_t total = impl_->output.bytes();
  for (const auto& L : impl_->layers)
    total += L.wq.bytes() + L.wk.bytes() + L.wv.bytes() + L.wo.bytes() + L.w_gate.bytes() +
             L.w_up.bytes() + L.w_down.bytes();
  return total;
}

std::string DecodeWeights::describe() const {
  if (!impl_) return "f32";
  std::set<std::string> layer_formats;
  for (const auto& L : impl_->layers)
    for (const Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      layer_formats.insert(matvec::to_string(m->format()));
  std::string layers;
  for (const auto& f : layer_formats) layers += (layers.empty() ? "" : "+") + f;
  return layers + " (layers), " + matvec::to_string(impl_->output.format()) + " (lm head)";
}

Status DecodeWeights::create(const ModelWeights& w, DecodeWeightFormat format,
                             const std::string& gguf_path, DecodeWeights* out) noexcept {
  try {
    const ModelConfig& c = w.config;
    const int64_t hd = c.hidden, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
    auto impl = std::make_unique<Impl>();
    impl->format = format;
    impl->layers.resize(std::size_t(c.num_layers));
    if (format == DecodeWeightFormat::kGguf) {
      if (gguf_path.empty())
        return Status(
            StatusCode::kInvalidArgument,
            "decode weights 'gguf' keep a GGUF file's own tensors: this model is not a GGUF file");
      ModelBlocks blocks;
      PD_RETURN_IF_ERROR(load_gguf_blocks(gguf_path, c, &blocks));
      if (int64_t(blocks.layers.size()) != c.num_layers)
        return Status(StatusCode::kInvalidArgument,
                      "decode weights: '%.180s' has %zu layers, the model %lld", gguf_path.c_str(),
                      blocks.layers.size(), (long long)c.num_layers);
      for (int64_t l = 0; l < c.num_layers; ++l) {
        LayerBlocks& B = blocks.layers[std::size_t(l)];
        const LayerWeights& L = w.layers[std::size_t(l)];
        Impl::Layer& D = impl->layers[std::size_t(l)];
        PD_RETURN_IF_ERROR(from_blocks(std::move(B.wq), L.wq, &D.wq));
        PD_RETURN_IF_ERROR(from_blocks(std::move(B.wk), L.wk, &D.wk));
        PD_RETURN_IF_ERROR(from_blocks(std::move(B.wv), L.wv, &D.wv));
        PD_RETURN_IF_ERROR(from_blocks(std::move(B.wo), L.wo, &D.wo));
        PD_RETURN_IF_ERROR(from_blocks(std::move(B.w_gate), L.w_gate, &D.w_gate));
        PD_RETURN_IF_ERROR(from_blocks(std::move(B.w_up), L.w_up, &D.w_up));
        PD_RETURN_IF_ERROR(from_blocks(std::move(B.w_down), L.w_down, &D.w_down));
      }
      PD_RETURN_IF_ERROR(from_blocks(std::move(blocks.output), w.output_matrix(), &impl->output));
    } else {
      for (int64_t l = 0; l < c.num_layers; ++l) {
        const LayerWeights& L = w.layers[std::size_t(l)];
        Impl::Layer& D = impl->layers[std::size_t(l)];
        PD_RETURN_IF_ERROR(convert(L.wq, qd, hd, format, &D.wq));
        PD_RETURN_IF_ERROR(convert(L.wk, kvd, hd, format, &D.wk));
        PD_RETURN_IF_ERROR(convert(L.wv, kvd, hd, format, &D.wv));
        PD_RETURN_IF_ERROR(convert(L.wo, hd, qd, format, &D.wo));
        PD_RETURN_IF_ERROR(convert(L.w_gate, c.intermediate, hd, format, &D.w_gate));
        PD_RETURN_IF_ERROR(convert(L.w_up, c.intermediate, hd, format, &D.w_up));
        PD_RETURN_IF_ERROR(convert(L.w_down, hd, c.intermediate, format, &D.w_down));
      }
      PD_RETURN_IF_ERROR(convert(w.output_matrix(), c.vocab, hd, format, &impl->output));
    }
    out->impl_ = std::move(impl);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "decode weights: out of host memory");
  }
}

}  // namespace ref
}  // namespace promptdistill
