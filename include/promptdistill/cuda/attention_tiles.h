// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Shared-memory footprint of the flash prefill kernel (promptdistill/cuda/attention.cuh) and the
//! tile it runs on a device: plain C++, so host code and tests can reason about it without CUDA.
//!
//! One block holds a Q tile of kFlashRows rows, K and V tiles of `keys` rows (row pitch D + 8
//! elements of 16 bits), the warps' f32 scores and 16-bit probabilities (keys + 4 and keys + 8
//! wide) and their f32 output rows (D + 4 wide). With 64 keys that is 70 / 90 / 110 KiB at head
//! dims 64 / 96 / 128: head dim 128 exceeds the 99 KiB a block may opt into on sm_86, sm_89 and
//! sm_120 (163 KiB on sm_80, 227 KiB on sm_90 and sm_100), so there the kernel steps 32 keys at a
//! time (81 KiB).

#include <cstddef>

namespace promptdistill {
namespace cuda {
namespace detail {

constexpr int kFlashRows = 64;      //!< query rows per flash block (16 per warp)
constexpr int kFlashThreads = 128;  //!< 4 warps
constexpr int kFlashWarps = kFlashThreads / 32;

//! Bytes of dynamic shared memory one flash block uses at head dim `head_dim` and `keys` keys
//! per step.
constexpr std::size_t flash_smem_bytes(int head_dim, int keys) {
  const std::size_t pitch = std::size_t(head_dim) + 8;
  return std::size_t(kFlashRows) * pitch * 2                                 // Q tile
         + 2 * std::size_t(keys) * pitch * 2                                 // K and V tiles
         + std::size_t(kFlashWarps) * 16 * std::size_t(keys + 4) * 4         // scores
         + std::size_t(kFlashWarps) * 16 * std::size_t(keys + 8) * 2         // probabilities
         + std::size_t(kFlashWarps) * 16 * (std::size_t(head_dim) + 4) * 4;  // output rows
}

//! Keys per step of the flash kernel at `head_dim` on a device that lets a block use
//! `smem_per_block_optin` bytes: 64 when that fits, else 32, else 0 (no flash tile fits: the
//! exact kernel runs instead).
constexpr int flash_keys_for(int head_dim, std::size_t smem_per_block_optin) {
  return flash_smem_bytes(head_dim, 64) <= smem_per_block_optin   ? 64
         : flash_smem_bytes(head_dim, 32) <= smem_per_block_optin ? 32
                                                                  : 0;
}

}  // namespace detail
}  // namespace cuda
}  // namespace promptdistill
