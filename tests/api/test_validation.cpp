// SPDX-License-Identifier: Apache-2.0
// Every invalid input returns its specific Status and leaves the caller's outputs untouched.
// The checks are shared by both backends (src/core/selector_checks.cpp and
// detail/selector_checks.h), so the reference run here pins the CUDA behaviour too.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "promptdistill/blocks.h"
#include "promptdistill/detail/selector_checks.h"
#include "promptdistill/promptdistill.h"
#include "support/compare.h"
#include "support/selector_cases.h"

using namespace promptdistill;

namespace {

struct Fixture {
  int64_t B = 1, H = 8, Hkv = 2, D = 64, L = 40;
  std::vector<float> q, k, scores;
  std::vector<int32_t> lengths{40}, indices, counts, positions;
  alignas(256) unsigned char ws[1 << 16];
  Fixture()
      : q(std::size_t(H * D + 64), 0.5f),
        k(std::size_t(L * Hkv * D), 0.25f),
        scores(std::size_t(L), 0.0f),
        indices(std::size_t(L), -9),
        counts(1, -9),
        positions(std::size_t(L), -9) {}
  SelectArgs<float> args() {
    SelectArgs<float> a;
    a.config.budget = 8;
    a.q = make_view<const float>(q.data(), B, 1, H, D);
    a.k = KvCacheView<float>::contiguous_bshd(k.data(), B, L, Hkv, D);
    a.lengths = lengths.data();
    a.max_length = L;
    a.indices = make_view(indices.data(), B, 1, L);
    a.counts = make_view(counts.data(), B, 1);
    a.positions = make_view(positions.data(), B, 1, L);
    return a;
  }
  Status run(const SelectArgs<float>& a) {
    const Status can = ref::Select<float>::can_implement(a);
    const Status s = ref::Select<float>::run(a, Workspace{ws, sizeof ws});
    if (!can.is_ok()) CHECK(s.code() == can.code());  // run re-validates
    return s;
  }
  bool untouched() const {
    return std::all_of(indices.begin(), indices.end(), [](int32_t v) { return v == -9; }) &&
           counts[0] == -9 &&
           std::all_of(positions.begin(), positions.end(), [](int32_t v) { return v == -9; });
  }
};

}  // namespace

TEST_CASE("validation: the fused pipeline accepts the fixture") {
  Fixture f;
  const Status s = f.run(f.args());
  CHECK_MESSAGE(s.is_ok(), std::string(s.message()));
  CHECK(f.counts[0] == 9);
}

TEST_CASE("validation: each bad input gets its own status, outputs untouched") {
  struct Case {
    const char* what;
    StatusCode want;
    void (*mutate)(Fixture&, SelectArgs<float>&);
  };
  const Case cases[] = {
      {"k < 0", StatusCode::kInvalidArgument,
       [](Fixture&, SelectArgs<float>& a) { a.config.budget = -1; }},
      {"mismatched heads", StatusCode::kShapeMismatch,
       [](Fixture& f, SelectArgs<float>& a) {
         a.q = make_view<const float>(f.q.data(), 1, 1, 7, 64);
       }},
      {"head dim differs", StatusCode::kShapeMismatch,
       [](Fixture& f, SelectArgs<float>& a) {
         a.q = make_view<const float>(f.q.data(), 1, 1, 4, 128);
       }},
      {"D unsupported", StatusCode::kUnsupported,
       [](Fixture& f, SelectArgs<float>& a) {
         a.q = make_view<const float>(f.q.data(), 1, 1, 8, 60);
         a.k = KvCacheView<float>::contiguous_bshd(f.k.data(), 1, 40, 2, 60);
       }},
      {"misaligned q", StatusCode::kMisaligned,
       [](Fixture& f, SelectArgs<float>& a) {
         a.q = make_view<const float>(f.q.data() + 1, 1, 1, 8, 64);
       }},
      {"misaligned k", StatusCode::kMisaligned,
       [](Fixture& f, SelectArgs<float>& a) {
         a.k = KvCacheView<float>::contiguous_bshd(f.k.data() + 2, 1, 39, 2, 64);
       }},
      {"negative extent", StatusCode::kInvalidArgument,
       [](Fixture&, SelectArgs<float>& a) { a.q.extents[1] = -1; }},
      {"even pool kernel", StatusCode::kInvalidArgument,
       [](Fixture&, SelectArgs<float>& a) { a.config.pool_kernel = 4; }},
      {"capacity below window", StatusCode::kInvalidArgument,
       [](Fixture&, SelectArgs<float>& a) {
         a.config.method = Method::kSnapKV;
         a.config.budget = 16;
         a.config.window = 32;
       }},
      {"two query rows for PromptDistill", StatusCode::kShapeMismatch,
       [](Fixture& f, SelectArgs<float>& a) {
         a.q = make_view<const float>(f.q.data(), 1, 2, 4, 64);
         a.k.num_heads = 2;
       }},
      {"batch differs", StatusCode::kShapeMismatch,
       [](Fixture&, SelectArgs<float>& a) { a.k.batch = 2; }},
      {"empty prompt", StatusCode::kInvalidArgument,
       [](Fixture& f, SelectArgs<float>&) { f.lengths[0] = 0; }},
      {"negative length", StatusCode::kInvalidArgument,
       [](Fixture& f, SelectArgs<float>&) { f.lengths[0] = -3; }},
      {"length beyond capacity", StatusCode::kCapacityExceeded,
       [](Fixture& f, SelectArgs<float>&) { f.lengths[0] = 41; }},
      {"output too small", StatusCode::kCapacityExceeded,
       [](Fixture& f, SelectArgs<float>& a) {
         a.indices = make_view(f.indices.data(), 1, 1, 5);
         a.positions = make_view(f.positions.data(), 1, 1, 5);
       }},
      {"null lengths", StatusCode::kInvalidArgument,
       [](Fixture&, SelectArgs<float>& a) { a.lengths = nullptr; }},
      {"hidden gather on per-head method", StatusCode::kUnsupported,
       [](Fixture& f, SelectArgs<float>& a) {
         a.config.method = Method::kSnapKV;
         a.config.window = 4;
         a.q = make_view<const float>(f.q.data(), 1, 4, 2, 64);
         a.indices = make_view(f.indices.data(), 1, 2, 20);
         a.counts = make_view(f.positions.data(), 1, 2);
         a.positions = TensorView<int32_t, 3>{};
         a.hidden_in = make_view<const float>(f.k.data(), 1, 40, 4);
         a.hidden_out = make_view(f.scores.data(), 1, 10, 4);
       }},
  };
  for (const Case& c : cases) {
    Fixture f;
    auto a = f.args();
    c.mutate(f, a);
    INFO(std::string(c.what));
    const Status s = f.run(a);
    CHECK(s.code() == c.want);
    CHECK(f.untouched());
    MESSAGE(c.what << " -> " << to_string(s.code()) << ": " << s.message());
  }
}

TEST_CASE("validation: workspace too small and misaligned") {
  Fixture f;
  auto a = f.args();
  const std::size_t need = ref::Select<float>::workspace_size(a);
  CHECK(ref::Select<float>::run(a, Workspace{f.ws, need - 1}).code() ==
        StatusCode::kWorkspaceTooSmall);
  CHECK(ref::Select<float>::run(a, Workspace{f.ws + 16, need}).code() == StatusCode::kMisaligned);
  CHECK(f.untouched());
  CHECK(ref::Select<float>::run(a, Workspace{f.ws, need}).is_ok());
}

TEST_CASE("validation: paged caches: block table out of range, bad FlashInfer metadata") {
  const int64_t H = 2, D = 16, block = 4;
  std::vector<float> data(std::size_t(6 * block * H * D), 1.0f), values(data.size(), 2.0f);
  std::vector<int32_t> table = {0, 1, 7, 2}, lens = {10}, idx(12, -9), counts(1, -9), nl(1, -9),
                       fp(1, -9);
  for (int i = 0; i < 10; ++i) idx[std::size_t(i)] = i;
  counts[0] = 10;
  CompactKvArgs<float> a;
  a.k = KvCacheView<float>::paged_nhd(data.data(), 6, block, H, D, 1, table.data(), 4);
  a.v = KvCacheView<float>::paged_nhd(values.data(), 6, block, H, D, 1, table.data(), 4);
  a.seq_lens = lens.data();
  a.indices = make_view<const int32_t>(idx.data(), 1, 1, 12);
  a.counts = make_view<const int32_t>(counts.data(), 1, 1);
  a.new_lengths = nl.data();
  a.freed_pages = fp.data();
  const auto before = data;
  Status s = ref::CompactKv<float>::run(a, Workspace{});
  CHECK(s.code() == StatusCode::kOutOfRange);  // page 7 of 6, holding tokens 8..9
  CHECK(std::string(s.message()).find("block table out of range") != std::string::npos);
  table[2] = 3;
  lens[0] = 17;  // 4 pages of 4 hold 16
  CHECK(ref::CompactKv<float>::run(a, Workspace{}).code() == StatusCode::kCapacityExceeded);
  lens[0] = 10;
  idx[3] = 2;  // not increasing
  CHECK(ref::CompactKv<float>::run(a, Workspace{}).code() == StatusCode::kInvalidArgument);
  idx[3] = 3;
  idx[9] = 10;  // beyond the length
  CHECK(ref::CompactKv<float>::run(a, Workspace{}).code() == StatusCode::kOutOfRange);
  CHECK(data == before);
  CHECK(nl[0] == -9);
  idx[9] = 9;
  CHECK(ref::CompactKv<float>::run(a, Workspace{}).is_ok());

  std::vector<int32_t> indptr = {0, 3}, indices = {4, 0, 5}, last = {5};
  a.k = KvCacheView<float>::flashinfer_hnd(data.data(), 6, block, H, D, 1, indptr.data(),
                                           indices.data(), last.data());
  a.v = KvCacheView<float>::flashinfer_hnd(values.data(), 6, block, H, D, 1, indptr.data(),
                                           indices.data(), last.data());
  s = ref::CompactKv<float>::run(a, Workspace{});
  CHECK(s.code() == StatusCode::kInvalidArgument);  // last page holds 5 of 4
  CHECK(std::string(s.message()).find("kv_last_page_len") != std::string::npos);
  last[0] = 2;
  indptr[1] = -1;
  s = ref::CompactKv<float>::run(a, Workspace{});
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("kv_indptr") != std::string::npos);
}

TEST_CASE("validation: K and V of one cache must not be the same buffer (compaction and append)") {
  // Both caches compacted (or appended to) at once would move the same memory twice.
  const int64_t H = 2, D = 16, S = 8;
  std::vector<float> data(std::size_t(S * H * D), 1.0f), values(data.size(), 2.0f),
      news(std::size_t(H * D), 3.0f);
  std::vector<int32_t> lens = {8}, idx = {0, 3, 5}, counts = {3}, nl = {-9}, q_lens = {1},
                       kv_lens = {8};
  CompactKvArgs<float> c;
  c.k = c.v = KvCacheView<float>::contiguous_bshd(data.data(), 1, S, H, D);
  c.seq_lens = lens.data();
  c.indices = make_view<const int32_t>(idx.data(), 1, 1, 3);
  c.counts = make_view<const int32_t>(counts.data(), 1, 1);
  c.new_lengths = nl.data();
  const auto before = data;
  Status s = ref::CompactKv<float>::run(c, Workspace{});
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("same buffer") != std::string::npos);
  CHECK(data == before);
  CHECK(nl[0] == -9);
  c.v = KvCacheView<float>::contiguous_bshd(values.data(), 1, S, H, D);
  CHECK(ref::CompactKv<float>::run(c, Workspace{}).is_ok());

  AppendKvArgs<float> a;
  a.k = a.v = KvCacheView<float>::contiguous_bshd(data.data(), 1, S, H, D);
  a.k_new = make_view<const float>(news.data(), 1, 1, H, D);
  a.v_new = a.k_new;
  a.q_lens = q_lens.data();
  a.kv_lens = kv_lens.data();
  s = ref::AppendKv<float>::can_implement(a);
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("same buffer") != std::string::npos);
  // Other strides over the same memory still share the first element.
  a.v = KvCacheView<float>::contiguous_bhsd(data.data(), 1, S, H, D);
  CHECK(ref::AppendKv<float>::can_implement(a).code() == StatusCode::kInvalidArgument);
  a.v = KvCacheView<float>::contiguous_bshd(values.data(), 1, S, H, D);
  CHECK(ref::AppendKv<float>::can_implement(a).is_ok());
}

TEST_CASE(
    "status word: the error that comes first wins (lowest request, its own checks, then its "
    "indices), in any order") {
  // The rule both backends keep (detail::record): the CPU loops meet errors in this order and
  // stop at the first; CUDA threads fail in any order and the word keeps the lowest. Here the
  // host side records shuffled errors and must end with the lowest (request, position), its
  // other fields with it.
  using detail::DataCheck;
  using detail::DeviceStatusWord;
  const uint64_t seed = pdtest::mix(pdtest::seed(), 61);
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const DataCheck checks[] = {DataCheck::kLengthNegative,  DataCheck::kCountBeyondCapacity,
                              DataCheck::kIndexOutOfRange, DataCheck::kIndexNotIncreasing,
                              DataCheck::kTokenOutOfVocab, DataCheck::kKvBelowRows};
  for (int trial = 0; trial < 300; ++trial) {
    CAPTURE(trial);
    struct Error {
      DataCheck check;
      int64_t a, b, c, position;
    };
    std::vector<Error> errors;
    const int n = 1 + int(rng() % 12);
    for (int e = 0; e < n; ++e) {
      Error x{checks[rng() % 6], int64_t(rng() % 6), int64_t(rng() % 1000), int64_t(rng() % 1000),
              int64_t(rng() % 40) - 1};
      const bool taken = std::any_of(errors.begin(), errors.end(), [&](const Error& y) {
        return y.a == x.a && y.position == x.position;
      });
      if (!taken)
        errors.push_back(
            x);  // every (request, position) fails once, as every thread checks its own
    }
    const Error want =
        *std::min_element(errors.begin(), errors.end(), [](const Error& x, const Error& y) {
          return x.a != y.a ? x.a < y.a : x.position < y.position;
        });
    std::shuffle(errors.begin(), errors.end(), rng);
    DeviceStatusWord word{};
    for (const Error& e : errors) detail::record(&word, e.check, e.a, e.b, e.c, e.position);
    CHECK(word.check == int32_t(want.check));
    CHECK(word.code == int32_t(detail::code_of(want.check)));
    CHECK(word.a == want.a);
    CHECK(word.b == want.b);
    CHECK(word.c == want.c);
    CHECK(word.position == want.position);
    CHECK(word.lock == 0);
  }
  // An error at the same place as the one held does not replace it (a thread's later checks).
  DeviceStatusWord word{};
  detail::record(&word, DataCheck::kLengthNegative, 2, -1, 0);
  detail::record(&word, DataCheck::kBudgetBelowWindow, 2, 5, 9);
  CHECK(word.check == int32_t(DataCheck::kLengthNegative));
  detail::record(&word, DataCheck::kIndexOutOfRange, 2, 50, 10,
                 0);  // the request's indices come after its own checks
  CHECK(word.check == int32_t(DataCheck::kLengthNegative));
  detail::record(&word, DataCheck::kIndexOutOfRange, 1, 50, 10, 7);  // a lower request comes first
  CHECK(word.a == 1);
  CHECK(std::string(detail::status_from_word(word).message()) ==
        "request 1: selected index 50 is outside [0, 10)");
}

TEST_CASE(
    "status word: with several invalid requests the reference reports the lowest (Gather, "
    "RemapPositions, CompactKv, Embed)") {
  // What the CUDA kernels must report too (tests/cuda/test_status_cuda.cu runs the same inputs).
  const int64_t L = 10, E = 4, cap = 5;
  std::vector<float> src(std::size_t(4 * L * E), 1.0f), dst(std::size_t(4 * cap * E), -1.0f);
  // request 1: a count beyond the capacity; requests 2 and 3: indices out of range (request 2 at
  // positions 3 and 1: position 1 is reported).
  std::vector<int32_t> idx = {0,      1,  2, 3,  4, /**/ 0, 1, 2, 3, 4,
                              /**/ 0, 77, 2, 99, 4, /**/ 0, 1, 2, 3, 55};
  std::vector<int32_t> counts = {5, 7, 5, 5};
  GatherArgs<float> g;
  g.src = make_view<const float>(src.data(), 4, L, E);
  g.indices = make_view<const int32_t>(idx.data(), 4, 1, cap);
  g.counts = make_view<const int32_t>(counts.data(), 4, 1);
  g.dst = make_view(dst.data(), 4, cap, E);
  Status s = ref::Gather<float>::run(g, Workspace{});
  CHECK(std::string(s.message()) == "request 1: 7 kept tokens do not fit the output capacity 5");
  counts[1] = 5;
  s = ref::Gather<float>::run(g, Workspace{});
  CHECK(std::string(s.message()) == "request 2: selected index 77 is outside [0, 10)");
  CHECK(std::all_of(dst.begin(), dst.end(), [](float v) { return v == -1.0f; }));

  // RemapPositions: per request, every row's count before any row's indices (request 0: a bad
  // index in row 0, a bad count in row 1 -> the count).
  std::vector<int32_t> ridx = {0, 12, 2, /**/ 0, 1, 2}, rcounts = {3, 4}, out(6, -1);
  RemapPositionsArgs r;
  r.mode = PositionMode::kOriginal;
  r.indices = make_view<const int32_t>(ridx.data(), 1, 2, 3);
  r.counts = make_view<const int32_t>(rcounts.data(), 1, 2);
  r.positions_out = make_view(out.data(), 1, 2, 3);
  std::vector<int32_t> positions_in(10);
  r.positions_in = make_view<const int32_t>(positions_in.data(), 1, 10);
  s = ref::RemapPositions::run(r, Workspace{});
  CHECK(std::string(s.message()) == "request 0: 4 kept tokens do not fit the output capacity 3");
  rcounts[1] = 3;
  s = ref::RemapPositions::run(r, Workspace{});
  CHECK(std::string(s.message()) == "request 0: selected index 12 is outside [0, 10)");

  // CompactKv: request 0 not increasing at position 2, request 1 a length beyond the capacity.
  const int64_t S = 8, H = 1, D = 64;
  std::vector<float> keys(std::size_t(2 * S * H * D), 0.5f), values = keys;
  std::vector<int32_t> lens = {6, 9}, cidx = {0, 3, 3, 5, /**/ 0, 1, 2, 3}, ccounts = {4, 4},
                       nl = {-9, -9};
  CompactKvArgs<float> c;
  c.k = KvCacheView<float>::contiguous_bshd(keys.data(), 2, S, H, D);
  c.v = KvCacheView<float>::contiguous_bshd(values.data(), 2, S, H, D);
  c.seq_lens = lens.data();
  c.indices = make_view<const int32_t>(cidx.data(), 2, 1, 4);
  c.counts = make_view<const int32_t>(ccounts.data(), 2, 1);
  c.new_lengths = nl.data();
  s = ref::CompactKv<float>::run(c, Workspace{});
  CHECK(std::string(s.message()) ==
        "request 0: selected indices are not strictly increasing at position 2 (index 3)");
  CHECK(nl == std::vector<int32_t>{-9, -9});

  // Embed: rows 5 and 2 out of the vocabulary -> row 2.
  std::vector<float> table(std::size_t(8 * E), 1.0f), embedded(std::size_t(7 * E), -1.0f);
  std::vector<int32_t> ids = {0, 1, 9, 3, 4, -1, 6};
  EmbedArgs<float> e;
  e.table = make_view<const float>(table.data(), 8, E);
  e.ids = make_view<const int32_t>(ids.data(), 7);
  e.out = make_view(embedded.data(), 7, E);
  HostWorkspace ws;
  REQUIRE(ws.reserve(ref::Embed<float>::workspace_size(e)).is_ok());
  s = ref::Embed<float>::run(e, ws.workspace());
  CHECK(std::string(s.message()) == "token id 9 at row 2 is outside the vocabulary [0, 8)");
}
