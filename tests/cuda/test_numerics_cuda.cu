// SPDX-License-Identifier: Apache-2.0
// Tier B on the device: the shared numerics header gives bit-identical results on host and GPU
// (conversions on all 65,536 patterns each way, exp_f32, the canonical block reductions, dot).
#include <doctest/doctest.h>

#include <random>

#include "promptdistill/cuda/reduce.cuh"
#include "promptdistill/detail/numerics.h"
#include "support/compare.h"
#include "support/device_buffer.cuh"
#include "support/generators.h"

using namespace promptdistill;
using pdtest::DeviceBuffer;

namespace {

__global__ void widen_kernel(const uint16_t* in, float* f16_out, float* bf16_out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    f16_out[i] = num::to_f32(f16{in[i]});
    bf16_out[i] = num::to_f32(bf16{in[i]});
  }
}
__global__ void narrow_kernel(const float* in, uint16_t* f16_out, uint16_t* bf16_out,
                              float* exp_out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    f16_out[i] = num::to_f16(in[i]).bits;
    bf16_out[i] = num::to_bf16(in[i]).bits;
    exp_out[i] = num::exp_f32(in[i]);
  }
}
__global__ void reduce_kernel(const float* x, int n, float* sum_out, float* max_out) {
  __shared__ float scratch[cuda::detail::kReduceThreads];
  float s = 0.0f, m = -num::kInfinity;
  for (int j = threadIdx.x; j < n; j += cuda::detail::kReduceThreads) {
    s = num::add(s, x[j]);
    m = num::max_nan(m, x[j]);
  }
  s = cuda::detail::block_reduce_canonical<false>(s, scratch);
  m = cuda::detail::block_reduce_canonical<true>(m, scratch);
  if (threadIdx.x == 0) *sum_out = s, *max_out = m;
}
template <class T>
__global__ void dot_kernel(const float* q, const T* k, int d, float* out) {
  if (threadIdx.x == 0) *out = cuda::detail::dot_row(q, k, d);
}

}  // namespace

TEST_CASE("cuda/numerics: conversions, exp and reductions match the host bit for bit") {
  std::vector<uint16_t> patterns(65536);
  for (int i = 0; i < 65536; ++i) patterns[std::size_t(i)] = uint16_t(i);
  DeviceBuffer<uint16_t> d_patterns(patterns);
  DeviceBuffer<float> d_f16(65536), d_bf16(65536);
  widen_kernel<<<256, 256>>>(d_patterns.get(), d_f16.get(), d_bf16.get(), 65536);
  std::vector<float> want_f16(65536), want_bf16(65536);
  for (int i = 0; i < 65536; ++i) {
    want_f16[std::size_t(i)] = num::to_f32(f16{uint16_t(i)});
    want_bf16[std::size_t(i)] = num::to_f32(bf16{uint16_t(i)});
  }
  CHECK(pdtest::bitwise_equal(d_f16.download(), want_f16));
  CHECK(pdtest::bitwise_equal(d_bf16.download(), want_bf16));

  // f32 -> 16 bits and exp on every widened pattern, their neighbours and random floats.
  std::vector<float> xs;
  for (float v : want_f16)
    xs.insert(xs.end(), {v, std::nextafter(v, 1e30f), std::nextafter(v, -1e30f)});
  for (float v : want_bf16) xs.push_back(v);
  std::mt19937 rng(uint32_t(pdtest::seed()));
  for (int i = 0; i < 200000; ++i) xs.push_back(num::float_of(rng()));
  const int n = int(xs.size());
  DeviceBuffer<float> d_xs(xs), d_exp(xs.size());
  DeviceBuffer<uint16_t> d_h(xs.size()), d_b(xs.size());
  narrow_kernel<<<(n + 255) / 256, 256>>>(d_xs.get(), d_h.get(), d_b.get(), d_exp.get(), n);
  std::vector<uint16_t> want_h(xs.size()), want_b(xs.size());
  std::vector<float> want_exp(xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) {
    want_h[i] = num::to_f16(xs[i]).bits;
    want_b[i] = num::to_bf16(xs[i]).bits;
    want_exp[i] = num::exp_f32(xs[i]);
  }
  CHECK(pdtest::bitwise_equal(d_h.download(), want_h));
  CHECK(pdtest::bitwise_equal(d_b.download(), want_b));
  CHECK(pdtest::bitwise_equal(d_exp.download(), want_exp));

  for (int len : {1, 31, 32, 33, 255, 256, 257, 1023, 1024, 1025, 100000}) {
    const auto x = pdtest::generate<float>(std::size_t(len), pdtest::Fill::kNormal,
                                           pdtest::mix(pdtest::seed(), uint64_t(len)));
    DeviceBuffer<float> d_x(x), d_sum(1), d_max(1);
    reduce_kernel<<<1, cuda::detail::kReduceThreads>>>(d_x.get(), len, d_sum.get(), d_max.get());
    CAPTURE(len);
    CHECK(pdtest::bitwise_equal(
        d_sum.download(), {num::canonical_sum(len, [&](int64_t j) { return x[std::size_t(j)]; })}));
    CHECK(pdtest::bitwise_equal(
        d_max.download(), {num::canonical_max(len, [&](int64_t j) { return x[std::size_t(j)]; })}));
  }
  for (int d : {8, 64, 96, 128, 256}) {
    const auto q = pdtest::generate<float>(std::size_t(d), pdtest::Fill::kNormal, 1);
    const auto k = pdtest::generate<bf16>(std::size_t(d), pdtest::Fill::kNormal, 2);
    DeviceBuffer<float> d_q(q), d_out(1);
    DeviceBuffer<bf16> d_k(k);
    dot_kernel<<<1, 32>>>(d_q.get(), d_k.get(), d, d_out.get());
    CAPTURE(d);
    CHECK(pdtest::bitwise_equal(d_out.download(), {num::dot(q.data(), k.data(), d)}));
  }
}
