// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core.
//! `TensorView<T, Rank>`: a non-owning pointer plus int64 extents and *element* strides.
//!
//! - Trivially copyable, so it can sit inside kernel parameter structs.
//! - Accessors are `__host__ __device__`; the view does not know where its memory lives (the
//!   operation that receives it documents whether it expects host or device memory).
//! - Strides are in elements, must be >= 0, and may be anything else (transposed and padded views
//!   are fine). `check_view()` rejects negative extents or strides and views whose largest offset
//!   overflows int64 bytes.

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "promptdistill/detail/config.h"
#include "promptdistill/status.h"

namespace promptdistill {

template <class T, int Rank>
struct TensorView {
  static_assert(Rank >= 1 && Rank <= 6, "TensorView supports ranks 1..6");
  using element_type = T;
  static constexpr int kRank = Rank;

  T* data = nullptr;
  int64_t extents[Rank] = {};
  int64_t strides[Rank] = {};

  PD_HOST_DEVICE int64_t extent(int i) const { return extents[i]; }
  PD_HOST_DEVICE int64_t stride(int i) const { return strides[i]; }

  PD_HOST_DEVICE int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < Rank; ++i) n *= extents[i];
    return n;
  }

  template <class... Idx>
  PD_HOST_DEVICE int64_t offset(Idx... idx) const {
    static_assert(sizeof...(Idx) == Rank, "one index per dimension");
    const int64_t index[] = {int64_t(idx)...};
    int64_t off = 0;
    for (int i = 0; i < Rank; ++i) off += index[i] * strides[i];
    return off;
  }
  template <class... Idx>
  PD_HOST_DEVICE T& operator()(Idx... idx) const {
    return data[offset(idx...)];
  }

  //! Packed row-major (the last dimension has stride 1, each earlier one the product of the later
  //! extents). Dimensions of extent 1 may have any stride.
  PD_HOST_DEVICE bool is_contiguous() const {
    int64_t expected = 1;
    for (int i = Rank - 1; i >= 0; --i) {
      if (extents[i] != 1 && strides[i] != expected) return false;
      expected *= extents[i];
    }
    return true;
  }

  //! The base pointer is `bytes`-aligned and so is every stride except a unit stride in the last
  //! dimension (that is, each innermost row starts on a `bytes` boundary).
  bool is_aligned(std::size_t bytes) const {
    if (reinterpret_cast<std::uintptr_t>(data) % bytes != 0) return false;
    for (int i = 0; i < Rank; ++i) {
      if (extents[i] <= 1) continue;
      if (i == Rank - 1 && strides[i] == 1) continue;
      if ((strides[i] * int64_t(sizeof(T))) % int64_t(bytes) != 0) return false;
    }
    return true;
  }

  //! The same view over `const T`.
  TensorView<const T, Rank> as_const() const {
    TensorView<const T, Rank> v;
    v.data = data;
    for (int i = 0; i < Rank; ++i) {
      v.extents[i] = extents[i];
      v.strides[i] = strides[i];
    }
    return v;
  }
  template <class U = T, class = std::enable_if_t<!std::is_const<U>::value>>
  operator TensorView<const U, Rank>() const {
    return as_const();
  }
};

//! A packed row-major view of `data` with the given extents.
template <class T, class... Ext>
TensorView<T, int(sizeof...(Ext))> make_view(T* data, Ext... ext) {
  constexpr int kRank = int(sizeof...(Ext));
  TensorView<T, kRank> v;
  v.data = data;
  const int64_t e[] = {int64_t(ext)...};
  int64_t stride = 1;
  for (int i = kRank - 1; i >= 0; --i) {
    v.extents[i] = e[i];
    v.strides[i] = stride;
    stride *= (e[i] > 0 ? e[i] : 1);
  }
  return v;
}

//! A view with explicit extents and element strides.
template <class T, int Rank>
TensorView<T, Rank> make_strided_view(T* data, const int64_t (&extents)[Rank],
                                      const int64_t (&strides)[Rank]) {
  TensorView<T, Rank> v;
  v.data = data;
  for (int i = 0; i < Rank; ++i) {
    v.extents[i] = extents[i];
    v.strides[i] = strides[i];
  }
  return v;
}

namespace detail {
Status check_view_shape(const char* name, const int64_t* extents, const int64_t* strides, int rank,
                        std::size_t element_size, bool has_data) noexcept;
}  // namespace detail

//! Rejects negative extents or strides, element counts or byte offsets that overflow int64, and a
//! null pointer on a non-empty view. `name` appears in the message ("q: extent 2 is -3").
template <class T, int Rank>
Status check_view(const char* name, const TensorView<T, Rank>& v) noexcept {
  return detail::check_view_shape(name, v.extents, v.strides, Rank, sizeof(T), v.data != nullptr);
}

}  // namespace promptdistill
