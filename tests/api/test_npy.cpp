// SPDX-License-Identifier: Apache-2.0
// .npy reading and writing, including truncated and corrupt files.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "promptdistill/npy.h"
#include "support/temp_dir.h"

using namespace promptdistill;

namespace {
std::vector<unsigned char> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<unsigned char>((std::istreambuf_iterator<char>(f)),
                                    std::istreambuf_iterator<char>());
}
}  // namespace

TEST_CASE("npy: write then read round-trips f32, f16, i32, i64") {
  const pdtest::TempDir tmp("npy");
  const std::string path = tmp.path("roundtrip.npy");
  std::vector<float> f = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  REQUIRE(write_npy(path, DType::kF32, {2, 3}, f.data()).is_ok());
  NpyArray a;
  REQUIRE(read_npy(path, &a).is_ok());
  CHECK(a.dtype == DType::kF32);
  CHECK(a.shape == std::vector<int64_t>{2, 3});
  CHECK(std::memcmp(a.bytes.data(), f.data(), 24) == 0);
  std::vector<int64_t> l = {5, -6, 7};
  REQUIRE(write_npy(path, DType::kI64, {3}, l.data()).is_ok());
  REQUIRE(read_npy(path, &a).is_ok());
  CHECK(a.dtype == DType::kI64);
  CHECK(a.shape == std::vector<int64_t>{3});
  std::vector<uint16_t> h = {0x3c00, 0xc000};
  REQUIRE(write_npy(path, DType::kF16, {1, 2, 1}, h.data()).is_ok());
  REQUIRE(read_npy(path, &a).is_ok());
  CHECK(a.dtype == DType::kF16);
  CHECK(a.numel() == 2);
}

TEST_CASE("npy: corrupt and truncated files give clear errors") {
  const pdtest::TempDir tmp("npy");
  const std::string path = tmp.path("corrupt.npy");
  std::vector<float> f(12, 1.0f);
  REQUIRE(write_npy(path, DType::kF32, {3, 4}, f.data()).is_ok());
  const auto good = file_bytes(path);
  NpyArray a;
  CHECK(parse_npy(good.data(), good.size(), &a).is_ok());
  // Every truncation fails cleanly.
  for (std::size_t n = 0; n < good.size(); n += 7) {
    CAPTURE(n);
    CHECK(parse_npy(good.data(), n, &a).code() == StatusCode::kCorruptFile);
  }
  auto bad = good;
  bad[0] = 'X';
  CHECK(parse_npy(bad.data(), bad.size(), &a).code() == StatusCode::kCorruptFile);
  bad = good;
  bad[6] = 9;  // version
  CHECK(parse_npy(bad.data(), bad.size(), &a).code() == StatusCode::kCorruptFile);
  bad = good;
  bad[8] = 0xff;  // header length past the end
  bad[9] = 0xff;
  CHECK(parse_npy(bad.data(), bad.size(), &a).code() == StatusCode::kCorruptFile);
  std::string header(good.begin() + 10, good.begin() + 10 + good[8]);
  auto with_header = [&](std::string h) {
    h.resize(header.size(), ' ');
    auto b = good;
    std::copy(h.begin(), h.end(), b.begin() + 10);
    return parse_npy(b.data(), b.size(), &a);
  };
  CHECK(with_header("{'descr': '>f4', 'fortran_order': False, 'shape': (3, 4), }").code() ==
        StatusCode::kUnsupported);
  CHECK(with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }").code() ==
        StatusCode::kUnsupported);
  CHECK(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }").code() ==
        StatusCode::kCorruptFile);
  CHECK(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, x), }").code() ==
        StatusCode::kCorruptFile);
  CHECK(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }")
            .code() == StatusCode::kCorruptFile);
  CHECK(with_header("{'descr': '<f4', 'shape': (3, 4), }").code() == StatusCode::kCorruptFile);
  CHECK(read_npy("/nonexistent/dir/x.npy", &a).code() == StatusCode::kIoError);
  std::remove(path.c_str());
}
