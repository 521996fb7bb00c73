// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Where `eval` writes its results so that an interrupted evaluation loses nothing: each case's
//! JSON line is written as soon as the case is done, whole (a Ctrl-C arriving meanwhile ends the
//! run after the line) and flushed to the file system; `--resume` reads the lines already in the
//! file (a line cut by a killed machine is dropped), refuses a file written with other settings,
//! and names the cases to skip; Ctrl-C (SIGINT) ends the run at once with a message, the finished
//! lines intact.

#include <cstdio>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace pdcli {

class EvalOutput {
 public:
  //! The output `path` ("" = stdout) of a run with `settings` (the options every line records; a
  //! resumed file must hold the same). With `resume`, reads the lines already there and reports
  //! their cases by done(). Writes nothing yet. Exits with an error line on failure.
  EvalOutput(const std::string& path, bool resume, nlohmann::json settings);
  //! Starts writing, once every check has passed: drops a resumed file's incomplete last line
  //! (or starts the file afresh without --resume) and installs the SIGINT handler.
  void open();
  ~EvalOutput();
  EvalOutput(const EvalOutput&) = delete;
  EvalOutput& operator=(const EvalOutput&) = delete;

  //! A case's identity in the file: the fields of `line` that name it (task, method, budget and
  //! length/depth, or dataset/index).
  static std::string case_key(const nlohmann::json& line);
  //! True when the case is in the file already (resumed).
  bool done(const std::string& key) const { return done_.count(key) > 0; }
  //! Writes one case's line (with the settings added), whole and flushed.
  void write(nlohmann::json line);
  int64_t cases_written() const { return written_; }

 private:
  std::string path_;
  bool resume_ = false;
  std::size_t complete_bytes_ = 0;  //!< a resumed file's complete lines
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  nlohmann::json settings_;
  std::set<std::string> done_;
  int64_t written_ = 0;
};

}  // namespace pdcli
