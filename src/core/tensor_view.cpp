// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "promptdistill/tensor_view.h"

#include <limits>

namespace promptdistill {
namespace detail {

Status check_view_shape(const char* name, const int64_t* extents, const int64_t* strides, int rank,
                        std::size_t element_size, bool has_data) noexcept {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  int64_t count = 1;
  int64_t max_offset = 0;
  for (int i = 0; i < rank; ++i) {
    if (extents[i] < 0)
      return Status(StatusCode::kInvalidArgument, "%s: extent %d is %lld (must be >= 0)", name, i,
                    static_cast<long long>(extents[i]));
    if (strides[i] < 0)
      return Status(StatusCode::kInvalidArgument, "%s: stride %d is %lld (must be >= 0)", name, i,
                    static_cast<long long>(strides[i]));
  }
  for (int i = 0; i < rank; ++i) {
    if (extents[i] == 0) return Status::ok();  // empty view: nothing is ever addressed
    if (count > kMax / extents[i])
      return Status(StatusCode::kInvalidArgument, "%s: element count overflows int64", name);
    count *= extents[i];
    const int64_t last = extents[i] - 1;
    if (strides[i] != 0 && last > (kMax - max_offset) / strides[i])
      return Status(StatusCode::kInvalidArgument, "%s: largest offset overflows int64", name);
    max_offset += last * strides[i];
  }
  if (max_offset >= kMax / static_cast<int64_t>(element_size))
    return Status(StatusCode::kInvalidArgument, "%s: largest byte offset overflows int64", name);
  if (!has_data)
    return Status(StatusCode::kInvalidArgument, "%s: null data pointer on a non-empty view", name);
  return Status::ok();
}

}  // namespace detail
}  // namespace promptdistill
