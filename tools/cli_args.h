// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Command-line parsing for the promptdistill CLI: `--name value [value ...]` options and flags;
//! every error exits with status 2 and one "error: ..." line.

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "promptdistill/pipeline.h"
#include "promptdistill/selector.h"
#include "promptdistill/status.h"

namespace pdcli {

struct Args {
  std::string command;
  std::map<std::string, std::vector<std::string>> values;
  std::vector<std::string> flags;

  bool flag(const std::string& name) const {
    for (const auto& f : flags)
      if (f == name) return true;
    return false;
  }
};

[[noreturn]] inline void fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  std::exit(2);
}
[[noreturn]] inline void fail_status(const promptdistill::Status& s) {
  char buf[320];
  fail(promptdistill::describe(s, buf, sizeof buf));
}

//! Options listed in `flag_names` take no value; every other `--name` takes one or more values.
inline Args parse_args(int argc, char** argv, std::initializer_list<const char*> flag_names,
                       const char* usage) {
  Args a;
  if (argc < 2) fail(std::string("missing command\n") + usage);
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string s = argv[i];
    if (s.rfind("--", 0) != 0)
      fail("unexpected argument '" + s + "' (options look like --name VALUE)");
    const std::string name = s.substr(2);
    bool is_flag = false;
    for (const char* f : flag_names) is_flag = is_flag || name == f;
    if (is_flag) {
      a.flags.push_back(name);
      continue;
    }
    std::vector<std::string>& vals = a.values[name];
    while (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) vals.push_back(argv[++i]);
    if (vals.empty()) fail("option --" + name + " needs a value");
  }
  return a;
}

//! An option's former name, accepted for one release: `--old` reads as `--current`, with a warning
//! on stderr; giving both is an error. Returns the name to read.
inline std::string renamed_option(const Args& a, const std::string& current,
                                  const std::string& old) {
  if (!a.values.count(old)) return current;
  if (a.values.count(current))
    fail("give --" + current + ", not also --" + old + " (its former name)");
  std::fprintf(stderr, "warning: --%s is deprecated, use --%s (the same number)\n", old.c_str(),
               current.c_str());
  return old;
}

inline std::string get(const Args& a, const std::string& key, const std::string& fallback) {
  const auto it = a.values.find(key);
  return it == a.values.end() ? fallback : it->second.back();
}
inline int64_t to_int(const std::string& key, const std::string& v) {
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') fail("--" + key + " expects an integer, got '" + v + "'");
  return x;
}
inline int64_t get_int(const Args& a, const std::string& key, int64_t fallback) {
  const std::string v = get(a, key, "");
  return v.empty() ? fallback : to_int(key, v);
}
inline double get_double(const Args& a, const std::string& key, double fallback) {
  const std::string v = get(a, key, "");
  if (v.empty()) return fallback;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (*end != '\0') fail("--" + key + " expects a number, got '" + v + "'");
  return x;
}
inline std::vector<int64_t> get_ints(const Args& a, const std::string& key,
                                     std::vector<int64_t> fallback) {
  const auto it = a.values.find(key);
  if (it == a.values.end()) return fallback;
  std::vector<int64_t> out;
  for (const auto& v : it->second) out.push_back(to_int(key, v));
  return out;
}
//! --key's value (or `fallback`) parsed with promptdistill::parse: every command accepts the
//! same spellings of a method, a pooling mode and a head grouping.
template <class Enum>
void parse_option(const Args& a, const std::string& key, const std::string& fallback, Enum* out) {
  const promptdistill::Status s = promptdistill::parse(get(a, key, fallback), out);
  if (!s.is_ok()) fail("--" + key + ": " + s.message());
}

inline void reject_unknown(const Args& a, std::initializer_list<const char*> known) {
  for (const auto& kv : a.values) {
    bool ok = false;
    for (const char* k : known) ok = ok || kv.first == k;
    if (!ok) fail("unknown option --" + kv.first + " for '" + a.command + "'");
  }
}

}  // namespace pdcli
