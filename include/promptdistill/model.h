// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::models.
//! Decoder-only transformer models of the Llama family (Llama/SmolLM2, Qwen2, Phi-3): their
//! configuration, host weights in f32, loaders (GGUF and Hugging Face folders) and the RoPE tables
//! that both backends share.
//!
//! Conventions (the Hugging Face ones): linear weights are row-major [out, in]; RoPE rotates the
//! two halves of each head (x[i], x[i + d/2]); position ids are explicit and may have gaps;
//! attention is causal in the order tokens are given (which equals position order for the
//! increasing positions PromptDistill keeps).

#include <cstdint>
#include <string>
#include <vector>

#include "promptdistill/dtype.h"
#include "promptdistill/gguf.h"
#include "promptdistill/status.h"

namespace promptdistill {

enum class Architecture : int32_t { kLlama = 0, kQwen2 = 1, kPhi3 = 2 };
const char* to_string(Architecture a) noexcept;

enum class RopeScaling : int32_t { kNone = 0, kLlama3 = 1, kLongRope = 2 };

struct RopeConfig {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::kNone;
  // llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_positions = 0;
  // LongRoPE (Phi-3.5): per-frequency factors and the attention scaling of cos/sin
  std::vector<double> short_factor, long_factor;
  double attention_factor = 1.0;  //!< 1.0 = derive sqrt(1 + ln(max/original) / ln(original))
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  int64_t num_layers = 0;
  int64_t hidden = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate = 0;
  int64_t vocab = 0;
  int64_t max_positions = 0;
  double rms_eps = 1e-5;
  RopeConfig rope;
  bool tied_embeddings = false;
  bool qkv_bias = false;  //!< Qwen2
  int32_t bos_token = -1;
  std::vector<int32_t> eos_tokens;

  //! Consistency checks (positive sizes, heads divide, head_dim even, ...).
  Status validate() const noexcept;
};

//! One decoder layer, f32, row-major [out, in] linear weights. Phi-3's fused qkv and gate_up
//! projections are split at load time.
struct LayerWeights {
  std::vector<float> attn_norm;       //!< [hidden]
  std::vector<float> wq, wk, wv, wo;  //!< [H*D, hidden], [Hkv*D, hidden] x2, [hidden, H*D]
  std::vector<float> bq, bk, bv;      //!< biases (Qwen2) or empty
  std::vector<float> mlp_norm;        //!< [hidden]
  std::vector<float> w_gate, w_up;    //!< [intermediate, hidden]
  std::vector<float> w_down;          //!< [hidden, intermediate]
};

struct ModelWeights {
  ModelConfig config;
  std::vector<float> embed;       //!< [vocab, hidden]
  std::vector<float> final_norm;  //!< [hidden]
  std::vector<float> lm_head;     //!< [vocab, hidden], empty when tied to `embed`
  std::vector<LayerWeights> layers;

  const std::vector<float>& output_matrix() const {
    return config.tied_embeddings ? embed : lm_head;
  }
};

//! Loads a GGUF file of architecture llama (SmolLM2, Llama), qwen2 or phi3, dequantising every
//! tensor to f32. llama.cpp stores Llama Q/K rows permuted for its interleaved RoPE; they are
//! permuted back to the Hugging Face half-split layout here.
Status load_gguf_model(const std::string& path, ModelWeights* out) noexcept;

//! A weight matrix as the GGUF file stores it: row-major [rows, cols] in the file's own type
//! (whole blocks per row), rows in the order load_gguf_model gives them (Llama Q/K rows permuted
//! back, Phi-3's fused projections split).
struct BlockMatrix {
  GgmlType type = GgmlType::kF32;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> bytes;
};
struct LayerBlocks {
  BlockMatrix wq, wk, wv, wo, w_gate, w_up, w_down;
};
//! The linear weights of a GGUF model in the file's own blocks (the fast decode modes dot them
//! directly); `output` is the LM head (the embedding matrix when tied).
struct ModelBlocks {
  std::vector<LayerBlocks> layers;
  BlockMatrix output;
};
//! Reads the linear weights of the GGUF file at `path` without dequantising them; `config` is the
//! configuration load_gguf_model read from the same file.
Status load_gguf_blocks(const std::string& path, const ModelConfig& config,
                        ModelBlocks* out) noexcept;

//! Loads a Hugging Face folder: config.json + model.safetensors or a sharded
//! model.safetensors.index.json, for LlamaForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM (f32, f16,
//! bf16 tensors).
Status load_hf_model(const std::string& dir, ModelWeights* out) noexcept;

//! Rounds every stored weight to `dtype` (kBF16 or kF16, round to nearest even) and back to f32, so
//! the f32 CPU decoder computes with exactly the values a 16-bit backend stores (the CUDA session
//! keeps bf16 weights, except the LM head, which stays f32). kF32 leaves the weights unchanged;
//! other types are kInvalidArgument.
Status round_weights(ModelWeights* weights, DType dtype) noexcept;

//! cos/sin of every rotary frequency at every position, computed once on the host and shared by
//! both backends: cos[i * D/2 + f], sin[...] for positions[i]. `total_length` is the sequence
//! length LongRoPE uses to pick its short or long factors.
Status rope_tables(const ModelConfig& config, const int32_t* positions, int64_t count,
                   int64_t total_length, std::vector<float>* cos, std::vector<float>* sin) noexcept;

}  // namespace promptdistill
