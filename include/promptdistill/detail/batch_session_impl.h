// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! The implementation of `BatchSession<Backend, T>` (batch_session.h). Included only by the
//! translation units that instantiate it (cpu_reference/batch_session_ref.cpp for the CPU,
//! cuda/session.cu for CUDA), so both backends run exactly this code.

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <new>
#include <numeric>
#include <tuple>
#include <vector>

#include "promptdistill/batch_session.h"
#include "promptdistill/detail/numerics.h"

namespace promptdistill {

template <class Backend, class T>
struct BatchSession<Backend, T>::Impl {
  using Clock = std::chrono::steady_clock;
  struct Buf {
    void* p = nullptr;
    std::size_t bytes = 0;
  };
  struct LayerW {
    Buf attn_norm, wq, wk, wv, bq, bk, bv, wo, mlp_norm, gate, up, down;
  };
  struct Cache {
    Buf k, v;
    int64_t capacity = 0;
    std::vector<int64_t> len;  //!< per request
  };
  using PlanKey = std::tuple<int64_t, int64_t, int64_t, bool, bool, int64_t>;  // rows, in, out, bias, residual, x stride

  BatchSession* owner = nullptr;
  const ModelWeights* w = nullptr;
  ModelConfig c;
  BatchSessionOptions opt;
  Stream stream = nullptr;

  std::vector<LayerW> layers;
  Buf embed, final_norm, lm_head;
  std::vector<Cache> caches;
  Cache scratch_cache;  // GemFilter's filter pass: one layer's K/V at a time, nothing kept
  // Activations, sized for the largest padded batch seen.
  Buf x, x2, h, q, kn, vn, attn, gate, up, cos, sin, ids, qsel, last, last_f32, logits;
  Buf lens, kv_lens, q_lens, positions, sel_idx, sel_counts, sel_pos, new_lens, gather_idx, gather_counts;
  Buf workspace;
  std::map<PlanKey, std::unique_ptr<typename Backend::template LinearPlan<T>>> plans;
  std::map<PlanKey, std::unique_ptr<typename Backend::template LinearPlan<float>>> head_plans;
  std::vector<int64_t> next_position;
  std::vector<int32_t> uploaded_q_lens, uploaded_kv_lens;  //!< what q_lens / kv_lens hold on the device
  int64_t kv_bytes = 0, peak_kv = 0;

  int64_t B() const { return owner->batch_; }
  int64_t H() const { return c.num_heads; }
  int64_t Hkv() const { return c.num_kv_heads; }
  int64_t D() const { return c.head_dim; }

  // ---- memory ------------------------------------------------------------------------------------

  Status alloc(Buf* b, std::size_t bytes) {
    release(b);
    bytes = WorkspacePlanner::round_up(bytes < 1 ? 1 : bytes);
    PD_RETURN_IF_ERROR(Backend::allocate(bytes, &b->p));
    b->bytes = bytes;
    owner->held_ += int64_t(bytes);
    owner->peak_ = std::max(owner->peak_, owner->held_);
    return Backend::fill_zero(b->p, bytes, stream);
  }
  void release(Buf* b) {
    if (b->p == nullptr) return;
    Backend::release(b->p);
    owner->held_ -= int64_t(b->bytes);
    *b = Buf{};
  }
  //! Grows `b` to at least `bytes` (contents are not kept).
  Status ensure(Buf* b, std::size_t bytes) { return b->bytes >= bytes && b->p ? Status::ok() : alloc(b, bytes); }
  template <class U>
  Status upload(Buf* b, const std::vector<U>& host) {
    PD_RETURN_IF_ERROR(ensure(b, host.size() * sizeof(U)));
    return host.empty() ? Status::ok() : Backend::upload(b->p, host.data(), host.size() * sizeof(U), stream);
  }
  template <class U>
  Status download(const Buf& b, std::size_t count, std::vector<U>* host) {
    host->resize(count);
    return count == 0 ? Status::ok() : Backend::download(host->data(), b.p, count * sizeof(U), stream);
  }
  template <class U>
  static U* as(const Buf& b) {
    return static_cast<U*>(b.p);
  }
  Status upload_weights(Buf* b, const std::vector<float>& src) {
    std::vector<T> host(src.size());
    for (std::size_t i = 0; i < src.size(); ++i) host[i] = num::from_f32<T>(src[i]);
    PD_RETURN_IF_ERROR(upload(b, host));
    owner->weight_bytes_ += int64_t(b->bytes);
    return Status::ok();
  }
  Workspace ws() const { return Workspace{workspace.p, workspace.bytes}; }

  template <class Op, class Args>
  Status run(const Args& a) {
    PD_RETURN_IF_ERROR(Op::can_implement(a));
    const std::size_t bytes = Op::workspace_size(a);
    PD_RETURN_IF_ERROR(ensure(&workspace, bytes));
    PD_RETURN_IF_ERROR(Op::run(a, ws(), stream));
    // Only ops with scratch carry a status word (the workspace start may otherwise hold another
    // op's scratch, e.g. cuBLASLt's).
    return opt.check_every_op && bytes > 0 ? Backend::device_status(ws(), stream) : Status::ok();
  }
  //! Runs an op whose per-request data the device validates, then reads its status word.
  template <class Op, class Args>
  Status run_checked(const Args& a) {
    PD_RETURN_IF_ERROR(run<Op>(a));
    return Backend::device_status(ws(), stream);
  }

  // ---- caches ------------------------------------------------------------------------------------

  KvCacheView<T> kview(const Cache& cache, const Buf& b) const {
    return KvCacheView<T>::contiguous_bshd(as<T>(b), B(), cache.capacity, Hkv(), D());
  }
  std::size_t cache_bytes(int64_t capacity) const { return std::size_t(B() * capacity * Hkv() * D()) * sizeof(T); }
  void account_kv() {
    int64_t total = 0;
    for (const Cache& cc : caches) total += int64_t(cc.k.bytes + cc.v.bytes);
    total += int64_t(scratch_cache.k.bytes + scratch_cache.v.bytes);
    kv_bytes = total;
    peak_kv = std::max(peak_kv, kv_bytes);
  }
  //! Re-allocates `cache` to `capacity` tokens per request, keeping the first min(old, new) tokens.
  Status resize_cache(Cache* cache, int64_t capacity) {
    if (capacity == cache->capacity && cache->k.p) return Status::ok();
    const std::size_t row = std::size_t(Hkv() * D()) * sizeof(T);
    const int64_t keep = std::min(capacity, cache->capacity);
    for (Buf* part : {&cache->k, &cache->v}) {
      Buf fresh;
      PD_RETURN_IF_ERROR(alloc(&fresh, cache_bytes(capacity)));
      if (part->p && keep > 0)
        PD_RETURN_IF_ERROR(Backend::copy_rows(fresh.p, std::size_t(capacity) * row, part->p, std::size_t(cache->capacity) * row,
                                              std::size_t(keep) * row, std::size_t(B()), stream));
      release(part);
      *part = fresh;
    }
    cache->capacity = capacity;
    account_kv();
    return Status::ok();
  }

  // ---- linear layers -------------------------------------------------------------------------------

  template <class U>
  Status linear_with(std::map<PlanKey, std::unique_ptr<typename Backend::template LinearPlan<U>>>& cache, const U* in_rows,
                     int64_t rows, int64_t in, const U* wt, int64_t out, const U* bias, U* y, bool residual) {
    if (rows == 0) return Status::ok();
    const PlanKey key{rows, in, out, bias != nullptr, residual, in};
    auto it = cache.find(key);
    if (it == cache.end()) {
      auto plan = std::make_unique<typename Backend::template LinearPlan<U>>();
      LinearShape shape;
      shape.rows = rows;
      shape.in = in;
      shape.out = out;
      shape.bias = bias != nullptr;
      shape.residual = residual;
      PD_RETURN_IF_ERROR(Backend::template LinearPlan<U>::create(shape, plan.get()));
      it = cache.emplace(key, std::move(plan)).first;
    }
    LinearArgs<U> a;
    a.x = make_view<const U>(in_rows, rows, in);
    a.w = make_view<const U>(wt, out, in);
    if (bias) a.bias = make_view<const U>(bias, out);
    if (residual) a.residual = make_view<const U>(y, rows, out);
    a.y = make_view<U>(y, rows, out);
    PD_RETURN_IF_ERROR(ensure(&workspace, it->second->workspace_size()));
    return it->second->run(a, ws(), stream);
  }
  Status linear(const T* x_, int64_t rows, int64_t in, const Buf& wt, int64_t out, const Buf& bias, T* y, bool residual) {
    return linear_with<T>(plans, x_, rows, in, as<const T>(wt), out, bias.p ? as<const T>(bias) : nullptr, y, residual);
  }

  // ---- the decoder -------------------------------------------------------------------------------------

  //! Sizes the activations for B x n padded rows.
  Status reserve_rows(int64_t n) {
    const std::size_t R = std::size_t(B() * n), es = sizeof(T);
    const std::size_t chunk = std::size_t(std::min<int64_t>(int64_t(R), opt.mlp_chunk_rows));
    PD_RETURN_IF_ERROR(ensure(&x, R * std::size_t(c.hidden) * es));
    PD_RETURN_IF_ERROR(ensure(&x2, R * std::size_t(c.hidden) * es));
    PD_RETURN_IF_ERROR(ensure(&h, R * std::size_t(c.hidden) * es));
    PD_RETURN_IF_ERROR(ensure(&q, R * std::size_t(H() * D()) * es));
    PD_RETURN_IF_ERROR(ensure(&attn, R * std::size_t(H() * D()) * es));
    PD_RETURN_IF_ERROR(ensure(&kn, R * std::size_t(Hkv() * D()) * es));
    PD_RETURN_IF_ERROR(ensure(&vn, R * std::size_t(Hkv() * D()) * es));
    PD_RETURN_IF_ERROR(ensure(&gate, chunk * std::size_t(c.intermediate) * es));
    PD_RETURN_IF_ERROR(ensure(&up, chunk * std::size_t(c.intermediate) * es));
    return Status::ok();
  }

  //! cos/sin of every padded row (rows past a request's tokens get position 0).
  Status upload_rope(const std::vector<std::vector<int32_t>>& pos, int64_t n, const std::vector<int64_t>& total) {
    const std::size_t half = std::size_t(D() / 2);
    std::vector<float> cs(std::size_t(B() * n) * half, 1.0f), sn(cs.size(), 0.0f), tc, ts;
    for (int64_t b = 0; b < B(); ++b) {
      const auto& p = pos[std::size_t(b)];
      PD_RETURN_IF_ERROR(rope_tables(c, p.data(), int64_t(p.size()), total[std::size_t(b)], &tc, &ts));
      std::copy(tc.begin(), tc.end(), cs.begin() + std::ptrdiff_t(std::size_t(b * n) * half));
      std::copy(ts.begin(), ts.end(), sn.begin() + std::ptrdiff_t(std::size_t(b * n) * half));
    }
    PD_RETURN_IF_ERROR(upload(&cos, cs));
    return upload(&sin, sn);
  }

  //! Layer l over the B x n padded rows of x; request b has new_rows[b] new tokens, appended to
  //! `cache` after its current lengths. cos/sin and the row counts must be uploaded.
  Status layer(int64_t l, int64_t n, Cache* cache, const std::vector<int64_t>& new_rows) {
    const LayerW& L = layers[std::size_t(l)];
    const int64_t R = B() * n, hd = c.hidden, qd = H() * D(), kvd = Hkv() * D();
    int64_t need = 0;
    std::vector<int32_t> ql(static_cast<std::size_t>(B())), kl(static_cast<std::size_t>(B()));
    for (int64_t b = 0; b < B(); ++b) {
      ql[std::size_t(b)] = int32_t(new_rows[std::size_t(b)]);
      kl[std::size_t(b)] = int32_t(cache->len[std::size_t(b)] + new_rows[std::size_t(b)]);
      need = std::max<int64_t>(need, kl[std::size_t(b)]);
    }
    if (need > cache->capacity) PD_RETURN_IF_ERROR(resize_cache(cache, std::max(need + opt.decode_reserve, 2 * cache->capacity)));
    // Consecutive layers usually share their lengths (a prefill stage; a decode step over equally
    // long caches): upload only when they change.
    if (ql != uploaded_q_lens || !q_lens.p) PD_RETURN_IF_ERROR(upload(&q_lens, ql));
    if (kl != uploaded_kv_lens || !kv_lens.p) PD_RETURN_IF_ERROR(upload(&kv_lens, kl));
    uploaded_q_lens = ql;
    uploaded_kv_lens = kl;

    RmsNormArgs<T> norm;
    norm.x = make_view<const T>(as<const T>(x), R, hd);
    norm.weight = make_view<const T>(as<const T>(L.attn_norm), hd);
    norm.eps = float(c.rms_eps);
    norm.out = make_view<T>(as<T>(h), R, hd);
    PD_RETURN_IF_ERROR(run<typename Backend::template RmsNorm<T>>(norm));
    PD_RETURN_IF_ERROR(linear(as<const T>(h), R, hd, L.wq, qd, L.bq, as<T>(q), false));
    PD_RETURN_IF_ERROR(linear(as<const T>(h), R, hd, L.wk, kvd, L.bk, as<T>(kn), false));
    PD_RETURN_IF_ERROR(linear(as<const T>(h), R, hd, L.wv, kvd, L.bv, as<T>(vn), false));
    for (auto [buf, heads] : {std::pair<Buf*, int64_t>{&q, H()}, std::pair<Buf*, int64_t>{&kn, Hkv()}}) {
      RopeArgs<T> rope;
      rope.x = make_view<T>(as<T>(*buf), R, heads, D());
      rope.cos = make_view<const float>(as<const float>(cos), R, D() / 2);
      rope.sin = make_view<const float>(as<const float>(sin), R, D() / 2);
      PD_RETURN_IF_ERROR(run<typename Backend::template Rope<T>>(rope));
    }
    AppendKvArgs<T> app;
    app.k_new = make_view<const T>(as<const T>(kn), B(), n, Hkv(), D());
    app.v_new = make_view<const T>(as<const T>(vn), B(), n, Hkv(), D());
    app.k = kview(*cache, cache->k);
    app.v = kview(*cache, cache->v);
    app.q_lens = as<const int32_t>(q_lens);
    app.kv_lens = as<const int32_t>(kv_lens);
    PD_RETURN_IF_ERROR(run<typename Backend::template AppendKv<T>>(app));
    AttentionArgs<T> at;
    at.algo = opt.attention;
    at.q = make_view<const T>(as<const T>(q), B(), n, H(), D());
    at.k = kview(*cache, cache->k);
    at.v = kview(*cache, cache->v);
    at.q_lens = as<const int32_t>(q_lens);
    at.kv_lens = as<const int32_t>(kv_lens);
    at.max_kv_len = cache->capacity;
    at.out = make_view<T>(as<T>(attn), B(), n, H(), D());
    PD_RETURN_IF_ERROR(run<typename Backend::template Attention<T>>(at));
    for (int64_t b = 0; b < B(); ++b) cache->len[std::size_t(b)] = kl[std::size_t(b)];
    PD_RETURN_IF_ERROR(linear(as<const T>(attn), R, qd, L.wo, hd, Buf{}, as<T>(x), true));

    norm.weight = make_view<const T>(as<const T>(L.mlp_norm), hd);
    PD_RETURN_IF_ERROR(run<typename Backend::template RmsNorm<T>>(norm));
    for (int64_t r0 = 0; r0 < R; r0 += opt.mlp_chunk_rows) {
      const int64_t rows = std::min(opt.mlp_chunk_rows, R - r0);
      PD_RETURN_IF_ERROR(linear(as<const T>(h) + r0 * hd, rows, hd, L.gate, c.intermediate, Buf{}, as<T>(gate), false));
      PD_RETURN_IF_ERROR(linear(as<const T>(h) + r0 * hd, rows, hd, L.up, c.intermediate, Buf{}, as<T>(up), false));
      SwiGluArgs<T> act;
      act.gate = make_view<const T>(as<const T>(gate), rows, c.intermediate);
      act.up = make_view<const T>(as<const T>(up), rows, c.intermediate);
      act.out = make_view<T>(as<T>(gate), rows, c.intermediate);
      PD_RETURN_IF_ERROR(run<typename Backend::template SwiGlu<T>>(act));
      PD_RETURN_IF_ERROR(linear(as<const T>(gate), rows, c.intermediate, L.down, hd, Buf{}, as<T>(x) + r0 * hd, true));
    }
    return Status::ok();
  }

  //! Copies rows rows[b] (same count per request) of src [B, n, width] into dst [B, count, width].
  Status gather_rows(const T* src, int64_t n, int64_t width, const std::vector<std::vector<int32_t>>& rows, T* dst) {
    const int64_t count = int64_t(rows[0].size());
    std::vector<int32_t> idx, counts(static_cast<std::size_t>(B()), static_cast<int32_t>(count));
    for (const auto& r : rows) idx.insert(idx.end(), r.begin(), r.end());
    PD_RETURN_IF_ERROR(upload(&gather_idx, idx));
    PD_RETURN_IF_ERROR(upload(&gather_counts, counts));
    GatherArgs<T> g;
    g.src = make_view<const T>(src, B(), n, width);
    g.indices = make_view<const int32_t>(as<const int32_t>(gather_idx), B(), 1, count);
    g.counts = make_view<const int32_t>(as<const int32_t>(gather_counts), B(), 1);
    g.dst = make_view<T>(dst, B(), count, width);
    return run_checked<typename Backend::template Gather<T>>(g);
  }

  //! Greedy next token of every request from row rows[b][0] of x [B, n, hidden].
  Status next_tokens(int64_t n, const std::vector<int64_t>& last_row, std::vector<int32_t>* out) {
    std::vector<std::vector<int32_t>> rows;
    for (int64_t r : last_row) rows.push_back({int32_t(r)});
    PD_RETURN_IF_ERROR(ensure(&last, std::size_t(B() * c.hidden) * sizeof(T)));
    PD_RETURN_IF_ERROR(ensure(&last_f32, std::size_t(B() * c.hidden) * sizeof(float)));
    PD_RETURN_IF_ERROR(ensure(&logits, std::size_t(B() * c.vocab) * sizeof(float)));
    PD_RETURN_IF_ERROR(gather_rows(as<const T>(x), n, c.hidden, rows, as<T>(h)));
    RmsNormArgs<T> norm;
    norm.x = make_view<const T>(as<const T>(h), B(), c.hidden);
    norm.weight = make_view<const T>(as<const T>(final_norm), c.hidden);
    norm.eps = float(c.rms_eps);
    norm.out = make_view<T>(as<T>(last), B(), c.hidden);
    PD_RETURN_IF_ERROR(run<typename Backend::template RmsNorm<T>>(norm));
    PD_RETURN_IF_ERROR(Backend::template to_f32<T>(as<const T>(last), as<float>(last_f32), B() * c.hidden, stream));
    PD_RETURN_IF_ERROR(linear_with<float>(head_plans, as<const float>(last_f32), B(), c.hidden, as<const float>(lm_head),
                                          c.vocab, nullptr, as<float>(logits), false));
    std::vector<float> host;
    PD_RETURN_IF_ERROR(download(logits, std::size_t(B() * c.vocab), &host));
    out->assign(std::size_t(B()), 0);
    for (int64_t b = 0; b < B(); ++b) {
      const float* row = host.data() + b * c.vocab;
      int32_t best = 0;
      for (int64_t v = 1; v < c.vocab; ++v)
        if (row[v] > row[best]) best = int32_t(v);
      (*out)[std::size_t(b)] = best;
    }
    return Status::ok();
  }

  Status embed_ids(const std::vector<std::vector<int32_t>>& prompts, int64_t n) {
    std::vector<int32_t> padded(std::size_t(B() * n), 0);
    for (int64_t b = 0; b < B(); ++b)
      std::copy(prompts[std::size_t(b)].begin(), prompts[std::size_t(b)].end(), padded.begin() + std::ptrdiff_t(b * n));
    PD_RETURN_IF_ERROR(upload(&ids, padded));
    EmbedArgs<T> e;
    e.table = make_view<const T>(as<const T>(embed), c.vocab, c.hidden);
    e.ids = make_view<const int32_t>(as<const int32_t>(ids), B() * n);
    e.out = make_view<T>(as<T>(x), B() * n, c.hidden);
    // The ids were checked on the host (prefill, decode_step): no status read, no sync.
    return run<typename Backend::template Embed<T>>(e);
  }

  //! One selection through the Selector API. q holds q_rows rows per request ([B, q_rows, H, D]);
  //! the keys are `cache`'s; lengths are the current token counts. With `gather_hidden`, the kept
  //! rows of x are written to x2 ([B, n, hidden]). Results come back to the host.
  struct Picked {
    std::vector<std::vector<std::vector<int32_t>>> idx, pos;  // [b][row][i]
  };
  Status select(const MethodConfig& m, const T* qv, int64_t q_rows, const Cache& cache, const std::vector<int64_t>& lengths,
                int64_t n, const std::vector<std::vector<int32_t>>& positions_host, bool gather_hidden, Picked* out) {
    const int64_t R = score_rows(m.method, m.grouping, H(), Hkv());
    std::vector<int32_t> l32(lengths.begin(), lengths.end()), pos(std::size_t(B() * n), 0);
    for (int64_t b = 0; b < B(); ++b)
      std::copy(positions_host[std::size_t(b)].begin(), positions_host[std::size_t(b)].end(), pos.begin() + std::ptrdiff_t(b * n));
    PD_RETURN_IF_ERROR(upload(&lens, l32));
    PD_RETURN_IF_ERROR(upload(&positions, pos));
    PD_RETURN_IF_ERROR(ensure(&sel_idx, std::size_t(B() * R * n) * sizeof(int32_t)));
    PD_RETURN_IF_ERROR(ensure(&sel_pos, std::size_t(B() * R * n) * sizeof(int32_t)));
    PD_RETURN_IF_ERROR(ensure(&sel_counts, std::size_t(B() * R) * sizeof(int32_t)));
    SelectArgs<T> a;
    a.config = m;
    a.q = make_view<const T>(qv, B(), q_rows, H(), D());
    a.k = KvCacheView<const T>(kview(cache, cache.k));
    a.lengths = as<const int32_t>(lens);
    a.max_length = n;
    a.positions_in = make_view<const int32_t>(as<const int32_t>(positions), B(), n);
    a.indices = make_view<int32_t>(as<int32_t>(sel_idx), B(), R, n);
    a.counts = make_view<int32_t>(as<int32_t>(sel_counts), B(), R);
    a.positions = make_view<int32_t>(as<int32_t>(sel_pos), B(), R, n);
    if (gather_hidden) {
      a.hidden_in = make_view<const T>(as<const T>(x), B(), n, c.hidden);
      a.hidden_out = make_view<T>(as<T>(x2), B(), n, c.hidden);
    }
    PD_RETURN_IF_ERROR(run_checked<typename Backend::template Select<T>>(a));
    std::vector<int32_t> counts, idx, pp;
    PD_RETURN_IF_ERROR(download(sel_counts, std::size_t(B() * R), &counts));
    PD_RETURN_IF_ERROR(download(sel_idx, std::size_t(B() * R * n), &idx));
    PD_RETURN_IF_ERROR(download(sel_pos, std::size_t(B() * R * n), &pp));
    out->idx.assign(std::size_t(B()), {});
    out->pos.assign(std::size_t(B()), {});
    for (int64_t b = 0; b < B(); ++b)
      for (int64_t r = 0; r < R; ++r) {
        const std::size_t base = std::size_t((b * R + r) * n), cnt = std::size_t(counts[std::size_t(b * R + r)]);
        out->idx[std::size_t(b)].emplace_back(idx.begin() + std::ptrdiff_t(base), idx.begin() + std::ptrdiff_t(base + cnt));
        out->pos[std::size_t(b)].emplace_back(pp.begin() + std::ptrdiff_t(base), pp.begin() + std::ptrdiff_t(base + cnt));
      }
    return Status::ok();
  }

  //! Keeps, in layer `cache`, the tokens sel[b][row] (one row: every head; H_kv rows: per head),
  //! then shrinks the allocation to the longest request plus the decode reserve.
  Status compact(Cache* cache, const std::vector<std::vector<std::vector<int32_t>>>& sel) {
    const int64_t R = int64_t(sel[0].size());
    int64_t cap = 0;
    for (const auto& rows : sel) cap = std::max<int64_t>(cap, int64_t(rows[0].size()));
    std::vector<int32_t> idx(std::size_t(B() * R * std::max<int64_t>(cap, 1)), 0), counts(std::size_t(B() * R));
    std::vector<int32_t> l32(cache->len.begin(), cache->len.end());
    for (int64_t b = 0; b < B(); ++b)
      for (int64_t r = 0; r < R; ++r) {
        const auto& s = sel[std::size_t(b)][std::size_t(r)];
        std::copy(s.begin(), s.end(), idx.begin() + std::ptrdiff_t((b * R + r) * std::max<int64_t>(cap, 1)));
        counts[std::size_t(b * R + r)] = int32_t(s.size());
      }
    PD_RETURN_IF_ERROR(upload(&gather_idx, idx));
    PD_RETURN_IF_ERROR(upload(&gather_counts, counts));
    PD_RETURN_IF_ERROR(upload(&lens, l32));
    PD_RETURN_IF_ERROR(ensure(&new_lens, std::size_t(B()) * sizeof(int32_t)));
    CompactKvArgs<T> a;
    a.k = kview(*cache, cache->k);
    a.v = kview(*cache, cache->v);
    a.seq_lens = as<const int32_t>(lens);
    a.indices = make_view<const int32_t>(as<const int32_t>(gather_idx), B(), R, std::max<int64_t>(cap, 1));
    a.counts = make_view<const int32_t>(as<const int32_t>(gather_counts), B(), R);
    a.new_lengths = as<int32_t>(new_lens);
    PD_RETURN_IF_ERROR(run_checked<typename Backend::template CompactKv<T>>(a));
    for (int64_t b = 0; b < B(); ++b) cache->len[std::size_t(b)] = int64_t(sel[std::size_t(b)][0].size());
    return resize_cache(cache, cap + opt.decode_reserve);
  }

  // ---- pipelines -----------------------------------------------------------------------------------------

  //! Empties every layer's cache; layers allocate what they need when they first run, so the
  //! layers after a selection only ever hold the kept tokens.
  void new_caches() {
    for (Cache& cc : caches) {
      release(&cc.k);
      release(&cc.v);
      cc.capacity = 0;
      cc.len.assign(std::size_t(B()), 0);
    }
    scratch_cache.len.assign(std::size_t(B()), 0);
    kv_bytes = peak_kv = 0;
  }

  static std::vector<int32_t> arange(int64_t n) {
    std::vector<int32_t> v(static_cast<std::size_t>(n));
    std::iota(v.begin(), v.end(), 0);
    return v;
  }
  static std::vector<int64_t> sizes_of(const std::vector<std::vector<int32_t>>& v) {
    std::vector<int64_t> s;
    for (const auto& e : v) s.push_back(int64_t(e.size()));
    return s;
  }
  static int64_t max_of(const std::vector<int64_t>& v) { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }

  //! Bytes a prefill of `prompts` with `cfg` will allocate at its peak: the padded activations
  //! and the largest set of caches the method holds at once (a slight over-estimate).
  int64_t estimate_prefill_bytes(const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig& cfg) const {
    const int64_t n = max_of(sizes_of(prompts)), rows = B() * n, es = int64_t(sizeof(T));
    const int64_t chunk = std::min(rows, opt.mlp_chunk_rows);
    const int64_t activations = rows * es * (3 * c.hidden + 2 * H() * D() + 2 * Hkv() * D()) + 2 * chunk * c.intermediate * es +
                                rows * D() * int64_t(sizeof(float)) + B() * c.vocab * int64_t(sizeof(float));
    const int64_t token_bytes = B() * 2 * Hkv() * D() * es, N = c.num_layers, reserve = opt.decode_reserve;
    int64_t tokens = N * (n + reserve);  // full KV, SnapKV, H2O (compression happens after each layer)
    if (cfg.method == PipelineMethod::kPromptDistill) {
      const int64_t r = cfg.selection_layers[0], k = std::min(n, cfg.n_topks[0] + 1);
      tokens = (r + 1) * (n + reserve) + (N - r - 1) * (k + reserve);
    } else if (cfg.method == PipelineMethod::kGemFilter) {
      tokens = std::max(n, N * (std::min(n, cfg.n_topks[0]) + reserve));
    }
    return activations + tokens * token_bytes;
  }

  //! Every prefill's start: activations for the padded batch, empty caches, the embedded
  //! prompts and their RoPE tables at positions 0..L_b-1 (returned in `pos`).
  Status start_prompts(const std::vector<std::vector<int32_t>>& prompts, std::vector<std::vector<int32_t>>* pos) {
    const std::vector<int64_t> L = sizes_of(prompts);
    const int64_t n = max_of(L);
    pos->clear();
    for (int64_t l : L) pos->push_back(arange(l));
    PD_RETURN_IF_ERROR(reserve_rows(n));
    new_caches();
    PD_RETURN_IF_ERROR(embed_ids(prompts, n));
    return upload_rope(*pos, n, L);
  }

  //! A full prefill of `prompts` (positions 0..L_b-1) through every layer; optional SnapKV/H2O
  //! compression after each layer. Returns the first tokens.
  Status full_prefill(const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig* compress_cfg,
                      std::vector<PrefillResult>* res, std::vector<int32_t>* first) {
    const std::vector<int64_t> L = sizes_of(prompts);
    const int64_t n = max_of(L);
    std::vector<std::vector<int32_t>> pos;
    PD_RETURN_IF_ERROR(start_prompts(prompts, &pos));
    MethodConfig m;
    int64_t q_rows = 0;
    // SnapKV/H2O compress a request only when L >= C (shorter ones keep everything, which is
    // also what the selection returns for them).
    if (compress_cfg && max_of(L) < compress_cfg->capacity) compress_cfg = nullptr;
    if (compress_cfg) {
      const bool snap = compress_cfg->method == PipelineMethod::kSnapKV;
      m.method = snap ? Method::kSnapKV : Method::kH2O;
      m.budget = compress_cfg->capacity;
      m.window = compress_cfg->window;
      m.pool = compress_cfg->pool;
      m.pool_kernel = compress_cfg->pool_kernel;
      m.grouping = compress_cfg->grouping;
      q_rows = snap ? m.window : n;
      PD_RETURN_IF_ERROR(ensure(&qsel, std::size_t(B() * q_rows * H() * D()) * sizeof(T)));
    }
    for (int64_t l = 0; l < c.num_layers; ++l) {
      PD_RETURN_IF_ERROR(layer(l, n, &caches[std::size_t(l)], L));
      account_kv();
      if (!compress_cfg) continue;
      const T* qv = as<const T>(q);
      if (m.method == Method::kSnapKV) {  // the last W queries of every request (rows before 0 are ignored)
        std::vector<std::vector<int32_t>> rows(static_cast<std::size_t>(B()));
        for (int64_t b = 0; b < B(); ++b)
          for (int64_t i = 0; i < q_rows; ++i) rows[std::size_t(b)].push_back(int32_t(std::max<int64_t>(L[std::size_t(b)] - q_rows + i, 0)));
        PD_RETURN_IF_ERROR(gather_rows(as<const T>(q), n, H() * D(), rows, as<T>(qsel)));
        qv = as<const T>(qsel);
      }
      Picked p;
      PD_RETURN_IF_ERROR(select(m, qv, q_rows, caches[std::size_t(l)], L, n, pos, false, &p));
      PD_RETURN_IF_ERROR(compact(&caches[std::size_t(l)], p.idx));
      for (int64_t b = 0; b < B(); ++b) {
        if (L[std::size_t(b)] < compress_cfg->capacity) continue;
        (*res)[std::size_t(b)].retained.push_back(int64_t(p.idx[std::size_t(b)][0].size()));
        (*res)[std::size_t(b)].selected.push_back(p.idx[std::size_t(b)][0]);
      }
    }
    std::vector<int64_t> last_row;
    for (int64_t l : L) last_row.push_back(l - 1);
    return next_tokens(n, last_row, first);
  }

  Status promptdistill(const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig& cfg,
                       std::vector<PrefillResult>* res, std::vector<int32_t>* first) {
    const std::vector<int64_t> L = sizes_of(prompts);
    std::vector<int64_t> cur = L;
    int64_t n = max_of(L);
    std::vector<std::vector<int32_t>> pos;
    PD_RETURN_IF_ERROR(start_prompts(prompts, &pos));
    PD_RETURN_IF_ERROR(ensure(&qsel, std::size_t(B() * H() * D()) * sizeof(T)));
    std::vector<std::vector<std::vector<std::vector<int32_t>>>> stage_maps;  // truncating stages (after-last-layer mode)
    std::size_t stage = 0;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      PD_RETURN_IF_ERROR(layer(l, n, &caches[std::size_t(l)], cur));
      account_kv();
      if (!(stage < cfg.selection_layers.size() && l == cfg.selection_layers[stage])) continue;
      std::vector<std::vector<int32_t>> last_rows;
      for (int64_t v : cur) last_rows.push_back({int32_t(v - 1)});
      PD_RETURN_IF_ERROR(gather_rows(as<const T>(q), n, H() * D(), last_rows, as<T>(qsel)));
      MethodConfig m;
      m.method = Method::kPromptDistill;
      m.budget = cfg.n_topks[stage];
      Picked p;
      PD_RETURN_IF_ERROR(select(m, as<const T>(qsel), 1, caches[std::size_t(l)], cur, n, pos, true, &p));
      std::vector<int64_t> kept;
      for (int64_t b = 0; b < B(); ++b) {
        kept.push_back(int64_t(p.idx[std::size_t(b)][0].size()));
        pos[std::size_t(b)] = p.pos[std::size_t(b)][0];
        (*res)[std::size_t(b)].retained.push_back(kept.back());
        (*res)[std::size_t(b)].selected.push_back(pos[std::size_t(b)]);
      }
      const int64_t n_new = max_of(kept);
      // x2 holds the kept rows at pitch n; pack them at pitch n_new into x.
      const std::size_t row = std::size_t(c.hidden) * sizeof(T);
      PD_RETURN_IF_ERROR(Backend::copy_rows(x.p, std::size_t(n_new) * row, x2.p, std::size_t(n) * row, std::size_t(n_new) * row,
                                            std::size_t(B()), stream));
      const bool truncating = cfg.cache_truncation_end == -1 || int64_t(stage) < cfg.cache_truncation_end;
      if (truncating) {
        std::vector<std::vector<std::vector<int32_t>>> map;
        for (int64_t b = 0; b < B(); ++b) map.push_back({p.idx[std::size_t(b)][0]});
        if (cfg.truncate_after_last_layer) {
          stage_maps.push_back(map);
        } else {
          for (int64_t ll = 0; ll <= l; ++ll) PD_RETURN_IF_ERROR(compact(&caches[std::size_t(ll)], map));
        }
      }
      cur = kept;
      n = n_new;
      PD_RETURN_IF_ERROR(upload_rope(pos, n, L));
      ++stage;
    }
    // Reference order: compose each truncating stage's map with the later ones, after the last layer.
    for (std::size_t s = 0; s < stage_maps.size(); ++s) {
      auto map = stage_maps.back();
      for (std::size_t j = stage_maps.size() - 1; j-- > s;)
        for (int64_t b = 0; b < B(); ++b)
          for (auto& v : map[std::size_t(b)][0]) v = stage_maps[j][std::size_t(b)][0][std::size_t(v)];
      const int64_t lo = s == 0 ? 0 : cfg.selection_layers[s - 1] + 1;
      for (int64_t ll = lo; ll <= cfg.selection_layers[s]; ++ll) PD_RETURN_IF_ERROR(compact(&caches[std::size_t(ll)], map));
    }
    std::vector<int64_t> last_row;
    for (int64_t v : cur) last_row.push_back(v - 1);
    return next_tokens(n, last_row, first);
  }

  Status gemfilter(const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig& cfg, std::vector<PrefillResult>* res,
                   std::vector<int32_t>* first) {
    const std::vector<int64_t> L = sizes_of(prompts);
    const int64_t n = max_of(L), r = cfg.selection_layers[0];
    std::vector<std::vector<int32_t>> pos;
    PD_RETURN_IF_ERROR(start_prompts(prompts, &pos));
    PD_RETURN_IF_ERROR(resize_cache(&scratch_cache, n));
    for (int64_t l = 0; l <= r; ++l) {  // filter pass: the scratch cache is overwritten layer after layer
      std::fill(scratch_cache.len.begin(), scratch_cache.len.end(), 0);
      PD_RETURN_IF_ERROR(layer(l, n, &scratch_cache, L));
    }
    std::vector<std::vector<int32_t>> last_rows;
    for (int64_t v : L) last_rows.push_back({int32_t(v - 1)});
    PD_RETURN_IF_ERROR(ensure(&qsel, std::size_t(B() * H() * D()) * sizeof(T)));
    PD_RETURN_IF_ERROR(gather_rows(as<const T>(q), n, H() * D(), last_rows, as<T>(qsel)));
    MethodConfig m;
    m.method = Method::kGemFilter;
    m.budget = cfg.n_topks[0];
    Picked p;
    PD_RETURN_IF_ERROR(select(m, as<const T>(qsel), 1, scratch_cache, L, n, pos, false, &p));
    release(&scratch_cache.k);
    release(&scratch_cache.v);
    scratch_cache.capacity = 0;
    std::vector<std::vector<int32_t>> kept_ids;
    for (int64_t b = 0; b < B(); ++b) {
      const auto& idx = p.idx[std::size_t(b)][0];
      std::vector<int32_t> ids_b;
      for (int32_t i : idx) ids_b.push_back(prompts[std::size_t(b)][std::size_t(i)]);
      kept_ids.push_back(ids_b);
      (*res)[std::size_t(b)].retained.push_back(int64_t(idx.size()));
      (*res)[std::size_t(b)].selected.push_back(idx);
    }
    return full_prefill(kept_ids, nullptr, res, first);
  }
};

// ---- BatchSession ------------------------------------------------------------------------------------

template <class Backend, class T>
BatchSession<Backend, T>::~BatchSession() {
  if (!impl_) return;
  Impl& m = *impl_;
  for (auto& L : m.layers)
    for (auto* b : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.bq, &L.bk, &L.bv, &L.wo, &L.mlp_norm, &L.gate, &L.up, &L.down})
      m.release(b);
  for (auto& cc : m.caches) {
    m.release(&cc.k);
    m.release(&cc.v);
  }
  for (auto* b : {&m.embed, &m.final_norm, &m.lm_head, &m.scratch_cache.k, &m.scratch_cache.v, &m.x, &m.x2, &m.h, &m.q, &m.kn,
                  &m.vn, &m.attn, &m.gate, &m.up, &m.cos, &m.sin, &m.ids, &m.qsel, &m.last, &m.last_f32, &m.logits, &m.lens,
                  &m.kv_lens, &m.q_lens, &m.positions, &m.sel_idx, &m.sel_counts, &m.sel_pos, &m.new_lens, &m.gather_idx,
                  &m.gather_counts, &m.workspace})
    m.release(b);
}

template <class Backend, class T>
Status BatchSession<Backend, T>::create(const ModelWeights* weights, const BatchSessionOptions& options, Stream stream,
                                        std::unique_ptr<BatchSession>* out) noexcept {
  try {
    PD_RETURN_IF_ERROR(weights->config.validate());
    if (options.mlp_chunk_rows < 1 || options.decode_reserve < 0)
      return Status(StatusCode::kInvalidArgument, "session options: mlp_chunk_rows must be >= 1 and decode_reserve >= 0");
    std::unique_ptr<BatchSession> s(new BatchSession());
    s->impl_ = std::make_unique<Impl>();
    Impl& m = *s->impl_;
    m.owner = s.get();
    m.w = weights;
    m.c = weights->config;
    m.opt = options;
    m.stream = stream;
    m.layers.resize(std::size_t(m.c.num_layers));
    for (int64_t l = 0; l < m.c.num_layers; ++l) {
      const LayerWeights& src = weights->layers[std::size_t(l)];
      typename Impl::LayerW& dst = m.layers[std::size_t(l)];
      PD_RETURN_IF_ERROR(m.upload_weights(&dst.attn_norm, src.attn_norm));
      PD_RETURN_IF_ERROR(m.upload_weights(&dst.wq, src.wq));
      PD_RETURN_IF_ERROR(m.upload_weights(&dst.wk, src.wk));
      PD_RETURN_IF_ERROR(m.upload_weights(&dst.wv, src.wv));
      if (!src.bq.empty()) {
        PD_RETURN_IF_ERROR(m.upload_weights(&dst.bq, src.bq));
        PD_RETURN_IF_ERROR(m.upload_weights(&dst.bk, src.bk));
        PD_RETURN_IF_ERROR(m.upload_weights(&dst.bv, src.bv));
      }
      PD_RETURN_IF_ERROR(m.upload_weights(&dst.wo, src.wo));
      PD_RETURN_IF_ERROR(m.upload_weights(&dst.mlp_norm, src.mlp_norm));
      PD_RETURN_IF_ERROR(m.upload_weights(&dst.gate, src.w_gate));
      PD_RETURN_IF_ERROR(m.upload_weights(&dst.up, src.w_up));
      PD_RETURN_IF_ERROR(m.upload_weights(&dst.down, src.w_down));
    }
    PD_RETURN_IF_ERROR(m.upload_weights(&m.embed, weights->embed));
    PD_RETURN_IF_ERROR(m.upload_weights(&m.final_norm, weights->final_norm));
    PD_RETURN_IF_ERROR(m.upload(&m.lm_head, weights->output_matrix()));  // f32: logits decide greedy ties
    s->weight_bytes_ += int64_t(m.lm_head.bytes);
    *out = std::move(s);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "session: out of host memory");
  }
}

template <class Backend, class T>
Status BatchSession<Backend, T>::prefill(const std::vector<std::vector<int32_t>>& prompts, const PipelineConfig& cfg,
                                         std::vector<PrefillResult>* out) noexcept {
  try {
    Impl& m = *impl_;
    if (prompts.empty()) return Status(StatusCode::kInvalidArgument, "prefill: the batch is empty");
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      Status s = cfg.validate(m.c, int64_t(prompts[b].size()));
      if (!s.is_ok()) return Status(s.code(), "request %zu: %s", b, s.message());
      for (int32_t id : prompts[b])
        if (id < 0 || id >= m.c.vocab)
          return Status(StatusCode::kInvalidArgument, "request %zu: token %d is outside the vocabulary [0, %lld)", b, id,
                        (long long)m.c.vocab);
    }
    if ((cfg.method == PipelineMethod::kSnapKV || cfg.method == PipelineMethod::kH2O) &&
        cfg.grouping == HeadGrouping::kPerQueryHead && m.c.num_heads != m.c.num_kv_heads)
      return Status(StatusCode::kUnsupported,
                    "the batch session compresses per KV group; per-query-head selection needs a GQA-expanded cache "
                    "(use ref::Session for that reference-fidelity mode)");
    batch_ = int64_t(prompts.size());
    {
      // Memory check before any work. The previous prefill's caches and activations are freed
      // first, so they count as available.
      const int64_t need = m.estimate_prefill_bytes(prompts, cfg);
      int64_t reusable = 0;
      for (const auto& cc : m.caches) reusable += int64_t(cc.k.bytes + cc.v.bytes);
      for (auto* b : {&m.x, &m.x2, &m.h, &m.q, &m.kn, &m.vn, &m.attn, &m.gate, &m.up, &m.qsel, &m.workspace})
        reusable += int64_t(b->bytes);
      const int64_t limit = m.opt.memory_limit_bytes > 0 ? m.opt.memory_limit_bytes : Backend::available_bytes() + reusable;
      if (need > limit)
        return Status(StatusCode::kOutOfMemory,
                      "prefill of %lld x %lld tokens needs about %.1f MiB for caches and activations, %.1f MiB are available",
                      (long long)batch_, (long long)m.max_of(m.sizes_of(prompts)), double(need) / 1048576.0,
                      double(limit) / 1048576.0);
    }
    for (auto* b : {&m.scratch_cache.k, &m.scratch_cache.v}) m.release(b);
    m.scratch_cache.capacity = 0;
    m.caches.resize(std::size_t(m.c.num_layers));
    m.new_caches();  // frees the previous prefill's caches
    // ... and its activations, so that each prefill's peak is its own.
    for (auto* b : {&m.x, &m.x2, &m.h, &m.q, &m.kn, &m.vn, &m.attn, &m.gate, &m.up, &m.qsel, &m.workspace}) m.release(b);
    peak_ = held_;
    std::vector<PrefillResult> res(prompts.size());
    std::vector<int32_t> first;
    const auto t0 = Impl::Clock::now();
    switch (cfg.method) {
      case PipelineMethod::kFull: PD_RETURN_IF_ERROR(m.full_prefill(prompts, nullptr, &res, &first)); break;
      case PipelineMethod::kPromptDistill: PD_RETURN_IF_ERROR(m.promptdistill(prompts, cfg, &res, &first)); break;
      case PipelineMethod::kGemFilter: PD_RETURN_IF_ERROR(m.gemfilter(prompts, cfg, &res, &first)); break;
      case PipelineMethod::kSnapKV:
      case PipelineMethod::kH2O: PD_RETURN_IF_ERROR(m.full_prefill(prompts, &cfg, &res, &first)); break;
    }
    const double ttft = std::chrono::duration<double, std::milli>(Impl::Clock::now() - t0).count();
    m.next_position.assign(prompts.size(), 0);
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      PrefillResult& r = res[b];
      r.first_token = first[b];
      r.prompt_tokens = int64_t(prompts[b].size());
      r.next_position = cfg.method == PipelineMethod::kGemFilter ? r.retained[0] : r.prompt_tokens;
      m.next_position[b] = r.next_position;
      for (const auto& cc : m.caches) r.cache_lengths.push_back(cc.len[b]);
      r.ttft_ms = ttft;
      r.peak_kv_cache_bytes = m.peak_kv;
    }
    *out = std::move(res);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "prefill: out of host memory");
  }
}

template <class Backend, class T>
Status BatchSession<Backend, T>::decode_step(const std::vector<int32_t>& tokens, std::vector<int32_t>* next) noexcept {
  try {
    Impl& m = *impl_;
    if (m.next_position.empty()) return Status(StatusCode::kInvalidArgument, "decode_step before prefill");
    if (int64_t(tokens.size()) != batch_)
      return Status(StatusCode::kShapeMismatch, "decode_step: %zu tokens for a batch of %lld", tokens.size(), (long long)batch_);
    std::vector<std::vector<int32_t>> ids, pos;
    std::vector<int64_t> total, ones(std::size_t(batch_), 1);
    for (int64_t b = 0; b < batch_; ++b) {
      if (m.next_position[std::size_t(b)] >= m.c.max_positions)
        return Status(StatusCode::kInvalidArgument, "request %lld: position %lld reaches the model's context of %lld", (long long)b,
                      (long long)m.next_position[std::size_t(b)], (long long)m.c.max_positions);
      if (tokens[std::size_t(b)] < 0 || tokens[std::size_t(b)] >= m.c.vocab)
        return Status(StatusCode::kInvalidArgument, "request %lld: token %d is outside the vocabulary [0, %lld)", (long long)b,
                      tokens[std::size_t(b)], (long long)m.c.vocab);
      ids.push_back({tokens[std::size_t(b)]});
      pos.push_back({int32_t(m.next_position[std::size_t(b)])});
      total.push_back(m.next_position[std::size_t(b)] + 1);
    }
    PD_RETURN_IF_ERROR(m.reserve_rows(1));
    PD_RETURN_IF_ERROR(m.embed_ids(ids, 1));
    PD_RETURN_IF_ERROR(m.upload_rope(pos, 1, total));
    for (int64_t l = 0; l < m.c.num_layers; ++l) PD_RETURN_IF_ERROR(m.layer(l, 1, &m.caches[std::size_t(l)], ones));
    for (auto& p : m.next_position) ++p;
    return m.next_tokens(1, std::vector<int64_t>(std::size_t(batch_), 0), next);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "decode: out of host memory");
  }
}

template <class Backend, class T>
Status BatchSession<Backend, T>::generate(const std::vector<int32_t>& first, int64_t max_new_tokens,
                                          const std::vector<int32_t>& stop, std::vector<std::vector<int32_t>>* out,
                                          double* decode_ms_per_step) noexcept {
  try {
    out->assign(first.size(), {});
    *decode_ms_per_step = 0;
    if (int64_t(first.size()) != batch_)
      return Status(StatusCode::kShapeMismatch, "generate: %zu first tokens for a batch of %lld", first.size(), (long long)batch_);
    if (max_new_tokens <= 0) return Status::ok();
    std::vector<int32_t> tokens = first;
    std::vector<bool> done(first.size(), false);
    const auto t0 = Impl::Clock::now();
    int64_t steps = 0;
    while (true) {
      bool all_done = true;
      for (std::size_t b = 0; b < tokens.size(); ++b) {
        if (done[b]) continue;
        (*out)[b].push_back(tokens[b]);
        if (int64_t((*out)[b].size()) >= max_new_tokens || std::find(stop.begin(), stop.end(), tokens[b]) != stop.end())
          done[b] = true;
        all_done = all_done && done[b];
      }
      if (all_done) break;
      PD_RETURN_IF_ERROR(decode_step(tokens, &tokens));  // finished requests keep stepping; their tokens are dropped
      ++steps;
    }
    if (steps > 0)
      *decode_ms_per_step = std::chrono::duration<double, std::milli>(Impl::Clock::now() - t0).count() / double(steps);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "generate: out of host memory");
  }
}

template <class Backend, class T>
int64_t BatchSession<Backend, T>::cache_length(int64_t layer, int64_t b) const noexcept {
  if (!impl_ || layer < 0 || layer >= int64_t(impl_->caches.size()) || b < 0 || b >= batch_) return -1;
  return impl_->caches[std::size_t(layer)].len[std::size_t(b)];
}

template <class Backend, class T>
Status BatchSession<Backend, T>::read_cache(int64_t layer, int64_t b, std::vector<float>* k, std::vector<float>* v) const noexcept {
  try {
    const Impl& m = *impl_;
    if (layer < 0 || layer >= int64_t(m.caches.size()) || b < 0 || b >= batch_)
      return Status(StatusCode::kOutOfRange, "read_cache: layer %lld / request %lld out of range", (long long)layer, (long long)b);
    const auto& cc = m.caches[std::size_t(layer)];
    const std::size_t row = std::size_t(m.Hkv() * m.D()), len = std::size_t(cc.len[std::size_t(b)]);
    for (auto [dst, part] : {std::pair<std::vector<float>*, const typename Impl::Buf*>{k, &cc.k}, {v, &cc.v}}) {
      std::vector<T> host(len * row);
      if (len > 0)
        PD_RETURN_IF_ERROR(Backend::download(host.data(), static_cast<const T*>(part->p) + std::size_t(b * cc.capacity) * row,
                                             host.size() * sizeof(T), m.stream));
      dst->resize(host.size());
      for (std::size_t i = 0; i < host.size(); ++i) (*dst)[i] = num::to_f32(host[i]);
    }
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "read_cache: out of host memory");
  }
}

}  // namespace promptdistill
