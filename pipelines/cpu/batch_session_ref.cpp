// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The CPU backend of BatchSession (host memory) and its f32 instantiation, `ref::BatchSession`.

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "promptdistill/detail/random_weights.h"
#include "pipelines/batch_session/batch_session_impl.h"

namespace promptdistill {

Status RefBackend::allocate(std::size_t bytes, void** out, Stream) noexcept {
  *out = std::aligned_alloc(WorkspacePlanner::kAlignment,
                            WorkspacePlanner::round_up(bytes < 1 ? 1 : bytes));
  if (*out == nullptr)
    return Status(StatusCode::kOutOfMemory, "cpu session: cannot allocate %zu bytes", bytes);
  return Status::ok();
}
void RefBackend::release(void* p, Stream) noexcept { std::free(p); }
Status RefBackend::fill_zero(void* p, std::size_t bytes, Stream) noexcept {
  std::memset(p, 0, bytes);
  return Status::ok();
}
Status RefBackend::upload(void* dst, const void* src, std::size_t bytes, Stream) noexcept {
  std::memcpy(dst, src, bytes);
  return Status::ok();
}
Status RefBackend::download(void* dst, const void* src, std::size_t bytes, Stream) noexcept {
  std::memcpy(dst, src, bytes);
  return Status::ok();
}
Status RefBackend::copy_rows(void* dst, std::size_t dst_pitch, const void* src,
                             std::size_t src_pitch, std::size_t width, std::size_t rows,
                             Stream) noexcept {
  // memmove: the pipeline packs rows in place-compatible order only through distinct buffers,
  // but overlapping pitched copies must not be undefined behaviour either.
  for (std::size_t r = 0; r < rows; ++r)
    std::memmove(static_cast<char*>(dst) + r * dst_pitch,
                 static_cast<const char*>(src) + r * src_pitch, width);
  return Status::ok();
}
template <class T>
Status RefBackend::to_f32(const T* src, float* dst, int64_t n, Stream) noexcept {
  for (int64_t i = 0; i < n; ++i) dst[i] = num::to_f32(src[i]);
  return Status::ok();
}
template Status RefBackend::to_f32<float>(const float*, float*, int64_t, Stream) noexcept;
template Status RefBackend::to_f32<bf16>(const bf16*, float*, int64_t, Stream) noexcept;
template Status RefBackend::to_f32<f16>(const f16*, float*, int64_t, Stream) noexcept;
template <class T>
Status RefBackend::fill_random(T* dst, int64_t n, float scale, uint64_t seed, Stream) noexcept {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    dst[i] = num::from_f32<T>(detail::random_weight(uint64_t(i), seed, scale));
  return Status::ok();
}
template Status RefBackend::fill_random<float>(float*, int64_t, float, uint64_t, Stream) noexcept;
Status RefBackend::allocate_host(std::size_t bytes, void** out) noexcept {
  *out = std::malloc(bytes < 1 ? 1 : bytes);
  return *out != nullptr
             ? Status::ok()
             : Status(StatusCode::kOutOfMemory, "cpu session: cannot allocate %zu bytes", bytes);
}
void RefBackend::release_host(void* p) noexcept { std::free(p); }
// The CPU has no graphs: a recording keeps the call and each launch makes it again. The session
// holds a launch to a graph's rules (no allocation or host copy inside), so the recorded path is
// exercised here as it runs on CUDA.
namespace {
using RecordedCall = std::function<Status(Stream)>;
}  // namespace
Status RefBackend::record_graph(Stream, const RecordedCall& body,
                                std::shared_ptr<void>* graph) noexcept {
  try {
    *graph = std::make_shared<RecordedCall>(body);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "cpu session: out of host memory");
  }
}
Status RefBackend::launch_graph(const std::shared_ptr<void>& graph, Stream s) noexcept {
  if (!graph) return Status(StatusCode::kInvalidArgument, "launch_graph: nothing was recorded");
  try {
    return (*static_cast<const RecordedCall*>(graph.get()))(s);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "cpu session: out of host memory");
  }
}
Status RefBackend::device_status(Workspace, Stream) noexcept { return Status::ok(); }
Status RefBackend::accumulate_status(Workspace, void*, Stream) noexcept { return Status::ok(); }
int64_t RefBackend::available_bytes() noexcept {
  // MemAvailable: what Linux can hand out without swapping (free + reclaimable cache).
  const int64_t available = available_memory_bytes();
  return available >= 0 ? available : INT64_MAX / 4;  // unknown: do not refuse
}

template class BatchSession<RefBackend, float>;

}  // namespace promptdistill
