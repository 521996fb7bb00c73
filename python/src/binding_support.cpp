// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "binding_support.h"

#include <Python.h>

#include <cstring>
#include <exception>

namespace pdpy {

void register_error_translator() {
  // One Error class for both extension modules: it lives in Python (promptdistill._errors). The
  // reference is kept for the life of the process on purpose (a static nb::object would be
  // released after the interpreter is gone).
  static PyObject* error_type =
      nb::object(nb::module_::import_("promptdistill._errors").attr("Error")).release().ptr();
  nb::register_exception_translator(
      [](const std::exception_ptr& p, void* payload) {
        try {
          std::rethrow_exception(p);
        } catch (const StatusError& e) {
          char message[pd::Status::kMaxMessage + 64];
          pd::describe(e.status, message, sizeof message);
          // Decoded with replacement: a message is never a reason for another exception type.
          PyObject* text =
              PyUnicode_DecodeUTF8(message, Py_ssize_t(std::strlen(message)), "replace");
          PyObject* args = text != nullptr
                               ? Py_BuildValue("(Ns)", text, pd::to_string(e.status.code()))
                               : nullptr;
          if (args != nullptr) {
            PyErr_SetObject(static_cast<PyObject*>(payload), args);
            Py_DECREF(args);
          }
        }
      },
      error_type);
}

pd::MethodConfig method_config(const std::string& method, int64_t budget, int64_t window,
                               const std::string& pool, int64_t pool_kernel,
                               const std::string& per) {
  pd::MethodConfig c;
  c.method = parse_or_raise<pd::Method>(method);
  c.budget = budget;
  if (window < 1 || window > INT32_MAX)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "window must be in [1, 2^31-1], got %lld",
                     (long long)window));
  if (pool_kernel < 1 || pool_kernel > INT32_MAX)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "pool kernel must be odd and >= 1, got %lld",
                     (long long)pool_kernel));
  c.window = int32_t(window);
  c.pool = parse_or_raise<pd::PoolMode>(pool);
  c.pool_kernel = int32_t(pool_kernel);
  c.grouping = parse_or_raise<pd::HeadGrouping>(per);
  pd::MethodPlan plan;
  raise_if_error(pd::plan_method(c, &plan));
  return c;
}

}  // namespace pdpy
