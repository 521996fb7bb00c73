// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! CPU reference of the decoder block operations (promptdistill::ref): the oracle the CUDA
//! kernels are compared with. Tier-B ops follow the orders written in blocks.h with the shared
//! numerics header; Linear is Eigen in f32 (Tier C).

#include <Eigen/Core>
#include <new>
#include <vector>

#include "promptdistill/blocks.h"
#include "promptdistill/detail/block_checks.h"
#include "promptdistill/detail/numerics.h"

namespace promptdistill {
namespace ref {
namespace {

using promptdistill::detail::DeviceStatusWord;
using promptdistill::detail::status_from_word;

//! Tier-B attention of one query row (q: D values of T) over keys 0..last of head g. Every score
//! is num::dot's sequential sum and every output element adds its terms in ascending key order, as
//! the formula reads; the loops only run several of those sums side by side (eight keys' dot
//! products at once, all D output elements at once), which changes no bit and removes the
//! add-latency chain of one sum at a time.
template <class T>
void attend_row(const T* q, const KvCacheView<const T>& k, const KvCacheView<const T>& v, int64_t b,
                int64_t g, int64_t last, float scale, T* out, std::vector<float>& z,
                std::vector<float>& row) {
  const int64_t D = k.head_dim, count = last + 1;
  constexpr int64_t kKeys = 8;
  z.resize(std::size_t(count));
  row.resize(std::size_t(2 * D));
  float* qf = row.data();
  float* acc = row.data() + D;
  for (int64_t d = 0; d < D; ++d) qf[d] = num::to_f32(q[d]);
  int64_t j = 0;
  for (; j + kKeys <= count; j += kKeys) {
    const T* keys[kKeys];
    float s[kKeys];
    for (int64_t t = 0; t < kKeys; ++t) {
      keys[t] = k.token(b, j + t, g);
      s[t] = 0.0f;
    }
    for (int64_t d = 0; d < D; ++d)
      for (int64_t t = 0; t < kKeys; ++t)
        s[t] = num::add(s[t], num::mul(qf[d], num::to_f32(keys[t][d])));
    for (int64_t t = 0; t < kKeys; ++t) z[std::size_t(j + t)] = num::mul(s[t], scale);
  }
  for (; j < count; ++j) z[std::size_t(j)] = num::mul(num::dot(q, k.token(b, j, g), int(D)), scale);
  const float m = num::canonical_max(count, [&](int64_t i) { return z[std::size_t(i)]; });
  for (int64_t i = 0; i < count; ++i)
    z[std::size_t(i)] = num::exp_f32(num::sub(z[std::size_t(i)], m));
  const float l = num::canonical_sum(count, [&](int64_t i) { return z[std::size_t(i)]; });
  for (int64_t d = 0; d < D; ++d) acc[d] = 0.0f;
  for (int64_t i = 0; i < count; ++i) {
    const float p = num::div(z[std::size_t(i)], l);
    const T* value = v.token(b, i, g);
    for (int64_t d = 0; d < D; ++d) acc[d] = num::add(acc[d], num::mul(p, num::to_f32(value[d])));
  }
  for (int64_t d = 0; d < D; ++d) out[d] = num::from_f32<T>(acc[d]);
}

}  // namespace

// The can_implement and workspace_size members both backends define alike.
#include "promptdistill/detail/block_op_checks.inc"

// ---- Embed
// ------------------------------------------------------------------------------------------

template <class T>
std::size_t Embed<T>::workspace_size(const EmbedArgs<T>&) noexcept {
  return 0;
}
template <class T>
Status Embed<T>::run(const EmbedArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  DeviceStatusWord word{};
  for (int64_t i = 0; i < a.ids.extents[0]; ++i)
    if (!promptdistill::detail::check_token(i, a.ids(i), a.table.extents[0], &word))
      return status_from_word(word);
  for (int64_t i = 0; i < a.ids.extents[0]; ++i)
    for (int64_t e = 0; e < a.table.extents[1]; ++e) a.out(i, e) = a.table(a.ids(i), e);
  return Status::ok();
}

// ---- RmsNorm
// ----------------------------------------------------------------------------------------

template <class T>
Status RmsNorm<T>::run(const RmsNormArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t d = a.x.extents[1];
  for (int64_t i = 0; i < a.x.extents[0]; ++i) {
    const float ss = num::canonical_sum(d, [&](int64_t j) {
      const float x = num::to_f32(a.x(i, j));
      return num::mul(x, x);
    });
    const float inv = num::div(1.0f, num::sqrt(num::add(num::div(ss, float(d)), a.eps)));
    for (int64_t j = 0; j < d; ++j) {
      const float normed = num::round_through<T>(num::mul(num::to_f32(a.x(i, j)), inv));
      a.out(i, j) = num::from_f32<T>(num::mul(num::to_f32(a.weight(j)), normed));
    }
  }
  return Status::ok();
}

// ---- Rope
// -------------------------------------------------------------------------------------------

template <class T>
Status Rope<T>::run(const RopeArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t half = a.x.extents[2] / 2;
  for (int64_t i = 0; i < a.x.extents[0]; ++i)
    for (int64_t h = 0; h < a.x.extents[1]; ++h)
      for (int64_t f = 0; f < half; ++f) {
        const float c = a.cos(i, f), s = a.sin(i, f);
        const float x0 = num::to_f32(a.x(i, h, f)), x1 = num::to_f32(a.x(i, h, f + half));
        a.x(i, h, f) = num::from_f32<T>(num::sub(num::mul(x0, c), num::mul(x1, s)));
        a.x(i, h, f + half) = num::from_f32<T>(num::add(num::mul(x1, c), num::mul(x0, s)));
      }
  return Status::ok();
}

// ---- SwiGlu
// -----------------------------------------------------------------------------------------

namespace {
template <class T>
PD_FORCEINLINE T swiglu_value(T gate, T up) {
  const float g = num::to_f32(gate), u = num::to_f32(up);
  const float silu = num::round_through<T>(num::div(g, num::add(1.0f, num::exp_f32(-g))));
  return num::from_f32<T>(num::mul(silu, u));
}
//! One row of unit-stride values: the same arithmetic as the strided loop, in a loop the compiler
//! vectorises (exp_f32 has no calls; this file is compiled with AVX2 and -fno-trapping-math).
template <class T>
void swiglu_row(const T* gate, const T* up, T* out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = swiglu_value(gate[j], up[j]);
}
}  // namespace

template <class T>
Status SwiGlu<T>::run(const SwiGluArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t width = a.gate.extents[1];
  const bool unit = a.gate.strides[1] == 1 && a.up.strides[1] == 1 && a.out.strides[1] == 1;
  for (int64_t i = 0; i < a.gate.extents[0]; ++i) {
    if (unit && width > 0) {
      swiglu_row(&a.gate(i, 0), &a.up(i, 0), &a.out(i, 0), width);
      continue;
    }
    for (int64_t j = 0; j < width; ++j) a.out(i, j) = swiglu_value(a.gate(i, j), a.up(i, j));
  }
  return Status::ok();
}

// ---- ArgMax
// -----------------------------------------------------------------------------------------

template <class T>
Status ArgMax<T>::run(const ArgMaxArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  for (int64_t i = 0; i < a.x.extents[0]; ++i) {
    float best = num::to_f32(a.x(i, 0));
    int64_t best_j = 0;
    for (int64_t j = 1; j < a.x.extents[1]; ++j) {
      const float v = num::to_f32(a.x(i, j));
      if (promptdistill::detail::argmax_ranks_before(v, j, best, best_j)) best = v, best_j = j;
    }
    a.out(i) = int32_t(best_j);
  }
  return Status::ok();
}

// ---- AppendKv
// ---------------------------------------------------------------------------------------

template <class T>
std::size_t AppendKv<T>::workspace_size(const AppendKvArgs<T>&) noexcept {
  return 0;
}
template <class T>
Status AppendKv<T>::run(const AppendKvArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t B = a.k_new.extents[0], n = a.k_new.extents[1], H = a.k.num_heads, D = a.k.head_dim;
  DeviceStatusWord word{};
  for (int64_t b = 0; b < B; ++b) {
    const KvCacheView<const T> k = a.k, v = a.v;
    if (!promptdistill::detail::check_kv_request(b, a.q_lens[b], a.kv_lens[b], n, INT32_MAX, k, v,
                                                 &word))
      return status_from_word(word);
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t first = a.kv_lens[b] - a.q_lens[b];
    for (int64_t i = 0; i < a.q_lens[b]; ++i)
      for (int64_t h = 0; h < H; ++h) {
        T* kd = a.k.token(b, first + i, h);
        T* vd = a.v.token(b, first + i, h);
        for (int64_t d = 0; d < D; ++d) {
          kd[d] = a.k_new(b, i, h, d);
          vd[d] = a.v_new(b, i, h, d);
        }
      }
  }
  return Status::ok();
}

// ---- Attention
// --------------------------------------------------------------------------------------

template <class T>
Status Attention<T>::can_implement(const AttentionArgs<T>& a) noexcept {
  return promptdistill::detail::check_attention(a);
}
template <class T>
std::size_t Attention<T>::workspace_size(const AttentionArgs<T>&) noexcept {
  return 0;
}
template <class T>
Status Attention<T>::run(const AttentionArgs<T>& a, Workspace, Stream) noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  const int64_t B = a.q.extents[0], n = a.q.extents[1], H = a.q.extents[2], D = a.q.extents[3];
  DeviceStatusWord word{};
  for (int64_t b = 0; b < B; ++b)
    if (!promptdistill::detail::check_kv_request(b, a.q_lens[b], a.kv_lens[b], n, a.max_kv_len, a.k,
                                                 a.v, &word))
      return status_from_word(word);
  const float scale = a.scale > 0.0f ? a.scale : num::div(1.0f, num::sqrt(float(D)));
  const int64_t group = H / a.k.num_heads;
  // Rows are independent and each is computed in its fixed order, so threads do not change bits.
  bool out_of_memory = false;
#pragma omp parallel
  {
    try {
      std::vector<float> z, scratch;
      std::vector<T> q_row(std::size_t(D), T{}), o_row(std::size_t(D), T{});
#pragma omp for schedule(dynamic, 4)
      for (int64_t row = 0; row < B * n * H; ++row) {
        const int64_t h = row % H, i = (row / H) % n, b = row / (H * n);
        if (i >= a.q_lens[b]) continue;
        for (int64_t d = 0; d < D; ++d) q_row[std::size_t(d)] = a.q(b, i, h, d);
        attend_row(q_row.data(), a.k, a.v, b, h / group, a.kv_lens[b] - a.q_lens[b] + i, scale,
                   o_row.data(), z, scratch);
        for (int64_t d = 0; d < D; ++d) a.out(b, i, h, d) = o_row[std::size_t(d)];
      }
    } catch (const std::bad_alloc&) {
#pragma omp atomic write
      out_of_memory = true;
    }
  }
  if (out_of_memory) return Status(StatusCode::kOutOfMemory, "attention: out of host memory");
  return Status::ok();
}

// ---- LinearPlan
// -------------------------------------------------------------------------------------

template <class T>
struct LinearPlan<T>::State {};

template <class T>
LinearPlan<T>::LinearPlan() noexcept = default;
template <class T>
LinearPlan<T>::~LinearPlan() = default;
template <class T>
LinearPlan<T>::LinearPlan(LinearPlan&&) noexcept = default;
template <class T>
LinearPlan<T>& LinearPlan<T>::operator=(LinearPlan&&) noexcept = default;

template <class T>
Status LinearPlan<T>::create(const LinearShape& shape, LinearPlan* plan) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_linear_shape(shape));
  plan->shape_ = shape;
  return Status::ok();
}
template <class T>
Status LinearPlan<T>::can_implement(const LinearArgs<T>& a) const noexcept {
  return promptdistill::detail::check_linear(shape_, a);
}
template <class T>
std::size_t LinearPlan<T>::workspace_size() const noexcept {
  return 0;
}
template <class T>
Status LinearPlan<T>::run(const LinearArgs<T>& a, Workspace, Stream) const noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int64_t n = shape_.rows, in = shape_.in, out = shape_.out;
  try {
    Matrix x(n, in), w(out, in);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < in; ++j) x(i, j) = num::to_f32(a.x(i, j));
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < in; ++j) w(o, j) = num::to_f32(a.w(o, j));
    Matrix y = x * w.transpose();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) {
        float acc = y(i, o);
        if (shape_.residual) acc = num::add(acc, num::to_f32(a.residual(i, o)));
        if (shape_.bias) acc = num::add(acc, num::to_f32(a.bias(o)));
        a.y(i, o) = num::from_f32<T>(acc);
      }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "linear: out of host memory");
  }
  return Status::ok();
}

#define PD_INSTANTIATE(T)       \
  template struct Embed<T>;     \
  template struct RmsNorm<T>;   \
  template struct Rope<T>;      \
  template struct SwiGlu<T>;    \
  template struct AppendKv<T>;  \
  template struct ArgMax<T>;    \
  template struct Attention<T>; \
  template class LinearPlan<T>;
PD_INSTANTIATE(float)
PD_INSTANTIATE(f16)
PD_INSTANTIATE(bf16)
#undef PD_INSTANTIATE

}  // namespace ref
}  // namespace promptdistill
