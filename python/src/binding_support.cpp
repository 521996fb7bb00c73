// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "binding_support.h"

#include <Python.h>

#include <exception>

namespace pdpy {

void register_error_translator() {
  // One Error class for both extension modules: it lives in Python (promptdistill._errors). The
  // reference is kept for the life of the process on purpose (a static nb::object would be
  // released after the interpreter is gone).
  static PyObject* error_type = nb::object(nb::module_::import_("promptdistill._errors").attr("Error")).release().ptr();
  nb::register_exception_translator(
      [](const std::exception_ptr& p, void* payload) {
        try {
          std::rethrow_exception(p);
        } catch (const StatusError& e) {
          char message[pd::Status::kMaxMessage + 64];
          pd::describe(e.status, message, sizeof message);
          PyObject* args = Py_BuildValue("(ss)", message, pd::to_string(e.status.code()));
          if (args != nullptr) {
            PyErr_SetObject(static_cast<PyObject*>(payload), args);
            Py_DECREF(args);
          }
        }
      },
      error_type);
}

pd::Method parse_method(const std::string& name) {
  for (pd::Method m : {pd::Method::kPromptDistill, pd::Method::kGemFilter, pd::Method::kSnapKV, pd::Method::kH2O})
    if (name == pd::to_string(m)) return m;
  raise(pd::Status(pd::StatusCode::kInvalidArgument, "method must be promptdistill, gemfilter, snapkv or h2o, got '%.40s'", name.c_str()));
}

pd::PoolMode parse_pool(const std::string& name) {
  for (pd::PoolMode m : {pd::PoolMode::kNone, pd::PoolMode::kAvg, pd::PoolMode::kMax})
    if (name == pd::to_string(m)) return m;
  raise(pd::Status(pd::StatusCode::kInvalidArgument, "pool must be avg, max or none, got '%.40s'", name.c_str()));
}

pd::HeadGrouping parse_grouping(const std::string& name) {
  for (pd::HeadGrouping g : {pd::HeadGrouping::kPerKvGroup, pd::HeadGrouping::kPerQueryHead})
    if (name == pd::to_string(g)) return g;
  raise(pd::Status(pd::StatusCode::kInvalidArgument, "per must be kv-group or head, got '%.40s'", name.c_str()));
}

pd::MethodConfig method_config(const std::string& method, int64_t budget, int64_t window, const std::string& pool, int64_t pool_kernel,
                               const std::string& per) {
  pd::MethodConfig c;
  c.method = parse_method(method);
  c.budget = budget;
  if (window < 1 || window > INT32_MAX)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "window must be in [1, 2^31-1], got %lld", (long long)window));
  if (pool_kernel < 1 || pool_kernel > INT32_MAX)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "pool kernel must be odd and >= 1, got %lld", (long long)pool_kernel));
  c.window = int32_t(window);
  c.pool = parse_pool(pool);
  c.pool_kernel = int32_t(pool_kernel);
  c.grouping = parse_grouping(per);
  pd::MethodPlan plan;
  raise_if_error(pd::plan_method(c, &plan));
  return c;
}

}  // namespace pdpy
