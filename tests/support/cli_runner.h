// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Runs the CLI (PD_CLI_PATH) with a command line, its stdout and stderr captured in a scratch
//! folder of the test binary, for the CLI tests.

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "support/temp_dir.h"

namespace pdtest {

struct CliResult {
  int exit_code;
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

//! The CLI run from `scratch` (its out.txt and err.txt hold the streams).
inline CliResult run_cli_in(const TempDir& scratch, const std::string& args) {
  const std::string out = scratch.path("out.txt"), err = scratch.path("err.txt");
  const int rc =
      std::system((std::string(PD_CLI_PATH) + " " + args + " >" + out + " 2>" + err).c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, slurp(out), slurp(err)};
}

}  // namespace pdtest
