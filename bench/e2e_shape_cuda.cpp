// SPDX-License-Identifier: Apache-2.0
// End to end at a paper model's shape with random bf16 weights (docs/design.md §8): TTFT, decode
// ms/token and peak device memory of full KV, PromptDistill (r=13, k=1024, tt=1), GemFilter
// (r=13, k=1024) and SnapKV (C=1024) on the CUDA session, one JSON object per line, written as
// each run ends (a run cut short keeps the lines before it).
//
//   promptdistill.bench.e2e_shape [--shape llama31-8b|smollm2] [--layers N] [--lengths 8192 32768 131072]
//                                 [--decode 32] [--methods full promptdistill gemfilter snapkv]
//
// Random weights make the generated text meaningless; the timings and memory are what a real
// checkpoint of that shape costs with these kernels. The weights are drawn on the device
// (BatchSession::create_random): no host copy of the 8B shape's 16 GB of bf16 ever exists.
// --layers N keeps the first N layers (the selection layer becomes min(13, N - 2)); every line
// says how many layers and which selection layer it ran.
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
    c.num_layers = 30, c.hidden = 576, c.num_heads = 9, c.num_kv_heads = 3, c.head_dim = 64, c.intermediate = 1536;
    c.vocab = 49152, c.max_positions = 8192, c.rope.theta = 100000.0, c.tied_embeddings = true;
  } else {  // llama31-8b
    c.num_layers = 32, c.hidden = 4096, c.num_heads = 32, c.num_kv_heads = 8, c.head_dim = 128, c.intermediate = 14336;
    c.vocab = 128256, c.max_positions = 131072, c.rope.theta = 500000.0;
    c.rope.scaling = RopeScaling::kLlama3;
    c.rope.factor = 8.0, c.rope.low_freq_factor = 1.0, c.rope.high_freq_factor = 4.0, c.rope.original_max_positions = 8192;
  }
  if (layers > 0) c.num_layers = layers;
  c.rms_eps = 1e-5;
  return c;
}

[[noreturn]] void die(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.message());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string shape = "llama31-8b";
  int64_t layers = 0, decode = 32;
  std::vector<int64_t> lengths;
  std::vector<std::string> methods;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto list = [&](auto push) {
      while (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) push(argv[++i]);
    };
    if (a == "--shape" && i + 1 < argc) shape = argv[++i];
    else if (a == "--layers" && i + 1 < argc) layers = std::atoll(argv[++i]);
    else if (a == "--decode" && i + 1 < argc) decode = std::atoll(argv[++i]);
    else if (a == "--lengths") list([&](const char* v) { lengths.push_back(std::atoll(v)); });
    else if (a == "--methods") list([&](const char* v) { methods.emplace_back(v); });
    else {
      std::fprintf(stderr, "usage: %s [--shape llama31-8b|smollm2] [--layers N] [--lengths L...] [--decode N] [--methods M...]\n", argv[0]);
      return 2;
    }
  }
  if (lengths.empty()) lengths = shape == "smollm2" ? std::vector<int64_t>{2048, 8000} : std::vector<int64_t>{8192, 32768, 131072};
  if (methods.empty()) methods = {"full", "promptdistill", "gemfilter", "snapkv"};
  if (shape != "smollm2" && shape != "llama31-8b") {
    std::fprintf(stderr, "unknown shape %s (llama31-8b or smollm2)\n", shape.c_str());
    return 2;
  }
  if (!cuda::device_available()) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;  // skipped, as the CUDA tests
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const ModelConfig config = shape_config(shape, layers);
  std::unique_ptr<cuda::BatchSession> session;
  Status s = cuda::BatchSession::create_random(config, 1, BatchSessionOptions{}, nullptr, &session);
  if (!s) die(s);
  const int64_t selection_layer = std::min<int64_t>(13, config.num_layers - 2);
  for (int64_t L : lengths) {
    std::vector<int32_t> prompt(static_cast<std::size_t>(L));
    for (int64_t i = 0; i < L; ++i) prompt[std::size_t(i)] = int32_t(1000 + (uint64_t(i) * 2654435761u) % 30000);
    for (const std::string& m : methods) {
      PipelineConfig cfg;
      if (!parse(m, &cfg.method)) continue;
      cfg.selection_layers = {selection_layer};
      cfg.n_topks = {1024};
      cfg.cache_truncation_end = 1;
      cfg.budget = 1024;
      std::vector<PrefillResult> res;
      s = session->prefill({prompt}, cfg, &res);
      if (!s) {
        std::printf("{\"shape\":\"%s\",\"layers\":%lld,\"length\":%lld,\"method\":\"%s\",\"error\":\"%s\"}\n", shape.c_str(),
                    (long long)config.num_layers, (long long)L, m.c_str(), s.message());
        std::fflush(stdout);
        continue;
      }
      std::vector<std::vector<int32_t>> out;
      double ms = 0;
      s = session->generate({res[0].first_token}, decode, {}, &out, &ms);
      if (!s) die(s);
      std::printf(
          "{\"device\":\"%s\",\"shape\":\"%s\",\"layers\":%lld,\"selection_layer\":%lld,\"length\":%lld,\"method\":\"%s\","
          "\"ttft_ms\":%.3f,\"decode_ms_per_token\":%.4f,\"peak_device_bytes\":%lld,\"weight_bytes\":%lld,"
          "\"peak_kv_cache_bytes\":%lld,\"retained\":%lld}\n",
          prop.name, shape.c_str(), (long long)config.num_layers, (long long)selection_layer, (long long)L, m.c_str(),
          res[0].ttft_ms, ms,
          (long long)session->peak_memory_bytes(), (long long)session->weight_bytes(), (long long)res[0].peak_kv_cache_bytes,
          (long long)(res[0].retained.empty() ? L : res[0].retained[0]));
      std::fflush(stdout);
    }
  }
  return 0;
}
