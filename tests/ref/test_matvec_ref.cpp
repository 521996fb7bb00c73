// SPDX-License-Identifier: Apache-2.0
// The decode path's matrix-vector products (pipelines/cpu/matvec_ref.h). f32: Tier A against
// Eigen's own single-threaded GEMV (row slices across threads give the same bits). f16 and the
// GGUF blocks (Q8_0, Q4_0, Q4_1, int16 input blocks): Tier C against a double-precision sum over
// the dequantized weights and the f32 input, and bit-identical at every thread count.
#include <doctest/doctest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstring>
#include <random>

#include "pipelines/cpu/matvec_ref.h"
#include "promptdistill/dtype.h"
#include "promptdistill/gguf.h"
#include "promptdistill/transformer_ref.h"

using namespace promptdistill;
using namespace promptdistill::ref;

namespace {

std::vector<float> normal_values(std::size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

std::vector<float> run_product(const matvec::Matrix& m, const std::vector<float>& x, int threads) {
  std::vector<float> sums(std::size_t(m.cols() / matvec::kBlock + 1));
  matvec::block_sums(x.data(), m.cols(), sums.data());
  matvec::Input16 xq;
  xq.reserve(m.cols() / matvec::kBlock * matvec::kBlock);
  if (matvec::is_quantized(m.format())) matvec::quantize_input(x.data(), m.cols(), &xq);
  std::vector<float> y(std::size_t(m.rows()));
  matvec::Product p;
  p.m = &m, p.x = x.data(), p.xq = &xq, p.block_sums = sums.data(), p.y = y.data();
  set_threads(threads);
  matvec::run(&p, 1);
  set_threads(0);
  return y;
}

void put_half(float x, uint8_t* p) {
  const uint16_t bits = to_f16(x).bits;
  std::memcpy(p, &bits, 2);
}

//! Random GGUF blocks of `type` for a [rows, cols] matrix.
std::vector<uint8_t> random_blocks(GgmlType type, int64_t rows, int64_t cols, uint64_t seed) {
  int64_t elements = 0, bytes = 0;
  REQUIRE(ggml_block_geometry(type, &elements, &bytes));
  std::vector<uint8_t> out(std::size_t(rows * cols / elements * bytes));
  std::mt19937_64 rng(seed);
  for (std::size_t b = 0; b < out.size(); b += std::size_t(bytes)) {
    for (int64_t i = 0; i < bytes; ++i) out[b + std::size_t(i)] = uint8_t(rng());
    put_half(0.01f + float(rng() % 100) / 1000.0f, &out[b]);                           // d
    if (type == GgmlType::kQ4_1) put_half(-float(rng() % 100) / 200.0f, &out[b + 2]);  // m
  }
  return out;
}

}  // namespace

TEST_CASE("matvec/f32: row slices across threads equal Eigen's single-threaded GEMV bit for bit") {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  // Row counts off the 8/4/2 grouping and columns off the packet size exercise every tail.
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{37, 29}, {100, 576}, {96, 64}, {1, 13}, {203, 1536}}) {
    INFO(rows << " x " << cols);
    const auto w = normal_values(std::size_t(rows * cols), uint64_t(rows * 7 + cols));
    const auto x = normal_values(std::size_t(cols), uint64_t(rows + cols * 3));
    Eigen::RowVectorXf want(rows);
    want.noalias() = Eigen::Map<const Eigen::RowVectorXf>(x.data(), cols) *
                     Eigen::Map<const RowMajor>(w.data(), rows, cols).transpose();
    const matvec::Matrix m = matvec::Matrix::view_f32(w.data(), rows, cols);
    for (int threads : {1, 2, 3}) {
      const auto got = run_product(m, x, threads);
      CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE(
    "matvec/f16 and GGUF blocks: within bounds of the exact sum, the same bits at every thread "
    "count") {
  const int64_t rows = 70, cols = 576;
  const auto x = normal_values(std::size_t(cols), 11);
  matvec::Input16 xq;
  xq.reserve(cols);
  matvec::quantize_input(x.data(), cols, &xq);
  // The int16 input: per block of 32, |x - d q| <= d / 2 with d = max|x| / 32767.
  for (int64_t i = 0; i < cols; ++i)
    CHECK(std::fabs(x[std::size_t(i)] - xq.d[std::size_t(i / 32)] * xq.q[std::size_t(i)]) <=
          0.5001f * xq.d[std::size_t(i / 32)]);
  for (GgmlType type : {GgmlType::kF16, GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kQ4_1}) {
    INFO(to_string(type));
    std::vector<uint8_t> blocks;
    std::vector<float> dequantized(std::size_t(rows * cols));
    if (type == GgmlType::kF16) {
      const auto w = normal_values(std::size_t(rows * cols), 5, 0.1f);
      blocks.resize(w.size() * 2);
      for (std::size_t i = 0; i < w.size(); ++i) put_half(w[i], &blocks[2 * i]);
    } else {
      blocks = random_blocks(type, rows, cols, uint64_t(type) + 1);
    }
    REQUIRE(dequantize_ggml(type, blocks.data(), rows * cols, dequantized.data()).is_ok());
    matvec::Matrix m;
    REQUIRE(matvec::Matrix::from_gguf(type, blocks, rows, cols, &m).is_ok());
    const auto one = run_product(m, x, 1), two = run_product(m, x, 2);
    CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
    for (int64_t r = 0; r < rows; ++r) {
      double want = 0, scale = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double xv = double(x[std::size_t(j)]);
        want += double(dequantized[std::size_t(r * cols + j)]) * xv;
        scale += std::fabs(double(dequantized[std::size_t(r * cols + j)]) * xv);
      }
      // f32 accumulation: a few ulps of the sum of magnitudes; the int16 input: 2^-16 of each
      // block's largest input times the block's weights, bounded by 3e-5 of the magnitudes here.
      CHECK(std::fabs(double(one[std::size_t(r)]) - want) <= 3e-5 * scale + 1e-6);
    }
  }
}

TEST_CASE("matvec: bad GGUF blocks are refused with a Status") {
  matvec::Matrix m;
  CHECK(matvec::Matrix::from_gguf(GgmlType::kQ4_1, std::vector<uint8_t>(19), 1, 32, &m).code() ==
        StatusCode::kCorruptFile);
  CHECK(matvec::Matrix::from_gguf(GgmlType::kQ8_0, std::vector<uint8_t>(34), 1, 20, &m).code() ==
        StatusCode::kCorruptFile);
  CHECK(matvec::Matrix::from_gguf(GgmlType::kBF16, std::vector<uint8_t>(64), 1, 32, &m).code() ==
        StatusCode::kUnsupported);
}
