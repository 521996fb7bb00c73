// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Private to the batch session (not installed): memory of a backend held by RAII buffers, and
//! the ledger that counts what the session holds now and at its peak.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "promptdistill/status.h"
#include "promptdistill/workspace.h"

namespace promptdistill {
namespace session {

//! Bytes a session holds now and the most it held since `reset_peak()`; also what a recorded
//! decode step (CUDA graph) depends on: `generation` changes with every allocation and release,
//! so a graph recorded at another generation may hold stale pointers; while `recording`, the
//! buffers refuse to allocate or copy to or from the host (neither belongs in a graph).
struct MemoryLedger {
  int64_t held = 0;
  int64_t peak = 0;
  int64_t generation = 0;
  bool recording = false;
  void add(int64_t bytes) {
    held += bytes;
    peak = std::max(peak, held);
    ++generation;
  }
  void remove(int64_t bytes) {
    held -= bytes;
    ++generation;
  }
  void reset_peak() { peak = held; }
  //! kInternal while recording: `what` would break the recorded step.
  Status allow(const char* what) const {
    if (!recording) return Status::ok();
    return Status(StatusCode::kInternal, "%s inside a recorded decode step (it cannot be replayed)",
                  what);
  }
};

//! One allocation of `Backend` (device memory for CUDA, aligned host memory for the CPU
//! reference), counted in a ledger and released when the buffer goes (or is re-allocated).
//! Move-only. Allocation and release are ordered on the session's stream. Sizes are rounded up to
//! the workspace alignment, and new memory is zero-filled on the session's stream, so padded rows
//! never hold garbage.
template <class Backend>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(MemoryLedger* ledger) : ledger_(ledger) {}
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      ledger_ = other.ledger_;
      stream_ = other.stream_;
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }

  void set_ledger(MemoryLedger* ledger) { ledger_ = ledger; }

  //! A fresh zero-filled allocation of at least `bytes` (the old contents are released first).
  Status allocate(std::size_t bytes, Stream stream) {
    if (ledger_) PD_RETURN_IF_ERROR(ledger_->allow("an allocation"));
    release();
    bytes = WorkspacePlanner::round_up(bytes < 1 ? 1 : bytes);
    PD_RETURN_IF_ERROR(Backend::allocate(bytes, &data_, stream));
    stream_ = stream;
    bytes_ = bytes;
    if (ledger_) ledger_->add(int64_t(bytes));
    return Backend::fill_zero(data_, bytes, stream);
  }
  //! Grows to at least `bytes`; the contents are not kept when it grows.
  Status reserve(std::size_t bytes, Stream stream) {
    return data_ != nullptr && bytes_ >= bytes ? Status::ok() : allocate(bytes, stream);
  }
  //! Copies `host` in, growing the buffer if needed.
  template <class U>
  Status upload(const std::vector<U>& host, Stream stream) {
    if (ledger_) PD_RETURN_IF_ERROR(ledger_->allow("a copy from pageable host memory"));
    PD_RETURN_IF_ERROR(reserve(host.size() * sizeof(U), stream));
    return host.empty() ? Status::ok()
                        : Backend::upload(data_, host.data(), host.size() * sizeof(U), stream);
  }
  //! The first `count` elements, copied to the host: a host synchronisation, counted in `syncs`.
  template <class U>
  Status download(std::size_t count, std::vector<U>* host, Stream stream, int64_t* syncs) const {
    if (ledger_) PD_RETURN_IF_ERROR(ledger_->allow("a host synchronisation"));
    host->resize(count);
    if (count == 0) return Status::ok();
    ++*syncs;
    return Backend::download(host->data(), data_, count * sizeof(U), stream);
  }
  //! Stream-ordered release (on the stream it was allocated on).
  void release() {
    if (data_ == nullptr) return;
    Backend::release(data_, stream_);
    if (ledger_) ledger_->remove(int64_t(bytes_));
    data_ = nullptr;
    bytes_ = 0;
  }

  template <class U>
  U* as() const {
    return static_cast<U*>(data_);
  }
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  explicit operator bool() const { return data_ != nullptr; }

 private:
  MemoryLedger* ledger_ = nullptr;
  Stream stream_ = nullptr;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

//! Host memory the backend copies from asynchronously (pinned on CUDA, so an upload never stages
//! through a synchronous copy), for the inputs of a decode step. Move-only, not counted in the
//! ledger (it is host memory).
template <class Backend>
class HostBuffer {
 public:
  HostBuffer() = default;
  ~HostBuffer() { release(); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  //! At least `bytes` (contents not kept when it grows).
  Status reserve(std::size_t bytes) {
    if (data_ != nullptr && bytes_ >= bytes) return Status::ok();
    release();
    PD_RETURN_IF_ERROR(Backend::allocate_host(bytes < 1 ? 1 : bytes, &data_));
    bytes_ = bytes;
    return Status::ok();
  }
  void release() {
    if (data_ != nullptr) Backend::release_host(data_);
    data_ = nullptr;
    bytes_ = 0;
  }
  template <class U>
  U* at(std::size_t offset) const {
    return reinterpret_cast<U*>(static_cast<unsigned char*>(data_) + offset);
  }
  void* data() const { return data_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace session
}  // namespace promptdistill
