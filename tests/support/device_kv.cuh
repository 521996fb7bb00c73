// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! A device mirror of a host `KvStorage` (data and page tables), for CUDA-vs-reference tests.

#include "support/device_buffer.cuh"
#include "support/kv_layouts.h"

namespace pdtest {

template <class T>
struct DeviceKv {
  DeviceBuffer<T> data;
  DeviceBuffer<int32_t> block_table, indptr, indices, last_page_len;
  promptdistill::KvCacheView<T> view;

  explicit DeviceKv(const KvStorage<T>& host)
      : data(host.data),
        block_table(host.block_table),
        indptr(host.indptr),
        indices(host.indices),
        last_page_len(host.last_page_len) {
    view = host.view_over(data.get(), block_table.get(), indptr.get(), indices.get(),
                          last_page_len.get());
  }
  //! Copies the device cache back into the host storage (same tables).
  void download_into(KvStorage<T>* host) const { host->data = data.download(); }
};

//! A 256-byte aligned device workspace of `bytes`, zero-filled.
struct DeviceWorkspace {
  DeviceBuffer<unsigned char> buffer;
  promptdistill::Workspace ws;
  explicit DeviceWorkspace(std::size_t bytes) : buffer(std::vector<unsigned char>(bytes + 1, 0)) {
    ws = promptdistill::Workspace{buffer.get(), bytes};
  }
};

}  // namespace pdtest
