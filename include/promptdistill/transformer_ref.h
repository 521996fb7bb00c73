// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::cpu_pipelines.
//! The CPU reference decoder (`promptdistill::ref`, in promptdistill::cpu_reference): f32 compute
//! on f32 weights, explicit position ids, per-layer KV caches whose lengths may differ from layer
//! to layer. It is the oracle for the CUDA blocks and the engine of the CPU pipelines. Its linear
//! layers and attention run the kernels of pipelines/cpu/cpu_kernels.h (packed weights, a tiled
//! causal attention, AVX2 or AVX-512 chosen at start, OpenMP threads): Tier C against exact
//! arithmetic, but each output is computed in one fixed order, so the bits do not depend on the
//! thread count, the instruction set or how many rows a call has.
//!
//! Single-token steps (decode) have their own path, `Transformer::decode`: allocation-free after
//! DecodeWorkspace::reserve. With the default DecodeOptions it computes exactly what `layer`
//! computes for that token in a prefill (the exact f32 reference: the same bits as the prefill's
//! row, whatever the thread count). Opt-in fast modes, Tier C against it (docs/design.md §4):
//! weights in f16 or in GGUF blocks (DecodeWeights), a 16-bit KV cache; and a bf16 prefill
//! (PrefillWeights).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "promptdistill/model.h"
#include "promptdistill/status.h"

namespace promptdistill {
namespace ref {

//! The CPU decoder's thread count (its OpenMP regions); n <= 0 restores the default
//! (OMP_NUM_THREADS, else one per core). No result depends on it.
void set_threads(int n) noexcept;
//! The thread count the decoder's parallel regions use now.
int threads() noexcept;
//! Which f32 kernels the decoder runs and why, e.g. "avx512 (measured 202 GFLOP/s per thread;
//! avx2 109)"; "+ amx-bf16" where the bf16 prefill can use AMX tiles.
std::string cpu_kernels();

//! One layer's cache: post-RoPE keys and values, [length, heads, D] each, in token order.
//! `heads` is the model's H_kv, or H for a GQA-expanded cache (SnapKV/H2O per query head, as the
//! reference code stores it); tokens appended to an expanded cache are expanded too.
//! Prefill fills `k`/`v` (f32); `to_half` moves a cache to `k16`/`v16` (f16 bits, round to nearest
//! even) for a 16-bit decode cache, after which only Transformer::decode appends to it.
struct KvLayerCache {
  std::vector<float> k, v;
  std::vector<uint16_t> k16, v16;
  bool half = false;
  int64_t length = 0;
  int64_t heads = 0;  //!< 0 until the first append (then H_kv)
  void clear() {
    k.clear();
    v.clear();
    k16.clear();
    v16.clear();
    half = false;
    length = 0;
  }
  std::size_t bytes() const {
    return (k.capacity() + v.capacity()) * sizeof(float) + (k16.capacity() + v16.capacity()) * 2;
  }
  //! Rounds the cache to f16 and frees the f32 copy (no-op when already half).
  void to_half();
  //! Capacity for `tokens` tokens in the current storage, so that appends up to it never allocate.
  void reserve(int64_t tokens, int64_t head_dim);
  //! Keeps only the tokens at `indices` (ascending), in order; frees the rest.
  void keep(const std::vector<int32_t>& indices, int64_t head_dim);
  //! Per-head selections (`rows` = heads lists of equal length, ascending): head h keeps
  //! rows[h]. With `expand_to` > heads, the cache becomes GQA-expanded (query head q reads KV
  //! head q / (expand_to / heads)) before the per-head selection.
  void keep_per_head(const std::vector<std::vector<int32_t>>& rows, int64_t head_dim,
                     int64_t expand_to = 0);
};

//! What a layer hands back besides its output (for token selection).
struct LayerTaps {
  int64_t q_rows = 0;       //!< how many of the last rows' post-RoPE queries to keep
  std::vector<float> q;     //!< [q_rows, H, D]
  bool want_keys = false;   //!< keep this forward's post-RoPE keys
  std::vector<float> keys;  //!< [n, H_kv, D]
};

//! Weight formats of the decode path. kF32: the model's own f32 weights (the exact reference).
//! kF16: rounded to f16 (their only change), dotted with the f32 activations. kGguf: the GGUF
//! file's own tensors (Q4_0, Q4_1, Q8_0 blocks; F16) as stored, so that a Q4_1 file's decode
//! reads 4.5-bit weights: the same weight values as the exact mode's dequantized ones, dotted with
//! the activations quantized to int16 per block of 32 (within 2^-16 of the block's largest) in
//! exact integer arithmetic; F16 tensors as kF16. Prefill always computes in f32 on the f32
//! weights.
enum class DecodeWeightFormat : int32_t { kF32 = 0, kF16 = 1, kGguf = 2 };
const char* to_string(DecodeWeightFormat f) noexcept;
//! "f32", "f16", "gguf".
Status parse(std::string_view name, DecodeWeightFormat* out) noexcept;

//! A model's linear weights in a decode format (the attention, MLP and LM-head matrices; the f32
//! weights stay in ModelWeights for prefill and embedding). Built once per model; read-only after.
class DecodeWeights {
 public:
  DecodeWeights();
  ~DecodeWeights();
  DecodeWeights(DecodeWeights&&) noexcept;
  DecodeWeights& operator=(DecodeWeights&&) noexcept;

  //! kF32 views `weights` (no copy); kF16 converts them; kGguf reads `gguf_path` (the
  //! file `weights` was loaded from) and fails with kInvalidArgument without one. A matrix whose
  //! file type has no kernel (F32, BF16) is held as f16. `weights` must outlive the result.
  static Status create(const ModelWeights& weights, DecodeWeightFormat format,
                       const std::string& gguf_path, DecodeWeights* out) noexcept;
  DecodeWeightFormat format() const;
  //! Bytes held besides the f32 weights.
  int64_t bytes() const;
  //! Which storage each matrix kind has, e.g. "q4_1 (layers), q8_0 (lm head)".
  std::string describe() const;

  struct Impl;
  const Impl* impl() const { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

//! Weight formats of the prefill's linear layers. kF32: the model's f32 weights, packed once for
//! the CPU kernels (the exact mode; its packing is also what the exact decode step reads). kBf16
//! (opt-in, Tier C): the weights rounded to bf16 (nearest even), the activations split into two
//! bf16 terms (hi + lo, 16 significant bits), products accumulated in f32 with the AMX tile
//! instructions where the CPU has them (a 16x wider product than f32 FMA); elsewhere the rounded
//! weights run the f32 kernels. Attention and the element-wise ops stay f32 in both.
enum class PrefillWeightFormat : int32_t { kF32 = 0, kBf16 = 1 };
const char* to_string(PrefillWeightFormat f) noexcept;
//! "f32", "bf16".
Status parse(std::string_view name, PrefillWeightFormat* out) noexcept;

//! A model's linear weights packed for the prefill (Q/K/V as one matrix, gate/up as one, the
//! output and down projections), built once per model and read-only after: share one between
//! sessions. The f32 weights stay in ModelWeights (embedding, LM head, the other decoders).
class PrefillWeights {
 public:
  PrefillWeights();
  ~PrefillWeights();
  PrefillWeights(PrefillWeights&&) noexcept;
  PrefillWeights& operator=(PrefillWeights&&) noexcept;

  //! Packs `weights` (which must outlive nothing: the packs are copies) in `format`.
  static Status create(const ModelWeights& weights, PrefillWeightFormat format,
                       PrefillWeights* out) noexcept;
  PrefillWeightFormat format() const;
  //! Bytes of the packed copies.
  int64_t bytes() const;
  //! E.g. "f32, panels of 16 (avx2 kernels)" or "bf16 (amx)".
  std::string describe() const;

  struct Impl;
  const Impl* impl() const { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

//! The storage of decode caches: kF32 (exact) or kF16 (converted after the prefill; decode reads
//! half the bytes).
enum class KvStorage : int32_t { kF32 = 0, kF16 = 1 };
const char* to_string(KvStorage s) noexcept;
Status parse(std::string_view name, KvStorage* out) noexcept;

struct DecodeOptions {
  const DecodeWeights* weights = nullptr;  //!< null: the model's f32 weights (exact)
  KvStorage kv = KvStorage::kF32;
  //! True when every choice is the exact reference.
  bool exact() const;
};

//! Scratch of decode steps, sized once by `reserve` for a context length; a step within it
//! allocates nothing. Not shared between threads.
class DecodeWorkspace {
 public:
  DecodeWorkspace();
  ~DecodeWorkspace();
  DecodeWorkspace(DecodeWorkspace&&) noexcept;
  DecodeWorkspace& operator=(DecodeWorkspace&&) noexcept;
  //! Buffers for contexts up to `max_context` tokens (RoPE rows included).
  Status reserve(const ModelConfig& config, int64_t max_context) noexcept;
  int64_t max_context() const;
  //! The logits of the last step.
  const std::vector<float>& logits() const;

  struct Impl;
  Impl* impl() { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

class Transformer {
 public:
  //! `prefill` (optional, must outlive the Transformer) holds the packed weights of the prefill's
  //! linear layers; without it, or when it is not f32, the f32 packing the exact paths need is
  //! made on first use (prepare()) and shared by copies of this Transformer.
  explicit Transformer(const ModelWeights* weights, const PrefillWeights* prefill = nullptr);
  const ModelConfig& config() const { return w_->config; }
  //! Makes the packed weights now (layer and decode do it on first use): call it before timing.
  Status prepare() const noexcept;
  //! The prefill's weight format.
  PrefillWeightFormat prefill_format() const;

  //! x = embedding rows of `ids` ([n, hidden]); ids outside the vocabulary are an error.
  Status embed(const int32_t* ids, int64_t n, std::vector<float>* x) const noexcept;

  //! Layer `l` over the n rows of x in place. Token i sits at positions[i]; `total_length` is the
  //! sequence length for LongRoPE's factor choice. If `cache` is non-null, the new tokens see every
  //! cached token plus the new tokens up to themselves, and are appended to it; if null, they see
  //! only the new tokens up to themselves and nothing is stored.
  Status layer(int64_t l, std::vector<float>* x, int64_t n, const int32_t* positions,
               int64_t total_length, KvLayerCache* cache, LayerTaps* taps) const noexcept;

  //! Final norm and LM head of one hidden row: logits [vocab].
  Status logits(const float* row, std::vector<float>* out) const noexcept;

  //! One decode step: `token` at `position` through every layer (appending to `caches`, whose
  //! storage `options.kv` must match: see KvLayerCache::to_half), then the logits (in
  //! `ws->logits()`) and the greedy next token. Needs ws->reserve(config, position + 1) and cache
  //! capacity (KvLayerCache::reserve) for no allocation; grows them otherwise.
  Status decode(int32_t token, int64_t position, std::vector<KvLayerCache>* caches,
                const DecodeOptions& options, DecodeWorkspace* ws, int32_t* next) const noexcept;

 private:
  struct OwnPacking;
  //! The f32 packing (the exact prefill's and decode's), or an error from making it.
  const PrefillWeights::Impl* exact_weights(Status* status) const noexcept;
  const ModelWeights* w_;
  const PrefillWeights* prefill_ = nullptr;
  std::shared_ptr<OwnPacking> own_;
};

//! Index of the largest logit in ArgMax's order (blocks.h): the first one on ties, the first NaN
//! if there is one (what both batch sessions' device-side greedy step picks).
int32_t argmax(const std::vector<float>& logits) noexcept;

}  // namespace ref
}  // namespace promptdistill
