// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
// The machine's arithmetic peak, for bench/prefill_compare.py's "fraction of peak": every thread
// (1..N, OpenMP) runs the CPU decoder's own throughput probes at once - f32 FMA chains on
// registers for each vector table this CPU has (pipelines/cpu/cpu_kernels.h), and the AMX bf16
// tile unit where there is one - timed on each thread's CPU clock, summed. Prints one JSON
// object: {"f32": {"avx2": {"1": GFLOP/s, "2": ...}, ...}, "amx_bf16": {...}, "f32_best": {...}}.
//
//   promptdistill.bench.fma_peak [--threads 1 2] [--seconds 0.5]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <omp.h>

#include "pipelines/cpu/cpu_kernels.h"

using namespace promptdistill::ref;

namespace {

//! Sum over `threads` threads of probe(seconds), run simultaneously; the best of three rounds.
template <class Probe>
double all_threads(int threads, double seconds, Probe probe) {
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    std::vector<double> rate(std::size_t(threads), 0.0);
#pragma omp parallel num_threads(threads)
    rate[std::size_t(omp_get_thread_num())] = probe(seconds);
    double sum = 0;
    for (double r : rate) sum += r;
    best = sum > best ? sum : best;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads;
  double seconds = 0.5;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0) {
      while (i + 1 < argc && argv[i + 1][0] != '-') threads.push_back(std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--threads 1 2] [--seconds 0.5]\n", argv[0]);
      return 2;
    }
  }
  if (threads.empty()) threads = {1, 2};
  std::string f32 = "{", best = "{", amx = "{";
  std::vector<double> top(threads.size(), 0.0);
  bool first_isa = true;
  for (kernels::Isa isa : {kernels::Isa::kAvx2, kernels::Isa::kAvx512}) {
    if (kernels::table(isa) == nullptr) continue;
    f32 += std::string(first_isa ? "" : ", ") + "\"" + kernels::to_string(isa) + "\": {";
    first_isa = false;
    for (std::size_t t = 0; t < threads.size(); ++t) {
      const double r =
          all_threads(threads[t], seconds, [isa](double s) { return kernels::fma_gflops(isa, s); });
      top[t] = r > top[t] ? r : top[t];
      f32 += (t ? ", \"" : "\"") + std::to_string(threads[t]) + "\": " + std::to_string(r);
    }
    f32 += "}";
  }
  for (std::size_t t = 0; t < threads.size(); ++t) {
    best += (t ? ", \"" : "\"") + std::to_string(threads[t]) + "\": " + std::to_string(top[t]);
    const double r =
        kernels::amx_bf16_available()
            ? all_threads(threads[t], seconds, [](double s) { return kernels::amx_bf16_gflops(s); })
            : 0.0;
    amx += (t ? ", \"" : "\"") + std::to_string(threads[t]) + "\": " + std::to_string(r);
  }
  std::printf("{\"f32\": %s}, \"f32_best\": %s}, \"amx_bf16\": %s}, \"kernels\": \"%s\"}\n",
              f32.c_str(), best.c_str(), amx.c_str(), kernels::choice());
  return 0;
}
