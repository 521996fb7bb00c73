// SPDX-License-Identifier: Apache-2.0
// CUDA compaction, gather and remap vs the reference, bit for bit (Tier A), in every layout,
// with random page tables; invalid page tables and indices leave the cache untouched.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>

#include "promptdistill/promptdistill.h"
#include "support/compare.h"
#include "support/device_kv.cuh"
#include "support/generators.h"

using namespace promptdistill;
using pdtest::DeviceBuffer;
using pdtest::Layout;

namespace {

struct Selection {
  std::vector<int32_t> idx, counts;
};

Selection random_selection(const std::vector<int32_t>& lengths, int64_t rows, int64_t cap,
                           std::mt19937_64& rng) {
  Selection s;
  const int64_t B = int64_t(lengths.size());
  s.idx.assign(std::size_t(B * rows * cap), -1);
  s.counts.assign(std::size_t(B * rows), 0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = lengths[std::size_t(b)];
    const int64_t keep = L == 0 ? 0 : int64_t(rng() % uint64_t(L + 1));
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<int32_t> all(static_cast<std::size_t>(L));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      all.resize(std::size_t(keep));
      std::sort(all.begin(), all.end());
      std::copy(all.begin(), all.end(), &s.idx[std::size_t((b * rows + r) * cap)]);
      s.counts[std::size_t(b * rows + r)] = int32_t(keep);
    }
  }
  return s;
}

template <class T>
CompactKvArgs<T> compact_args(KvCacheView<T> k, KvCacheView<T> v, const int32_t* lens,
                              const int32_t* idx, const int32_t* counts, int64_t B, int64_t rows,
                              int64_t cap, int32_t* nl, int32_t* fp) {
  CompactKvArgs<T> a;
  a.k = k;
  a.v = v;
  a.seq_lens = lens;
  a.indices = make_view(idx, B, rows, cap);
  a.counts = make_view(counts, B, rows);
  a.new_lengths = nl;
  a.freed_pages = fp;
  return a;
}

}  // namespace

TEST_CASE_TEMPLATE("cuda/compact: every layout equals the reference", T, float, bf16) {
  for (Layout layout : pdtest::kAllLayouts) {
    for (int64_t rows : {int64_t(1), int64_t(8)}) {
      for (int64_t D : {64, 128}) {
        const int64_t H = 8, cap = 1040, block = 16;
        const std::vector<int32_t> lengths = {1025, 1, 0, 33, 1024};
        const int64_t B = int64_t(lengths.size());
        std::mt19937_64 rng(
            pdtest::mix(pdtest::seed(), uint64_t(layout), uint64_t(rows), uint64_t(D)));
        const auto klog =
            pdtest::generate<T>(std::size_t(B * cap * H * D), pdtest::Fill::kNormal, rng());
        const auto vlog =
            pdtest::generate<T>(std::size_t(B * cap * H * D), pdtest::Fill::kNormal, rng());
        auto kh = pdtest::make_kv<T>(layout, klog, lengths, cap, H, D, block, 21);
        auto vh = pdtest::make_kv<T>(layout, vlog, lengths, cap, H, D, block, 21);
        const Selection sel = random_selection(lengths, rows, cap, rng);
        pdtest::DeviceKv<T> kd(kh), vd(vh);
        DeviceBuffer<int32_t> d_len(lengths), d_idx(sel.idx), d_counts(sel.counts),
            d_nl(std::vector<int32_t>(B, -1)), d_fp(std::vector<int32_t>(B, -1));
        auto vview = vd.view;  // share K's device tables
        vview.block_table = kd.view.block_table, vview.indptr = kd.view.indptr,
        vview.indices = kd.view.indices, vview.last_page_len = kd.view.last_page_len;
        auto da = compact_args<T>(kd.view, vview, d_len.get(), d_idx.get(), d_counts.get(), B, rows,
                                  cap, d_nl.get(), d_fp.get());
        pdtest::DeviceWorkspace ws(cuda::CompactKv<T>::workspace_size(da));
        REQUIRE(cuda::CompactKv<T>::run(da, ws.ws, nullptr).is_ok());
        REQUIRE(cuda::read_device_status(ws.ws, nullptr).is_ok());

        std::vector<int32_t> nl(std::size_t(B), -1), fp(std::size_t(B), -1);
        auto hv = vh.view_over(vh.data.data(), kh.block_table.data(), kh.indptr.data(),
                               kh.indices.data(), kh.last_page_len.data());
        auto ha = compact_args<T>(kh.view(), hv, lengths.data(), sel.idx.data(), sel.counts.data(),
                                  B, rows, cap, nl.data(), fp.data());
        REQUIRE(ref::CompactKv<T>::run(ha, Workspace{}).is_ok());
        INFO(std::string(pdtest::to_string(layout)));
        CAPTURE(rows);
        CAPTURE(D);
        CHECK(pdtest::bitwise_equal(d_nl.download(), nl));
        CHECK(pdtest::bitwise_equal(d_fp.download(), fp));
        // The whole storage, kept tokens and untouched tail alike, is identical.
        CHECK(pdtest::bitwise_equal(kd.data.download(), kh.data));
        CHECK(pdtest::bitwise_equal(vd.data.download(), vh.data));
      }
    }
  }
}

TEST_CASE("cuda/compact: out-of-range pages and bad indices are reported, cache untouched") {
  const int64_t H = 2, D = 64, block = 4;
  std::vector<float> data(std::size_t(6 * block * H * D));
  std::iota(data.begin(), data.end(), 0.0f);
  std::vector<int32_t> table = {0, 1, 9, 2}, lens = {10}, idx(12, 0), counts = {10};
  std::iota(idx.begin(), idx.begin() + 10, 0);
  idx[0] = 1;  // keep 1..9 after a shift: also exercises moves
  idx[1] = 2;
  DeviceBuffer<float> d_data(data), d_values(data);
  DeviceBuffer<int32_t> d_table(table), d_lens(lens), d_idx(idx), d_counts(counts),
      d_nl(std::vector<int32_t>{-1});
  auto keys = KvCacheView<float>::paged_nhd(d_data.get(), 6, block, H, D, 1, d_table.get(), 4);
  auto values = KvCacheView<float>::paged_nhd(d_values.get(), 6, block, H, D, 1, d_table.get(), 4);
  auto a = compact_args<float>(keys, values, d_lens.get(), d_idx.get(), d_counts.get(), 1, 1, 12,
                               d_nl.get(), nullptr);
  pdtest::DeviceWorkspace ws(cuda::CompactKv<float>::workspace_size(a));
  REQUIRE(cuda::CompactKv<float>::run(a, ws.ws, nullptr).is_ok());
  CHECK(cuda::read_device_status(ws.ws, nullptr).code() == StatusCode::kOutOfRange);
  CHECK(pdtest::bitwise_equal(d_data.download(), data));
  CHECK(pdtest::bitwise_equal(d_values.download(), data));
  CHECK(d_nl.download()[0] == -1);
  d_table.upload({0, 1, 3, 2});
  d_idx.upload({1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0});  // not strictly increasing
  REQUIRE(cuda::CompactKv<float>::run(a, ws.ws, nullptr).is_ok());
  CHECK(cuda::read_device_status(ws.ws, nullptr).code() == StatusCode::kInvalidArgument);
  CHECK(pdtest::bitwise_equal(d_data.download(), data));
}

TEST_CASE(
    "cuda/compact: a shared page and FlashInfer pages outside kv_indices are reported, cache "
    "untouched") {
  // The device-side checks the Python fuzzing led to (tests/ref/test_fuzz_findings_ref.cpp).
  const int64_t H = 2, D = 64, block = 4;
  std::vector<float> data(std::size_t(6 * block * H * D));
  std::iota(data.begin(), data.end(), 0.0f);
  std::vector<int32_t> lens = {9, 8}, idx(24, -1), counts = {3, 3};
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 3; ++i) idx[std::size_t(b * 12 + i)] = 2 * i + 1;
  DeviceBuffer<float> d_data(data), d_values(data);
  DeviceBuffer<int32_t> d_table(std::vector<int32_t>{1, 2, 0, 3, 2, 5}), d_lens(lens), d_idx(idx),
      d_counts(counts), d_nl(std::vector<int32_t>{-1, -1});
  auto keys = KvCacheView<float>::paged_nhd(d_data.get(), 6, block, H, D, 2, d_table.get(), 3);
  auto values = KvCacheView<float>::paged_nhd(d_values.get(), 6, block, H, D, 2, d_table.get(), 3);
  auto a = compact_args<float>(keys, values, d_lens.get(), d_idx.get(), d_counts.get(), 2, 1, 12,
                               d_nl.get(), nullptr);
  pdtest::DeviceWorkspace ws(cuda::CompactKv<float>::workspace_size(a));
  REQUIRE(cuda::CompactKv<float>::run(a, ws.ws, nullptr).is_ok());
  const Status shared = cuda::read_device_status(ws.ws, nullptr);  // page 2 in both requests
  CHECK(shared.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(shared.message()).find("page 2 is also held") != std::string::npos);
  CHECK(pdtest::bitwise_equal(d_data.download(), data));
  CHECK(d_nl.download()[0] == -1);
  d_table.upload({1, 2, 0, 3, 4, 5});
  REQUIRE(cuda::CompactKv<float>::run(a, ws.ws, nullptr).is_ok());
  CHECK(cuda::read_device_status(ws.ws, nullptr).is_ok());
  // FlashInfer: request 0's pages [0, 3) of two kv_indices.
  DeviceBuffer<int32_t> d_indptr(std::vector<int32_t>{0, 3}), d_indices(std::vector<int32_t>{4, 0}),
      d_last(std::vector<int32_t>{2});
  auto fk = KvCacheView<float>::flashinfer_nhd(d_data.get(), 6, block, H, D, 1, d_indptr.get(),
                                               d_indices.get(), d_last.get());
  fk.num_indices = 2;
  auto fv = fk;
  fv.data = d_values.get();
  auto f = compact_args<float>(fk, fv, nullptr, d_idx.get(), d_counts.get(), 1, 1, 12, d_nl.get(),
                               nullptr);
  pdtest::DeviceWorkspace fws(cuda::CompactKv<float>::workspace_size(f));
  REQUIRE(cuda::CompactKv<float>::run(f, fws.ws, nullptr).is_ok());
  CHECK(cuda::read_device_status(fws.ws, nullptr).code() == StatusCode::kOutOfRange);
}

TEST_CASE("cuda/gather and cuda/remap equal the reference") {
  const int64_t B = 3, L = 1025, E = 576, cap = 1025;
  std::mt19937_64 rng(pdtest::seed());
  const auto src = pdtest::generate<bf16>(std::size_t(B * L * E), pdtest::Fill::kArange, 1);
  const Selection sel = random_selection({int32_t(L), 17, 1}, 1, cap, rng);
  std::vector<bf16> want(std::size_t(B * cap * E), bf16{0});
  GatherArgs<bf16> h;
  h.src = make_view(src.data(), B, L, E);
  h.indices = make_view(sel.idx.data(), B, 1, cap);
  h.counts = make_view(sel.counts.data(), B, 1);
  h.dst = make_view(want.data(), B, cap, E);
  REQUIRE(ref::Gather<bf16>::run(h, Workspace{}).is_ok());
  DeviceBuffer<bf16> d_src(src), d_dst(std::vector<bf16>(want.size(), bf16{0}));
  DeviceBuffer<int32_t> d_idx(sel.idx), d_counts(sel.counts);
  GatherArgs<bf16> d = h;
  d.src = make_view<const bf16>(d_src.get(), B, L, E);
  d.indices = make_view<const int32_t>(d_idx.get(), B, 1, cap);
  d.counts = make_view<const int32_t>(d_counts.get(), B, 1);
  d.dst = make_view(d_dst.get(), B, cap, E);
  pdtest::DeviceWorkspace ws(cuda::Gather<bf16>::workspace_size(d));
  REQUIRE(cuda::Gather<bf16>::run(d, ws.ws, nullptr).is_ok());
  REQUIRE(cuda::read_device_status(ws.ws, nullptr).is_ok());
  CHECK(pdtest::bitwise_equal(d_dst.download(), want));

  // Every row's count is validated (the index check reads every row), not only row 0's: a row
  // beyond the indices' capacity is an error and nothing is written.
  {
    std::vector<int32_t> idx2(std::size_t(B * 2 * cap), 0), counts2(std::size_t(B * 2), 1);
    counts2[1] = int32_t(cap + 1);  // request 0, row 1
    DeviceBuffer<int32_t> d_idx2(idx2), d_counts2(counts2);
    DeviceBuffer<bf16> d_untouched(std::vector<bf16>(want.size(), bf16{0}));
    GatherArgs<bf16> bad = d;
    bad.indices = make_view<const int32_t>(d_idx2.get(), B, 2, cap);
    bad.counts = make_view<const int32_t>(d_counts2.get(), B, 2);
    bad.dst = make_view(d_untouched.get(), B, cap, E);
    REQUIRE(cuda::Gather<bf16>::run(bad, ws.ws, nullptr).is_ok());
    CHECK(cuda::read_device_status(ws.ws, nullptr).code() == StatusCode::kCapacityExceeded);
    CHECK(pdtest::bitwise_equal(d_untouched.download(), std::vector<bf16>(want.size(), bf16{0})));
  }

  for (PositionMode mode : {PositionMode::kOriginal, PositionMode::kRenumber}) {
    std::vector<int32_t> pos_in(std::size_t(B * L));
    std::iota(pos_in.begin(), pos_in.end(), 5000);
    std::vector<int32_t> want_pos(std::size_t(B * cap), -1);
    RemapPositionsArgs r;
    r.mode = mode;
    r.positions_in = make_view<const int32_t>(pos_in.data(), B, L);
    r.indices = h.indices;
    r.counts = h.counts;
    r.positions_out = make_view(want_pos.data(), B, 1, cap);
    REQUIRE(ref::RemapPositions::run(r, Workspace{}).is_ok());
    DeviceBuffer<int32_t> d_pos_in(pos_in), d_pos(std::vector<int32_t>(want_pos.size(), -1));
    RemapPositionsArgs dr = r;
    dr.positions_in = make_view<const int32_t>(d_pos_in.get(), B, L);
    dr.indices = d.indices;
    dr.counts = d.counts;
    dr.positions_out = make_view(d_pos.get(), B, 1, cap);
    REQUIRE(cuda::RemapPositions::run(dr, ws.ws, nullptr).is_ok());
    REQUIRE(cuda::read_device_status(ws.ws, nullptr).is_ok());
    CHECK(pdtest::bitwise_equal(d_pos.download(), want_pos));
  }
}
