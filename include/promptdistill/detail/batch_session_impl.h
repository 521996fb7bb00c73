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
    // The session built these indices itself (last rows, SnapKV windows): no status read, no sync.
    return run<typename Backend::template Gather<T>>(g);
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

  // The pipelines (batch_session_methods.h).
  Status full_prefill(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan* compress_plan,
                      std::vector<PrefillResult>* res, std::vector<int32_t>* first);
  Status promptdistill(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan& plan,
                       std::vector<PrefillResult>* res, std::vector<int32_t>* first);
  Status gemfilter(const std::vector<std::vector<int32_t>>& prompts, const PipelinePlan& plan, std::vector<PrefillResult>* res,
                   std::vector<int32_t>* first);
};

}  // namespace promptdistill

#include "promptdistill/detail/batch_session_methods.h"
