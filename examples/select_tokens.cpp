// SPDX-License-Identifier: Apache-2.0
// Minimal PromptDistill selection on one request with the CPU reference backend:
// score the last token's query against layer r's keys, pool, keep the top-k plus the last token,
// and gather the hidden states of the kept tokens (their original positions come with them).
#include <promptdistill/promptdistill.h>

#include <cstdio>
#include <random>
#include <vector>

int main() {
  using namespace promptdistill;
  const int64_t L = 64, H = 4, Hkv = 2, D = 64, hidden = 32, k = 8;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> q(H * D), keys(L * Hkv * D), hid(L * hidden);
  for (auto& x : q) x = normal(rng);
  for (auto& x : keys) x = normal(rng);
  for (std::size_t i = 0; i < hid.size(); ++i) hid[i] = float(i / hidden);  // row t holds t

  std::vector<int32_t> lengths = {int32_t(L)}, indices(L), counts(1), positions(L);
  std::vector<float> kept_hidden(L * hidden);
  SelectArgs<float> a;
  a.config.method = Method::kPromptDistill;
  a.config.budget = k;  // min(k, L-1) + 1 tokens are kept
  a.q = make_view<const float>(q.data(), 1, 1, H, D);
  a.k = KvCacheView<const float>::contiguous_bshd(keys.data(), 1, L, Hkv, D);
  a.lengths = lengths.data();
  a.max_length = L;
  a.indices = make_view(indices.data(), 1, 1, L);
  a.counts = make_view(counts.data(), 1, 1);
  a.positions = make_view(positions.data(), 1, 1, L);
  a.hidden_in = make_view<const float>(hid.data(), 1, L, hidden);
  a.hidden_out = make_view(kept_hidden.data(), 1, L, hidden);

  HostWorkspace ws;  // reserve outside the hot path, reuse for every run
  Status s = ws.reserve(ref::Select<float>::workspace_size(a));
  if (s.is_ok()) s = ref::Select<float>::run(a, ws.workspace());
  if (!s.is_ok()) {
    std::printf("error: %s\n", s.message());
    return 1;
  }
  std::printf("kept %d of %lld tokens at positions:", counts[0], (long long)L);
  for (int i = 0; i < counts[0]; ++i) std::printf(" %d", positions[i]);
  std::printf("\n");
  // The gathered hidden rows are the rows of the kept tokens.
  for (int i = 0; i < counts[0]; ++i)
    if (kept_hidden[std::size_t(i * hidden)] != float(indices[i])) return 1;
  return counts[0] == k + 1 && indices[counts[0] - 1] == L - 1 ? 0 : 1;
}
