// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the CPU decoder: its f32 compute kernels (packed-weight GEMM, matrix-vector product,
//! tiled causal attention) in one table per instruction set (scalar, AVX2, AVX-512), the table
//! chosen once at start (`active()`), so that one binary runs each machine's fastest vectors.
//!
//! Every table computes the same bits. Each GEMM/matvec output is one fused multiply-add chain
//! over k = 0, 1, ..., K-1 from +0 (K blocks continue the chain through the stored f32 value), so
//! neither the blocking, the thread split, the ISA nor the number of rows changes it: a row of a
//! prefill equals the decode step's product of that row. Attention runs over blocks of
//! kKeyBlock keys in key order with an online softmax whose per-lane operations and reductions
//! are fixed (kernels/attention_kernels.inc): a query row's result depends only on its own
//! visible keys, whatever tile it sits in.

#include <cstdint>

namespace promptdistill {
namespace ref {
namespace kernels {

constexpr int kLanes = 16;         //!< the kernels' logical vector (AVX2 holds it in two)
constexpr int64_t kKeyBlock = 64;  //!< keys per online-softmax step (fixes attention's bits)
constexpr int kMaxSegments = 4;    //!< output segments of one packed matrix (Q, K, V)

//! Columns [first_panel * nr, ...) of a packed matrix written to c (row stride ldc), `cols` wide.
struct Segment {
  int64_t first_panel = 0, panels = 0, cols = 0;
  float* c = nullptr;
  int64_t ldc = 0;
};

//! Weights packed in panels of nr output columns, K in blocks of kc rows (the last one shorter):
//! block b holds every panel's rows of that block one panel after the other, so that a task
//! reading consecutive panels of one K block reads one contiguous stream. The weight of column j
//! of panel p at row k0 + i (k0 = b * kc, i < kc_b = min(kc, k - k0)) is at
//! at(k0, p)[i * nr + j]; zero past the matrix.
struct Panels {
  const float* b = nullptr;
  int64_t k = 0, nr = 0, kc = 0, panels = 0;
  const float* at(int64_t k0, int64_t panel) const {
    const int64_t rows = kc < k - k0 ? kc : k - k0;
    return b + k0 * panels * nr + panel * rows * nr;
  }
};

//! C[m, segment columns] = A[m, k] * B for rows [0, m) of A (row stride lda).
struct GemmArgs {
  const float* a = nullptr;
  int64_t lda = 0, m = 0;
  Panels w;
  Segment segments[kMaxSegments];
  int count = 0;
  float* scratch = nullptr;  //!< gemm_scratch_floats(m, w.kc) floats, 64-byte aligned
};

//! y[segment columns] = x[k] * B: the GEMM's chain for one row.
struct MatvecArgs {
  const float* x = nullptr;
  Panels w;
  Segment segments[kMaxSegments];
  int count = 0;
};

//! Causal attention of `rows` consecutive query rows of `heads` query heads sharing one KV head.
//! Query row i of head j is at q + i * q_stride + j * head_dim, its output at out + i *
//! out_stride + j * head_dim; row i sees keys [0, first_visible + i) (key t at k + t * kv_stride,
//! value at v + t * kv_stride). `kt`, when set, holds the keys already transposed in blocks:
//! block b ([head_dim][kKeyBlock], zero past the last key) at kt + b * kKeyBlock * head_dim
//! (transpose_keys); else each block is transposed when it is used.
struct AttentionArgs {
  const float* q = nullptr;
  int64_t q_stride = 0, heads = 0, rows = 0, first_visible = 0, head_dim = 0;
  const float *k = nullptr, *v = nullptr, *kt = nullptr;
  int64_t kv_stride = 0;
  float scale_log2 = 1.0f;  //!< the softmax scale times log2(e), rounded to f32
  float* out = nullptr;
  int64_t out_stride = 0;
  float* scratch = nullptr;  //!< attention_scratch_floats(heads * rows, head_dim), 64-byte aligned
};

//! The bf16 GEMM on AMX tiles (kernels_amx.cpp; PrefillWeightFormat::kBf16): C = (hi + lo) * B,
//! the activations split into two bf16 terms (hi = bf16(a), lo = bf16(a - hi), amx_split) and
//! the weights rounded to bf16, f32 accumulation. Tier C: the tile unit's summation order is its
//! own, so nothing here is bit-compatible with the f32 tables.
struct AmxGemmArgs {
  const uint16_t *hi = nullptr,
                 *lo = nullptr;  //!< [m rounded up to 32][lda] bf16 (zero rows past m)
  int64_t lda = 0, m = 0;
  //! Panels of 16 columns, each k_tiles tiles of 16 rows (K pairs) x 16 columns x 2 (the pair)
  const uint16_t* b = nullptr;
  int64_t k_tiles = 0;
  Segment segments[kMaxSegments];
  int count = 0;
};
//! True where the CPU has AMX-BF16 (and AVX-512 BF16) and the OS grants the tile state.
bool amx_bf16_available() noexcept;
//! Rows [0, rows) of A (row stride lda, k columns) as hi and lo bf16 rows of k_pad (zero past k).
void amx_split(const float* a, int64_t lda, int64_t rows, int64_t k, int64_t k_pad, uint16_t* hi,
               uint16_t* lo) noexcept;
void amx_gemm(const AmxGemmArgs& args) noexcept;
//! bf16 tile throughput of one thread, GFLOP/s (tdpbf16ps on registers; 0 without AMX-BF16).
double amx_bf16_gflops(double seconds) noexcept;

enum class Isa : int32_t { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
const char* to_string(Isa isa) noexcept;

struct Table {
  Isa isa = Isa::kScalar;
  int mr = 0;      //!< rows of one micro-tile
  int nr = 0;      //!< panel width this ISA packs weights in
  int64_t kc = 0;  //!< K block weights are packed in for this ISA (PackedMatrix::pack)
  void (*gemm)(const GemmArgs&) = nullptr;
  void (*matvec)(const MatvecArgs&) = nullptr;
  void (*attention)(const AttentionArgs&) = nullptr;
  int64_t gemm_scratch_floats(int64_t m, int64_t k_block) const {
    return (m + mr - 1) / mr * mr * k_block + 16;
  }
  int64_t attention_scratch_floats(int64_t tile_rows, int64_t head_dim) const;
};

//! The table of an ISA, or nullptr when this CPU or build lacks it.
const Table* table(Isa isa) noexcept;
//! The table in use: the fastest this CPU runs (see choose()), or PROMPTDISTILL_CPU_KERNELS
//! (scalar, avx2, avx512) when set to one this CPU has.
const Table& active() noexcept;
//! Makes `isa` the table in use (tests and benchmarks); false when unavailable.
bool set_active(Isa isa) noexcept;
//! f32 FMA throughput of one thread with this ISA's vectors, GFLOP/s (a short register-only loop
//! timed on the thread's CPU clock, so the load of other processes barely moves it).
double fma_gflops(Isa isa, double seconds) noexcept;
//! How active() was chosen, e.g. "avx2 (measured 101 GFLOP/s per thread; avx512 78)".
const char* choice() noexcept;

}  // namespace kernels
}  // namespace ref
}  // namespace promptdistill
