// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The peak memory of a prefill, from its plan, before any work: what the CLI, BatchSession and
//! hf.generate check against the memory there is, so that a prompt too long for the machine is
//! refused with the numbers instead of being killed half-way by the OOM killer.

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "promptdistill/pipeline.h"

namespace promptdistill {
namespace {

//! Saturating arithmetic: a prompt length or batch from a caller can be anything.
int64_t add(int64_t a, int64_t b) { return a > INT64_MAX - b ? INT64_MAX : a + b; }
int64_t mul(int64_t a, int64_t b) {
  if (a <= 0 || b <= 0) return 0;
  return a > INT64_MAX / b ? INT64_MAX : a * b;
}
template <class... Rest>
int64_t mul(int64_t a, int64_t b, Rest... rest) {
  return mul(mul(a, b), rest...);
}

//! Tokens (each one KV head row of every KV head of every request, K and V) the caches hold at the
//! peak of a prefill, and the selection scratch, per method.
struct CacheTokens {
  int64_t tokens = 0;
  int64_t score_bytes = 0;
};

//! The scratch of one Select over `n` current tokens with `q_rows` query rows and `rows` score
//! rows: the query taps and a copy of the keys (the Eigen session's), per KV head an f32 copy of
//! its keys, the per-head sums, the row statistics and a chunk of probabilities (SnapKV/H2O),
//! and the raw, pooled and returned score rows with the indices and positions.
int64_t selection_bytes(const ModelConfig& m, Method method, int64_t rows, int64_t n,
                        int64_t q_rows, int64_t batch) {
  const int64_t f = 4, H = m.num_heads, D = m.head_dim;
  int64_t bytes = add(mul(q_rows, H, D, f), mul(n, m.num_kv_heads, D, f));
  bytes = add(bytes, mul(5, rows, n, f));  // raw, pooled, final scores; indices; positions
  if (method == Method::kSnapKV || method == Method::kH2O || method == Method::kFastKV) {
    bytes = add(bytes, mul(n, D, f));                               // one KV head's keys in f32
    bytes = add(bytes, mul(2, H, n, f));                            // per-head sums, group scores
    bytes = add(bytes, mul(2, H, q_rows, f));                       // row maxima and sums
    bytes = add(bytes, mul(std::min<int64_t>(q_rows, 256), n, f));  // a chunk of probabilities
  }
  return mul(bytes, batch);
}

}  // namespace

int64_t PrefillMemory::total() const noexcept { return add(add(activations, kv_cache), scores); }

PrefillMemory estimate_prefill_bytes(const ModelConfig& m, const PipelinePlan& plan,
                                     int64_t prompt_length,
                                     const PrefillMemoryModel& how) noexcept {
  PrefillMemory out;
  const int64_t n = std::max<int64_t>(prompt_length, 0), B = std::max<int64_t>(how.batch, 1);
  const int64_t e = std::max<int64_t>(how.element_bytes, 1), f = 4, rows = mul(B, n);
  const int64_t H = m.num_heads, Hkv = std::max<int64_t>(m.num_kv_heads, 1), D = m.head_dim,
                N = m.num_layers;
  const int64_t chunk = how.mlp_chunk_rows > 0 ? std::min(rows, how.mlp_chunk_rows) : rows;
  // x, the normed input and the attention output's projection; q and the attention output; k, v.
  out.activations = mul(rows, e, add(add(mul(3, m.hidden), mul(2, H, D)), mul(2, Hkv, D)));
  out.activations =
      add(out.activations, mul(chunk, e, add(mul(2, m.intermediate), m.hidden)));  // gate, up, down
  out.activations = add(out.activations, mul(rows, D, f));     // RoPE cos and sin
  out.activations = add(out.activations, mul(B, m.vocab, f));  // the first tokens' logits
  out.activations = add(out.activations, mul(how.attention_rows, n, f));
  const int64_t reserve = std::max<int64_t>(how.decode_reserve, 0), full = add(n, reserve);
  int64_t tokens = mul(N, full);  // full KV: every layer holds the prompt
  switch (plan.method) {
    case PipelineMethod::kFull: break;
    case PipelineMethod::kPromptDistill: {
      // Layers up to the first selection hold the prompt, the later ones at most the first
      // stage's kept tokens (later stages keep fewer); a truncating stage only lowers this.
      const int64_t r = plan.stages[0].layer, kept = kept_tokens(plan.stages[0].plan, n);
      tokens = add(mul(r + 1, full), mul(N - r - 1, add(kept, reserve)));
      if (how.budgets > 1) tokens = add(tokens, mul(r + 1, n));  // the sweep's shared copy
      out.scores = selection_bytes(m, Method::kPromptDistill, 1, n, 1,
                                   B);  // the first stage's is the largest
      break;
    }
    case PipelineMethod::kGemFilter: {
      // The filter pass keeps no cache (one layer's scratch); the kept ids are prefilled again.
      const int64_t kept = kept_tokens(plan.stages[0].plan, n);
      tokens = std::max(n, mul(N, add(kept, reserve)));
      out.scores = selection_bytes(m, Method::kGemFilter, 1, n, 1, B);
      break;
    }
    case PipelineMethod::kSnapKV:
    case PipelineMethod::kH2O: {
      if (!plan.compresses(n)) break;  // nothing is evicted
      const MethodConfig& c = plan.compression;
      const int64_t G =
          c.grouping == HeadGrouping::kPerQueryHead ? std::max<int64_t>(H / Hkv, 1) : 1;
      const int64_t kept = add(kept_tokens(plan.compression_plan, n), reserve);
      // Compressed layers keep `kept` tokens (G-times expanded per query head); the layer being
      // compressed holds the prompt and its compressed copy at once.
      tokens = add(add(mul(N - 1, kept, G), full), mul(kept, G));
      if (how.budgets > 1) tokens = add(tokens, mul(N, n));  // the sweep keeps every full cache
      const int64_t score_rows_ = score_rows(c.method, c.grouping, H, Hkv);
      const int64_t q_rows = c.method == Method::kSnapKV ? std::min<int64_t>(c.window, n) : n;
      out.scores = selection_bytes(m, c.method, score_rows_, n, q_rows, B);
      if (how.budgets > 1)
        out.scores = add(out.scores, mul(N, score_rows_, n, f, B));  // every layer's ranking
      break;
    }
    case PipelineMethod::kFastKV: {
      // Every layer's cache is compressed to its budget as the forward passes it (the layer being
      // compressed holds its input and the compressed copy at once); the layers after the TSP
      // layer run on the tokens it propagates.
      const MethodConfig& c = plan.compression;
      const int64_t G =
          c.grouping == HeadGrouping::kPerQueryHead ? std::max<int64_t>(H / Hkv, 1) : 1;
      int64_t current = n, largest_input = 0;
      tokens = 0;
      for (int64_t l = 0; l < N; ++l) {
        const FastKvLayer layer = plan.fastkv_layer(l, current);
        const int64_t kept = layer.compresses ? std::min(layer.budget, current) : current;
        tokens = add(tokens, mul(add(kept, reserve), G));
        largest_input = std::max(largest_input, current);
        current = std::max<int64_t>(layer.propagated, 1);
      }
      tokens = add(tokens, add(largest_input, reserve));
      if (how.budgets > 1) tokens = add(tokens, mul(N, n));  // a sweep keeps every full cache
      out.scores = selection_bytes(m, c.method, score_rows(c.method, c.grouping, H, Hkv), n,
                                   std::min<int64_t>(c.window, n), B);
      break;
    }
  }
  // Each layer's K and V buffers (and a scratch pair) are rounded up to a 256-byte allocation.
  out.kv_cache = add(mul(tokens, B, 2, Hkv, D, e), mul(add(N, 1), 2, 256));
  return out;
}

int64_t available_memory_bytes() noexcept {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return -1;
  char line[256];
  long long kib = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %lld kB", &kib) == 1) break;
  std::fclose(f);
  return kib >= 0 ? int64_t(kib) * 1024 : -1;
}

Status check_prefill_memory(const PrefillMemory& need, int64_t limit, const char* what,
                            const char* limit_source) noexcept {
  if (limit < 0 || need.total() <= limit) return Status::ok();
  const double mib = 1024.0 * 1024.0;
  return Status(StatusCode::kOutOfMemory,
                "%s needs about %.1f MiB (activations %.1f, KV cache %.1f, scores %.1f MiB) but "
                "%.1f MiB are available (%s)",
                what, double(need.total()) / mib, double(need.activations) / mib,
                double(need.kv_cache) / mib, double(need.scores) / mib, double(limit) / mib,
                limit_source);
}

}  // namespace promptdistill
