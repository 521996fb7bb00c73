// SPDX-License-Identifier: Apache-2.0
// Concurrent callers of the reference operations: the library holds no global state, so eight
// threads running Select (every method, f32 and bf16), FinishSelect, Gather, CompactKv in a
// contiguous and a paged cache, AppendKv, RmsNorm and exact Attention at the same time, each on
// its own outputs (half of them reading one shared input), write exactly what each writes alone.
// Run under ThreadSanitizer by scripts/run_tests.sh (a build of the concurrency tests only).
#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "promptdistill/promptdistill.h"
#include "support/generators.h"
#include "support/kv_layouts.h"

using namespace promptdistill;

namespace {

//! The bytes of every output of one call (and its status), to compare runs.
using Bytes = std::vector<uint8_t>;
template <class T>
void append(Bytes* out, const std::vector<T>& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(v.data());
  out->insert(out->end(), p, p + v.size() * sizeof(T));
}
void append_status(Bytes* out, const Status& s) {
  out->push_back(uint8_t(s.code()));
  out->insert(out->end(), s.message(), s.message() + std::strlen(s.message()));
}

constexpr int64_t kH = 4, kHkv = 2, kD = 32, kN = 96;

//! Keys [2, kN, kHkv, kD] every thread that reads shared data reads at once.
const std::vector<float>& shared_keys() {
  static const std::vector<float> k =
      pdtest::generate<float>(std::size_t(2 * kN * kHkv * kD), pdtest::Fill::kNormal, 99);
  return k;
}

template <class T>
Bytes run_select(Method method, HeadGrouping grouping, uint64_t seed, bool shared) {
  const int64_t B = 2, rows = method == Method::kSnapKV ? 8 : method == Method::kH2O ? kN : 1;
  const auto qf =
      pdtest::generate<float>(std::size_t(B * rows * kH * kD), pdtest::Fill::kNormal, seed);
  const auto kf = shared ? shared_keys()
                         : pdtest::generate<float>(std::size_t(B * kN * kHkv * kD),
                                                   pdtest::Fill::kNormal, seed + 1);
  std::vector<T> q(qf.size()), k(kf.size());
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = num::from_f32<T>(qf[i]);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = num::from_f32<T>(kf[i]);
  const int64_t R = score_rows(method, grouping, kH, kHkv);
  std::vector<int32_t> lengths = {int32_t(kN), int32_t(kN - 17)}, idx(std::size_t(B * R * kN), -1),
                       counts(std::size_t(B * R)), pos(idx.size(), -1);
  std::vector<float> scores(std::size_t(B * R * kN), 0.0f);
  SelectArgs<T> a;
  a.config.method = method;
  a.config.budget = 40;
  a.config.window = 8;
  a.config.grouping = grouping;
  a.config.pool = method == Method::kGemFilter ? PoolMode::kMax : PoolMode::kAvg;
  a.q = make_view<const T>(q.data(), B, rows, kH, kD);
  a.k = KvCacheView<const T>::contiguous_bshd(k.data(), B, kN, kHkv, kD);
  a.lengths = lengths.data();
  a.max_length = kN;
  a.indices = make_view(idx.data(), B, R, kN);
  a.counts = make_view(counts.data(), B, R);
  a.positions = make_view(pos.data(), B, R, kN);
  a.final_scores = make_view(scores.data(), B, R, kN);
  HostWorkspace ws;
  Bytes out;
  Status s = ws.reserve(ref::Select<T>::workspace_size(a));
  if (s.is_ok()) s = ref::Select<T>::run(a, ws.workspace());
  append_status(&out, s);
  append(&out, idx);
  append(&out, counts);
  append(&out, pos);
  append(&out, scores);
  return out;
}

Bytes run_finish_and_gather(uint64_t seed) {
  const int64_t B = 2, E = 24;
  const auto summed = pdtest::generate<float>(std::size_t(B * kN), pdtest::Fill::kNormal, seed);
  const auto hidden =
      pdtest::generate<float>(std::size_t(B * kN * E), pdtest::Fill::kNormal, seed + 1);
  std::vector<int32_t> lengths = {int32_t(kN), 50}, idx(std::size_t(B * kN), -1),
                       counts(static_cast<std::size_t>(B)), pos(idx.size(), -1);
  std::vector<float> final_scores(std::size_t(B * kN)), gathered(std::size_t(B * kN * E), 0.0f);
  FinishSelectArgs f;
  f.config.budget = 30;
  f.summed = make_view<const float>(summed.data(), B, 1, kN);
  f.total_heads = 32;
  f.lengths = lengths.data();
  f.indices = make_view(idx.data(), B, 1, kN);
  f.counts = make_view(counts.data(), B, 1);
  f.positions = make_view(pos.data(), B, 1, kN);
  f.final_scores = make_view(final_scores.data(), B, 1, kN);
  HostWorkspace ws;
  Bytes out;
  Status s = ws.reserve(ref::FinishSelect::workspace_size(f));
  if (s.is_ok()) s = ref::FinishSelect::run(f, ws.workspace());
  append_status(&out, s);
  GatherArgs<float> g;
  g.src = make_view<const float>(hidden.data(), B, kN, E);
  g.indices = make_view<const int32_t>(idx.data(), B, 1, kN);
  g.counts = make_view<const int32_t>(counts.data(), B, 1);
  g.dst = make_view(gathered.data(), B, kN, E);
  append_status(&out, ref::Gather<float>::run(g, Workspace{}));
  append(&out, idx);
  append(&out, pos);
  append(&out, final_scores);
  append(&out, gathered);
  return out;
}

//! Compaction (per-KV-head rows) of a cache in `layout`, then one appended token.
Bytes run_compact(pdtest::Layout layout, uint64_t seed) {
  const int64_t B = 2, cap = 64, block = 8;
  const std::vector<int32_t> lengths = {60, 33};
  const auto logical =
      pdtest::generate<float>(std::size_t(B * cap * kHkv * kD), pdtest::Fill::kNormal, seed);
  auto k = pdtest::make_kv<float>(layout, logical, lengths, cap, kHkv, kD, block, seed);
  auto vlogical = logical;
  for (auto& x : vlogical) x = -x;
  auto v = pdtest::make_kv<float>(layout, vlogical, lengths, cap, kHkv, kD, block,
                                  seed);  // the same page tables
  std::vector<int32_t> idx(std::size_t(B * kHkv * cap), -1), counts(std::size_t(B * kHkv), 20),
      new_lengths(B), freed(B);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < kHkv; ++h)
      for (int64_t i = 0; i < 20; ++i)
        idx[std::size_t((b * kHkv + h) * cap + i)] = int32_t(i * (b == 0 ? 3 : 1) + h);
  CompactKvArgs<float> a;
  a.k = k.view();
  a.v = v.view_over(v.data.data(), k.block_table.data(), k.indptr.data(), k.indices.data(),
                    k.last_page_len.data());
  a.seq_lens = lengths.data();
  a.indices = make_view<const int32_t>(idx.data(), B, kHkv, cap);
  a.counts = make_view<const int32_t>(counts.data(), B, kHkv);
  a.new_lengths = new_lengths.data();
  a.freed_pages = freed.data();
  Bytes out;
  HostWorkspace ws;
  Status s = ws.reserve(ref::CompactKv<float>::workspace_size(a));
  if (s.is_ok()) s = ref::CompactKv<float>::run(a, ws.workspace());
  append_status(&out, s);
  append(&out, k.data);
  append(&out, v.data);
  append(&out, new_lengths);
  append(&out, freed);
  return out;
}

//! RmsNorm and exact attention of a few new rows over a contiguous cache.
Bytes run_blocks(uint64_t seed) {
  const int64_t B = 1, n = 5, S = 40, E = kH * kD;
  const auto x = pdtest::generate<float>(std::size_t(B * n * E), pdtest::Fill::kNormal, seed);
  const auto weight = pdtest::generate<float>(std::size_t(E), pdtest::Fill::kNormal, seed + 1);
  std::vector<float> normed(x.size());
  RmsNormArgs<float> r;
  r.x = make_view<const float>(x.data(), B * n, E);
  r.weight = make_view<const float>(weight.data(), E);
  r.eps = 1e-5f;
  r.out = make_view(normed.data(), B * n, E);
  Bytes out;
  append_status(&out, ref::RmsNorm<float>::run(r, Workspace{}));
  const auto kc =
      pdtest::generate<float>(std::size_t(B * S * kHkv * kD), pdtest::Fill::kNormal, seed + 2);
  const auto vc = pdtest::generate<float>(kc.size(), pdtest::Fill::kNormal, seed + 3);
  std::vector<int32_t> q_lens = {int32_t(n)}, kv_lens = {int32_t(S)};
  std::vector<float> o(std::size_t(B * n * E));
  AttentionArgs<float> at;
  at.q = make_view<const float>(normed.data(), B, n, kH, kD);
  at.k = KvCacheView<const float>::contiguous_bshd(kc.data(), B, S, kHkv, kD);
  at.v = KvCacheView<const float>::contiguous_bshd(vc.data(), B, S, kHkv, kD);
  at.q_lens = q_lens.data();
  at.kv_lens = kv_lens.data();
  at.algo = AttentionAlgo::kExact;
  at.max_kv_len = S;
  at.out = make_view(o.data(), B, n, kH, kD);
  HostWorkspace ws;
  Status s = ws.reserve(ref::Attention<float>::workspace_size(at));
  if (s.is_ok()) s = ref::Attention<float>::run(at, ws.workspace());
  append_status(&out, s);
  append(&out, normed);
  append(&out, o);
  return out;
}

}  // namespace

TEST_CASE("concurrency/ref: eight threads at once write exactly what each writes alone") {
  const std::vector<std::function<Bytes()>> jobs = {
      [] { return run_select<float>(Method::kPromptDistill, HeadGrouping::kPerKvGroup, 1, false); },
      [] { return run_select<bf16>(Method::kGemFilter, HeadGrouping::kPerKvGroup, 2, false); },
      [] { return run_select<float>(Method::kSnapKV, HeadGrouping::kPerQueryHead, 3, true); },
      [] { return run_select<float>(Method::kH2O, HeadGrouping::kPerKvGroup, 4, true); },
      [] { return run_select<bf16>(Method::kPromptDistill, HeadGrouping::kPerKvGroup, 5, true); },
      [] { return run_finish_and_gather(6); },
      [] { return run_compact(pdtest::Layout::kPagedNHD, 7); },
      [] {
        Bytes b = run_compact(pdtest::Layout::kBHSD, 8);
        const Bytes c = run_blocks(9);
        b.insert(b.end(), c.begin(), c.end());
        return b;
      },
  };
  std::vector<Bytes> alone;
  for (const auto& job : jobs) alone.push_back(job());
  for (std::size_t i = 0; i < alone.size(); ++i) {
    CAPTURE(i);
    CHECK(alone[i].size() > 16);
    CHECK(alone[i][0] == uint8_t(StatusCode::kSuccess));  // every job succeeds alone
  }
  constexpr int kRounds = 3;
  std::vector<std::vector<Bytes>> together(jobs.size(), std::vector<Bytes>(kRounds));
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < jobs.size(); ++i)
    threads.emplace_back([&, i] {
      for (int round = 0; round < kRounds; ++round) together[i][std::size_t(round)] = jobs[i]();
    });
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < jobs.size(); ++i)
    for (int round = 0; round < kRounds; ++round) {
      CAPTURE(i);
      CAPTURE(round);
      CHECK(together[i][std::size_t(round)] == alone[i]);
    }
}
