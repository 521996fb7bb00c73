// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "promptdistill/status.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace promptdistill {

const char* to_string(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::kSuccess: return "success";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kShapeMismatch: return "shape mismatch";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kMisaligned: return "misaligned";
    case StatusCode::kWorkspaceTooSmall: return "workspace too small";
    case StatusCode::kOutOfMemory: return "out of memory";
    case StatusCode::kOutOfRange: return "out of range";
    case StatusCode::kCapacityExceeded: return "capacity exceeded";
    case StatusCode::kCudaError: return "CUDA error";
    case StatusCode::kCublasError: return "cuBLAS error";
    case StatusCode::kIoError: return "I/O error";
    case StatusCode::kCorruptFile: return "corrupt file";
    case StatusCode::kNoDevice: return "no CUDA device";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown status";
}

Status::Status(StatusCode code, const char* format, ...) noexcept : code_(code), message_{} {
  va_list args;
  va_start(args, format);
  std::vsnprintf(message_, kMaxMessage, format, args);
  va_end(args);
}

Status::Status(StatusCode code) noexcept : code_(code), message_{} {
  std::snprintf(message_, kMaxMessage, "%s", to_string(code));
}

const char* describe(const Status& status, char* buffer, std::size_t size) noexcept {
  if (size == 0) return buffer;
  std::snprintf(buffer, size, "%s: %s", to_string(status.code()), status.message());
  return buffer;
}

}  // namespace promptdistill
