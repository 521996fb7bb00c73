// SPDX-License-Identifier: Apache-2.0
// End to end at a paper model's shape with random bf16 weights (docs/design.md §8): TTFT, decode
// ms/token and peak device memory of full KV, PromptDistill (r=13, k=1024, tt=1), GemFilter
// (r=13, k=1024) and SnapKV (C=1024) on the CUDA session, one JSON object per line.
//
//   promptdistill.bench.e2e_shape [--shape llama31-8b|smollm2] [--layers N] [--lengths 8192 32768 131072]
//                                 [--decode 32] [--methods full promptdistill gemfilter snapkv]
//
// Random weights make the generated text meaningless; the timings and memory are what a real
// checkpoint of that shape costs with these kernels. Weights are drawn with a cheap hash (the
// 8B shape needs 8e9 values) scaled so activations stay O(1).
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "promptdistill/batch_session.h"

using namespace promptdistill;

namespace {

float hash_normalish(uint64_t i, uint64_t seed) {
  uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  // Sum of two uniforms: triangular on (-1, 1), variance 1/6.
  const float a = float(z & 0xffffffu) / 16777216.0f, b = float((z >> 24) & 0xffffffu) / 16777216.0f;
  return (a + b - 1.0f) * 2.449f;  // unit variance
}

void fill(std::vector<float>& v, std::size_t n, float scale, uint64_t seed) {
  v.resize(n);
#pragma omp parallel for
  for (int64_t i = 0; i < int64_t(n); ++i) v[std::size_t(i)] = hash_normalish(uint64_t(i), seed) * scale;
}

ModelWeights random_weights(const std::string& shape, int64_t layers) {
  ModelWeights w;
  ModelConfig& c = w.config;
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
  const std::size_t H = std::size_t(c.hidden), qd = std::size_t(c.num_heads * c.head_dim),
                    kvd = std::size_t(c.num_kv_heads * c.head_dim), I = std::size_t(c.intermediate);
  uint64_t seed = 1;
  fill(w.embed, std::size_t(c.vocab) * H, 1.0f, seed++);
  if (!c.tied_embeddings) fill(w.lm_head, std::size_t(c.vocab) * H, 1.0f / std::sqrt(float(H)), seed++);
  w.final_norm.assign(H, 1.0f);
  w.layers.resize(std::size_t(c.num_layers));
  for (auto& L : w.layers) {
    L.attn_norm.assign(H, 1.0f);
    L.mlp_norm.assign(H, 1.0f);
    fill(L.wq, qd * H, 1.0f / std::sqrt(float(H)), seed++);
    fill(L.wk, kvd * H, 1.0f / std::sqrt(float(H)), seed++);
    fill(L.wv, kvd * H, 1.0f / std::sqrt(float(H)), seed++);
    fill(L.wo, H * qd, 0.5f / std::sqrt(float(qd)), seed++);
    fill(L.w_gate, I * H, 1.0f / std::sqrt(float(H)), seed++);
    fill(L.w_up, I * H, 1.0f / std::sqrt(float(H)), seed++);
    fill(L.w_down, H * I, 0.5f / std::sqrt(float(I)), seed++);
  }
  return w;
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
  if (!cuda::device_available()) {
    std::printf("SKIPPED: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const ModelWeights w = random_weights(shape, layers);
  std::unique_ptr<cuda::Session> session;
  Status s = cuda::Session::create(&w, BatchSessionOptions{}, nullptr, &session);
  if (!s) die(s);
  for (int64_t L : lengths) {
    std::vector<int32_t> prompt(static_cast<std::size_t>(L));
    for (int64_t i = 0; i < L; ++i) prompt[std::size_t(i)] = int32_t(1000 + (uint64_t(i) * 2654435761u) % 30000);
    for (const std::string& m : methods) {
      PipelineConfig cfg;
      if (!parse(m, &cfg.method)) continue;
      cfg.selection_layers = {std::min<int64_t>(13, w.config.num_layers - 2)};
      cfg.n_topks = {1024};
      cfg.cache_truncation_end = 1;
      cfg.capacity = 1024;
      std::vector<PrefillResult> res;
      s = session->prefill({prompt}, cfg, &res);
      if (!s) {
        std::printf("{\"shape\":\"%s\",\"length\":%lld,\"method\":\"%s\",\"error\":\"%s\"}\n", shape.c_str(), (long long)L, m.c_str(),
                    s.message());
        continue;
      }
      std::vector<std::vector<int32_t>> out;
      double ms = 0;
      s = session->generate({res[0].first_token}, decode, {}, &out, &ms);
      if (!s) die(s);
      std::printf(
          "{\"device\":\"%s\",\"shape\":\"%s\",\"layers\":%lld,\"length\":%lld,\"method\":\"%s\",\"ttft_ms\":%.3f,"
          "\"decode_ms_per_token\":%.4f,\"peak_device_bytes\":%lld,\"weight_bytes\":%lld,\"peak_kv_cache_bytes\":%lld,"
          "\"retained\":%lld}\n",
          prop.name, shape.c_str(), (long long)w.config.num_layers, (long long)L, m.c_str(), res[0].ttft_ms, ms,
          (long long)session->peak_memory_bytes(), (long long)session->weight_bytes(), (long long)res[0].peak_kv_cache_bytes,
          (long long)(res[0].retained.empty() ? L : res[0].retained[0]));
      std::fflush(stdout);
    }
  }
  return 0;
}
