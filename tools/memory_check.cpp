// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! --max-memory and the check every CPU run makes before its prefill: the library's estimate of
//! the peak (estimate_prefill_bytes, as ref::EigenSession executes a plan) against the limit, so
//! that a prompt too long for the machine is refused with the numbers instead of being killed
//! half-way. The CUDA session checks itself (BatchSessionOptions::memory_limit_bytes).

#include <cctype>
#include <cstdlib>

#include "generate_command.h"
#include "promptdistill/transformer_ref.h"

namespace pdcli {

using namespace promptdistill;

int64_t parse_memory_size(const std::string& text) {
  // A number of bytes, or with a binary suffix K, M, G, T (KiB, MiB, ... and KB, MB, ... alike).
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  std::string suffix(end);
  for (auto& c : suffix) c = char(std::toupper(static_cast<unsigned char>(c)));
  double scale = 0;
  if (suffix.empty() || suffix == "B")
    scale = 1;
  else if (suffix == "K" || suffix == "KB" || suffix == "KIB")
    scale = 1024.0;
  else if (suffix == "M" || suffix == "MB" || suffix == "MIB")
    scale = 1024.0 * 1024.0;
  else if (suffix == "G" || suffix == "GB" || suffix == "GIB")
    scale = 1024.0 * 1024.0 * 1024.0;
  else if (suffix == "T" || suffix == "TB" || suffix == "TIB")
    scale = 1024.0 * 1024.0 * 1024.0 * 1024.0;
  const double bytes = value * scale;
  if (end == text.c_str() || scale == 0 || !(bytes >= 1) || bytes > 9.0e18)
    fail("--max-memory expects a size such as 512M, 16G or a number of bytes, got '" + text + "'");
  return int64_t(bytes);
}

int64_t max_memory_option(const Args& a) {
  return a.values.count("max-memory") ? parse_memory_size(get(a, "max-memory", "")) : 0;
}

void check_cpu_memory(const LoadedModel& m, const PipelineConfig& c, int64_t prompt_tokens,
                      int64_t max_new, int64_t budgets, const std::string& what) {
  PipelinePlan plan;
  if (Status s = plan_pipeline(c, &plan); !s) fail_status(s);
  PrefillMemoryModel how;  // ref::EigenSession: f32, one request, the MLP in chunks of 512 rows
  how.decode_reserve = std::max<int64_t>(max_new, 0);
  how.attention_rows = int64_t(ref::threads()) * 128;  // each thread's block of query rows
  how.budgets = std::max<int64_t>(budgets, 1);
  const PrefillMemory need = estimate_prefill_bytes(m.weights.config, plan, prompt_tokens, how);
  const bool given = m.max_memory_bytes > 0;
  const int64_t limit = given ? m.max_memory_bytes : available_memory_bytes();
  const std::string full =
      what + " (" + to_string(c.method) + ", " + std::to_string(prompt_tokens) + " tokens)";
  const Status s = check_prefill_memory(
      need, limit, full.c_str(),
      given ? "--max-memory" : "MemAvailable in /proc/meminfo; --max-memory sets another limit");
  if (!s) fail_status(s);
}

}  // namespace pdcli
