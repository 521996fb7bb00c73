// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core. The device status word: how an operation's data checks (run
//! in loops by the CPU reference and in validation kernels by the CUDA backend, for the selector
//! and the block operations alike) report the first failure of a run, and the `Status` it stands
//! for, identical on both backends. The checks themselves are in selector_checks.h and
//! block_checks.h.

#include <cstddef>
#include <cstdint>

#include "promptdistill/detail/config.h"
#include "promptdistill/status.h"
#include "promptdistill/workspace.h"

namespace promptdistill {
namespace detail {

//! Which data check failed (decides the message; `a`, `b`, `c` are its numbers).
enum class DataCheck : int32_t {
  kNone = 0,
  kLengthNegative,        //!< a = request, b = length
  kEmptyPrompt,           //!< a = request
  kLengthBeyondCapacity,  //!< a = request, b = length, c = capacity
  kNegativeK,             //!< a = request, b = k
  kCountBeyondCapacity,   //!< a = request, b = count, c = capacity
  kPageOutOfRange,        //!< a = request, b = page entry, c = num_blocks
  kBadIndptr,             //!< a = request, b = indptr[b], c = indptr[b+1]
  kBadLastPageLen,        //!< a = request, b = last_page_len, c = page size
  kIndexOutOfRange,       //!< a = request, b = index, c = length
  kIndexNotIncreasing,    //!< a = request, b = position in the list, c = index
  kCountsDiffer,          //!< a = request, b = count of row 0, c = count of another row
  kBudgetBelowWindow,     //!< a = request, b = budget, c = window
  kTokenOutOfVocab,       //!< a = row, b = token id, c = vocabulary size
  kRowsBeyondView,        //!< a = request, b = new rows, c = rows the view holds
  kKvBelowRows,           //!< a = request, b = kv length, c = new rows
  kIndptrOutOfRange,      //!< a = request, b = indptr[b], c = indptr[b+1]
  kPageShared,            //!< a = request, b = page, c = the request that holds it already
};

//! The first failed data check of a run. "First" is the order of the CPU reference's loops:
//! requests in ascending order, and within a request its own checks (lengths, k, pages, counts)
//! before its selected indices, those row by row in ascending position. Both backends keep the
//! error that comes first in that order (`comes_before`): the CPU by stopping at it, the CUDA
//! kernels, whose threads fail in any order, by keeping the lowest (a, position) they record.
struct DeviceStatusWord {
  int32_t code;   //!< StatusCode
  int32_t check;  //!< DataCheck
  int64_t a, b, c;
  //! Where in request (or row) `a` the check failed: -1 for the request's own checks, else the
  //! failing selected index's place in the request's index rows (row * capacity + i).
  int64_t position;
  int32_t lock;  //!< CUDA only: held while one thread updates the word
  int32_t unused;
};

PD_HOST_DEVICE inline StatusCode code_of(DataCheck check) {
  switch (check) {
    case DataCheck::kNone: return StatusCode::kSuccess;
    case DataCheck::kLengthBeyondCapacity:
    case DataCheck::kCountBeyondCapacity: return StatusCode::kCapacityExceeded;
    case DataCheck::kPageOutOfRange:
    case DataCheck::kIndptrOutOfRange:
    case DataCheck::kIndexOutOfRange:
    case DataCheck::kTokenOutOfVocab: return StatusCode::kOutOfRange;
    case DataCheck::kRowsBeyondView: return StatusCode::kCapacityExceeded;
    default: return StatusCode::kInvalidArgument;
  }
}

//! Whether an error of request `a` at `position` comes before the one `w` holds (any error comes
//! before an empty word).
PD_HOST_DEVICE inline bool comes_before(int64_t a, int64_t position, int32_t held_code,
                                        int64_t held_a, int64_t held_position) {
  return held_code == 0 || a < held_a || (a == held_a && position < held_position);
}

//! Records a failed check in `w` unless `w` already holds one that comes before it (see
//! DeviceStatusWord); `position` as there.
PD_HOST_DEVICE inline void record(DeviceStatusWord* w, DataCheck check, int64_t a, int64_t b,
                                  int64_t c, int64_t position = -1) {
#if defined(__CUDA_ARCH__)
  // Many threads may fail at once (several requests, several bad indices). The comparison and the
  // five fields must change together, so a spin lock guards them: it is taken only on a failed
  // check (never in a valid run), and independent thread scheduling (sm_70 and later) lets threads
  // of one warp wait for each other.
  while (atomicCAS(&w->lock, 0, 1) != 0) {
  }
  __threadfence();
  volatile DeviceStatusWord* v = w;
  if (comes_before(a, position, v->code, v->a, v->position)) {
    v->check = int32_t(check);
    v->a = a;
    v->b = b;
    v->c = c;
    v->position = position;
    v->code = int32_t(code_of(check));
  }
  __threadfence();
  atomicExch(&w->lock, 0);
#else
  if (!comes_before(a, position, w->code, w->a, w->position)) return;
  w->code = int32_t(code_of(check));
  w->check = int32_t(check);
  w->a = a;
  w->b = b;
  w->c = c;
  w->position = position;
#endif
}

//! The Status a filled word stands for (kSuccess for an empty one).
Status status_from_word(const DeviceStatusWord& w) noexcept;

//! Carves the status word first, then whatever `plan` asks for.
inline DeviceStatusWord* take_status(WorkspacePlanner& planner) {
  return planner.take<DeviceStatusWord>(1);
}
//! Workspace of the operations whose only scratch is the status word.
inline std::size_t status_only_workspace_size() {
  WorkspacePlanner planner;
  take_status(planner);
  return planner.bytes_needed();
}

}  // namespace detail
}  // namespace promptdistill
