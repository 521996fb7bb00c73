// SPDX-License-Identifier: Apache-2.0
// End to end at a paper model's shape with random bf16 weights (docs/design.md §8): TTFT, decode
// ms/token and peak device memory of full KV, PromptDistill (r=13, k=1024, tt=1), GemFilter
// (r=13, k=1024) and SnapKV (C=1024) on the CUDA session, one JSON object per line, written as
// each run ends (a run cut short keeps the lines before it).
//
//   promptdistill.bench.e2e_shape [--shape llama31-8b|smollm2] [--layers N] [--lengths 8192 32768
//   131072]
//                                 [--decode 32] [--methods full promptdistill gemfilter snapkv]
//                                 [--backend cuda|cpu] [--memory-limit-mib N]
//
// --backend cpu runs the same on ref::BatchSession (for checking this program without a GPU, at
// small shapes); --memory-limit-mib is BatchSessionOptions::memory_limit_bytes.
//
// Random weights make the generated text meaningless; the timings and memory are what a real
// checkpoint of that shape costs with these kernels. The weights are drawn on the device
// (BatchSession::create_random): no host copy of the 8B shape's 16 GB of bf16 ever exists.
// --layers N keeps the first N layers (the selection layer becomes min(13, N - 2)); every line
// says how many layers and which selection layer it ran. A run that fails (prefill or decode)
// writes a line with its error, the others still run, and the program exits 1 (scripts/gpu_run.sh
// then records the step as failed).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "promptdistill/batch_session.h"

using namespace promptdistill;

namespace {

ModelConfig shape_config(const std::string& shape, int64_t layers) {
  ModelConfig c;
  if (shape == "smollm2") {
    c.num_layers = 30, c.hidden = 576, c.num_heads = 9, c.num_kv_heads = 3, c.head_dim = 64,
    c.intermediate = 1536;
    c.vocab = 49152, c.max_positions = 8192, c.rope.theta = 100000.0, c.tied_embeddings = true;
  } else {  // llama31-8b
    c.num_layers = 32, c.hidden = 4096, c.num_heads = 32, c.num_kv_heads = 8, c.head_dim = 128,
    c.intermediate = 14336;
    c.vocab = 128256, c.max_positions = 131072, c.rope.theta = 500000.0;
    c.rope.scaling = RopeScaling::kLlama3;
    c.rope.factor = 8.0, c.rope.low_freq_factor = 1.0, c.rope.high_freq_factor = 4.0,
    c.rope.original_max_positions = 8192;
  }
  if (layers > 0) c.num_layers = layers;
  c.rms_eps = 1e-5;
  return c;
}

//! What one invocation runs.
struct Plan {
  std::string shape;
  int64_t decode = 32;
  std::vector<int64_t> lengths;
  std::vector<std::string> methods;
  BatchSessionOptions options;
};

//! Every (length, method) on a session of `config`'s shape with random weights; one JSON line
//! each. Returns the number of failed runs (-1: the session could not be made).
template <class Session>
int run_all(const Plan& plan, const ModelConfig& config, const std::string& device) {
  std::unique_ptr<Session> session;
  Status s = Session::create_random(config, 1, plan.options, nullptr, &session);
  if (!s) {
    std::fprintf(stderr, "error: %s\n", s.message());
    return -1;
  }
  const int64_t selection_layer = std::min<int64_t>(13, config.num_layers - 2);
  int failures = 0;
  for (int64_t L : plan.lengths) {
    std::vector<int32_t> prompt(static_cast<std::size_t>(L));
    for (int64_t i = 0; i < L; ++i)
      prompt[std::size_t(i)] = int32_t(1000 + (uint64_t(i) * 2654435761u) % 30000);
    for (const std::string& m : plan.methods) {
      PipelineConfig cfg;
      parse(m, &cfg.method);  // checked in main
      cfg.selection_layers = {selection_layer};
      cfg.n_topks = {1024};
      cfg.cache_truncation_end = 1;
      cfg.budget = 1024;
      std::vector<PrefillResult> res;
      s = session->prefill({prompt}, cfg, &res);
      std::vector<std::vector<int32_t>> out;
      double ms = 0;
      const char* stage = "prefill";
      if (s) {
        stage = "decode";
        s = session->generate({res[0].first_token}, plan.decode, {}, &out, &ms);
      }
      if (!s) {
        failures++;
        std::printf(
            "{\"shape\":\"%s\",\"layers\":%lld,\"length\":%lld,\"method\":\"%s\",\"error\":\"%s: "
            "%s\"}\n",
            plan.shape.c_str(), (long long)config.num_layers, (long long)L, m.c_str(), stage,
            s.message());
        std::fprintf(stderr, "error: %s at %lld tokens, %s: %s\n", m.c_str(), (long long)L, stage,
                     s.message());
        std::fflush(stdout);
        continue;
      }
      std::printf(
          "{\"device\":\"%s\",\"shape\":\"%s\",\"layers\":%lld,\"selection_layer\":%lld,\"length\":"
          "%lld,\"method\":\"%s\","
          "\"ttft_ms\":%.3f,\"decode_ms_per_token\":%.4f,\"decode_steps_replayed\":%lld,\"peak_"
          "device_bytes\":%lld,"
          "\"weight_bytes\":%lld,\"peak_kv_cache_bytes\":%lld,\"retained\":%lld}\n",
          device.c_str(), plan.shape.c_str(), (long long)config.num_layers,
          (long long)selection_layer, (long long)L, m.c_str(), res[0].ttft_ms, ms,
          (long long)session->decode_graph_replays(), (long long)session->peak_memory_bytes(),
          (long long)session->weight_bytes(), (long long)res[0].peak_kv_cache_bytes,
          (long long)(res[0].retained.empty() ? L : res[0].retained[0]));
      if (!session->decode_graph_status().is_ok())
        std::fprintf(stderr, "note: %s\n", session->decode_graph_status().message());
      std::fflush(stdout);
    }
  }
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  Plan plan;
  plan.shape = "llama31-8b";
  std::string backend = "cuda";
  int64_t layers = 0, memory_limit_mib = 0;
  const char* usage =
      "usage: %s [--shape llama31-8b|smollm2] [--layers N] [--lengths L...] [--decode N] "
      "[--methods M...]\n"
      "          [--backend cuda|cpu] [--memory-limit-mib N]\n";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto list = [&](auto push) {
      while (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) push(argv[++i]);
    };
    if (a == "--shape" && i + 1 < argc)
      plan.shape = argv[++i];
    else if (a == "--layers" && i + 1 < argc)
      layers = std::atoll(argv[++i]);
    else if (a == "--decode" && i + 1 < argc)
      plan.decode = std::atoll(argv[++i]);
    else if (a == "--lengths")
      list([&](const char* v) { plan.lengths.push_back(std::atoll(v)); });
    else if (a == "--methods")
      list([&](const char* v) { plan.methods.emplace_back(v); });
    else if (a == "--backend" && i + 1 < argc)
      backend = argv[++i];
    else if (a == "--memory-limit-mib" && i + 1 < argc)
      memory_limit_mib = std::atoll(argv[++i]);
    else {
      std::fprintf(stderr, usage, argv[0]);
      return 2;
    }
  }
  if (plan.lengths.empty())
    plan.lengths = plan.shape == "smollm2" ? std::vector<int64_t>{2048, 8000}
                                           : std::vector<int64_t>{8192, 32768, 131072};
  if (plan.methods.empty()) plan.methods = {"full", "promptdistill", "gemfilter", "snapkv"};
  if (plan.shape != "smollm2" && plan.shape != "llama31-8b") {
    std::fprintf(stderr, "unknown shape %s (llama31-8b or smollm2)\n", plan.shape.c_str());
    return 2;
  }
  for (const std::string& m : plan.methods) {
    PipelineMethod method;
    if (!parse(m, &method)) {
      std::fprintf(stderr, "unknown method %s (full, promptdistill, gemfilter, snapkv, h2o)\n",
                   m.c_str());
      return 2;
    }
  }
  if (backend != "cuda" && backend != "cpu") {
    std::fprintf(stderr, usage, argv[0]);
    return 2;
  }
  plan.options.memory_limit_bytes = memory_limit_mib * 1024 * 1024;
  const ModelConfig config = shape_config(plan.shape, layers);
  int failures = 0;
  if (backend == "cpu") {
    // The same runs on ref::BatchSession (f32, host memory): slow, for checking this program
    // (its lines and its exit status) on a machine without a GPU, at small shapes.
    failures = run_all<ref::BatchSession>(plan, config, "cpu");
  } else {
    if (!cuda::device_available()) {
      std::printf("SKIPPED: no CUDA device\n");
      return 77;  // skipped, as the CUDA tests
    }
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, 0);
    failures = run_all<cuda::BatchSession>(plan, config, prop.name);
  }
  if (failures != 0)
    std::fprintf(stderr, "error: %s\n",
                 failures < 0 ? "no session" : "some runs failed (see the error lines)");
  return failures != 0 ? 1 : 0;
}
