// SPDX-License-Identifier: Apache-2.0
// GGUF and safetensors parsing: dequantisation of hand-made blocks, and every kind of corrupt,
// truncated or inconsistent file rejected with a clear status (never a crash). RoPE tables.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "promptdistill/detail/numerics.h"
#include "promptdistill/gguf.h"
#include "promptdistill/model.h"
#include "promptdistill/safetensors.h"
#include "support/generators.h"
#include "support/messages.h"

using namespace promptdistill;

namespace {

//! Builds GGUF images byte by byte.
struct GgufBuilder {
  std::vector<uint8_t> b;
  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void header(uint32_t version, uint64_t tensors, uint64_t kvs) {
    put<uint32_t>(0x46554747u);
    put<uint32_t>(version);
    put<uint64_t>(tensors);
    put<uint64_t>(kvs);
  }
  void kv_u32(const std::string& k, uint32_t v) {
    str(k);
    put<uint32_t>(4);
    put<uint32_t>(v);
  }
  void kv_str(const std::string& k, const std::string& v) {
    str(k);
    put<uint32_t>(8);
    str(v);
  }
  void tensor(const std::string& name, std::vector<uint64_t> dims, GgmlType type, uint64_t offset) {
    str(name);
    put<uint32_t>(uint32_t(dims.size()));
    for (auto d : dims) put<uint64_t>(d);
    put<uint32_t>(uint32_t(type));
    put<uint64_t>(offset);
  }
  void align(std::size_t a = 32) {
    while (b.size() % a) b.push_back(0);
  }
};

uint16_t half_bits(float x) { return num::to_f16(x).bits; }

//! A file with one Q4_1 [32 x 2] tensor and one F32 [4] tensor.
std::vector<uint8_t> sample_file() {
  GgufBuilder g;
  g.header(3, 2, 2);
  g.kv_str("general.architecture", "llama");
  g.kv_u32("general.alignment", 32);
  g.tensor("w", {32, 2}, GgmlType::kQ4_1, 0);
  g.tensor("v", {4}, GgmlType::kF32, 64);
  g.align();
  for (int block = 0; block < 2; ++block) {
    g.put<uint16_t>(half_bits(0.5f + block));  // d
    g.put<uint16_t>(half_bits(-1.0f));         // m
    for (int j = 0; j < 16; ++j) g.b.push_back(uint8_t((j & 0x0f) | ((15 - j) << 4)));
  }
  g.align();
  for (float v : {1.0f, -2.0f, 3.5f, 0.25f}) g.put<float>(v);
  return g.b;
}

}  // namespace

TEST_CASE("gguf: dequantisation of hand-made Q8_0, Q4_0, Q4_1, F16 and BF16 blocks") {
  std::vector<uint8_t> q8(34);
  const uint16_t d = half_bits(0.25f);
  std::memcpy(q8.data(), &d, 2);
  for (int j = 0; j < 32; ++j) q8[std::size_t(2 + j)] = uint8_t(int8_t(j - 16));
  std::vector<float> out(32);
  REQUIRE(dequantize_ggml(GgmlType::kQ8_0, q8.data(), 32, out.data()).is_ok());
  for (int j = 0; j < 32; ++j) CHECK(out[std::size_t(j)] == 0.25f * float(j - 16));

  std::vector<uint8_t> q4(18);
  const uint16_t d2 = half_bits(2.0f);
  std::memcpy(q4.data(), &d2, 2);
  for (int j = 0; j < 16; ++j) q4[std::size_t(2 + j)] = uint8_t(j | ((15 - j) << 4));
  REQUIRE(dequantize_ggml(GgmlType::kQ4_0, q4.data(), 32, out.data()).is_ok());
  for (int j = 0; j < 16; ++j) {
    CHECK(out[std::size_t(j)] == 2.0f * float(j - 8));       // low nibbles first
    CHECK(out[std::size_t(j + 16)] == 2.0f * float(7 - j));  // then high nibbles
  }
  GgufFile f;
  REQUIRE(GgufFile::parse(sample_file(), &f).is_ok());
  CHECK(f.version() == 3);
  const GgufTensorInfo* w = f.find_tensor("w");
  REQUIRE(w != nullptr);
  std::vector<float> q41(64);
  REQUIRE(f.dequantize(*w, q41.data()).is_ok());
  for (int block = 0; block < 2; ++block)
    for (int j = 0; j < 16; ++j) {
      CHECK(q41[std::size_t(block * 32 + j)] == float(j) * (0.5f + float(block)) - 1.0f);
      CHECK(q41[std::size_t(block * 32 + 16 + j)] == float(15 - j) * (0.5f + float(block)) - 1.0f);
    }
  std::vector<float> v(4);
  REQUIRE(f.dequantize(*f.find_tensor("v"), v.data()).is_ok());
  CHECK(v == std::vector<float>{1.0f, -2.0f, 3.5f, 0.25f});
  std::string arch;
  CHECK(f.get_string("general.architecture", &arch).is_ok());
  CHECK(arch == "llama");
  int64_t missing;
  CHECK(f.get_int("llama.block_count", &missing).code() == StatusCode::kCorruptFile);

  const uint16_t h[2] = {half_bits(1.5f), half_bits(-0.125f)};
  REQUIRE(
      dequantize_ggml(GgmlType::kF16, reinterpret_cast<const uint8_t*>(h), 2, out.data()).is_ok());
  CHECK(out[0] == 1.5f);
  CHECK(out[1] == -0.125f);
  const uint16_t bf[2] = {num::to_bf16(3.0f).bits, num::to_bf16(-0.5f).bits};
  REQUIRE(dequantize_ggml(GgmlType::kBF16, reinterpret_cast<const uint8_t*>(bf), 2, out.data())
              .is_ok());
  CHECK(out[0] == 3.0f);
  CHECK(out[1] == -0.5f);
}

TEST_CASE("gguf: truncated, corrupt and inconsistent files are rejected") {
  const auto good = sample_file();
  GgufFile f;
  for (std::size_t n = 0; n < good.size(); ++n) {  // every truncation
    CAPTURE(n);
    const Status s =
        GgufFile::parse(std::vector<uint8_t>(good.begin(), good.begin() + long(n)), &f);
    CHECK_FALSE(s.is_ok());
  }
  auto bad = good;
  bad[0] = 'X';
  CHECK(GgufFile::parse(bad, &f).code() == StatusCode::kCorruptFile);
  bad = good;
  bad[4] = 1;  // version 1
  CHECK(GgufFile::parse(bad, &f).code() == StatusCode::kUnsupported);
  GgufBuilder g;
  g.header(3, 1, 0);
  g.tensor("t", {33}, GgmlType::kQ8_0, 0);  // not whole blocks
  CHECK(GgufFile::parse(g.b, &f).code() == StatusCode::kCorruptFile);
  g = GgufBuilder();
  g.header(3, 1, 0);
  g.tensor("t", {4}, GgmlType(99), 0);
  CHECK(GgufFile::parse(g.b, &f).code() == StatusCode::kUnsupported);
  g = GgufBuilder();
  g.header(3, 1, 0);
  g.tensor("t", {4}, GgmlType::kF32, 4096);  // data past the end
  g.align();
  CHECK(GgufFile::parse(g.b, &f).code() == StatusCode::kCorruptFile);
  g = GgufBuilder();
  g.header(3, 1, 0);
  g.tensor("t", {4}, GgmlType::kF32, 3);  // misaligned offset
  CHECK(GgufFile::parse(g.b, &f).code() == StatusCode::kCorruptFile);
  g = GgufBuilder();
  g.header(3, uint64_t(1) << 60, 0);  // absurd counts
  CHECK(GgufFile::parse(g.b, &f).code() == StatusCode::kCorruptFile);
  g = GgufBuilder();
  g.header(3, 0, 1);
  g.str("a");
  g.put<uint32_t>(9);                  // array
  g.put<uint32_t>(4);                  // of u32
  g.put<uint64_t>(uint64_t(1) << 40);  // far too many
  CHECK(GgufFile::parse(g.b, &f).code() == StatusCode::kCorruptFile);
  g = GgufBuilder();
  g.header(3, 2, 0);
  g.tensor("t", {4}, GgmlType::kF32, 0);
  g.tensor("t", {4}, GgmlType::kF32, 32);
  g.align();
  g.b.resize(g.b.size() + 64);
  CHECK(GgufFile::parse(g.b, &f).code() == StatusCode::kCorruptFile);  // duplicate name
  // Random corruption of a valid file never crashes (ASan/UBSan run this too).
  std::mt19937_64 rng(pdtest::seed());
  for (int i = 0; i < 3000; ++i) {
    auto m = good;
    for (int k = 0; k < 1 + int(rng() % 4); ++k) m[rng() % m.size()] = uint8_t(rng());
    GgufFile any;
    (void)GgufFile::parse(m, &any);
  }
  CHECK(GgufFile::open("/nonexistent.gguf", &f).code() == StatusCode::kIoError);
  ModelWeights w;
  CHECK(load_gguf_model("/nonexistent.gguf", &w).code() == StatusCode::kIoError);
}

TEST_CASE("safetensors: valid, truncated and inconsistent headers") {
  auto make = [](const std::string& header, std::size_t data_bytes) {
    std::vector<uint8_t> b(8 + header.size() + data_bytes, 0);
    const uint64_t n = header.size();
    std::memcpy(b.data(), &n, 8);
    std::memcpy(b.data() + 8, header.data(), header.size());
    return b;
  };
  SafetensorsFile f;
  const std::string ok =
      R"({"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}, "__metadata__": {"format": "pt"}})";
  REQUIRE(SafetensorsFile::parse(make(ok, 8), &f).is_ok());
  CHECK(f.find("a") != nullptr);
  CHECK(f.find("a")->numel() == 4);
  CHECK(SafetensorsFile::parse(make(ok, 7), &f).code() == StatusCode::kCorruptFile);  // data short
  CHECK(SafetensorsFile::parse(
            make(R"({"a": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 8]}})", 8), &f)
            .code() == StatusCode::kCorruptFile);  // size mismatch
  CHECK(SafetensorsFile::parse(
            make(R"({"a": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 2]}})", 2), &f)
            .code() == StatusCode::kCorruptFile);
  CHECK(SafetensorsFile::parse(make(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                        "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}})",
                                    8),
                               &f)
            .code() == StatusCode::kCorruptFile);  // overlap
  CHECK(SafetensorsFile::parse(make("{broken", 0), &f).code() == StatusCode::kCorruptFile);
  auto huge = make(ok, 8);
  const uint64_t bad_len = uint64_t(1) << 50;
  std::memcpy(huge.data(), &bad_len, 8);
  CHECK(SafetensorsFile::parse(huge, &f).code() == StatusCode::kCorruptFile);
  CHECK(SafetensorsFile::parse(std::vector<uint8_t>(3), &f).code() == StatusCode::kCorruptFile);
  // Names and parse errors quote the header's bytes escaped: a JSON-escaped control character,
  // and raw bytes that are not UTF-8 (nlohmann's message repeats what it last read).
  Status s = SafetensorsFile::parse(make(R"({"a\u001b[2J\u00e9": {"dtype": "F32"}})", 0), &f);
  CHECK_MESSAGE(pdtest::clean_message(s, "tensor 'a\\x1b[2J\xc3\xa9' lacks dtype"), s.message());
  s = SafetensorsFile::parse(make("{\"a\": {\"dtype\": \"F\xff\xfe\x07\"}}", 0), &f);
  CHECK(s.code() == StatusCode::kCorruptFile);
  CHECK_MESSAGE(pdtest::clean_message(s, "safetensors"), s.message());
  s = SafetensorsFile::parse(
      make(R"({"x": {"dtype": "\u0007Q9", "shape": [2], "data_offsets": [0, 2]}})", 2), &f);
  CHECK_MESSAGE(pdtest::clean_message(s, "unknown dtype '\\x07Q9'"), s.message());
}

TEST_CASE("gguf: names read from a corrupt file are printed escaped and cut") {
  // A key and a tensor name holding a terminal escape, bytes of no UTF-8 character, a NUL and
  // far more than a message holds.
  const std::string raw =
      std::string("k\x1b[31m\xff\xfe") + '\0' + "\xc3\xa9" + std::string(300, 'A');
  GgufFile f;
  GgufBuilder g;
  g.header(3, 0, 1);
  g.str(raw);
  g.put<uint32_t>(77);  // an unknown value type
  Status s = GgufFile::parse(g.b, &f);
  CHECK(s.code() == StatusCode::kCorruptFile);
  CHECK_MESSAGE(pdtest::clean_message(s,
                                      "key 'k\\x1b[31m\\xff\\xfe\\x00\xc3\xa9"
                                      "AAA"),
                s.message());  // é is kept as it is
  CHECK_MESSAGE(pdtest::clean_message(s, "...'"), s.message());
  g = GgufBuilder();
  g.header(3, 1, 0);
  g.tensor(raw, {4, 1, 1, 1, 1}, GgmlType::kF32, 0);  // 5 dimensions
  s = GgufFile::parse(g.b, &f);
  CHECK_MESSAGE(pdtest::clean_message(s, "tensor 'k\\x1b[31m\\xff"), s.message());
  CHECK_MESSAGE(pdtest::clean_message(s, "dimensions"), s.message());
}

TEST_CASE(
    "rope: position 0 is the identity; llama3 scaling keeps high frequencies; LongRoPE scales") {
  ModelConfig c;
  c.num_layers = 1, c.hidden = 64, c.num_heads = 4, c.num_kv_heads = 4, c.intermediate = 8,
  c.vocab = 10;
  c.head_dim = 16;
  c.rope.theta = 10000.0;
  std::vector<float> cos, sin;
  const int32_t pos[] = {0, 5};
  REQUIRE(rope_tables(c, pos, 2, 6, &cos, &sin).is_ok());
  for (int f = 0; f < 8; ++f) {
    CHECK(cos[std::size_t(f)] == 1.0f);
    CHECK(sin[std::size_t(f)] == 0.0f);
  }
  CHECK(cos[8] == doctest::Approx(std::cos(5.0)));
  ModelConfig l3 = c;
  l3.rope.scaling = RopeScaling::kLlama3;
  l3.rope.factor = 8;
  l3.rope.original_max_positions = 64;
  std::vector<float> c3, s3;
  REQUIRE(rope_tables(l3, pos, 2, 6, &c3, &s3).is_ok());
  CHECK(c3[8] == cos[8]);    // the highest frequency is not scaled
  CHECK(c3[15] != cos[15]);  // the lowest is divided by the factor
  ModelConfig lr = c;
  lr.max_positions = 1024;
  lr.rope.scaling = RopeScaling::kLongRope;
  lr.rope.original_max_positions = 64;
  lr.rope.short_factor.assign(8, 1.0);
  lr.rope.long_factor.assign(8, 2.0);
  std::vector<float> cr, sr;
  REQUIRE(rope_tables(lr, pos, 2, 6, &cr, &sr).is_ok());
  const float mscale = float(std::sqrt(1.0 + std::log(16.0) / std::log(64.0)));
  CHECK(cr[0] == doctest::Approx(mscale));
  CHECK(lr.validate().is_ok());
  lr.rope.long_factor.pop_back();
  CHECK(lr.validate().code() == StatusCode::kCorruptFile);
}
