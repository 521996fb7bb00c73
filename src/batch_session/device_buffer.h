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

//! Bytes a session holds now and the most it held since `reset_peak()`.
struct MemoryLedger {
  int64_t held = 0;
  int64_t peak = 0;
  void add(int64_t bytes) {
    held += bytes;
    peak = std::max(peak, held);
  }
  void remove(int64_t bytes) { held -= bytes; }
  void reset_peak() { peak = held; }
};

//! One allocation of `Backend` (device memory for CUDA, aligned host memory for the CPU
//! reference), counted in a ledger and released when the buffer goes (or is re-allocated).
//! Move-only. Allocation and release are ordered on the session's stream. Sizes are rounded up to the workspace alignment, and new memory is zero-filled on
//! the session's stream, so padded rows never hold garbage.
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
    PD_RETURN_IF_ERROR(reserve(host.size() * sizeof(U), stream));
    return host.empty() ? Status::ok() : Backend::upload(data_, host.data(), host.size() * sizeof(U), stream);
  }
  //! The first `count` elements, copied to the host: a host synchronisation, counted in `syncs`.
  template <class U>
  Status download(std::size_t count, std::vector<U>* host, Stream stream, int64_t* syncs) const {
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

}  // namespace session
}  // namespace promptdistill
