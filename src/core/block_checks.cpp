// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Host-side checks of the decoder block operations, shared by `ref::` and `cuda::`.

#include <cmath>
#include <cstdint>

#include "promptdistill/detail/block_checks.h"
#include "promptdistill/detail/view_checks.h"

namespace promptdistill {
namespace detail {
namespace {

template <class A, class B, int RA, int RB>
bool same_view(const TensorView<A, RA>& a, const TensorView<B, RB>& b) {
  if (RA != RB || static_cast<const void*>(a.data) != static_cast<const void*>(b.data))
    return false;
  for (int i = 0; i < RA; ++i)
    if (a.extents[i] != b.extents[i] || a.strides[i] != b.strides[i]) return false;
  return true;
}

template <class A, class B, int RA, int RB>
bool views_overlap(const TensorView<A, RA>& a, const TensorView<B, RB>& b) {
  return overlaps(a.data, span_bytes(a), b.data, span_bytes(b));
}

//! `out` is either exactly `in` (in place) or disjoint from it.
template <class A, class B, int R>
Status check_in_place_or_disjoint(const char* out_name, const TensorView<A, R>& out,
                                  const char* in_name, const TensorView<B, R>& in) {
  PD_REQUIRE(same_view(out, in) || !views_overlap(out, in), StatusCode::kInvalidArgument,
             "%s overlaps %s without being the same view", out_name, in_name);
  return Status::ok();
}

template <class T, int R>
bool aligned16(const TensorView<T, R>& v) {
  if (reinterpret_cast<std::uintptr_t>(v.data) % 16 != 0) return false;
  for (int i = 0; i < R - 1; ++i)
    if (v.extents[i] > 1 && (v.strides[i] * int64_t(sizeof(T))) % 16 != 0) return false;
  return true;
}

}  // namespace

template <class T>
Status check_embed(const EmbedArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(check_view("table", a.table));
  PD_RETURN_IF_ERROR(check_view("ids", a.ids));
  PD_RETURN_IF_ERROR(check_view("out", a.out));
  PD_REQUIRE(a.out.extents[0] == a.ids.extents[0] && a.out.extents[1] == a.table.extents[1],
             StatusCode::kShapeMismatch, "out is [%lld, %lld], expected [%lld ids, %lld hidden]",
             (long long)a.out.extents[0], (long long)a.out.extents[1], (long long)a.ids.extents[0],
             (long long)a.table.extents[1]);
  PD_REQUIRE(a.table.extents[0] >= 1 || a.ids.extents[0] == 0, StatusCode::kInvalidArgument,
             "the table is empty");
  PD_REQUIRE(!views_overlap(a.out, a.table) && !views_overlap(a.out, a.ids),
             StatusCode::kInvalidArgument, "out overlaps the table or the ids");
  return Status::ok();
}

template <class T>
Status check_rmsnorm(const RmsNormArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(check_view("x", a.x));
  PD_RETURN_IF_ERROR(check_view("weight", a.weight));
  PD_RETURN_IF_ERROR(check_view("out", a.out));
  PD_REQUIRE(a.x.extents[1] >= 1, StatusCode::kInvalidArgument, "rmsnorm: width must be >= 1");
  PD_REQUIRE(a.weight.extents[0] == a.x.extents[1] && a.out.extents[0] == a.x.extents[0] &&
                 a.out.extents[1] == a.x.extents[1],
             StatusCode::kShapeMismatch,
             "rmsnorm: x [%lld, %lld], weight [%lld], out [%lld, %lld] disagree",
             (long long)a.x.extents[0], (long long)a.x.extents[1], (long long)a.weight.extents[0],
             (long long)a.out.extents[0], (long long)a.out.extents[1]);
  PD_REQUIRE(std::isfinite(a.eps) && a.eps >= 0.0f, StatusCode::kInvalidArgument,
             "rmsnorm: eps %g must be finite and >= 0", double(a.eps));
  PD_RETURN_IF_ERROR(check_in_place_or_disjoint("out", a.out, "x", a.x));
  PD_REQUIRE(!views_overlap(a.out, a.weight), StatusCode::kInvalidArgument,
             "rmsnorm: out overlaps the weight");
  return Status::ok();
}

template <class T>
Status check_rope(const RopeArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(check_view("x", a.x));
  PD_RETURN_IF_ERROR(check_view("cos", a.cos));
  PD_RETURN_IF_ERROR(check_view("sin", a.sin));
  const int64_t n = a.x.extents[0], D = a.x.extents[2];
  PD_REQUIRE(D >= 2 && D % 2 == 0, StatusCode::kInvalidArgument,
             "rope: head_dim %lld must be even and >= 2", (long long)D);
  PD_REQUIRE(a.cos.extents[0] == n && a.sin.extents[0] == n && a.cos.extents[1] == D / 2 &&
                 a.sin.extents[1] == D / 2,
             StatusCode::kShapeMismatch,
             "rope: cos/sin must be [%lld, %lld] (got [%lld, %lld] and [%lld, %lld])", (long long)n,
             (long long)D / 2, (long long)a.cos.extents[0], (long long)a.cos.extents[1],
             (long long)a.sin.extents[0], (long long)a.sin.extents[1]);
  PD_REQUIRE(!views_overlap(a.x, a.cos) && !views_overlap(a.x, a.sin), StatusCode::kInvalidArgument,
             "rope: x overlaps the tables");
  return Status::ok();
}

template <class T>
Status check_swiglu(const SwiGluArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(check_view("gate", a.gate));
  PD_RETURN_IF_ERROR(check_view("up", a.up));
  PD_RETURN_IF_ERROR(check_view("out", a.out));
  for (int i = 0; i < 2; ++i)
    PD_REQUIRE(a.gate.extents[i] == a.up.extents[i] && a.out.extents[i] == a.up.extents[i],
               StatusCode::kShapeMismatch,
               "swiglu: gate [%lld, %lld], up [%lld, %lld] and out [%lld, %lld] must agree",
               (long long)a.gate.extents[0], (long long)a.gate.extents[1],
               (long long)a.up.extents[0], (long long)a.up.extents[1], (long long)a.out.extents[0],
               (long long)a.out.extents[1]);
  PD_RETURN_IF_ERROR(check_in_place_or_disjoint("out", a.out, "gate", a.gate));
  PD_RETURN_IF_ERROR(check_in_place_or_disjoint("out", a.out, "up", a.up));
  return Status::ok();
}

template <class T>
Status check_argmax(const ArgMaxArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(check_view("x", a.x));
  PD_RETURN_IF_ERROR(check_view("out", a.out));
  PD_REQUIRE(a.out.extents[0] == a.x.extents[0], StatusCode::kShapeMismatch,
             "argmax: out has %lld rows, x has %lld", (long long)a.out.extents[0],
             (long long)a.x.extents[0]);
  PD_REQUIRE(a.x.extents[1] >= 1 || a.x.extents[0] == 0, StatusCode::kInvalidArgument,
             "argmax: rows of x are empty");
  PD_REQUIRE(a.x.extents[1] <= INT32_MAX, StatusCode::kUnsupported,
             "argmax: rows longer than 2^31-1 (int32 indices)");
  return Status::ok();
}

template <class T>
Status check_append_kv(const AppendKvArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(check_view("k_new", a.k_new));
  PD_RETURN_IF_ERROR(check_view("v_new", a.v_new));
  PD_RETURN_IF_ERROR(check_kv("k", a.k));
  PD_RETURN_IF_ERROR(check_kv("v", a.v));
  const int64_t B = a.k_new.extents[0];
  for (int i = 0; i < 4; ++i)
    PD_REQUIRE(a.k_new.extents[i] == a.v_new.extents[i], StatusCode::kShapeMismatch,
               "k_new and v_new differ in extent %d", i);
  PD_REQUIRE(
      a.k.batch == B && a.v.batch == B && a.k.num_heads == a.k_new.extents[2] &&
          a.v.num_heads == a.k_new.extents[2] && a.k.head_dim == a.k_new.extents[3] &&
          a.v.head_dim == a.k_new.extents[3],
      StatusCode::kShapeMismatch,
      "append_kv: caches [B %lld, H_kv %lld, D %lld] do not match k_new [%lld, *, %lld, %lld]",
      (long long)a.k.batch, (long long)a.k.num_heads, (long long)a.k.head_dim, (long long)B,
      (long long)a.k_new.extents[2], (long long)a.k_new.extents[3]);
  PD_REQUIRE(a.k.layout == a.v.layout && a.k.capacity == a.v.capacity, StatusCode::kShapeMismatch,
             "append_kv: k and v caches must share layout and capacity");
  PD_REQUIRE(B == 0 || (a.q_lens != nullptr && a.kv_lens != nullptr), StatusCode::kInvalidArgument,
             "append_kv: q_lens and kv_lens are required");
  return check_kv_distinct("append_kv", a.k, a.v);
}

template <class T>
Status check_attention(const AttentionArgs<T>& a) noexcept {
  PD_REQUIRE(a.algo == AttentionAlgo::kExact || a.algo == AttentionAlgo::kFast,
             StatusCode::kInvalidArgument, "attention: unknown algorithm %d", int(a.algo));
  PD_RETURN_IF_ERROR(check_view("q", a.q));
  PD_RETURN_IF_ERROR(check_view("out", a.out));
  PD_RETURN_IF_ERROR(check_kv("k", a.k));
  PD_RETURN_IF_ERROR(check_kv("v", a.v));
  const int64_t B = a.q.extents[0], H = a.q.extents[2], D = a.q.extents[3];
  for (int i = 0; i < 4; ++i)
    PD_REQUIRE(a.out.extents[i] == a.q.extents[i], StatusCode::kShapeMismatch,
               "attention: out differs from q in extent %d", i);
  PD_REQUIRE(a.k.batch == B && a.v.batch == B, StatusCode::kShapeMismatch,
             "attention: caches hold %lld requests, q %lld", (long long)a.k.batch, (long long)B);
  PD_REQUIRE(a.k.num_heads == a.v.num_heads && a.k.head_dim == a.v.head_dim &&
                 a.k.layout == a.v.layout && a.k.capacity == a.v.capacity,
             StatusCode::kShapeMismatch,
             "attention: k and v caches differ in heads, head_dim, layout or capacity");
  PD_REQUIRE(H >= 1 && H % a.k.num_heads == 0, StatusCode::kShapeMismatch,
             "attention: %lld query heads are not a multiple of %lld KV heads", (long long)H,
             (long long)a.k.num_heads);
  PD_REQUIRE(D == a.k.head_dim, StatusCode::kShapeMismatch,
             "attention: head_dim differs: q %lld, cache %lld", (long long)D,
             (long long)a.k.head_dim);
  PD_REQUIRE(a.q.strides[3] == 1 && a.out.strides[3] == 1 && aligned16(a.q) && aligned16(a.out),
             StatusCode::kMisaligned,
             "attention: q and out need a contiguous head dimension and 16-byte aligned rows");
  PD_REQUIRE(B == 0 || (a.q_lens != nullptr && a.kv_lens != nullptr), StatusCode::kInvalidArgument,
             "attention: q_lens and kv_lens are required");
  PD_REQUIRE(a.max_kv_len >= 0 && a.max_kv_len <= (int64_t(1) << 31) - 1,
             StatusCode::kInvalidArgument, "attention: max_kv_len %lld is outside [0, 2^31)",
             (long long)a.max_kv_len);
  PD_REQUIRE(std::isfinite(a.scale) && a.scale >= 0.0f, StatusCode::kInvalidArgument,
             "attention: scale %g must be finite and >= 0 (0 = 1/sqrt(D))", double(a.scale));
  PD_REQUIRE(!views_overlap(a.out, a.q), StatusCode::kInvalidArgument, "attention: out overlaps q");
  return Status::ok();
}

Status check_linear_shape(const LinearShape& s) noexcept {
  PD_REQUIRE(s.rows >= 0 && s.in >= 1 && s.out >= 1, StatusCode::kInvalidArgument,
             "linear: rows %lld, in %lld, out %lld (rows >= 0, in and out >= 1)", (long long)s.rows,
             (long long)s.in, (long long)s.out);
  PD_REQUIRE((s.x_row_stride == 0 || s.x_row_stride >= s.in) &&
                 (s.w_row_stride == 0 || s.w_row_stride >= s.in) &&
                 (s.y_row_stride == 0 || s.y_row_stride >= s.out),
             StatusCode::kInvalidArgument, "linear: a row stride is shorter than its row");
  return Status::ok();
}

template <class T>
Status check_linear(const LinearShape& s, const LinearArgs<T>& a) noexcept {
  PD_RETURN_IF_ERROR(check_view("x", a.x));
  PD_RETURN_IF_ERROR(check_view("w", a.w));
  PD_RETURN_IF_ERROR(check_view("bias", a.bias));
  PD_RETURN_IF_ERROR(check_view("residual", a.residual));
  PD_RETURN_IF_ERROR(check_view("y", a.y));
  const int64_t xs = s.x_row_stride ? s.x_row_stride : s.in,
                ws = s.w_row_stride ? s.w_row_stride : s.in,
                ys = s.y_row_stride ? s.y_row_stride : s.out;
  PD_REQUIRE(a.x.extents[0] == s.rows && a.x.extents[1] == s.in && a.w.extents[0] == s.out &&
                 a.w.extents[1] == s.in && a.y.extents[0] == s.rows && a.y.extents[1] == s.out,
             StatusCode::kShapeMismatch,
             "linear: x [%lld, %lld], w [%lld, %lld], y [%lld, %lld] do not match the plan "
             "(rows %lld, in %lld, out %lld)",
             (long long)a.x.extents[0], (long long)a.x.extents[1], (long long)a.w.extents[0],
             (long long)a.w.extents[1], (long long)a.y.extents[0], (long long)a.y.extents[1],
             (long long)s.rows, (long long)s.in, (long long)s.out);
  PD_REQUIRE((a.x.strides[1] == 1 || s.in == 1) && (a.w.strides[1] == 1 || s.in == 1) &&
                 (a.y.strides[1] == 1 || s.out == 1) && (a.x.strides[0] == xs || s.rows <= 1) &&
                 (a.w.strides[0] == ws || s.out == 1) && (a.y.strides[0] == ys || s.rows <= 1),
             StatusCode::kInvalidArgument,
             "linear: strides differ from the plan's (rows must be contiguous, row strides "
             "%lld/%lld/%lld)",
             (long long)xs, (long long)ws, (long long)ys);
  PD_REQUIRE(s.bias == (a.bias.data != nullptr), StatusCode::kInvalidArgument,
             "linear: the plan %s a bias", s.bias ? "needs" : "has no");
  if (s.bias)
    PD_REQUIRE(a.bias.extents[0] == s.out && (a.bias.strides[0] == 1 || s.out == 1),
               StatusCode::kShapeMismatch, "linear: bias must be a contiguous [%lld]",
               (long long)s.out);
  PD_REQUIRE(s.residual == (a.residual.data != nullptr), StatusCode::kInvalidArgument,
             "linear: the plan %s a residual", s.residual ? "needs" : "has no");
  if (s.residual)
    PD_REQUIRE(
        same_view(a.residual, a.y) ||
            (a.residual.extents[0] == s.rows && a.residual.extents[1] == s.out &&
             (a.residual.strides[1] == 1 || s.out == 1) &&
             (a.residual.strides[0] == ys || s.rows <= 1) && !views_overlap(a.residual, a.y)),
        StatusCode::kInvalidArgument,
        "linear: residual must be y itself or a disjoint view with y's shape and strides");
  PD_REQUIRE(!views_overlap(a.y, a.x) && !views_overlap(a.y, a.w) && !views_overlap(a.y, a.bias),
             StatusCode::kInvalidArgument, "linear: y overlaps an input");
  PD_REQUIRE(aligned16(a.x) && aligned16(a.w) && aligned16(a.y) &&
                 (!s.residual || aligned16(a.residual)) &&
                 (!s.bias || reinterpret_cast<std::uintptr_t>(a.bias.data) % 16 == 0),
             StatusCode::kMisaligned, "linear: pointers and row strides must be 16-byte aligned");
  return Status::ok();
}

#define PD_INSTANTIATE(T)                                               \
  template Status check_embed<T>(const EmbedArgs<T>&) noexcept;         \
  template Status check_rmsnorm<T>(const RmsNormArgs<T>&) noexcept;     \
  template Status check_rope<T>(const RopeArgs<T>&) noexcept;           \
  template Status check_swiglu<T>(const SwiGluArgs<T>&) noexcept;       \
  template Status check_append_kv<T>(const AppendKvArgs<T>&) noexcept;  \
  template Status check_argmax<T>(const ArgMaxArgs<T>&) noexcept;       \
  template Status check_attention<T>(const AttentionArgs<T>&) noexcept; \
  template Status check_linear<T>(const LinearShape&, const LinearArgs<T>&) noexcept;
PD_INSTANTIATE(float)
PD_INSTANTIATE(f16)
PD_INSTANTIATE(bf16)
#undef PD_INSTANTIATE

}  // namespace detail
}  // namespace promptdistill
