// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! What the Python bindings share: DLPack arrays (nanobind `ndarray`) turned into the library's
//! views after checking rank, dtype, device and strides, and every failure turned into
//! `promptdistill.Error` carrying the library's `Status` message.
//!
//! The checks here only cover what the library's own `can_implement` cannot see (an array's dtype
//! and device are not part of a view); everything else is left to `can_implement`, so Python users
//! get the same messages as C++ users.

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "promptdistill/promptdistill.h"

namespace pdpy {

namespace nb = nanobind;
namespace pd = promptdistill;

//! Every array argument: any DLPack producer, any device, any dtype; the checks below decide.
//! Taken as read-only so that read-only NumPy inputs are accepted; the Python layer allocates
//! every output itself and refuses read-only caches before `compact_kv` writes into them.
using InArray = nb::ndarray<nb::ro>;

//! A failed Status on its way to Python (translated into promptdistill.Error).
struct StatusError {
  pd::Status status;
};

[[noreturn]] inline void raise(const pd::Status& s) { throw StatusError{s}; }
inline void raise_if_error(const pd::Status& s) {
  if (!s.is_ok()) raise(s);
}

//! Registers the translation of StatusError into promptdistill._errors.Error(message, code).
void register_error_translator();

enum class Elem { kF32, kF16, kBF16, kI32, kOther };

inline Elem elem_of(nb::dlpack::dtype t) {
  if (t.lanes != 1) return Elem::kOther;
  if (t.code == uint8_t(nb::dlpack::dtype_code::Float) && t.bits == 32) return Elem::kF32;
  if (t.code == uint8_t(nb::dlpack::dtype_code::Float) && t.bits == 16) return Elem::kF16;
  if (t.code == uint8_t(nb::dlpack::dtype_code::Bfloat) && t.bits == 16) return Elem::kBF16;
  if (t.code == uint8_t(nb::dlpack::dtype_code::Int) && t.bits == 32) return Elem::kI32;
  return Elem::kOther;
}

//! "float32", "bfloat16", "int64", "uint8", ... as NumPy and PyTorch spell them.
inline std::string dtype_name(nb::dlpack::dtype t) {
  const char* kind = "dtype";
  switch (nb::dlpack::dtype_code(t.code)) {
    case nb::dlpack::dtype_code::Int: kind = "int"; break;
    case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
    case nb::dlpack::dtype_code::Float: kind = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: kind = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: kind = "complex"; break;
    case nb::dlpack::dtype_code::Bool: return "bool";
    default: return "dtype code " + std::to_string(int(t.code));
  }
  return kind + std::to_string(int(t.bits));
}

inline std::string device_name(const InArray& a) {
  switch (a.device_type()) {
    case nb::device::cpu::value: return "cpu";
    case nb::device::cuda::value: return "cuda:" + std::to_string(a.device_id());
    case nb::device::cuda_host::value: return "cuda_host";
    case nb::device::cuda_managed::value: return "cuda_managed";
    default: return "device type " + std::to_string(a.device_type());
  }
}

//! The device every array of one call must share: the backend's device type and q's device id.
struct Device {
  int type = nb::device::cpu::value;
  int id = 0;
  std::string name;
};

inline Device device_of(const InArray& a) {
  return Device{a.device_type(), a.device_id(), device_name(a)};
}

//! `name` lives on `device` (the same device type and the same device id).
inline void require_device(const char* name, const InArray& a, const Device& device) {
  if (a.device_type() != device.type ||
      (device.type != nb::device::cpu::value && a.device_id() != device.id))
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "%s is on %s but the other arrays are on %s: every array of one call must be "
                     "on the same device",
                     name, device_name(a).c_str(), device.name.c_str()));
}

inline void require_rank(const char* name, const InArray& a, std::size_t rank, const char* shape) {
  if (a.ndim() != rank)
    raise(pd::Status(pd::StatusCode::kShapeMismatch, "%s must have %zu dimensions %s, got %zu",
                     name, rank, shape, a.ndim()));
}

inline void require_elem(const char* name, const InArray& a, Elem want, const char* want_name) {
  if (elem_of(a.dtype()) != want)
    raise(pd::Status(pd::StatusCode::kUnsupported, "%s must be %s, got %s", name, want_name,
                     dtype_name(a.dtype()).c_str()));
}

//! Float element types the kernels are compiled for.
inline Elem require_float(const char* name, const InArray& a) {
  const Elem e = elem_of(a.dtype());
  if (e != Elem::kF32 && e != Elem::kF16 && e != Elem::kBF16)
    raise(pd::Status(pd::StatusCode::kUnsupported,
                     "%s must be float32, float16 or bfloat16, got %s", name,
                     dtype_name(a.dtype()).c_str()));
  return e;
}

//! Packed row-major (what a raw `const int32_t*` argument of the library means).
inline void require_contiguous(const char* name, const InArray& a) {
  if (a.size() == 0) return;  // no element to address: any strides (DLPack may report 0) will do
  int64_t expected = 1;
  for (std::size_t i = a.ndim(); i-- > 0;) {
    if (a.shape(i) != 1 && a.stride(i) != expected)
      raise(pd::Status(pd::StatusCode::kInvalidArgument,
                       "%s must be contiguous (dimension %zu has stride %lld, expected %lld)", name,
                       i, (long long)a.stride(i), (long long)expected));
    expected *= int64_t(a.shape(i));
  }
}

//! An int32 vector of `length` elements (lengths, page metadata).
inline const int32_t* int_vector(const char* name, const InArray& a, const Device& device,
                                 int64_t length = -1) {
  require_device(name, a, device);
  require_rank(name, a, 1, "[n]");
  require_elem(name, a, Elem::kI32, "int32");
  require_contiguous(name, a);
  if (length >= 0 && int64_t(a.shape(0)) != length)
    raise(pd::Status(pd::StatusCode::kShapeMismatch, "%s must have %lld elements, got %zu", name,
                     (long long)length, a.shape(0)));
  return static_cast<const int32_t*>(a.data());
}

template <class T, int R>
pd::TensorView<T, R> view_of(const InArray& a) {
  pd::TensorView<T, R> v;
  v.data = static_cast<T*>(const_cast<void*>(a.data()));
  for (int i = 0; i < R; ++i) {
    v.extents[i] = int64_t(a.shape(std::size_t(i)));
    v.strides[i] = a.stride(std::size_t(i));
  }
  return v;
}

//! A rank-R view of `a` after the device, rank and dtype checks.
template <class T, int R>
pd::TensorView<T, R> checked_view(const char* name, const InArray& a, const Device& device,
                                  Elem elem, const char* elem_name, const char* shape) {
  require_device(name, a, device);
  require_rank(name, a, std::size_t(R), shape);
  require_elem(name, a, elem, elem_name);
  return view_of<T, R>(a);
}

//! The caller's workspace buffer, aligned up to the planner's 256 bytes (callers allocate the
//! size a `*_workspace_size` query returned, which includes that slack).
inline pd::Workspace aligned_workspace(const InArray& ws, const Device& device) {
  require_device("workspace", ws, device);
  require_contiguous("workspace", ws);
  auto* base = static_cast<unsigned char*>(const_cast<void*>(ws.data()));
  const std::size_t bytes = ws.nbytes();
  const std::size_t align = pd::WorkspacePlanner::kAlignment;
  const std::size_t pad = (align - reinterpret_cast<std::uintptr_t>(base) % align) % align;
  if (pad >= bytes && bytes > 0)
    raise(pd::Status(pd::StatusCode::kWorkspaceTooSmall,
                     "workspace of %zu bytes is smaller than its alignment padding", bytes));
  return pd::Workspace{bytes == 0 ? nullptr : base + pad, bytes == 0 ? 0 : bytes - pad};
}

//! Workspace bytes to allocate for an operation that needs `bytes`: room to align the base.
inline std::size_t with_alignment_slack(std::size_t bytes) {
  return bytes + pd::WorkspacePlanner::kAlignment;
}

inline pd::Stream stream_of(uintptr_t handle) { return reinterpret_cast<pd::Stream>(handle); }

// ---- names, as the CLI spells them --------------------------------------------------------------

//! The library's parse() (the spellings every command accepts), raising Error on a bad name.
template <class Enum>
Enum parse_or_raise(const std::string& name) {
  Enum value{};
  raise_if_error(pd::parse(name, &value));
  return value;
}

//! The method configuration behind `select(..., method=, topk=, window=, pool=, pool_kernel=,
//! per=)`.
pd::MethodConfig method_config(const std::string& method, int64_t budget, int64_t window,
                               const std::string& pool, int64_t pool_kernel,
                               const std::string& per);

}  // namespace pdpy
