// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Packing and the threaded driver of the CPU decoder's linear layers (gemm_ref.h).

#include "pipelines/cpu/gemm_ref.h"
#include "pipelines/cpu/omp_threads.h"

#include "promptdistill/dtype.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace promptdistill {
namespace ref {
namespace gemm {
namespace {

using omp_threads::max_threads;
using omp_threads::thread_id;

//! Rows per task: each loads its panels' K block into L2 once for all of them.
constexpr int64_t kRowBlock = 128;
//! Columns per task: a K block of 384 of them in f32 is 768 KB (L2 is 1-2 MB per core).
constexpr int64_t kColumnBlock = 512;
//! Panels per task when there are too few row blocks to keep the threads busy.
constexpr int64_t kMinPanelsPerTask = 4;

//! The parts' segments clipped to panels [p0, p1), for rows starting at r0.
int clip(const PackedMatrix& w, const Output* outs, int64_t p0, int64_t p1, int64_t r0, int64_t nr,
         kernels::Segment* segs) {
  int count = 0;
  for (int i = 0; i < w.parts(); ++i) {
    const int64_t first = w.first_panel(i), panels = (w.rows(i) + nr - 1) / nr;
    const int64_t b = std::max(p0, first), e = std::min(p1, first + panels);
    if (b >= e) continue;
    kernels::Segment& s = segs[count++];
    s.first_panel = b, s.panels = e - b;
    s.cols = std::min(w.rows(i) - (b - first) * nr, s.panels * nr);
    s.c = outs[i].c + r0 * outs[i].ldc + (b - first) * nr;
    s.ldc = outs[i].ldc;
  }
  return count;
}

//! The AMX path: the activations split into bf16 hi/lo rows once (threads over row blocks), then
//! tasks of row blocks x panel groups as for f32.
Status run_bf16_tiles(const PackedMatrix& w, const float* a, int64_t m, int64_t lda,
                      const Output* outs, std::vector<float>* scratch_buffer) {
  const kernels::Panels panels = w.panels();
  const int64_t k_pad = panels.kc, m_pad = (m + 31) / 32 * 32;
  std::vector<float> local;
  std::vector<float>& buffer = scratch_buffer != nullptr ? *scratch_buffer : local;
  const std::size_t need = std::size_t(m_pad * k_pad + 32);  // floats: hi and lo are 2 bytes each
  try {
    if (buffer.size() < need) buffer.resize(need);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "gemm: out of host memory for the bf16 activations");
  }
  uint16_t* hi = reinterpret_cast<uint16_t*>(
      buffer.data() + (16 - reinterpret_cast<std::uintptr_t>(buffer.data()) / 4 % 16) % 16);
  uint16_t* lo = hi + m_pad * k_pad;
  const int64_t chunks = m_pad / 32;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t r0 = c * 32, rows = std::min<int64_t>(32, m - r0);
    kernels::amx_split(a + r0 * lda, lda, rows, w.cols(), k_pad, hi + r0 * k_pad, lo + r0 * k_pad);
    if (rows < 32) {
      std::memset(hi + (r0 + rows) * k_pad, 0, std::size_t((32 - rows) * k_pad) * 2);
      std::memset(lo + (r0 + rows) * k_pad, 0, std::size_t((32 - rows) * k_pad) * 2);
    }
  }
  const int threads = max_threads();
  int64_t row_blocks = (m_pad + 255) / 256, col_blocks = 1;
  while (row_blocks * col_blocks < 2 * threads) {
    if (m_pad / (row_blocks * 2) >= 32)
      row_blocks *= 2;
    else if (panels.panels / (col_blocks * 2) >= 2)
      col_blocks *= 2;
    else
      break;
  }
  const int64_t rows_per_block = ((m_pad + row_blocks - 1) / row_blocks + 31) / 32 * 32;
  const int64_t panels_per_block = ((panels.panels + col_blocks - 1) / col_blocks + 1) / 2 * 2;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < row_blocks * col_blocks; ++task) {
    const int64_t r0 = task / col_blocks * rows_per_block,
                  p0 = task % col_blocks * panels_per_block;
    if (r0 >= m || p0 >= panels.panels) continue;
    kernels::AmxGemmArgs args;
    args.hi = hi + r0 * k_pad, args.lo = lo + r0 * k_pad, args.lda = k_pad;
    args.m = std::min(rows_per_block, m - r0);
    args.b = reinterpret_cast<const uint16_t*>(panels.b), args.k_tiles = k_pad / 32;
    args.count = clip(w, outs, p0, std::min(panels.panels, p0 + panels_per_block), r0, panels.nr,
                      args.segments);
    if (args.count > 0) kernels::amx_gemm(args);
  }
  return Status::ok();
}

}  // namespace

void AlignedBuffer::Free::operator()(float* p) const noexcept { std::free(p); }

Status AlignedBuffer::resize(int64_t floats) noexcept {
  void* p = nullptr;
  const std::size_t bytes = std::size_t(std::max<int64_t>(floats, 16)) * sizeof(float);
  if (posix_memalign(&p, 64, (bytes + 63) / 64 * 64) != 0)
    return Status(StatusCode::kOutOfMemory, "packed weights: out of host memory (%zu bytes)",
                  bytes);
  data_.reset(static_cast<float*>(p));
  size_ = floats;
  return Status::ok();
}

Status PackedMatrix::pack(const Part* parts, int count, int64_t cols, int64_t nr, int64_t kc,
                          PackedMatrix* out) noexcept {
  if (count < 1 || count > kernels::kMaxSegments)
    return Status(StatusCode::kInvalidArgument, "pack: %d parts (1 to %d)", count,
                  kernels::kMaxSegments);
  if (cols < 1 || nr < kernels::kLanes || nr % kernels::kLanes != 0 || kc < 1)
    return Status(StatusCode::kInvalidArgument,
                  "pack: %lld columns in panels of %lld (a multiple of %d), K blocks of %lld",
                  (long long)cols, (long long)nr, kernels::kLanes, (long long)kc);
  PackedMatrix m;
  const int64_t blocks = (cols + kc - 1) / kc;
  m.cols_ = cols, m.nr_ = nr, m.kc_ = (cols + blocks - 1) / blocks, m.count_ = count;
  for (int i = 0; i < count; ++i) {
    if (parts[i].w == nullptr || parts[i].rows < 1)
      return Status(StatusCode::kInvalidArgument, "pack: part %d has no rows", i);
    m.rows_[i] = parts[i].rows;
    m.first_panel_[i] = m.total_panels_;
    m.total_panels_ +=
        (parts[i].rows + nr - 1) / nr;  // each part starts a panel: no panel mixes two
  }
  PD_RETURN_IF_ERROR(m.storage_.resize(m.total_panels_ * cols * nr));
  const kernels::Panels layout = m.panels();
  for (int i = 0; i < count; ++i) {
    const int64_t panels = (parts[i].rows + nr - 1) / nr;
    for (int64_t k0 = 0; k0 < cols; k0 += m.kc_) {
      const int64_t rows = std::min(m.kc_, cols - k0);
      for (int64_t p = 0; p < panels; ++p) {
        float* panel = const_cast<float*>(layout.at(k0, m.first_panel_[i] + p));
        for (int64_t j = 0; j < nr; ++j) {
          const int64_t row = p * nr + j;
          const float* src = row < parts[i].rows ? parts[i].w + row * cols + k0 : nullptr;
          for (int64_t k = 0; k < rows; ++k) panel[k * nr + j] = src ? src[k] : 0.0f;
        }
      }
    }
  }
  *out = std::move(m);
  return Status::ok();
}

Status PackedMatrix::pack_for_active(const Part* parts, int count, int64_t cols,
                                     PackedMatrix* out) noexcept {
  const kernels::Table& t = kernels::active();
  return pack(parts, count, cols, t.nr, t.kc, out);
}

Status PackedMatrix::pack_bf16_tiles(const Part* parts, int count, int64_t cols,
                                     PackedMatrix* out) noexcept {
  if (!kernels::amx_bf16_available())
    return Status(StatusCode::kUnsupported, "pack: this CPU (or its OS) has no AMX-BF16 tiles");
  if (count < 1 || count > kernels::kMaxSegments || cols < 1)
    return Status(StatusCode::kInvalidArgument, "pack: %d parts of %lld columns", count,
                  (long long)cols);
  PackedMatrix m;
  constexpr int64_t kNr = 16, kTileK = 32;
  const int64_t k_tiles = (cols + kTileK - 1) / kTileK;
  m.cols_ = cols, m.nr_ = kNr, m.kc_ = k_tiles * kTileK, m.count_ = count, m.bf16_ = true;
  for (int i = 0; i < count; ++i) {
    if (parts[i].w == nullptr || parts[i].rows < 1)
      return Status(StatusCode::kInvalidArgument, "pack: part %d has no rows", i);
    m.rows_[i] = parts[i].rows;
    m.first_panel_[i] = m.total_panels_;
    m.total_panels_ += (parts[i].rows + kNr - 1) / kNr;
  }
  const int64_t values = m.total_panels_ * k_tiles * kNr * kTileK;  // bf16 values, two per float
  PD_RETURN_IF_ERROR(m.storage_.resize((values + 1) / 2));
  uint16_t* dst = reinterpret_cast<uint16_t*>(m.storage_.data());
  for (int i = 0; i < count; ++i)
    for (int64_t p = 0; p < (parts[i].rows + kNr - 1) / kNr; ++p)
      for (int64_t t = 0; t < k_tiles; ++t)
        for (int64_t r = 0; r < kNr; ++r)  // tile row r: the pair of K rows t * 32 + 2r, + 1
          for (int64_t j = 0; j < kNr; ++j)
            for (int64_t e = 0; e < 2; ++e) {
              const int64_t row = p * kNr + j, k = t * kTileK + 2 * r + e;
              const float v = row < parts[i].rows && k < cols ? parts[i].w[row * cols + k] : 0.0f;
              dst[(((m.first_panel_[i] + p) * k_tiles + t) * kNr + r) * kTileK + 2 * j + e] =
                  to_bf16(v).bits;
            }
  *out = std::move(m);
  return Status::ok();
}

kernels::Panels PackedMatrix::panels() const {
  kernels::Panels p;
  p.b = storage_.data(), p.k = cols_, p.nr = nr_, p.kc = kc_, p.panels = total_panels_;
  return p;
}

Status run(const PackedMatrix& w, const float* a, int64_t m, int64_t lda, const Output* outs,
           std::vector<float>* scratch_buffer) noexcept {
  if (m < 0 || lda < w.cols() || a == nullptr || outs == nullptr)
    return Status(StatusCode::kInvalidArgument, "gemm: %lld rows of stride %lld for %lld columns",
                  (long long)m, (long long)lda, (long long)w.cols());
  for (int i = 0; i < w.parts(); ++i)
    if (outs[i].c == nullptr || outs[i].ldc < w.rows(i))
      return Status(StatusCode::kInvalidArgument,
                    "gemm: output %d has stride %lld for %lld columns", i, (long long)outs[i].ldc,
                    (long long)w.rows(i));
  if (m == 0) return Status::ok();
  if (w.bf16_tiles()) return run_bf16_tiles(w, a, m, lda, outs, scratch_buffer);
  const kernels::Table& t = kernels::active();
  const kernels::Panels panels = w.panels();
  if (panels.nr % kernels::kLanes != 0)
    return Status(StatusCode::kInternal, "gemm: panels of %lld", (long long)panels.nr);
  const int64_t total_panels = panels.panels;
  const int threads = max_threads();
  if (m == 1) {
    // Groups of panels per task, a few per thread (a static split: no allocation).
    const int64_t per_task = std::max<int64_t>(kMinPanelsPerTask, total_panels / (4 * threads) + 1);
    const int64_t tasks = (total_panels + per_task - 1) / per_task;
#pragma omp parallel for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      kernels::MatvecArgs args;
      args.x = a, args.w = panels;
      const int64_t p0 = task * per_task;
      args.count =
          clip(w, outs, p0, std::min(total_panels, p0 + per_task), 0, panels.nr, args.segments);
      t.matvec(args);
    }
    return Status::ok();
  }
  // Columns in blocks of about kColumnBlock, whose K block stays in L2 while the row tiles pass;
  // rows in blocks of kRowBlock; both split further while there are fewer than two tasks per
  // thread.
  const int64_t kc = panels.kc;
  int64_t col_blocks =
      std::max<int64_t>(1, (total_panels * panels.nr + kColumnBlock / 2) / kColumnBlock);
  int64_t row_blocks = (m + kRowBlock - 1) / kRowBlock;
  while (row_blocks * col_blocks < 2 * threads) {
    if (m / (row_blocks * 2) >= 4 * t.mr)
      row_blocks *= 2;
    else if (total_panels / (col_blocks * 2) >= kMinPanelsPerTask)
      col_blocks *= 2;
    else
      break;
  }
  const int64_t panels_per_block = (total_panels + col_blocks - 1) / col_blocks;
  const int64_t rows_per_block = ((m + row_blocks - 1) / row_blocks + t.mr - 1) / t.mr * t.mr;
  const int64_t scratch = (t.gemm_scratch_floats(rows_per_block, kc) + 15) / 16 * 16;
  std::vector<float> local;
  std::vector<float>& buffer = scratch_buffer != nullptr ? *scratch_buffer : local;
  try {
    if (buffer.size() < std::size_t(scratch * threads + 16))
      buffer.resize(std::size_t(scratch * threads + 16));
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "gemm: out of host memory for %d threads' scratch",
                  threads);
  }
  float* base =
      buffer.data() + (16 - reinterpret_cast<std::uintptr_t>(buffer.data()) / 4 % 16) % 16;
  const int64_t tasks = row_blocks * col_blocks;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t r0 = task / col_blocks * rows_per_block,
                  p0 = task % col_blocks * panels_per_block;
    if (r0 >= m || p0 >= total_panels) continue;
    kernels::GemmArgs args;
    args.a = a + r0 * lda, args.lda = lda, args.m = std::min(rows_per_block, m - r0);
    args.w = panels;
    args.count = clip(w, outs, p0, std::min(total_panels, p0 + panels_per_block), r0, panels.nr,
                      args.segments);
    args.scratch = base + int64_t(thread_id()) * scratch;
    if (args.count > 0) t.gemm(args);
  }
  return Status::ok();
}

}  // namespace gemm
}  // namespace ref
}  // namespace promptdistill
