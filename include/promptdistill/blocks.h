// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core (declarations and validation); the operations:
//! promptdistill::cpu_reference (ref::) and promptdistill::cuda (cuda::). Decoder block operations:
//! token embedding, RMSNorm, RoPE, SwiGLU, linear layers (GEMMs), KV append and GQA causal
//! attention, in `promptdistill::ref` (CPU, host memory) and `promptdistill::cuda` (device memory,
//! caller's stream, no allocation, no host sync). Both namespaces include `detail/block_ops.inc`,
//! so the signatures cannot drift.
//!
//! Storage types: float, bf16, f16; every op computes in f32 and rounds once to the storage type
//! where it writes (RMSNorm and SwiGLU also round their intermediate exactly where Hugging Face
//! casts back to the model dtype, see below).
//!
//! ## Exact semantics and tiers (docs/design.md §4)
//! - Embed, AppendKv: Tier A (copies).
//! - RmsNorm (Tier B): ss = canonical_sum_j mul(x_j, x_j); inv = div(1, sqrt(add(div(ss, d),
//! eps)));
//!   y_j = to_T(mul(w_j, round_T(mul(x_j, inv)))).
//! - Rope (Tier B), half-split, per token i and frequency f with cos/sin tables [n, D/2]:
//!   a' = sub(mul(a, c), mul(b, s)), b' = add(mul(b, c), mul(a, s)), written as T.
//! - SwiGlu (Tier B): y = to_T(mul(round_T(div(g, add(1, exp_f32(-g)))), u)).
//! - Attention with `AttentionAlgo::kExact` (Tier B): row i of request b (q_len_b new rows,
//! kv_len_b
//!   visible keys) sits at key position p = kv_len_b - q_len_b + i and sees keys 0..p.
//!   z_j = mul(dot(q, k_j), scale); m = canonical_max_j z_j; e_j = exp_f32(sub(z_j, m));
//!   l = canonical_sum_j e_j; o_d = to_T(sum_j mul(div(e_j, l), v_jd)), the last sum sequential in
//!   ascending j from +0. Query head h reads KV head h / (H / H_kv).
//! - Attention with `kFast` (Tier C): up to 8 rows per request, split-KV decode attention (f32 on
//!   CUDA cores, 512-key chunks, a combine kernel); more rows, tensor-core flash attention for
//!   bf16/f16 with D in {64, 96, 128}, else the kExact kernel. Stated bounds in the tests. The CPU
//!   reference always runs kExact.
//! - Linear (Tier C): y = x W^T (+ bias) (+ residual) with f32 accumulation (cuBLASLt on CUDA,
//!   Eigen on the CPU); exact on small-integer data.
//! - ArgMax (Tier A): out[i] = the index of row i's largest value (detail::argmax_ranks_before):
//!   ties go to the smaller index (+0 and -0 tie), NaN ranks above every number (a row holding
//!   NaN gives its first NaN, as torch.argmax and numpy.argmax do). One total order, so the CUDA
//!   reduction tree gives the CPU's sequential answer.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "promptdistill/detail/config.h"
#include "promptdistill/dtype.h"
#include "promptdistill/kv_cache.h"
#include "promptdistill/status.h"
#include "promptdistill/tensor_view.h"
#include "promptdistill/workspace.h"

namespace promptdistill {

//! out[i, :] = table[ids[i], :]; ids outside [0, vocab) are an error (kOutOfRange).
template <class T>
struct EmbedArgs {
  TensorView<const T, 2> table;      //!< [vocab, hidden]
  TensorView<const int32_t, 1> ids;  //!< [n]
  TensorView<T, 2> out;              //!< [n, hidden]
};

template <class T>
struct RmsNormArgs {
  TensorView<const T, 2> x;       //!< [n, d]
  TensorView<const T, 1> weight;  //!< [d]
  float eps = 1e-5f;
  TensorView<T, 2> out;  //!< [n, d]; may be x itself (in place)
};

//! In-place rotary embedding of [n, heads, D] with per-token tables (from rope_tables()).
template <class T>
struct RopeArgs {
  TensorView<T, 3> x;              //!< [n, heads, D]
  TensorView<const float, 2> cos;  //!< [n, D/2]
  TensorView<const float, 2> sin;  //!< [n, D/2]
};

template <class T>
struct SwiGluArgs {
  TensorView<const T, 2> gate;  //!< [n, I] (a strided half of a fused gate_up output is fine)
  TensorView<const T, 2> up;    //!< [n, I]
  TensorView<T, 2> out;         //!< [n, I]; may alias gate
};

//! y = x W^T (+ bias) (+ residual). Rows of x, w, y and residual need unit column stride, and
//! pointers and row strides 16-byte alignment (cuBLASLt's contract, checked on both backends).
template <class T>
struct LinearArgs {
  TensorView<const T, 2> x;         //!< [n, in]
  TensorView<const T, 2> w;         //!< [out, in], row-major (the Hugging Face layout)
  TensorView<const T, 1> bias;      //!< [out] or empty
  TensorView<const T, 2> residual;  //!< [n, out] or empty; may be y itself
  TensorView<T, 2> y;               //!< [n, out]
};

//! Shape of a linear layer, fixed when its plan is made.
struct LinearShape {
  int64_t rows = 0, in = 0, out = 0;
  bool bias = false, residual = false;
  int64_t x_row_stride = 0, w_row_stride = 0, y_row_stride = 0;  //!< 0 = packed
};

//! Writes the new tokens' keys and values into the caches: request b's row i goes to token
//! kv_len_b - q_len_b + i (the caches must hold kv_len_b tokens; pages must be mapped).
template <class T>
struct AppendKvArgs {
  TensorView<const T, 4> k_new;  //!< [B, n, H_kv, D]
  TensorView<const T, 4> v_new;  //!< [B, n, H_kv, D]
  KvCacheView<T> k, v;
  const int32_t* q_lens = nullptr;   //!< [B] new rows per request (<= n)
  const int32_t* kv_lens = nullptr;  //!< [B] tokens in the cache after the append
};

enum class AttentionAlgo : int32_t {
  kExact = 0,  //!< Tier B: the order spelled out above, bit-identical on both backends
  kFast = 1,   //!< Tier C: flash attention (prefill) / split-KV (decode); ref runs kExact
};

template <class T>
struct AttentionArgs {
  AttentionAlgo algo = AttentionAlgo::kFast;
  TensorView<const T, 4> q;          //!< [B, n, H, D] post-RoPE
  KvCacheView<const T> k, v;         //!< caches that already hold the new tokens
  const int32_t* q_lens = nullptr;   //!< [B] new rows per request, <= n
  const int32_t* kv_lens = nullptr;  //!< [B] visible keys per request, >= q_len
  int64_t max_kv_len = 0;            //!< host bound on every kv_len (sizes the split-KV grid)
  float scale = 0.0f;                //!< 0 = 1/sqrt(D)
  TensorView<T, 4> out;              //!< [B, n, H, D]; rows i >= q_len_b are untouched
};

//! out[i] = argmax_j x[i, j] (the greedy next token of a row of logits; see ArgMax above).
template <class T>
struct ArgMaxArgs {
  TensorView<const T, 2> x;    //!< [rows, n], 1 <= n <= 2^31 - 1
  TensorView<int32_t, 1> out;  //!< [rows]
};

namespace ref {
#include "promptdistill/detail/block_ops.inc"
}  // namespace ref

namespace cuda {
#include "promptdistill/detail/block_ops.inc"
}  // namespace cuda

}  // namespace promptdistill
