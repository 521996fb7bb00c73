// SPDX-License-Identifier: Apache-2.0
// What the property-based fuzzing of the Python API (python/tests/test_fuzz_*.py) found, at the
// C++ API of the reference backend: each case failed (or did not finish) before its fix.
#include <doctest/doctest.h>

#include <chrono>
#include <climits>
#include <numeric>
#include <vector>

#include "promptdistill/promptdistill.h"
#include "support/generators.h"

using namespace promptdistill;

TEST_CASE("pool/ref: the largest odd kernel costs what a kernel of the row's width costs") {
  // Found: select(q, k, 2, pool_kernel=2**31-1) ran its 2^31 taps for every position.
  const int64_t L = 300;
  const auto in = pdtest::generate<float>(std::size_t(L), pdtest::Fill::kNormal, pdtest::seed());
  std::vector<int32_t> lengths{int32_t(L)};
  for (PoolMode mode : {PoolMode::kAvg, PoolMode::kMax}) {
    std::vector<float> huge(static_cast<std::size_t>(L)), wide(static_cast<std::size_t>(L));
    PoolArgs a;
    a.mode = mode;
    a.zero_tail = 1;
    a.in = make_view<const float>(in.data(), 1, 1, L);
    a.lengths = lengths.data();
    a.kernel = INT32_MAX;
    a.out = make_view(huge.data(), 1, 1, L);
    const auto start = std::chrono::steady_clock::now();
    REQUIRE(ref::Pool::run(a, Workspace{}).is_ok());
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
    // Every tap of both kernels covers the whole row; only the divisor of the average differs.
    a.kernel = int32_t(2 * L + 1);
    a.out = make_view(wide.data(), 1, 1, L);
    REQUIRE(ref::Pool::run(a, Workspace{}).is_ok());
    for (int64_t j = 0; j < L; ++j) {
      CAPTURE(j);
      if (mode == PoolMode::kMax) {
        CHECK(huge[std::size_t(j)] == wide[std::size_t(j)]);
      } else {
        float sum = 0.0f;  // the specification's sum: taps in order, from +0
        for (int64_t t = 0; t < L; ++t) sum = num::add(sum, t < L - 1 ? in[std::size_t(t)] : 0.0f);
        CHECK(huge[std::size_t(j)] == num::div(sum, float(INT32_MAX)));
      }
    }
  }
}

namespace {

//! A paged (vLLM) compaction of one or two requests over `table` ([B, 3] pages of 4 tokens).
struct PagedCase {
  static constexpr int64_t H = 2, D = 8, kBlock = 4, kBlocks = 6;
  std::vector<float> k = std::vector<float>(std::size_t(kBlocks * kBlock * H * D)), v = k;
  std::vector<int32_t> table, lens, idx, counts, new_lengths, freed;
  CompactKvArgs<float> args(int64_t B) {
    std::iota(k.begin(), k.end(), 0.0f);
    std::iota(v.begin(), v.end(), 1000.0f);
    idx.assign(std::size_t(B * 12), -1);
    counts.assign(std::size_t(B), 3);
    for (int64_t b = 0; b < B; ++b)
      for (int i = 0; i < 3; ++i) idx[std::size_t(b * 12 + i)] = 2 * i + 1;
    new_lengths.assign(std::size_t(B), -9);
    freed.assign(std::size_t(B), -9);
    CompactKvArgs<float> a;
    a.k = KvCacheView<float>::paged_nhd(k.data(), kBlocks, kBlock, H, D, B, table.data(), 3);
    a.v = KvCacheView<float>::paged_nhd(v.data(), kBlocks, kBlock, H, D, B, table.data(), 3);
    a.seq_lens = lens.data();
    a.indices = make_view<const int32_t>(idx.data(), B, 1, 12);
    a.counts = make_view<const int32_t>(counts.data(), B, 1);
    a.new_lengths = new_lengths.data();
    a.freed_pages = freed.data();
    return a;
  }
};

}  // namespace

TEST_CASE("compact/ref: a page held twice, within a request or by two, is refused untouched") {
  // Found: both were compacted, each move reading what another had written.
  for (const auto& tables : std::vector<std::vector<int32_t>>{{2, 0, 2}, {1, 2, 9, 3, 2, 4}}) {
    PagedCase c;
    c.table = tables;
    const int64_t B = int64_t(tables.size() / 3);
    c.lens.assign(std::size_t(B), 9);  // 3 pages each
    if (B == 2) c.lens[0] = 8;         // request 0 holds pages 1 and 2 (its 9 is past its tokens)
    const CompactKvArgs<float> a = c.args(B);
    const auto k0 = c.k, v0 = c.v;
    const Status s = ref::CompactKv<float>::run(a, Workspace{});
    CHECK(s.code() == StatusCode::kInvalidArgument);
    CHECK(std::string(s.message()).find("page 2 is also held") != std::string::npos);
    CHECK(c.k == k0);
    CHECK(c.v == v0);
    CHECK(c.new_lengths[0] == -9);
  }
  PagedCase ok;
  ok.table = {1, 2, 0, 3, 4, 5};
  ok.lens = {9, 8};
  CHECK(ref::CompactKv<float>::run(ok.args(2), Workspace{}).is_ok());
  CHECK(ok.new_lengths == std::vector<int32_t>{3, 3});
}

TEST_CASE("compact/ref: FlashInfer pages outside kv_indices are refused before they are read") {
  // Found: kv_indptr = [0, 3] with two kv_indices read a third entry past the array.
  const int64_t H = 2, D = 8, block = 4;
  std::vector<float> k(std::size_t(6 * block * H * D), 1.0f), v(k.size(), 2.0f);
  std::vector<int32_t> indptr = {0, 3}, indices = {4, 0, 5}, last = {2}, idx = {0, 5, 9},
                       counts = {3}, nl = {-9};
  CompactKvArgs<float> a;
  a.k = KvCacheView<float>::flashinfer_nhd(k.data(), 6, block, H, D, 1, indptr.data(),
                                           indices.data(), last.data());
  a.indices = make_view<const int32_t>(idx.data(), 1, 1, 3);
  a.counts = make_view<const int32_t>(counts.data(), 1, 1);
  a.new_lengths = nl.data();
  a.k.num_indices = 2;  // the array holds two entries: the third page is not one of them
  a.v = a.k;
  a.v.data = v.data();
  Status s = ref::CompactKv<float>::run(a, Workspace{});
  CHECK(s.code() == StatusCode::kOutOfRange);
  CHECK(std::string(s.message()).find("kv_indices") != std::string::npos);
  indptr = {-1, 2};                        // a negative start
  a.k.num_indices = a.v.num_indices = -1;  // unknown length: the start is still checked
  CHECK(ref::CompactKv<float>::run(a, Workspace{}).code() == StatusCode::kOutOfRange);
  CHECK(nl[0] == -9);
  indptr = {0, 3};
  a.k.num_indices = a.v.num_indices = 3;
  CHECK(ref::CompactKv<float>::run(a, Workspace{}).is_ok());
}

TEST_CASE(
    "compact/ref: a cache broadcast along a dimension (stride 0) cannot be compacted in place") {
  // Found: a torch.expand()ed cache was compacted through elements its tokens share.
  const int64_t S = 8, H = 2, D = 8;
  std::vector<float> k(std::size_t(S * H * D), 1.0f), v(k.size(), 2.0f);
  std::vector<int32_t> lens = {8}, idx = {1, 4}, counts = {2}, nl = {-9};
  CompactKvArgs<float> a;
  a.k = KvCacheView<float>::contiguous_bshd(k.data(), 1, S, H, D);
  a.v = KvCacheView<float>::contiguous_bshd(v.data(), 1, S, H, D);
  a.seq_lens = lens.data();
  a.indices = make_view<const int32_t>(idx.data(), 1, 1, 2);
  a.counts = make_view<const int32_t>(counts.data(), 1, 1);
  a.new_lengths = nl.data();
  for (int which = 0; which < 2; ++which) {
    CompactKvArgs<float> b = a;
    (which == 0 ? b.k.stride_token : b.v.stride_head) = 0;
    const Status s = ref::CompactKv<float>::can_implement(b);
    CHECK(s.code() == StatusCode::kInvalidArgument);
    CHECK(std::string(s.message()).find("stride of 0") != std::string::npos);
  }
  // One head or one token: a stride of 0 addresses nothing twice.
  CompactKvArgs<float> one = a;
  one.k.num_heads = one.v.num_heads = 1;
  one.k.stride_head = 0;
  CHECK(ref::CompactKv<float>::can_implement(one).is_ok());
  CHECK(ref::CompactKv<float>::run(a, Workspace{}).is_ok());
  CHECK(nl[0] == 2);
}
