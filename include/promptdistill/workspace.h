// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core.
//! Caller-owned scratch memory, sized and carved by one code path.
//!
//! Every operation with scratch needs has a private `plan(problem, WorkspacePlanner&)` that asks
//! for its sub-buffers in a fixed order. `workspace_size()` runs it on a counting planner and
//! `run()` on a carving planner over the caller's buffer, so the two can never disagree. Every
//! sub-buffer starts on a 256-byte boundary (as CUB's `alias_temporaries` does), the base pointer
//! must be 256-byte aligned (cudaMalloc guarantees it), and a buffer smaller than the plan gives
//! `StatusCode::kWorkspaceTooSmall`.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "promptdistill/status.h"

namespace promptdistill {

//! A caller-owned buffer (device memory for `cuda::` operations, host memory for `ref::`).
struct Workspace {
  void* ptr = nullptr;
  std::size_t bytes = 0;
};

class WorkspacePlanner {
 public:
  static constexpr std::size_t kAlignment = 256;

  //! Counting mode: records sizes, hands out null pointers.
  WorkspacePlanner() = default;
  //! Carving mode over `ws`.
  explicit WorkspacePlanner(Workspace ws)
      : base_(static_cast<unsigned char*>(ws.ptr)), capacity_(ws.bytes), carving_(true) {}

  //! Reserves `count` elements of T; in carving mode returns their address (or null when the
  //! workspace is too small or misaligned; `status()` says which).
  template <class T>
  T* take(std::size_t count) {
    const std::size_t offset = used_;
    used_ += round_up(count * sizeof(T));
    if (!carving_ || !status().is_ok()) return nullptr;
    return reinterpret_cast<T*>(base_ + offset);
  }

  //! Bytes the requests so far need.
  std::size_t bytes_needed() const { return used_; }
  bool carving() const { return carving_; }

  //! kSuccess in counting mode; in carving mode kMisaligned or kWorkspaceTooSmall when the
  //! caller's buffer cannot hold the requests so far.
  Status status() const {
    if (!carving_) return Status::ok();
    if (used_ > 0 && base_ == nullptr)
      return Status(StatusCode::kWorkspaceTooSmall, "workspace is null but %zu bytes are needed",
                    used_);
    if (reinterpret_cast<std::uintptr_t>(base_) % kAlignment != 0)
      return Status(StatusCode::kMisaligned, "workspace pointer must be %zu-byte aligned",
                    kAlignment);
    if (used_ > capacity_)
      return Status(StatusCode::kWorkspaceTooSmall, "workspace has %zu bytes, %zu needed",
                    capacity_, used_);
    return Status::ok();
  }

  static constexpr std::size_t round_up(std::size_t bytes) {
    return (bytes + kAlignment - 1) / kAlignment * kAlignment;
  }

 private:
  unsigned char* base_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t used_ = 0;
  bool carving_ = false;
};

//! Host memory for the `ref::` operations' workspaces: an owned, 256-byte aligned buffer that
//! grows on `reserve` (never inside `run`) and frees itself.
//!
//!     HostWorkspace ws;
//!     if (Status s = ws.reserve(ref::Select<float>::workspace_size(args)); !s) return s;
//!     ref::Select<float>::run(args, ws.workspace());
class HostWorkspace {
 public:
  //! At least `bytes` bytes from now on (the contents are not kept when it grows);
  //! kOutOfMemory when the allocation fails (the buffer then keeps what it had).
  Status reserve(std::size_t bytes) noexcept {
    if (data_ && bytes <= bytes_) return Status::ok();
    if (bytes > SIZE_MAX - WorkspacePlanner::kAlignment)
      return Status(StatusCode::kOutOfMemory, "host workspace: %zu bytes cannot be allocated",
                    bytes);
    const std::size_t rounded = WorkspacePlanner::round_up(bytes < 1 ? 1 : bytes);
    void* p = std::aligned_alloc(WorkspacePlanner::kAlignment, rounded);
    if (p == nullptr)
      return Status(StatusCode::kOutOfMemory, "host workspace: cannot allocate %zu bytes", rounded);
    data_.reset(p);
    bytes_ = rounded;
    return Status::ok();
  }
  Workspace workspace() const noexcept { return Workspace{data_.get(), bytes_}; }
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  struct Free {
    void operator()(void* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<void, Free> data_;
  std::size_t bytes_ = 0;
};

}  // namespace promptdistill
