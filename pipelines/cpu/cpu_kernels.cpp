// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Which kernel table runs (cpu_kernels.h): the CPU's features, then its measured FMA throughput.

#include "pipelines/cpu/cpu_kernels.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <initializer_list>

#include "pipelines/cpu/kernels/kernel_support.h"

namespace promptdistill {
namespace ref {
namespace kernels {
namespace {

bool cpu_has(Isa isa) noexcept {
#if defined(__x86_64__) && defined(__GNUC__)
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }
  return false;
#else
  return isa == Isa::kScalar;
#endif
}

struct Choice {
  const Table* table = nullptr;
  char text[160] = {};
};

//! The table with the highest FMA throughput (measured, best of three short rounds each, taken
//! alternately). The tables compute the same bits, so the choice changes only the speed. On
//! Intel server parts with one 512-bit FMA port, AVX2's two 256-bit ports are the faster ones.
Choice choose() noexcept {
  Choice c;
  if (const char* env = std::getenv("PROMPTDISTILL_CPU_KERNELS")) {
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
      if (std::strcmp(env, to_string(isa)) == 0 && table(isa) != nullptr) {
        c.table = table(isa);
        std::snprintf(c.text, sizeof c.text, "%s (PROMPTDISTILL_CPU_KERNELS)", to_string(isa));
        return c;
      }
  }
  const bool avx2 = table(Isa::kAvx2) != nullptr, avx512 = table(Isa::kAvx512) != nullptr;
  if (avx2 && avx512) {
    double r2 = 0, r512 = 0;
    for (int round = 0; round < 3; ++round) {
      const double a = fma_gflops(Isa::kAvx2, 0.002), b = fma_gflops(Isa::kAvx512, 0.002);
      r2 = a > r2 ? a : r2;
      r512 = b > r512 ? b : r512;
    }
    const bool wide = r512 > r2;
    c.table = table(wide ? Isa::kAvx512 : Isa::kAvx2);
    std::snprintf(c.text, sizeof c.text, "%s (measured %.0f GFLOP/s per thread; %s %.0f)",
                  wide ? "avx512" : "avx2", wide ? r512 : r2, wide ? "avx2" : "avx512",
                  wide ? r2 : r512);
    return c;
  }
  c.table = table(avx512 ? Isa::kAvx512 : avx2 ? Isa::kAvx2 : Isa::kScalar);
  std::snprintf(c.text, sizeof c.text, "%s (the only vector table on this CPU)",
                to_string(c.table->isa));
  return c;
}

const Choice& initial() noexcept {
  static const Choice c = choose();
  return c;
}

std::atomic<const Table*> g_active{nullptr};

}  // namespace

double thread_seconds() noexcept {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

volatile float g_sink = 0;
void sink(float value) noexcept { g_sink = value; }

const char* to_string(Isa isa) noexcept {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "unknown";
}

int64_t Table::attention_scratch_floats(int64_t tile_rows, int64_t head_dim) const {
  // The layout of kernels/attention_kernels.inc: tile rows padded to 48.
  const auto up = [](int64_t x, int64_t to) { return (x + to - 1) / to * to; };
  const int64_t tp = up(tile_rows, 48), dp = up(head_dim, kLanes), b = kKeyBlock;
  return tp * head_dim + tp * b + up(head_dim * b, 16) + up(b * dp, 16) + tp * dp + 2 * tp + 16;
}

const Table* table(Isa isa) noexcept {
  if (!cpu_has(isa)) return nullptr;
  switch (isa) {
    case Isa::kScalar: return scalar_table();
    case Isa::kAvx2: return avx2_table();
    case Isa::kAvx512: return avx512_table();
  }
  return nullptr;
}

const Table& active() noexcept {
  const Table* t = g_active.load(std::memory_order_acquire);
  if (t == nullptr) {
    t = initial().table;
    const Table* expected = nullptr;
    if (!g_active.compare_exchange_strong(expected, t)) t = expected;
  }
  return *t;
}

bool set_active(Isa isa) noexcept {
  const Table* t = table(isa);
  if (t == nullptr) return false;
  (void)initial();
  g_active.store(t, std::memory_order_release);
  return true;
}

double fma_gflops(Isa isa, double seconds) noexcept {
  if (!cpu_has(isa)) return 0;
  switch (isa) {
    case Isa::kScalar: return scalar_fma_gflops(seconds);
    case Isa::kAvx2: return avx2_fma_gflops(seconds);
    case Isa::kAvx512: return avx512_fma_gflops(seconds);
  }
  return 0;
}

const char* choice() noexcept { return initial().text; }

}  // namespace kernels
}  // namespace ref
}  // namespace promptdistill
