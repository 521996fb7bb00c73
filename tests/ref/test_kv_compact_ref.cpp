// SPDX-License-Identifier: Apache-2.0
// Gather, position remap and in-place KV compaction (Tier A) in every layout, against an
// out-of-place oracle built directly from the logical cache.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "promptdistill/promptdistill.h"
#include "support/compare.h"
#include "support/generators.h"
#include "support/kv_layouts.h"

using namespace promptdistill;
using pdtest::Layout;

namespace {

//! A strictly increasing random subset of [0, L) of size `count`.
std::vector<int32_t> random_subset(int64_t L, int64_t count, std::mt19937_64& rng) {
  std::vector<int32_t> all(static_cast<std::size_t>(L));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(std::size_t(count));
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace

TEST_CASE("compact/ref: every layout, head-uniform and per-KV-head selections, match the oracle") {
  const int64_t H = 3, D = 64, block = 16;
  for (Layout layout : pdtest::kAllLayouts) {
    for (int64_t rows : {int64_t(1), H}) {
      const std::vector<int32_t> lengths = {70, 1, 33, 0};
      const int64_t B = 4, cap = 80;
      std::mt19937_64 rng(pdtest::mix(pdtest::seed(), uint64_t(layout), uint64_t(rows)));
      const auto logical =
          pdtest::generate<bf16>(std::size_t(B * cap * H * D), pdtest::Fill::kNormal, rng());
      auto kstore = pdtest::make_kv<bf16>(layout, logical, lengths, cap, H, D, block, 11);
      auto vlogical = logical;
      std::reverse(vlogical.begin(), vlogical.end());
      auto vstore = pdtest::make_kv<bf16>(layout, vlogical, lengths, cap, H, D, block,
                                          11);  // same page tables
      const std::vector<int64_t> keep = {23, 1, 33, 0};
      std::vector<int32_t> idx(std::size_t(B * rows * cap), -1), counts(std::size_t(B * rows), 0);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t r = 0; r < rows; ++r) {
          const auto sel = random_subset(lengths[std::size_t(b)], keep[std::size_t(b)], rng);
          std::copy(sel.begin(), sel.end(), &idx[std::size_t((b * rows + r) * cap)]);
          counts[std::size_t(b * rows + r)] = int32_t(sel.size());
        }
      std::vector<int32_t> new_len(B, -1), freed(B, -1);
      CompactKvArgs<bf16> a;
      a.k = kstore.view();
      // V shares K's page tables (vstore was built with the same seed, so its tables are equal).
      a.v = vstore.view_over(vstore.data.data(), kstore.block_table.data(), kstore.indptr.data(),
                             kstore.indices.data(), kstore.last_page_len.data());
      a.seq_lens = lengths.data();
      a.indices = make_view<const int32_t>(idx.data(), B, rows, cap);
      a.counts = make_view<const int32_t>(counts.data(), B, rows);
      a.new_lengths = new_len.data();
      a.freed_pages = freed.data();
      INFO(std::string(pdtest::to_string(layout)));
      CAPTURE(rows);
      const Status s = ref::CompactKv<bf16>::run(a, Workspace{});
      REQUIRE_MESSAGE(s.is_ok(), std::string(s.message()));
      const std::vector<int32_t> want_len = {23, 1, 33, 0};
      CHECK(new_len == want_len);
      const bool paged = layout != Layout::kBSHD && layout != Layout::kBHSD;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t before = (lengths[std::size_t(b)] + block - 1) / block,
                      after = (want_len[std::size_t(b)] + block - 1) / block;
        CHECK(freed[std::size_t(b)] == (paged ? before - after : 0));
      }
      const auto gotk = pdtest::read_logical(kstore.view(), want_len, cap);
      const auto gotv = pdtest::read_logical(a.v, want_len, cap);
      std::vector<bf16> wantk(gotk.size(), bf16{0}), wantv(gotv.size(), bf16{0});
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < want_len[std::size_t(b)]; ++i)
          for (int64_t h = 0; h < H; ++h) {
            const int64_t r = rows == 1 ? 0 : h;
            const int64_t j = idx[std::size_t((b * rows + r) * cap + i)];
            std::copy_n(&logical[std::size_t(((b * cap + j) * H + h) * D)], D,
                        &wantk[std::size_t(((b * cap + i) * H + h) * D)]);
            std::copy_n(&vlogical[std::size_t(((b * cap + j) * H + h) * D)], D,
                        &wantv[std::size_t(((b * cap + i) * H + h) * D)]);
          }
      CHECK(pdtest::bitwise_equal(gotk, wantk));
      CHECK(pdtest::bitwise_equal(gotv, wantv));
    }
  }
}

TEST_CASE("compact/ref: per-query-head selections are rejected for an H_kv-head cache") {
  std::vector<float> keys(4 * 8 * 2 * 8), values(keys.size());
  std::vector<int32_t> lens = {8}, idx(4 * 8, 0), counts(4, 1), nl(1, -1);
  CompactKvArgs<float> a;
  a.k = KvCacheView<float>::contiguous_bshd(keys.data(), 1, 8, 2, 8);
  a.v = KvCacheView<float>::contiguous_bshd(values.data(), 1, 8, 2, 8);
  a.seq_lens = lens.data();
  a.indices = make_view<const int32_t>(idx.data(), 1, 4, 8);  // 4 rows: query heads, G = 2
  a.counts = make_view<const int32_t>(counts.data(), 1, 4);
  a.new_lengths = nl.data();
  const Status s = ref::CompactKv<float>::run(a, Workspace{});
  CHECK(s.code() == StatusCode::kUnsupported);
  CHECK(std::string(s.message()).find("GQA-expanded") != std::string::npos);
}

TEST_CASE("gather/ref and remap/ref: rows and positions at the kept indices") {
  const int64_t B = 2, L = 40, E = 5, cap = 40;
  std::vector<float> src(std::size_t(B * L * E));
  std::iota(src.begin(), src.end(), 0.0f);
  std::vector<int32_t> idx(std::size_t(B * cap), 0), counts = {3, 2};
  idx[0] = 0;
  idx[1] = 17;
  idx[2] = 39;
  idx[std::size_t(cap)] = 5;
  idx[std::size_t(cap + 1)] = 6;
  std::vector<float> dst(std::size_t(B * cap * E), -1.0f);
  GatherArgs<float> g;
  g.src = make_view<const float>(src.data(), B, L, E);
  g.indices = make_view<const int32_t>(idx.data(), B, 1, cap);
  g.counts = make_view<const int32_t>(counts.data(), B, 1);
  g.dst = make_view(dst.data(), B, cap, E);
  REQUIRE(ref::Gather<float>::run(g, Workspace{}).is_ok());
  CHECK(dst[std::size_t(1 * E + 2)] == src[std::size_t(17 * E + 2)]);
  CHECK(dst[std::size_t((cap + 1) * E + 4)] == src[std::size_t((L + 6) * E + 4)]);
  CHECK(dst[std::size_t(3 * E)] == -1.0f);  // beyond the count: untouched

  // Every row's count and indices are validated (the CUDA backend checks every row's indices),
  // row 0's count also against the indices' capacity; a bad request writes nothing.
  {
    std::vector<int32_t> idx2(std::size_t(B * 2 * cap), 0), counts2(std::size_t(B * 2), 1);
    std::vector<float> untouched(dst.size(), -2.0f);
    GatherArgs<float> bad = g;
    bad.indices = make_view<const int32_t>(idx2.data(), B, 2, cap);
    bad.counts = make_view<const int32_t>(counts2.data(), B, 2);
    bad.dst = make_view(untouched.data(), B, cap, E);
    REQUIRE(ref::Gather<float>::run(bad, Workspace{}).is_ok());
    counts2[1] = int32_t(cap + 1);  // request 0, row 1: beyond the capacity
    Status s = ref::Gather<float>::run(bad, Workspace{});
    CHECK(s.code() == StatusCode::kCapacityExceeded);
    counts2[1] = 1;
    idx2[std::size_t(cap)] = int32_t(L);  // request 0, row 1, index 0: beyond the prompt
    s = ref::Gather<float>::run(bad, Workspace{});
    CHECK(s.code() == StatusCode::kOutOfRange);
    idx2[std::size_t(cap)] = 0;
    std::fill(untouched.begin(), untouched.end(), -2.0f);
    bad.indices = make_view<const int32_t>(idx2.data(), B, 2, 2);  // capacity 2 < dst rows
    counts2[0] = 3;
    s = ref::Gather<float>::run(bad, Workspace{});
    CHECK(s.code() == StatusCode::kCapacityExceeded);
    CHECK(std::all_of(untouched.begin(), untouched.end(), [](float v) { return v == -2.0f; }));
  }

  std::vector<int32_t> pos_in(std::size_t(B * L));
  for (std::size_t i = 0; i < pos_in.size(); ++i) pos_in[i] = int32_t(1000 + i);
  std::vector<int32_t> pos_out(std::size_t(B * cap), -1);
  RemapPositionsArgs r;
  r.positions_in = make_view<const int32_t>(pos_in.data(), B, L);
  r.indices = g.indices;
  r.counts = g.counts;
  r.positions_out = make_view(pos_out.data(), B, 1, cap);
  REQUIRE(ref::RemapPositions::run(r, Workspace{}).is_ok());
  CHECK(pos_out[1] == 1017);
  CHECK(pos_out[std::size_t(cap + 1)] == 1000 + L + 6);
  r.mode = PositionMode::kRenumber;
  REQUIRE(ref::RemapPositions::run(r, Workspace{}).is_ok());
  CHECK(pos_out[2] == 2);
  CHECK(pos_out[std::size_t(cap + 1)] == 1);
  // Index composition across stages is a gather of int32 maps.
  std::vector<int32_t> map_out(std::size_t(B * cap), -1);
  GatherArgs<int32_t> compose;
  compose.src = make_view<const int32_t>(pos_in.data(), B, L, 1);
  compose.indices = g.indices;
  compose.counts = g.counts;
  compose.dst = make_view(map_out.data(), B, cap, 1);
  REQUIRE(ref::Gather<int32_t>::run(compose, Workspace{}).is_ok());
  CHECK(map_out[2] == 1039);
}
