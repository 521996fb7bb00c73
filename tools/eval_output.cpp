// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "tools/eval_output.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tools/cli_args.h"
#include "tools/json_line.h"

namespace pdcli {
namespace {

// What the SIGINT handler needs, prepared before it is installed (it may only call
// async-signal-safe functions: write, _exit and lock-free atomics).
char g_interrupt_message[512];
std::size_t g_interrupt_length = 0;
std::atomic<long long> g_cases{0};
//! The handler may run on any thread (OpenMP's workers do not block SIGINT), so a line being
//! written is marked: the handler then leaves the exit to the writer, after the line.
enum : int { kRunning = 0, kWriting = 1, kInterruptedWhileWriting = 2, kExiting = 3 };
std::atomic<int> g_state{kRunning};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<long long>::is_always_lock_free,
              "the SIGINT handler needs lock-free atomics");

[[noreturn]] void exit_interrupted() {
  // "\ninterrupted after N cases: ..." with N written by hand (no printf in a handler).
  char digits[24];
  int n = 0;
  long long cases = g_cases.load();
  do {
    digits[n++] = char('0' + cases % 10);
    cases /= 10;
  } while (cases > 0 && n < 20);
  char head[64] = "\ninterrupted after ";
  std::size_t len = std::strlen(head);
  while (n > 0) head[len++] = digits[--n];
  ssize_t ignored = ::write(STDERR_FILENO, head, len);
  ignored = ::write(STDERR_FILENO, g_interrupt_message, g_interrupt_length);
  (void)ignored;
  ::_exit(130);  // 128 + SIGINT, as a shell reports it
}

void on_interrupt(int) {
  int expected = kRunning;
  if (g_state.compare_exchange_strong(expected, kExiting)) exit_interrupted();
  if (expected == kWriting)
    g_state.store(kInterruptedWhileWriting);  // the writer exits after its line
}

//! The complete lines of `path` and their length in bytes: a last line without its newline (cut
//! by a killed machine) is not one of them.
std::vector<std::string> complete_lines(const std::string& path, std::size_t* bytes) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const std::size_t end = text.rfind('\n');
  *bytes = end == std::string::npos ? 0 : end + 1;
  if (*bytes != text.size())
    std::fprintf(stderr, "--resume: the last line of %s is incomplete (%zu bytes): it is dropped\n",
                 path.c_str(), text.size() - *bytes);
  std::vector<std::string> lines;
  std::istringstream rest(text.substr(0, *bytes));
  for (std::string line; std::getline(rest, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

//! The settings that differ between `a` and `b`, as "name: a vs b" (for the refusal).
std::string differences(const nlohmann::json& a, const nlohmann::json& b) {
  std::string out;
  for (auto it = a.begin(); it != a.end(); ++it) {
    const auto other = b.find(it.key());
    if (other == b.end() || *other != it.value())
      out += (out.empty() ? "" : ", ") + it.key() + ": " + json_line(it.value()) + " vs " +
             (other == b.end() ? std::string("(none)") : json_line(*other));
  }
  for (auto it = b.begin(); it != b.end(); ++it)
    if (!a.contains(it.key()))
      out += (out.empty() ? "" : ", ") + it.key() + ": (none) vs " + json_line(it.value());
  return out;
}

}  // namespace

std::string EvalOutput::case_key(const nlohmann::json& line) {
  nlohmann::json key = nlohmann::json::object();
  for (const char* field : {"task", "method", "budget", "length", "depth", "dataset", "index"})
    if (line.contains(field)) key[field] = line[field];
  return key.dump();
}

EvalOutput::EvalOutput(const std::string& path, bool resume, nlohmann::json settings)
    : path_(path), resume_(resume), settings_(std::move(settings)) {
  if (resume && path.empty()) fail("--resume needs --out FILE (the results to continue)");
  if (resume) {
    const std::vector<std::string> lines = std::ifstream(path).good()
                                               ? complete_lines(path, &complete_bytes_)
                                               : std::vector<std::string>{};
    for (std::size_t i = 0; i < lines.size(); ++i) {
      const nlohmann::json j = nlohmann::json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object())
        fail("--resume: line " + std::to_string(i + 1) + " of '" + path + "' is not a JSON object");
      if (!j.contains("settings") || j["settings"] != settings_)
        fail("--resume: '" + path + "' was written with other settings (line " +
             std::to_string(i + 1) + ": " +
             differences(settings_, j.value("settings", nlohmann::json::object())) +
             "); use the same options, or another --out");
      done_.insert(case_key(j));
    }
    if (!lines.empty())
      std::fprintf(stderr, "--resume: %zu cases already in %s are skipped\n", lines.size(),
                   path.c_str());
  }
}

void EvalOutput::open() {
  const std::string& path = path_;
  file_ = stdout;
  if (!path.empty()) {
    if (resume_ && std::ifstream(path).good() &&
        ::truncate(path.c_str(), off_t(complete_bytes_)) != 0)
      fail("--resume: cannot drop the incomplete last line of '" + path +
           "': " + std::strerror(errno));
    if (!(file_ = std::fopen(path.c_str(), resume_ ? "a" : "w")))
      fail("cannot write --out '" + path + "'");
    owned_ = true;
  }
  std::snprintf(
      g_interrupt_message, sizeof g_interrupt_message,
      " cases: their results are complete in %.300s; the same command with --resume continues\n",
      path.empty() ? "the output" : path.c_str());
  g_interrupt_length = std::strlen(g_interrupt_message);
  g_cases.store(0);
  g_state.store(kRunning);
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
}

EvalOutput::~EvalOutput() {
  if (file_ == nullptr) return;  // never opened
  signal(SIGINT, SIG_DFL);
  if (owned_) std::fclose(file_);
}

void EvalOutput::write(nlohmann::json line) {
  line["settings"] = settings_;
  const std::string text = json_line(line) + "\n";
  // SIGINT waits until the line is written and flushed: the file holds whole lines only.
  int expected = kRunning;
  if (!g_state.compare_exchange_strong(expected, kWriting))
    for (;;) pause();  // the handler is ending the process on another thread
  const bool ok =
      std::fwrite(text.data(), 1, text.size(), file_) == text.size() && std::fflush(file_) == 0;
  if (ok && owned_) ::fsync(fileno(file_));  // a killed machine keeps the line too
  ++written_;
  g_cases.store(written_);
  expected = kWriting;
  if (!g_state.compare_exchange_strong(expected, kRunning))
    exit_interrupted();  // interrupted meanwhile
  if (!ok) fail("cannot write an eval result: " + std::string(std::strerror(errno)));
}

}  // namespace pdcli
