// SPDX-License-Identifier: Apache-2.0
// The CLI under pressure: a prompt too long for the memory allowed is refused before any work
// with the numbers (generate, compare, eval; --max-memory set low), and an evaluation killed
// (SIGKILL) or interrupted (SIGINT) half-way and resumed ends with the file an uninterrupted run
// writes. Runs on the tiny Llama-3.1 checkpoint with a byte-level tokenizer written here, so that
// a grid of 28 cases takes a few seconds.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/cli_runner.h"
#include "support/temp_dir.h"

extern char** environ;

namespace {

using Result = pdtest::CliResult;
using pdtest::slurp;

const pdtest::TempDir& scratch() {
  static const pdtest::TempDir dir("cli_hardening");
  return dir;
}

Result run_cli(const std::string& args) { return pdtest::run_cli_in(scratch(), args); }

//! tiny_llama31 (vocabulary 512) with a byte-level BPE tokenizer of its 256 byte tokens.
const std::string& tiny_model() {
  static const std::string dir = [] {
    const std::string d = scratch().path("tiny_with_tokenizer");
    std::filesystem::create_directories(d);
    for (const char* f : {"config.json", "model.safetensors"})
      std::filesystem::copy_file(std::string(PD_GOLDEN_DIR) + "/tiny_llama31/" + f, d + "/" + f,
                                 std::filesystem::copy_options::overwrite_existing);
    // GPT-2's bytes_to_unicode: printable bytes as themselves, the others from U+0100 up.
    nlohmann::json vocab = nlohmann::json::object();
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const int cp = printable ? b : next++;
      std::string utf8;
      if (cp < 0x80)
        utf8 += char(cp);
      else
        utf8 += char(0xC0 | (cp >> 6)), utf8 += char(0x80 | (cp & 0x3F));
      vocab[utf8] = b;
    }
    nlohmann::json tok = {
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
        {"pre_tokenizer",
         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
        {"decoder", {{"type", "ByteLevel"}}}};
    std::ofstream(d + "/tokenizer.json") << tok.dump();
    return d;
  }();
  return dir;
}

//! An eval run in the background (posix_spawn), its output to `out`.
struct Background {
  pid_t pid = -1;
  explicit Background(const std::vector<std::string>& args, const std::string& err) {
    std::vector<std::string> all = {PD_CLI_PATH};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : all) argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(posix_spawn(&pid, PD_CLI_PATH, &actions, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
  }
  int wait() {
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status)     ? WEXITSTATUS(status)
           : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                 : -1;
  }
};

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

//! The lines without what differs between runs (the times, and whether a sweep shared the prefill
//! of the budgets left, which a resumed sweep does for fewer).
std::vector<nlohmann::json> comparable(const std::string& path) {
  std::vector<nlohmann::json> out;
  for (const std::string& line : lines_of(path)) {
    nlohmann::json j = nlohmann::json::parse(line);
    j.erase("ttft_ms");
    j.erase("prefill_shared");
    j.erase("cpu_kernels");  // carries the kernels' rates measured at each start
    out.push_back(j);
  }
  return out;
}

std::vector<std::string> grid(const std::string& out) {
  return {"eval",
          "passkey",
          "--model",
          tiny_model(),
          "--lengths",
          "300",
          "600",
          "--depths",
          "0",
          "100",
          "--methods",
          "full",
          "promptdistill",
          "snapkv",
          "h2o",
          "--budgets",
          "16",
          "64",
          "--selection-layers",
          "0",
          "--window",
          "4",
          "--max-new-tokens",
          "24",
          "--ignore-eos",
          "--out",
          out};
}

std::string joined(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

//! Starts the grid, stops it with `signal` once `at_least` lines are written, returns the exit
//! code.
int interrupted_run(const std::string& out, int signal_number, std::size_t at_least,
                    const std::string& err) {
  Background run(grid(out), err);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (lines_of(out).size() < at_least && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  kill(run.pid, signal_number);
  return run.wait();
}

}  // namespace

TEST_CASE("cli: a prompt too long for --max-memory is refused before any work, with the numbers") {
  const std::string ids = scratch().path("ids.txt");
  {
    std::ofstream f(ids);
    for (int i = 0; i < 1500; ++i) f << (i * 37 % 500) + 3 << ' ';
  }
  const std::string base = "--model " + std::string(PD_GOLDEN_DIR) + "/tiny_llama31 --prompt-ids " +
                           ids + " --max-new-tokens 2";
  for (const std::string command : {"generate --method h2o --budget 64 --window 4",
                                    "compare --methods full promptdistill --selection-layers 0"}) {
    CAPTURE(command);
    const Result low = run_cli(command + " " + base + " --max-memory 1M");
    CAPTURE(low.err);
    CHECK(low.exit_code == 2);
    CHECK(low.out.empty());  // refused before the table or any result
    CHECK(low.err.rfind("error: out of memory: ", 0) == 0);
    for (const char* word : {"needs about", "activations", "KV cache", "scores",
                             "1.0 MiB are available (--max-memory)"})
      CHECK(low.err.find(word) != std::string::npos);
    CHECK(std::count(low.err.begin(), low.err.end(), '\n') == 1);
    CHECK(run_cli(command + " " + base + " --max-memory 8G").exit_code == 0);
  }
  // eval: every case is checked before the first runs; the output file is not even started.
  const std::string out = scratch().path("refused.jsonl");
  const Result e = run_cli(joined(grid(out)) + " --max-memory 200K");
  CHECK(e.exit_code == 2);
  CHECK(e.err.find("eval passkey at length") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out));
  for (const char* bad : {"0", "-5", "12X", "lots", "1e30"}) {
    CAPTURE(bad);
    const Result r = run_cli("generate " + base + " --max-memory " + bad);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--max-memory expects a size") != std::string::npos);
  }
  CHECK(run_cli("generate " + base + " --max-memory 1.5GiB").exit_code == 0);
}

TEST_CASE(
    "cli/eval: killed or interrupted half-way and resumed, the file equals an uninterrupted "
    "run's") {
  const std::string whole = scratch().path("whole.jsonl"), err = scratch().path("eval_err.txt");
  REQUIRE(run_cli(joined(grid(whole))).exit_code == 0);
  const auto expected = comparable(whole);
  REQUIRE(expected.size() == 28);  // 2 lengths x 2 depths x (full + 3 methods x 2 budgets)
  for (const int signal_number : {SIGKILL, SIGINT}) {
    CAPTURE(signal_number);
    const std::string out = scratch().path("resumed_" + std::to_string(signal_number) + ".jsonl");
    std::filesystem::remove(out);
    const int code = interrupted_run(out, signal_number, 3, err);
    const auto partial = lines_of(out);
    CAPTURE(slurp(err));
    if (partial.size() <
        expected.size()) {  // it was stopped half-way (as planned: the grid takes seconds)
      CHECK(code == (signal_number == SIGKILL ? 128 + SIGKILL : 130));
      for (const auto& line : partial)
        CHECK_NOTHROW(nlohmann::json::parse(line));  // whole lines only
      if (signal_number == SIGINT) {
        CHECK(slurp(err).find("interrupted after " + std::to_string(partial.size()) + " cases") !=
              std::string::npos);
        CHECK(slurp(err).find("--resume") != std::string::npos);
      }
    } else {
      MESSAGE("the grid ended before the signal: the resume below has nothing to do");
    }
    const Result resumed = run_cli(joined(grid(out)) + " --resume");
    CAPTURE(resumed.err);
    CHECK(resumed.exit_code == 0);
    CHECK(comparable(out) == expected);
  }
  // A line cut by a killed machine is dropped and its case run again.
  const std::string cut = scratch().path("cut.jsonl");
  {
    const auto lines = lines_of(whole);
    std::ofstream f(cut);
    for (std::size_t i = 0; i < 10; ++i) f << lines[i] << '\n';
    f << lines[10].substr(0, lines[10].size() / 2);
  }
  const Result resumed = run_cli(joined(grid(cut)) + " --resume");
  CHECK(resumed.exit_code == 0);
  CHECK(resumed.err.find("incomplete") != std::string::npos);
  CHECK(resumed.err.find("10 cases already") != std::string::npos);
  CHECK(comparable(cut) == expected);
  // Other settings are refused, naming the difference; the file is left as it is.
  const std::string before = slurp(cut);
  std::vector<std::string> other = grid(cut);
  other[other.size() - 4] = "12";  // --max-new-tokens
  const Result refused = run_cli(joined(other) + " --resume");
  CHECK(refused.exit_code == 2);
  CHECK(refused.err.find("other settings") != std::string::npos);
  CHECK(refused.err.find("max-new-tokens") != std::string::npos);
  CHECK(slurp(cut) == before);
  std::vector<std::string> no_out = grid(cut);
  no_out.resize(no_out.size() - 2);
  CHECK(run_cli(joined(no_out) + " --resume").err.find("--resume needs --out") !=
        std::string::npos);
}
