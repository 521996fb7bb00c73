// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The CPU decoder's attention driver (prefill_attention_ref.h): tasks, threads, scratch.

#include "pipelines/cpu/prefill_attention_ref.h"
#include "pipelines/cpu/omp_threads.h"

#include <cmath>
#include <cstdint>
#include <new>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "pipelines/cpu/cpu_kernels.h"

namespace promptdistill {
namespace ref {
namespace attention {
namespace {

using omp_threads::max_threads;
using omp_threads::thread_id;

Status check(const Shape& s) {
  if (s.heads < 1 || s.kv_heads < 1 || s.heads % s.kv_heads != 0 || s.head_dim < 1)
    return Status(StatusCode::kInvalidArgument,
                  "attention: %lld query heads over %lld KV heads of dim %lld", (long long)s.heads,
                  (long long)s.kv_heads, (long long)s.head_dim);
  return Status::ok();
}

//! The softmax scale 1/sqrt(D) (as the reference computes it) times log2(e), in f32.
float scale_log2(int64_t head_dim) {
  const float scale = 1.0f / std::sqrt(float(head_dim));
  return scale * 1.44269504088896341f;
}

int64_t slice_floats(const kernels::Table& t, int64_t tile_rows, int64_t head_dim) {
  return (t.attention_scratch_floats(tile_rows, head_dim) + 15) / 16 * 16;
}

float* aligned(float* p) { return p + (16 - reinterpret_cast<std::uintptr_t>(p) / 4 % 16) % 16; }

}  // namespace

Status prefill(const Shape& s, const float* q, int64_t n, const float* k, const float* v,
               int64_t past, float* out, std::vector<float>* scratch) noexcept {
  PD_RETURN_IF_ERROR(check(s));
  if (n < 0 || past < 0)
    return Status(StatusCode::kInvalidArgument, "attention: %lld rows after %lld", (long long)n,
                  (long long)past);
  if (n == 0) return Status::ok();
  const kernels::Table& t = kernels::active();
  const int64_t group = s.heads / s.kv_heads, D = s.head_dim, qd = s.heads * D;
  const int64_t tiles = (n + kQueryTile - 1) / kQueryTile, tasks = tiles * s.kv_heads;
  const int64_t slice = slice_floats(t, group * std::min(n, kQueryTile), D);
  const float scale = scale_log2(D);
  // Every KV head's keys transposed once ([D][kKeyBlock] blocks), for all the tiles that read
  // them; then the threads' tiles.
  const int64_t keys = past + n, blocks = (keys + kernels::kKeyBlock - 1) / kernels::kKeyBlock;
  const int64_t block_floats = D * kernels::kKeyBlock, head_floats = blocks * block_floats;
  const int64_t need = s.kv_heads * head_floats + slice * max_threads() + 32;
  std::vector<float> local;
  std::vector<float>& buffer = scratch != nullptr ? *scratch : local;
  try {
    if (buffer.size() < std::size_t(need)) buffer.resize(std::size_t(need));
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory,
                  "attention: out of host memory for the transposed keys and tiles");
  }
  float* kt = aligned(buffer.data());
  float* base = aligned(kt + s.kv_heads * head_floats);
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < s.kv_heads * blocks; ++task) {
    const int64_t g = task / blocks, t0 = task % blocks * kernels::kKeyBlock;
    float* dst = kt + g * head_floats + (t0 / kernels::kKeyBlock) * block_floats;
    for (int64_t j = 0; j < kernels::kKeyBlock; ++j) {
      const float* src = t0 + j < keys ? k + (t0 + j) * s.kv_heads * D + g * D : nullptr;
      for (int64_t d = 0; d < D; ++d) dst[d * kernels::kKeyBlock + j] = src ? src[d] : 0.0f;
    }
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < tasks; ++task) {
    // The last query tiles see the most keys: they go first.
    const int64_t tile = tiles - 1 - task / s.kv_heads, g = task % s.kv_heads;
    const int64_t r0 = tile * kQueryTile;
    kernels::AttentionArgs a;
    a.q = q + r0 * qd + g * group * D, a.q_stride = qd;
    a.heads = group, a.rows = std::min(kQueryTile, n - r0), a.first_visible = past + r0 + 1;
    a.head_dim = D;
    a.k = k + g * D, a.v = v + g * D, a.kv_stride = s.kv_heads * D;
    a.kt = kt + g * head_floats;
    a.scale_log2 = scale;
    a.out = out + r0 * qd + g * group * D, a.out_stride = qd;
    a.scratch = base + int64_t(thread_id()) * slice;
    t.attention(a);
  }
  return Status::ok();
}

int64_t decode_scratch_floats(const Shape& s, int threads) noexcept {
  if (!check(s) || threads < 1) return 0;
  return slice_floats(kernels::active(), s.heads / s.kv_heads, s.head_dim) * threads + 16;
}

Status decode(const Shape& s, const float* q, const float* k, const float* v, int64_t total,
              float* out, float* scratch, int64_t scratch_floats) noexcept {
  PD_RETURN_IF_ERROR(check(s));
  if (total < 1)
    return Status(StatusCode::kInvalidArgument, "attention: a decode row sees %lld keys",
                  (long long)total);
  if (scratch_floats < decode_scratch_floats(s, max_threads()))
    return Status(StatusCode::kInvalidArgument, "attention: %lld scratch floats for %d threads",
                  (long long)scratch_floats, max_threads());
  const kernels::Table& t = kernels::active();
  const int64_t group = s.heads / s.kv_heads, D = s.head_dim;
  const int64_t slice = slice_floats(t, group, D);
  float* base = aligned(scratch);
  const float scale = scale_log2(D);
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < s.kv_heads; ++g) {
    kernels::AttentionArgs a;
    a.q = q + g * group * D, a.q_stride = 0;
    a.heads = group, a.rows = 1, a.first_visible = total, a.head_dim = D;
    a.k = k + g * D, a.v = v + g * D, a.kv_stride = s.kv_heads * D;
    a.scale_log2 = scale;
    a.out = out + g * group * D, a.out_stride = 0;
    a.scratch = base + int64_t(thread_id()) * slice;
    t.attention(a);
  }
  return Status::ok();
}

}  // namespace attention
}  // namespace ref
}  // namespace promptdistill
