// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Model weights from a GGUF file (llama.cpp tensor names), dequantised to f32.

#include <cstring>

#include "promptdistill/gguf.h"
#include "promptdistill/model.h"

namespace promptdistill {
namespace {

//! Tensor `name` after checking its shape (`rows` x `cols`, row-major [rows, cols], i.e. GGUF dims
//! {cols, rows}; rows = 1 for vectors).
Status find_checked(const GgufFile& f, const std::string& name, int64_t rows, int64_t cols,
                    const GgufTensorInfo** out) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (t == nullptr)
    return Status(StatusCode::kCorruptFile, "gguf: missing tensor '%s'", Quoted(name, 100).c_str());
  const bool vector_ok = rows == 1 && t->dims.size() == 1 && t->dims[0] == cols;
  const bool matrix_ok = t->dims.size() == 2 && t->dims[0] == cols && t->dims[1] == rows;
  if (!vector_ok && !matrix_ok)
    return Status(
        StatusCode::kCorruptFile, "gguf: tensor '%s' has shape [%lld%s%lld], expected [%lld, %lld]",
        Quoted(name, 100).c_str(), (long long)t->dims[0], t->dims.size() > 1 ? ", " : "",
        t->dims.size() > 1 ? (long long)t->dims[1] : 0LL, (long long)cols, (long long)rows);
  *out = t;
  return Status::ok();
}

//! Dequantises tensor `name` after checking its shape (find_checked).
Status load_tensor(const GgufFile& f, const std::string& name, int64_t rows, int64_t cols,
                   std::vector<float>* out) {
  const GgufTensorInfo* t = nullptr;
  PD_RETURN_IF_ERROR(find_checked(f, name, rows, cols, &t));
  try {
    out->resize(std::size_t(rows * cols));
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "gguf: out of host memory for '%s'",
                  Quoted(name, 100).c_str());
  }
  return f.dequantize(*t, out->data());
}

//! llama.cpp permutes Llama Q/K rows so that adjacent pairs rotate together; undo it so that
//! the two halves of each head rotate together (the Hugging Face convention). Rows of any type.
void unpermute_rows(uint8_t* rows, int64_t heads, int64_t head_dim, std::size_t row_bytes) {
  std::vector<uint8_t> out(std::size_t(heads * head_dim) * row_bytes);
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t s = 0; s < 2; ++s) {
        const int64_t from = h * head_dim + i * 2 + s, to = h * head_dim + s * half + i;
        std::memcpy(&out[std::size_t(to) * row_bytes], rows + std::size_t(from) * row_bytes,
                    row_bytes);
      }
  std::memcpy(rows, out.data(), out.size());
}
void unpermute_rows(std::vector<float>& w, int64_t heads, int64_t head_dim) {
  unpermute_rows(reinterpret_cast<uint8_t*>(w.data()), heads, head_dim,
                 w.size() * sizeof(float) / std::size_t(heads * head_dim));
}
void unpermute_rows(BlockMatrix& m, int64_t heads, int64_t head_dim) {
  unpermute_rows(m.bytes.data(), heads, head_dim, m.bytes.size() / std::size_t(heads * head_dim));
}

Status read_config(const GgufFile& f, ModelConfig* c) {
  std::string arch;
  PD_RETURN_IF_ERROR(f.get_string("general.architecture", &arch));
  if (arch == "llama")
    c->arch = Architecture::kLlama;
  else if (arch == "qwen2")
    c->arch = Architecture::kQwen2;
  else if (arch == "phi3")
    c->arch = Architecture::kPhi3;
  else
    return Status(StatusCode::kUnsupported,
                  "gguf: architecture '%s' is not supported (llama, qwen2, phi3)",
                  Quoted(arch, 40).c_str());
  const std::string p = arch + ".";
  PD_RETURN_IF_ERROR(f.get_int(p + "block_count", &c->num_layers));
  PD_RETURN_IF_ERROR(f.get_int(p + "embedding_length", &c->hidden));
  PD_RETURN_IF_ERROR(f.get_int(p + "feed_forward_length", &c->intermediate));
  PD_RETURN_IF_ERROR(f.get_int(p + "attention.head_count", &c->num_heads));
  c->num_kv_heads = c->num_heads;
  if (f.find(p + "attention.head_count_kv"))
    PD_RETURN_IF_ERROR(f.get_int(p + "attention.head_count_kv", &c->num_kv_heads));
  if (c->num_heads < 1) return Status(StatusCode::kCorruptFile, "gguf: head_count must be >= 1");
  c->head_dim = c->hidden / c->num_heads;
  if (f.find(p + "attention.key_length"))
    PD_RETURN_IF_ERROR(f.get_int(p + "attention.key_length", &c->head_dim));
  PD_RETURN_IF_ERROR(f.get_float(p + "attention.layer_norm_rms_epsilon", &c->rms_eps));
  c->rope.theta = 10000.0;
  if (f.find(p + "rope.freq_base"))
    PD_RETURN_IF_ERROR(f.get_float(p + "rope.freq_base", &c->rope.theta));
  c->max_positions = 4096;
  if (f.find(p + "context_length"))
    PD_RETURN_IF_ERROR(f.get_int(p + "context_length", &c->max_positions));
  if (const GgufValue* v = f.find("tokenizer.ggml.tokens"); v && v->kind == GgufValue::Kind::kArray)
    c->vocab = int64_t(v->array.size());
  if (f.find(p + "vocab_size")) PD_RETURN_IF_ERROR(f.get_int(p + "vocab_size", &c->vocab));
  int64_t bos = -1, eos = -1;
  if (f.find("tokenizer.ggml.bos_token_id"))
    PD_RETURN_IF_ERROR(f.get_int("tokenizer.ggml.bos_token_id", &bos));
  if (f.find("tokenizer.ggml.eos_token_id"))
    PD_RETURN_IF_ERROR(f.get_int("tokenizer.ggml.eos_token_id", &eos));
  c->bos_token = int32_t(bos);
  if (eos >= 0) c->eos_tokens = {int32_t(eos)};
  c->qkv_bias = c->arch == Architecture::kQwen2;
  if (f.find(p + "rope.scaling.type")) {
    std::string type;
    PD_RETURN_IF_ERROR(f.get_string(p + "rope.scaling.type", &type));
    if (type != "none" && type != "linear")
      return Status(StatusCode::kUnsupported, "gguf: rope scaling '%s' is not supported from GGUF",
                    Quoted(type, 40).c_str());
  }
  return Status::ok();
}

//! Every linear weight of layer prefix `b` ("blk.N."), in any storage: load(name, rows, cols, &m)
//! reads a tensor, rows(m, r0, r1) takes rows of one (Phi-3's fused qkv and gate_up are split),
//! and Llama Q/K rows are permuted back (unpermute_rows).
template <class Layer, class Load, class Rows>
Status load_linears(const ModelConfig& c, const std::string& b, const Load& load, const Rows& rows,
                    Layer* L) {
  const int64_t hd = c.hidden, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  PD_RETURN_IF_ERROR(load(b + "attn_output.weight", hd, qd, &L->wo));
  PD_RETURN_IF_ERROR(load(b + "ffn_down.weight", hd, c.intermediate, &L->w_down));
  if (c.arch == Architecture::kPhi3) {
    decltype(L->wq) qkv, gate_up;
    PD_RETURN_IF_ERROR(load(b + "attn_qkv.weight", qd + 2 * kvd, hd, &qkv));
    L->wq = rows(qkv, 0, qd);
    L->wk = rows(qkv, qd, qd + kvd);
    L->wv = rows(qkv, qd + kvd, qd + 2 * kvd);
    PD_RETURN_IF_ERROR(load(b + "ffn_up.weight", 2 * c.intermediate, hd, &gate_up));
    L->w_gate = rows(gate_up, 0, c.intermediate);
    L->w_up = rows(gate_up, c.intermediate, 2 * c.intermediate);
    return Status::ok();
  }
  PD_RETURN_IF_ERROR(load(b + "attn_q.weight", qd, hd, &L->wq));
  PD_RETURN_IF_ERROR(load(b + "attn_k.weight", kvd, hd, &L->wk));
  PD_RETURN_IF_ERROR(load(b + "attn_v.weight", kvd, hd, &L->wv));
  PD_RETURN_IF_ERROR(load(b + "ffn_gate.weight", c.intermediate, hd, &L->w_gate));
  PD_RETURN_IF_ERROR(load(b + "ffn_up.weight", c.intermediate, hd, &L->w_up));
  if (c.arch == Architecture::kLlama) {
    unpermute_rows(L->wq, c.num_heads, c.head_dim);
    unpermute_rows(L->wk, c.num_kv_heads, c.head_dim);
  }
  return Status::ok();
}

}  // namespace

Status load_gguf_model(const std::string& path, ModelWeights* out) noexcept {
  try {
    GgufFile f;
    PD_RETURN_IF_ERROR(GgufFile::open(path, &f));
    ModelWeights w;
    ModelConfig& c = w.config;
    PD_RETURN_IF_ERROR(read_config(f, &c));
    c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    PD_RETURN_IF_ERROR(c.validate());
    const int64_t hd = c.hidden, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
    PD_RETURN_IF_ERROR(load_tensor(f, "token_embd.weight", c.vocab, hd, &w.embed));
    PD_RETURN_IF_ERROR(load_tensor(f, "output_norm.weight", 1, hd, &w.final_norm));
    if (!c.tied_embeddings)
      PD_RETURN_IF_ERROR(load_tensor(f, "output.weight", c.vocab, hd, &w.lm_head));
    const auto load_f32 = [&](const std::string& name, int64_t rows, int64_t cols,
                              std::vector<float>* into) {
      return load_tensor(f, name, rows, cols, into);
    };
    const auto f32_rows = [&](const std::vector<float>& m, int64_t r0, int64_t r1) {
      return std::vector<float>(m.begin() + std::ptrdiff_t(r0 * hd),
                                m.begin() + std::ptrdiff_t(r1 * hd));
    };
    w.layers.resize(std::size_t(c.num_layers));
    for (int64_t l = 0; l < c.num_layers; ++l) {
      LayerWeights& L = w.layers[std::size_t(l)];
      const std::string b = "blk." + std::to_string(l) + ".";
      PD_RETURN_IF_ERROR(load_tensor(f, b + "attn_norm.weight", 1, hd, &L.attn_norm));
      PD_RETURN_IF_ERROR(load_tensor(f, b + "ffn_norm.weight", 1, hd, &L.mlp_norm));
      PD_RETURN_IF_ERROR(load_linears(c, b, load_f32, f32_rows, &L));
      if (c.qkv_bias) {
        PD_RETURN_IF_ERROR(load_tensor(f, b + "attn_q.bias", 1, qd, &L.bq));
        PD_RETURN_IF_ERROR(load_tensor(f, b + "attn_k.bias", 1, kvd, &L.bk));
        PD_RETURN_IF_ERROR(load_tensor(f, b + "attn_v.bias", 1, kvd, &L.bv));
      }
    }
    *out = std::move(w);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "gguf: out of host memory loading '%.180s'",
                  path.c_str());
  }
}

namespace {

//! Tensor `name`'s own bytes after checking its shape and that its rows are whole blocks.
Status load_blocks(const GgufFile& f, const std::string& name, int64_t rows, int64_t cols,
                   BlockMatrix* out) {
  const GgufTensorInfo* t = nullptr;
  PD_RETURN_IF_ERROR(find_checked(f, name, rows, cols, &t));
  int64_t elements = 0, bytes = 0;
  if (!ggml_block_geometry(t->type, &elements, &bytes) || cols % elements != 0)
    return Status(StatusCode::kCorruptFile,
                  "gguf: rows of '%s' (%lld elements) are not whole %s blocks",
                  Quoted(name, 100).c_str(), (long long)cols, to_string(t->type));
  if (t->bytes != uint64_t(rows * (cols / elements) * bytes))
    return Status(StatusCode::kCorruptFile,
                  "gguf: tensor '%s' holds %llu bytes, its shape needs %lld",
                  Quoted(name, 100).c_str(), (unsigned long long)t->bytes,
                  (long long)(rows * (cols / elements) * bytes));
  out->type = t->type;
  out->rows = rows;
  out->cols = cols;
  out->bytes.assign(f.tensor_data(*t),
                    f.tensor_data(*t) + std::size_t(rows * (cols / elements) * bytes));
  return Status::ok();
}

//! Rows [r0, r1) of a block matrix (Phi-3's fused projections).
BlockMatrix row_range(const BlockMatrix& m, int64_t r0, int64_t r1) {
  const std::size_t row = m.bytes.size() / std::size_t(m.rows);
  BlockMatrix out;
  out.type = m.type;
  out.rows = r1 - r0;
  out.cols = m.cols;
  out.bytes.assign(m.bytes.begin() + std::ptrdiff_t(std::size_t(r0) * row),
                   m.bytes.begin() + std::ptrdiff_t(std::size_t(r1) * row));
  return out;
}

}  // namespace

Status load_gguf_blocks(const std::string& path, const ModelConfig& c, ModelBlocks* out) noexcept {
  try {
    GgufFile f;
    PD_RETURN_IF_ERROR(GgufFile::open(path, &f));
    ModelBlocks m;
    const auto load = [&](const std::string& name, int64_t rows, int64_t cols, BlockMatrix* into) {
      return load_blocks(f, name, rows, cols, into);
    };
    PD_RETURN_IF_ERROR(load(c.tied_embeddings ? "token_embd.weight" : "output.weight", c.vocab,
                            c.hidden, &m.output));
    m.layers.resize(std::size_t(c.num_layers));
    for (int64_t l = 0; l < c.num_layers; ++l) {
      LayerBlocks& L = m.layers[std::size_t(l)];
      const std::string b = "blk." + std::to_string(l) + ".";
      PD_RETURN_IF_ERROR(load_linears(c, b, load, row_range, &L));
    }
    *out = std::move(m);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory,
                  "gguf: out of host memory loading the blocks of '%.180s'", path.c_str());
  }
}

}  // namespace promptdistill
