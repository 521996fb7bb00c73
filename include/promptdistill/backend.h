// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core (the descriptions); each backend's memory functions are
//! implemented next to its pipelines (RefBackend: promptdistill::cpu_pipelines; CudaBackend:
//! promptdistill::cuda_pipelines).
//!
//! The backends, described once. A backend is a namespace of operations with the same signatures
//! (`promptdistill::ref`, `promptdistill::cuda`) plus the memory functions code written over it
//! needs. Everything written over "a backend" names it through one of the types below: the batch
//! session (`BatchSession<Backend, T>`), the Python extension modules (one per backend) and the
//! CLI (`--backend NAME`, dispatched by `with_backend`). A third backend (a fast CPU path, another
//! GPU) is its namespace of operations, one struct here and one entry in its list.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "promptdistill/blocks.h"
#include "promptdistill/selector.h"

namespace promptdistill {

//! A backend's table: its namespace's operations as member alias templates, and the memory
//! functions the session and the tools use.
#define PD_BACKEND_TABLE(ns)                                                                       \
  template <class T>                                                                               \
  using Embed = ns::Embed<T>;                                                                      \
  template <class T>                                                                               \
  using RmsNorm = ns::RmsNorm<T>;                                                                  \
  template <class T>                                                                               \
  using Rope = ns::Rope<T>;                                                                        \
  template <class T>                                                                               \
  using SwiGlu = ns::SwiGlu<T>;                                                                    \
  template <class T>                                                                               \
  using AppendKv = ns::AppendKv<T>;                                                                \
  template <class T>                                                                               \
  using Attention = ns::Attention<T>;                                                              \
  template <class T>                                                                               \
  using LinearPlan = ns::LinearPlan<T>;                                                            \
  template <class T>                                                                               \
  using Gather = ns::Gather<T>;                                                                    \
  template <class T>                                                                               \
  using Select = ns::Select<T>;                                                                    \
  template <class T>                                                                               \
  using ScorePartial = ns::ScorePartial<T>;                                                        \
  using FinishSelect = ns::FinishSelect;                                                           \
  using RemapPositions = ns::RemapPositions;                                                       \
  using SumRows = ns::SumRows;                                                                     \
  using TopK = ns::TopK;                                                                           \
  template <class T>                                                                               \
  using CompactKv = ns::CompactKv<T>;                                                              \
  template <class T>                                                                               \
  using ArgMax = ns::ArgMax<T>;                                                                    \
  /* Stream-ordered on CUDA (cudaMallocAsync / cudaFreeAsync): no implicit device synchronisation. \
   */                                                                                              \
  static Status allocate(std::size_t bytes, void** out, Stream s) noexcept;                        \
  static void release(void* p, Stream s) noexcept;                                                 \
  static Status fill_zero(void* p, std::size_t bytes, Stream s) noexcept;                          \
  static Status upload(void* dst, const void* src, std::size_t bytes, Stream s) noexcept;          \
  /* Waits for the stream, then copies to the host: a host synchronisation. */                     \
  static Status download(void* dst, const void* src, std::size_t bytes, Stream s) noexcept;        \
  /* rows x width bytes between pitched buffers of this backend. */                                \
  static Status copy_rows(void* dst, std::size_t dst_pitch, const void* src,                       \
                          std::size_t src_pitch, std::size_t width, std::size_t rows,              \
                          Stream s) noexcept;                                                      \
  template <class T>                                                                               \
  static Status to_f32(const T* src, float* dst, int64_t n, Stream s) noexcept;                    \
  /* n weights detail::random_weight(i, seed, scale), rounded to T, drawn where the backend keeps  \
   * them. */                                                                                      \
  template <class T>                                                                               \
  static Status fill_random(T* dst, int64_t n, float scale, uint64_t seed, Stream s) noexcept;     \
  /* Host memory this backend copies from asynchronously (pinned on CUDA). */                      \
  static Status allocate_host(std::size_t bytes, void** out) noexcept;                             \
  static void release_host(void* p) noexcept;                                                      \
  /* Records the stream work `body` issues on the stream it is given as a graph that launch_graph  \
     replays on a stream: a CUDA graph (captured on a stream of its own, so `s` may be the legacy  \
     default stream; nothing runs while recording); the CPU reference keeps `body` and calls it    \
     again on each launch. */                                                                      \
  static Status record_graph(Stream s, const std::function<Status(Stream)>& body,                  \
                             std::shared_ptr<void>* graph) noexcept;                               \
  static Status launch_graph(const std::shared_ptr<void>& graph, Stream s) noexcept;               \
  /* The validation result of the last run that used `workspace` (the CUDA status word; a host     \
   * sync). */                                                                                     \
  static Status device_status(Workspace workspace, Stream s) noexcept;                             \
  /* Stream-ordered, no host sync: if `sticky` (a DeviceStatusWord in this backend's memory) holds \
     no error and the status word at the start of `workspace` does, copies it into `sticky`. The   \
     CPU reference returns validation errors from run() and writes no status word: a no-op there.  \
   */                                                                                              \
  static Status accumulate_status(Workspace workspace, void* sticky, Stream s) noexcept;           \
  /* Bytes that can still be allocated (an estimate). */                                           \
  static int64_t available_bytes() noexcept;

//! The CPU reference: host memory, "stream" ignored, validation errors returned by run().
struct RefBackend {
  PD_BACKEND_TABLE(ref)
  static constexpr const char* kName = "cpu";  //!< the CLI's --backend spelling
  static constexpr const char* kDescription = "the CPU reference backend";
  static constexpr int kDLPackDevice = 1;  //!< kDLCPU: where its arrays live
  static constexpr bool kHostMemory = true;
  static bool device_available() noexcept { return true; }
};

//! CUDA: device memory, the caller's stream, validation errors in the workspace status word.
struct CudaBackend {
  PD_BACKEND_TABLE(cuda)
  static constexpr const char* kName = "cuda";
  static constexpr const char* kDescription = "the CUDA backend";
  static constexpr int kDLPackDevice = 2;  //!< kDLCUDA
  static constexpr bool kHostMemory = false;
  static bool device_available() noexcept { return cuda::device_available(); }
};

template <class... Backends>
struct BackendList {};

//! Every backend the library knows (their names are always known, built or not).
using KnownBackends = BackendList<RefBackend, CudaBackend>;
//! The backends of this build: CUDA where the program links promptdistill::cuda, whose usage
//! requirements define PD_WITH_CUDA_BACKEND.
#if defined(PD_WITH_CUDA_BACKEND)
using BuiltBackends = BackendList<RefBackend, CudaBackend>;
#else
using BuiltBackends = BackendList<RefBackend>;
#endif

namespace detail {
template <class... B>
std::string backend_names(BackendList<B...>) {
  std::string names;
  ((names += (names.empty() ? "" : ", ") + std::string(B::kName)), ...);
  return names;
}
template <class... B>
bool backend_known(std::string_view name, BackendList<B...>) {
  return ((name == B::kName) || ...);
}
template <class F, class... B>
bool dispatch_backend(std::string_view name, F& f, Status* out, BackendList<B...>) {
  return ((name == B::kName ? (*out = f(B{}), true) : false) || ...);
}
}  // namespace detail

//! Whether this build has the backend called `name`.
inline bool backend_built(std::string_view name) {
  return detail::backend_known(name, BuiltBackends{});
}

//! Calls `f(Backend{})` (returning a Status) with the built backend called `name`. Errors:
//! kInvalidArgument for a name no backend has, kUnsupported for a backend this build lacks,
//! kNoDevice when its device is missing.
template <class F>
Status with_backend(std::string_view name, F&& f) {
  Status result = Status::ok();
  const auto run_available = [&](auto backend) -> Status {
    using B = decltype(backend);
    if (!B::device_available())
      return Status(StatusCode::kNoDevice,
                    "--backend %s: no device of %s is available on this machine", B::kName,
                    B::kDescription);
    return f(backend);
  };
  if (detail::dispatch_backend(name, run_available, &result, BuiltBackends{})) return result;
  if (detail::backend_known(name, KnownBackends{}))
    return Status(StatusCode::kUnsupported,
                  "--backend %.*s: this build has no %.*s backend (built: %s)", int(name.size()),
                  name.data(), int(name.size()), name.data(),
                  detail::backend_names(BuiltBackends{}).c_str());
  return Status(StatusCode::kInvalidArgument, "--backend must be one of %s, got '%s'",
                detail::backend_names(KnownBackends{}).c_str(), Quoted(name, 40).c_str());
}

}  // namespace promptdistill
