// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! `pdtest::TempDir`: a fresh folder under the system's temporary directory, removed with
//! everything in it when it goes out of scope. Tests write files only here: never into the
//! source tree or the current directory (a ctest check fails when the suite leaves files behind).

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

namespace pdtest {

class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    root_ = std::filesystem::temp_directory_path() /
            ("promptdistill-" + tag + "-" + std::to_string(::getpid()) + "-" +
             std::to_string(counter++) + "-" + std::to_string(stamp));
    std::filesystem::create_directories(root_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  //! `name` inside the folder (sub-folders are not created).
  std::string path(const std::string& name) const { return (root_ / name).string(); }
  std::string root() const { return root_.string(); }

 private:
  std::filesystem::path root_;
};

}  // namespace pdtest
