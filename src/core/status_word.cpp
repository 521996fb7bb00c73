// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The messages of the data checks a status word records (detail/status_word.h), one per
//! DataCheck, shared by both backends.

#include "promptdistill/detail/status_word.h"

namespace promptdistill {
namespace detail {

Status status_from_word(const DeviceStatusWord& w) noexcept {
  const auto code = static_cast<StatusCode>(w.code);
  const long long a = w.a, b = w.b, c = w.c;
  switch (static_cast<DataCheck>(w.check)) {
    case DataCheck::kNone: return Status::ok();
    case DataCheck::kLengthNegative:
      return Status(code, "request %lld: length %lld is negative", a, b);
    case DataCheck::kEmptyPrompt: return Status(code, "request %lld: empty prompt (length 0)", a);
    case DataCheck::kLengthBeyondCapacity:
      return Status(code, "request %lld: length %lld exceeds the capacity %lld", a, b, c);
    case DataCheck::kNegativeK: return Status(code, "request %lld: k = %lld must be >= 0", a, b);
    case DataCheck::kCountBeyondCapacity:
      return Status(code, "request %lld: %lld kept tokens do not fit the output capacity %lld", a,
                    b, c);
    case DataCheck::kPageOutOfRange:
      return Status(code, "request %lld: page %lld is outside [0, %lld) (block table out of range)",
                    a, b, c);
    case DataCheck::kBadIndptr:
      return Status(code, "request %lld: kv_indptr is decreasing (%lld then %lld)", a, b, c);
    case DataCheck::kBadLastPageLen:
      return Status(code, "request %lld: kv_last_page_len %lld is outside [1, %lld]", a, b, c);
    case DataCheck::kIndexOutOfRange:
      return Status(code, "request %lld: selected index %lld is outside [0, %lld)", a, b, c);
    case DataCheck::kIndexNotIncreasing:
      return Status(code,
                    "request %lld: selected indices are not strictly increasing at position %lld "
                    "(index %lld)",
                    a, b, c);
    case DataCheck::kCountsDiffer:
      return Status(code, "request %lld: per-head rows keep different counts (%lld and %lld)", a, b,
                    c);
    case DataCheck::kBudgetBelowWindow:
      return Status(code, "request %lld: budget %lld is below the window %lld", a, b, c);
    case DataCheck::kTokenOutOfVocab:
      return Status(code, "token id %lld at row %lld is outside the vocabulary [0, %lld)", b, a, c);
    case DataCheck::kRowsBeyondView:
      return Status(code, "request %lld: %lld new rows do not fit the %lld rows of the view", a, b,
                    c);
    case DataCheck::kKvBelowRows:
      return Status(code, "request %lld: kv length %lld is below its %lld new rows", a, b, c);
    case DataCheck::kIndptrOutOfRange:
      return Status(code,
                    "request %lld: its pages kv_indptr[b..b+1] = [%lld, %lld) are not all entries "
                    "of kv_indices",
                    a, b, c);
    case DataCheck::kPageShared:
      return Status(code,
                    "request %lld: page %lld is also held by request %lld (or twice by one "
                    "request); pages must not be "
                    "shared while they are compacted (copy shared prefix pages first)",
                    a, b, c);
  }
  return Status(StatusCode::kInternal, "unknown device status check %d", int(w.check));
}

}  // namespace detail
}  // namespace promptdistill
