// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::core.
//! `Status`: the only error currency of the library. Every public operation returns one; the
//! library never aborts, never exits and never lets an exception cross its API.
//!
//! A `Status` carries a `StatusCode` and a short human-readable message in an inline buffer, so
//! that creating or copying one never allocates (it may be returned from a `run()` that promises
//! no allocation) and it stays trivially copyable.

#include <cstddef>
#include <cstdint>

namespace promptdistill {

enum class StatusCode : int32_t {
  kSuccess = 0,
  kInvalidArgument = 1,    //!< a value is out of its documented domain (k < 0, empty prompt, ...)
  kShapeMismatch = 2,      //!< two shapes that must agree do not (heads, head dim, batch, ...)
  kUnsupported = 3,        //!< valid, but not compiled in or not implemented (head dim, layout)
  kMisaligned = 4,         //!< a pointer or stride breaks the alignment the kernel needs
  kWorkspaceTooSmall = 5,  //!< the caller's workspace is smaller than `workspace_size()`
  kOutOfMemory = 6,        //!< an allocation outside `run()` failed
  kOutOfRange = 7,         //!< an index (block table, selected index) points outside its buffer
  kCapacityExceeded = 8,   //!< a length exceeds the capacity of the buffer that holds it
  kCudaError = 9,          //!< the CUDA runtime reported an error
  kCublasError = 10,       //!< cuBLAS / cuBLASLt reported an error
  kIoError = 11,           //!< a file could not be opened, read or written
  kCorruptFile = 12,       //!< a file's contents are truncated or inconsistent
  kNoDevice = 13,          //!< a CUDA operation was requested but no usable device exists
  kInternal = 14,          //!< a bug in the library; please report it
};

//! Stable name of a code, e.g. "invalid argument".
const char* to_string(StatusCode code) noexcept;

class Status {
 public:
  static constexpr std::size_t kMaxMessage = 240;

  constexpr Status() noexcept : code_(StatusCode::kSuccess), message_{} {}
  //! A status with a printf-style message (truncated to `kMaxMessage - 1` bytes, never inside a
  //! UTF-8 character, so that the message stays valid UTF-8 when its parts are).
  Status(StatusCode code, const char* format, ...) noexcept
#if defined(__GNUC__)
      __attribute__((format(printf, 3, 4)))
#endif
      ;
  //! A status whose message is the code's name.
  explicit Status(StatusCode code) noexcept;

  static constexpr Status ok() noexcept { return Status(); }

  constexpr bool is_ok() const noexcept { return code_ == StatusCode::kSuccess; }
  explicit constexpr operator bool() const noexcept { return is_ok(); }
  constexpr StatusCode code() const noexcept { return code_; }
  const char* message() const noexcept { return message_; }

 private:
  StatusCode code_;
  char message_[kMaxMessage];
};

//! Bytes read from a file or given by a caller (a tensor or key name, a dtype, a method name) as
//! they may appear in a message: printable ASCII and well-formed UTF-8 characters as they are,
//! every other byte (control characters, bytes of malformed UTF-8) and the quote and backslash as
//! \xNN, cut after `max_bytes` bytes of output with "..." appended. The text is always valid
//! UTF-8 and never contains a NUL, a newline or a terminal escape. No allocation:
//!   Status(StatusCode::kCorruptFile, "tensor '%s' ...", Quoted(name).c_str())
class Quoted {
 public:
  static constexpr std::size_t kMaxBytes = 96;
  explicit Quoted(const char* bytes, std::size_t size, std::size_t max_bytes = 64) noexcept;
  template <class Text>  // std::string, std::string_view: anything with data() and size()
  explicit Quoted(const Text& text, std::size_t max_bytes = 64) noexcept
      : Quoted(text.data(), text.size(), max_bytes) {}
  const char* c_str() const noexcept { return text_; }

 private:
  char text_[kMaxBytes + 4];  // the cut text and "..."
};

//! "invalid argument: k must be >= 0 (got -1)".
//! Writes into `buffer` (always NUL-terminated) and returns it.
const char* describe(const Status& status, char* buffer, std::size_t size) noexcept;

}  // namespace promptdistill

//! Returns early from the enclosing function if `expr` yields a non-success `Status`.
#define PD_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::promptdistill::Status pd_status_ = (expr); \
    if (!pd_status_.is_ok()) return pd_status_;  \
  } while (0)
