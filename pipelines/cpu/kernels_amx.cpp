// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The bf16 prefill GEMM on AMX tiles (cpu_kernels.h, kernels::amx_*): weights rounded to bf16 in
//! the tile layout, activations split into two bf16 terms (hi = bf16(a), lo = bf16(a - hi): 16
//! significant bits between them), tdpbf16ps accumulating both products in f32. Only the
//! functions below use AMX and AVX-512 (target attributes); on Linux the tile data state is
//! requested once (arch_prctl), and nothing runs where the CPU or the kernel refuses it.

#include <cstdint>
#include <cstring>
#include <ctime>

#include "pipelines/cpu/cpu_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

// GCC 12's AVX-512 headers trip its own uninitialized-use warnings once inlined (as in
// kernels_avx512.cpp).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define PD_AMX_TARGET \
  __attribute__((     \
      target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))

namespace promptdistill {
namespace ref {
namespace kernels {
namespace {

constexpr int64_t kTile = 16;   // rows of a tile; output columns of a B tile
constexpr int64_t kTileK = 32;  // bf16 values along K in one tile row (64 bytes)

struct TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

PD_AMX_TARGET void configure() {
  TileConfig c;
  for (int i = 0; i < 8; ++i) c.colsb[i] = 64, c.rows[i] = 16;
  // GCC 12 does not count ldtilecfg as a read of the configuration and drops the stores above
  // (seen in the disassembly): make them visible first.
  __asm__ volatile("" : : "r"(&c) : "memory");
  _tile_loadconfig(&c);
}

//! Round to nearest even (what the AVX-512 BF16 conversion does), 16 values.
PD_AMX_TARGET __m256i to_bf16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }
PD_AMX_TARGET __m512 from_bf16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

//! C[32 x 32] (+)= A[32, K block] * B over the k tiles [t0, t1) of 32: tiles 0-3 accumulate (rows
//! 0-15 / 16-31 x panel 0 / 1), starting from zero (first block) or from C, 4-5 hold the panels'
//! B tiles, 6-7 the activation tiles (hi, then lo).
PD_AMX_TARGET void block(const uint16_t* hi, const uint16_t* lo, int64_t lda, const uint16_t* b0,
                         const uint16_t* b1, int64_t t0, int64_t t1, float* c, int64_t ldc,
                         bool first) {
  const int64_t cs = ldc * 4;
  if (first) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  } else {
    _tile_loadd(0, c, cs);
    _tile_loadd(1, c + kTile, cs);
    _tile_loadd(2, c + kTile * ldc, cs);
    _tile_loadd(3, c + kTile * ldc + kTile, cs);
  }
  const int64_t stride = lda * 2;
  for (int64_t t = t0; t < t1; ++t) {
    _tile_loadd(4, b0 + t * kTile * kTileK, 64);
    _tile_loadd(5, b1 + t * kTile * kTileK, 64);
    _tile_loadd(6, hi + t * kTileK, stride);
    _tile_loadd(7, hi + kTile * lda + t * kTileK, stride);
    _tile_dpbf16ps(0, 6, 4);
    _tile_dpbf16ps(1, 6, 5);
    _tile_dpbf16ps(2, 7, 4);
    _tile_dpbf16ps(3, 7, 5);
    _tile_loadd(6, lo + t * kTileK, stride);
    _tile_loadd(7, lo + kTile * lda + t * kTileK, stride);
    _tile_dpbf16ps(0, 6, 4);
    _tile_dpbf16ps(1, 6, 5);
    _tile_dpbf16ps(2, 7, 4);
    _tile_dpbf16ps(3, 7, 5);
  }
  _tile_stored(0, c, cs);
  _tile_stored(1, c + kTile, cs);
  _tile_stored(2, c + kTile * ldc, cs);
  _tile_stored(3, c + kTile * ldc + kTile, cs);
}

//! K tiles per block: the task's B block (its panels x 6 tiles) and its activation block stay in
//! L2 while the 32 x 32 output blocks pass; C goes through memory between K blocks.
constexpr int64_t kTilesPerBlock = 6;

PD_AMX_TARGET void gemm_impl(const AmxGemmArgs& g) {
  configure();
  const int64_t panel_values = g.k_tiles * kTile * kTileK;
  const int64_t full_rows = g.m / (2 * kTile) * (2 * kTile);
  // Full 32 x 32 blocks: K block by K block.
  for (int64_t t0 = 0; t0 < g.k_tiles; t0 += kTilesPerBlock) {
    const int64_t t1 = t0 + kTilesPerBlock < g.k_tiles ? t0 + kTilesPerBlock : g.k_tiles;
    for (int64_t r0 = 0; r0 < full_rows; r0 += 2 * kTile)
      for (int s = 0; s < g.count; ++s) {
        const Segment& seg = g.segments[s];
        for (int64_t p = 0; p + 1 < seg.panels && (p + 2) * kTile <= seg.cols; p += 2) {
          const uint16_t* b0 = g.b + (seg.first_panel + p) * panel_values;
          block(g.hi + r0 * g.lda, g.lo + r0 * g.lda, g.lda, b0, b0 + panel_values, t0, t1,
                seg.c + r0 * seg.ldc + p * kTile, seg.ldc, t0 == 0);
        }
      }
  }
  // The edges (the last rows, a segment's odd or partial last panels): whole K through a tile.
  alignas(64) float tmp[2 * kTile * 2 * kTile];
  for (int64_t r0 = 0; r0 < g.m; r0 += 2 * kTile) {
    const int64_t rows = g.m - r0 < 2 * kTile ? g.m - r0 : 2 * kTile;
    for (int s = 0; s < g.count; ++s) {
      const Segment& seg = g.segments[s];
      for (int64_t p = 0; p < seg.panels; p += 2) {
        const int64_t col = p * kTile,
                      cols = seg.cols - col < 2 * kTile ? seg.cols - col : 2 * kTile;
        if (rows == 2 * kTile && p + 1 < seg.panels && cols == 2 * kTile) continue;  // done above
        const uint16_t* b0 = g.b + (seg.first_panel + p) * panel_values;
        const uint16_t* b1 = p + 1 < seg.panels ? b0 + panel_values : b0;
        block(g.hi + r0 * g.lda, g.lo + r0 * g.lda, g.lda, b0, b1, 0, g.k_tiles, tmp, 2 * kTile,
              true);
        float* c = seg.c + r0 * seg.ldc + col;
        for (int64_t i = 0; i < rows; ++i)
          std::memcpy(c + i * seg.ldc, tmp + i * 2 * kTile, std::size_t(cols) * 4);
      }
    }
  }
  _tile_release();
}

PD_AMX_TARGET void split_impl(const float* a, int64_t lda, int64_t rows, int64_t k, int64_t k_pad,
                              uint16_t* hi, uint16_t* lo) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = a + r * lda;
    uint16_t* h = hi + r * k_pad;
    uint16_t* l = lo + r * k_pad;
    for (int64_t j = 0; j < k_pad; j += 16) {
      const int n = int(k - j < 16 ? (k - j > 0 ? k - j : 0) : 16);
      const __m512 x = _mm512_maskz_loadu_ps(__mmask16(n >= 16 ? 0xffff : (1u << n) - 1), src + j);
      const __m256i xh = to_bf16(x);
      const __m256i xl = to_bf16(_mm512_sub_ps(x, from_bf16(xh)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(h + j), xh);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(l + j), xl);
    }
  }
}

//! tdpbf16ps on registers only for `seconds` of the thread's CPU time: bf16 GFLOP/s (16 x 16
//! outputs x 32 products x 2 per instruction).
PD_AMX_TARGET double probe(double seconds) {
  configure();
  alignas(64) uint16_t a[kTile * kTileK] = {};
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, a, 64);
  _tile_loadd(5, a, 64);
  _tile_loadd(6, a, 64);
  _tile_loadd(7, a, 64);
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  const double start = double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
  double now = start;
  int64_t rounds = 0;
  do {
    for (int r = 0; r < 1024; ++r) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    rounds += 1024;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    now = double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
  } while (now - start < seconds);
  _tile_release();
  return double(rounds) * 4 * kTile * kTile * kTileK * 2 / (now - start) / 1e9;
}

bool request_tiles() {
  // ARCH_GET_XCOMP_SUPP = 0x1021, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18.
  unsigned long features = 0;
  if (syscall(SYS_arch_prctl, 0x1021, &features) != 0 || (features & (1ul << 18)) == 0)
    return false;
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}

}  // namespace

bool amx_bf16_available() noexcept {
  static const bool ok = __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16") &&
                         __builtin_cpu_supports("avx512bf16") &&
                         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                         request_tiles();
  return ok;
}

void amx_gemm(const AmxGemmArgs& args) noexcept {
  if (amx_bf16_available()) gemm_impl(args);
}

void amx_split(const float* a, int64_t lda, int64_t rows, int64_t k, int64_t k_pad, uint16_t* hi,
               uint16_t* lo) noexcept {
  if (amx_bf16_available()) split_impl(a, lda, rows, k, k_pad, hi, lo);
}

double amx_bf16_gflops(double seconds) noexcept {
  return amx_bf16_available() ? probe(seconds) : 0.0;
}

}  // namespace kernels
}  // namespace ref
}  // namespace promptdistill

#else
namespace promptdistill {
namespace ref {
namespace kernels {
bool amx_bf16_available() noexcept { return false; }
void amx_gemm(const AmxGemmArgs&) noexcept {}
void amx_split(const float*, int64_t, int64_t, int64_t, int64_t, uint16_t*, uint16_t*) noexcept {}
double amx_bf16_gflops(double) noexcept { return 0.0; }
}  // namespace kernels
}  // namespace ref
}  // namespace promptdistill
#endif
