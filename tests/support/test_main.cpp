// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! doctest main shared by every test binary, compiled once (the promptdistill_test_main library).
//! - `--seed=N` (or PROMPTDISTILL_SEED=N) replays a run; the seed is printed at start and in every
//!   failure's context (tests CAPTURE it).
//! - What a binary needs before it can run (a model file, a CUDA device) is checked by
//!   support/test_requirements.cpp, compiled into each binary with its own definitions; a binary
//!   that cannot run prints a SKIPPED line and exits with 77, which CTest reports as "Skipped".
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "support/generators.h"

namespace pdtest {
int check_requirements();  // support/test_requirements.cpp, compiled into each test binary
}

namespace pdtest {
namespace {
uint64_t g_seed = 20261123;
}
uint64_t seed() { return g_seed; }
}  // namespace pdtest

int main(int argc, char** argv) {
  std::vector<char*> args;
  if (const char* env = std::getenv("PROMPTDISTILL_SEED"))
    pdtest::g_seed = std::strtoull(env, nullptr, 10);
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--seed=", 7) == 0) {
      pdtest::g_seed = std::strtoull(argv[i] + 7, nullptr, 10);
      continue;
    }
    args.push_back(argv[i]);
  }
  std::printf("[promptdistill tests] seed=%llu (replay with --seed=%llu)\n",
              static_cast<unsigned long long>(pdtest::g_seed),
              static_cast<unsigned long long>(pdtest::g_seed));
  if (const int skip = pdtest::check_requirements()) return skip;
  doctest::Context context;
  context.applyCommandLine(int(args.size()), args.data());
  return context.run();
}
