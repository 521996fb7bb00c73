// SPDX-License-Identifier: Apache-2.0
// Core types: Status, TensorView, WorkspacePlanner and the comparators themselves.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <type_traits>

#include "promptdistill/promptdistill.h"
#include "support/compare.h"

using namespace promptdistill;

TEST_CASE("core/status: codes, names and messages") {
  static_assert(std::is_trivially_copyable<Status>::value, "Status must be trivially copyable");
  CHECK(Status::ok().is_ok());
  CHECK(std::string(Status::ok().message()).empty());
  const Status s(StatusCode::kInvalidArgument, "k must be >= 0, got %d", -3);
  CHECK_FALSE(s.is_ok());
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()) == "k must be >= 0, got -3");
  char buf[128];
  CHECK(std::string(describe(s, buf, sizeof buf)) == "invalid argument: k must be >= 0, got -3");
  CHECK(std::string(Status(StatusCode::kWorkspaceTooSmall).message()) == "workspace too small");
  for (int c = 0; c <= int(StatusCode::kInternal); ++c)
    CHECK(std::string(to_string(StatusCode(c))) != "unknown status");
  // Long messages are truncated, never overflow.
  std::string longer(1000, 'x');
  const Status t(StatusCode::kIoError, "%s", longer.c_str());
  CHECK(std::string(t.message()).size() == Status::kMaxMessage - 1);
}

TEST_CASE("core/dtype: sizes and names") {
  CHECK(size_of(DType::kF32) == 4);
  CHECK(size_of(DType::kF16) == 2);
  CHECK(size_of(DType::kBF16) == 2);
  CHECK(size_of(DType::kI32) == 4);
  CHECK(size_of(DType::kI64) == 8);
  CHECK(std::string(to_string(DType::kBF16)) == "bf16");
  static_assert(sizeof(bf16) == 2 && sizeof(f16) == 2, "16-bit storage");
  static_assert(std::is_trivially_copyable<bf16>::value, "trivially copyable");
}

TEST_CASE("core/tensor_view: accessors, contiguity, alignment") {
  static_assert(std::is_trivially_copyable<TensorView<float, 4>>::value,
                "view must be trivially copyable");
  alignas(64) float data[2 * 3 * 4];
  for (int i = 0; i < 24; ++i) data[i] = float(i);
  auto v = make_view(data, 2, 3, 4);
  CHECK(v.is_contiguous());
  CHECK(v(1, 2, 3) == 23.0f);
  CHECK(v.numel() == 24);
  CHECK(check_view("v", v).is_ok());
  // A transposed view over the same memory: [4, 3, 2] with strides (1, 4, 12).
  auto t = make_strided_view(data, {4, 3, 2}, {1, 4, 12});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t(3, 2, 1) == v(1, 2, 3));
  CHECK(v.is_aligned(16));
  auto shifted = make_view(data + 1, 2, 3, 4);
  CHECK_FALSE(shifted.is_aligned(16));
  auto odd_rows = make_strided_view(data, {3, 3}, {5, 1});  // 20-byte row pitch
  CHECK_FALSE(odd_rows.is_aligned(16));
  auto c = v.as_const();
  CHECK(c(0, 1, 2) == 6.0f);
}

TEST_CASE("core/tensor_view: negative and overflowing views are rejected") {
  float x = 0;
  auto neg = make_strided_view(&x, {2, -3}, {1, 1});
  Status s = check_view("q", neg);
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("q: extent 1 is -3") != std::string::npos);
  auto neg_stride = make_strided_view(&x, {2, 3}, {-1, 1});
  CHECK(check_view("k", neg_stride).code() == StatusCode::kInvalidArgument);
  const int64_t big = std::numeric_limits<int64_t>::max() / 2;
  auto huge = make_strided_view(&x, {big, 4}, {4, 1});
  CHECK(check_view("h", huge).code() == StatusCode::kInvalidArgument);
  auto huge_stride = make_strided_view(&x, {3, 2}, {big, 1});
  CHECK(check_view("s", huge_stride).code() == StatusCode::kInvalidArgument);
  auto null_view = make_view(static_cast<float*>(nullptr), 2, 2);
  CHECK(check_view("n", null_view).code() == StatusCode::kInvalidArgument);
  auto empty = make_view(static_cast<float*>(nullptr), 0, 5);
  CHECK(check_view("e", empty).is_ok());
}

TEST_CASE("core/workspace: counting and carving agree, stay aligned and never overlap") {
  auto plan = [](WorkspacePlanner& p, float** a, int32_t** b, double** c) {
    *a = p.take<float>(3);
    *b = p.take<int32_t>(1000);
    *c = p.take<double>(0);
  };
  WorkspacePlanner counting;
  float* a;
  int32_t* b;
  double* c;
  plan(counting, &a, &b, &c);
  CHECK(a == nullptr);
  CHECK(counting.bytes_needed() == 256 + 4096);
  alignas(256) static unsigned char buffer[8192];
  WorkspacePlanner carving(Workspace{buffer, counting.bytes_needed()});
  plan(carving, &a, &b, &c);
  CHECK(carving.status().is_ok());
  CHECK(reinterpret_cast<unsigned char*>(a) == buffer);
  CHECK(reinterpret_cast<unsigned char*>(b) == buffer + 256);
  CHECK(reinterpret_cast<std::uintptr_t>(b) % 256 == 0);
  CHECK(carving.bytes_needed() == counting.bytes_needed());

  WorkspacePlanner small(Workspace{buffer, counting.bytes_needed() - 1});
  plan(small, &a, &b, &c);
  CHECK(small.status().code() == StatusCode::kWorkspaceTooSmall);
  CHECK(b == nullptr);
  WorkspacePlanner misaligned(Workspace{buffer + 8, 4096 * 2});
  plan(misaligned, &a, &b, &c);
  CHECK(misaligned.status().code() == StatusCode::kMisaligned);
  WorkspacePlanner null_ws(Workspace{nullptr, 0});
  plan(null_ws, &a, &b, &c);
  CHECK(null_ws.status().code() == StatusCode::kWorkspaceTooSmall);
}

TEST_CASE("core/compare: bitwise comparator sees +0/-0 and NaN payloads") {
  using pdtest::bitwise_equal;
  const float qnan1 = num::float_of(0x7fc00001u), qnan2 = num::float_of(0x7fc00002u);
  CHECK(bitwise_equal(std::vector<float>{1.0f, 0.0f}, std::vector<float>{1.0f, 0.0f}).ok);
  CHECK_FALSE(bitwise_equal(std::vector<float>{0.0f}, std::vector<float>{-0.0f}).ok);
  CHECK_FALSE(bitwise_equal(std::vector<float>{qnan1}, std::vector<float>{qnan2}).ok);
  CHECK(bitwise_equal(std::vector<float>{qnan1}, std::vector<float>{qnan1}).ok);
  const auto r = bitwise_equal(std::vector<float>{1, 2, 3}, std::vector<float>{1, 2.5f, 4});
  CHECK(r.report.find("2 of 3 differ") != std::string::npos);
  CHECK(r.report.find("[1]") != std::string::npos);
  CHECK(r.report.find("0x40000000") != std::string::npos);
  CHECK_FALSE(bitwise_equal(std::vector<int>{1}, std::vector<int>{1, 2}).ok);
  CHECK(pdtest::max_ulp(std::vector<float>{1.0f}, std::vector<float>{std::nextafter(1.0f, 2.0f)}, 1)
            .ok);
  CHECK_FALSE(pdtest::max_ulp(std::vector<float>{1.0f}, std::vector<float>{1.0001f}, 1).ok);
  CHECK(pdtest::ulp_distance(0.0f, -0.0f) == 0);
  CHECK(pdtest::nmse_below(std::vector<float>{1.0f, 2.0f}, std::vector<float>{1.0f, 2.001f}, 1e-6)
            .ok);
  CHECK_FALSE(
      pdtest::nmse_below(std::vector<float>{1.0f, 3.0f}, std::vector<float>{1.0f, 2.0f}, 1e-3).ok);
}

TEST_CASE(
    "core/names: parse() is the inverse of to_string() for every enum, with the choices on error") {
  for (Method m : {Method::kPromptDistill, Method::kGemFilter, Method::kSnapKV, Method::kH2O,
                   Method::kFastKV}) {
    Method back = Method::kH2O;
    REQUIRE(parse(to_string(m), &back).is_ok());
    CHECK(back == m);
  }
  for (PoolMode m : {PoolMode::kNone, PoolMode::kAvg, PoolMode::kMax}) {
    PoolMode back = PoolMode::kAvg;
    REQUIRE(parse(to_string(m), &back).is_ok());
    CHECK(back == m);
  }
  for (HeadGrouping g : {HeadGrouping::kPerKvGroup, HeadGrouping::kPerQueryHead}) {
    HeadGrouping back = HeadGrouping::kPerKvGroup;
    REQUIRE(parse(to_string(g), &back).is_ok());
    CHECK(back == g);
  }
  for (PipelineMethod m :
       {PipelineMethod::kFull, PipelineMethod::kPromptDistill, PipelineMethod::kGemFilter,
        PipelineMethod::kSnapKV, PipelineMethod::kH2O, PipelineMethod::kFastKV}) {
    PipelineMethod back = PipelineMethod::kFull;
    REQUIRE(parse(to_string(m), &back).is_ok());
    CHECK(back == m);
  }
  Method method = Method::kGemFilter;
  const Status bad = parse("PromptDistill", &method);  // spellings are exact (lower case)
  CHECK(bad.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(bad.message()) ==
        "method must be one of promptdistill, gemfilter, snapkv, h2o, fastkv, got 'PromptDistill'");
  CHECK(method == Method::kGemFilter);  // untouched on failure
  PoolMode pool = PoolMode::kAvg;
  CHECK(parse("", &pool).code() == StatusCode::kInvalidArgument);
  CHECK(parse(std::string(1000, 'x'), &pool).code() ==
        StatusCode::kInvalidArgument);  // long input: a clipped message
  PipelineMethod pipeline = PipelineMethod::kFull;
  CHECK(std::string(parse("fullkv", &pipeline).message()).find("full, promptdistill") !=
        std::string::npos);
}

TEST_CASE("core/dtype: the public conversions round to nearest even and keep specials") {
  CHECK(to_bf16(1.0f).bits == 0x3f80);
  CHECK(to_bf16(1.00390625f).bits == 0x3f80);  // exactly half an ulp above 1: ties to even
  CHECK(to_bf16(1.01171875f).bits == 0x3f82);  // half an ulp above an odd mantissa rounds up
  CHECK(to_f16(1.0f).bits == 0x3c00);
  CHECK(to_f16(65520.0f).bits == 0x7c00);                 // rounds to infinity
  CHECK(to_f16(-5.960464477539063e-08f).bits == 0x8001);  // the smallest subnormal keeps its sign
  CHECK(std::isnan(to_float(to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isnan(to_float(to_f16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(to_float(bf16{0xc040}) == -3.0f);
  CHECK(to_float(f16{0x0001}) == 5.960464477539063e-08f);
  CHECK(from_float<float>(0.1f) == 0.1f);
  CHECK(from_float<bf16>(0.1f).bits == to_bf16(0.1f).bits);
  CHECK(from_float<f16>(0.1f).bits == to_f16(0.1f).bits);
}

TEST_CASE("core/workspace: HostWorkspace is aligned, grows, keeps what it has on failure") {
  HostWorkspace ws;
  CHECK(ws.workspace().ptr == nullptr);
  REQUIRE(ws.reserve(0).is_ok());  // even an empty request gets a valid, aligned buffer
  CHECK(ws.workspace().ptr != nullptr);
  REQUIRE(ws.reserve(1000).is_ok());
  const Workspace w = ws.workspace();
  CHECK(reinterpret_cast<std::uintptr_t>(w.ptr) % WorkspacePlanner::kAlignment == 0);
  CHECK(w.bytes == 1024);
  REQUIRE(ws.reserve(10).is_ok());  // never shrinks
  CHECK(ws.workspace().ptr == w.ptr);
  const Status too_big = ws.reserve(SIZE_MAX);
  CHECK(too_big.code() == StatusCode::kOutOfMemory);
  CHECK(ws.workspace().ptr == w.ptr);
  CHECK(ws.bytes() == 1024);
}

TEST_CASE("status: Quoted escapes and cuts what a message quotes; a cut message stays UTF-8") {
  // Printable ASCII and well-formed UTF-8 as they are; control characters, malformed UTF-8, the
  // quote and the backslash as \xNN.
  const std::string raw =
      std::string(
          "a'b\\c\x1b[31m\xc3\xa9\xe2\x82\xac\xf0\x9f\x99\x82\xff\xc3(\xed\xa0\x80\xc2\x85") +
      '\0' + "z";
  CHECK(std::string(Quoted(raw).c_str()) ==
        "a\\x27b\\x5cc\\x1b[31m\xc3\xa9\xe2\x82\xac\xf0\x9f\x99\x82\\xff\\xc3("
        "\\xed\\xa0\\x80\\xc2\\x85\\x00z");
  // Cut after max_bytes of output, never inside an escape or a character.
  CHECK(std::string(Quoted(std::string(100, 'x'), 10).c_str()) == "xxxxxxxxxx...");
  CHECK(std::string(Quoted(std::string("abcdefghi\xc3\xa9"), 10).c_str()) == "abcdefghi...");
  CHECK(std::string(Quoted(std::string("abcdefgh\x01"), 10).c_str()) == "abcdefgh...");
  CHECK(std::string(Quoted(std::string(), 10).c_str()).empty());
  CHECK(std::string(Quoted(std::string(1000, '\xff'), 1000).c_str()).size() ==
        Quoted::kMaxBytes + 3 - Quoted::kMaxBytes % 4);
  // A message longer than Status holds is cut before a character it would split.
  const std::string long_text = std::string(Status::kMaxMessage - 2, 'x') + "\xc3\xa9\xc3\xa9";
  const Status s(StatusCode::kInvalidArgument, "%s", long_text.c_str());
  CHECK(std::string(s.message()) == std::string(Status::kMaxMessage - 2, 'x'));
}
