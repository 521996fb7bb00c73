// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! The Selector operations as Python functions, written once over a backend (the CPU reference
//! or CUDA) and compiled into one extension module per backend, so that the CPU module never
//! depends on the CUDA runtime.
//!
//! Every operation is one function: called with `workspace=None` it checks its arguments
//! (`can_implement`) and returns the workspace bytes to allocate; called with a workspace it runs
//! on `stream` (the CUDA backend launches there and never synchronises; the reference backend
//! computes before returning). The caller allocates every output and the workspace, so on the GPU
//! both come from the caller's allocator (PyTorch's in practice).

#include "binding_support.h"
#include "promptdistill/backend.h"
#include "promptdistill/detail/selector_checks.h"

namespace pdpy {

//! Runs `Op` with `args`: the workspace size query when `workspace` is empty, the run otherwise.
template <class Op, class Args>
std::size_t plan_or_run(const Args& args, const std::optional<InArray>& workspace,
                        const Device& device, uintptr_t stream) {
  if (!workspace) {
    raise_if_error(Op::can_implement(args));
    return with_alignment_slack(Op::workspace_size(args));
  }
  const pd::Workspace ws = aligned_workspace(*workspace, device);
  pd::Status status;
  {
    // The work runs without the GIL: it reads and writes only the buffers the views point to
    // (kept alive by the caller's references), so other Python threads run meanwhile, other
    // selections and compactions included (the operations hold no global state).
    nb::gil_scoped_release released;
    status = Op::run(args, ws, stream_of(stream));
  }
  raise_if_error(status);
  return 0;
}

//! The device of the call, which must be the backend's (its DLPack device type).
template <class Backend>
Device backend_device(const char* name, const InArray& a) {
  Device d = device_of(a);
  if (d.type != Backend::kDLPackDevice)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "%s is on %s, but this call runs %s", name,
                     d.name.c_str(), Backend::kDescription));
  return d;
}

//! A [B, L, H_kv, D] key buffer (any strides, head_dim contiguous) as a contiguous KV view.
template <class T>
pd::KvCacheView<const T> key_view(const InArray& k) {
  if (k.stride(3) != 1 && k.shape(3) > 1)
    raise(pd::Status(pd::StatusCode::kUnsupported,
                     "k: head_dim must be contiguous (stride 1), got stride %lld",
                     (long long)k.stride(3)));
  auto v = pd::KvCacheView<const T>::contiguous_bshd(static_cast<const T*>(k.data()),
                                                     int64_t(k.shape(0)), int64_t(k.shape(1)),
                                                     int64_t(k.shape(2)), int64_t(k.shape(3)));
  v.stride_seq = k.stride(0);
  v.stride_token = k.stride(1);
  v.stride_head = k.stride(2);
  return v;
}

//! The q and k of one call: same device as the backend, 4 dimensions, one float dtype, tokens
//! present.
template <class Backend>
Elem query_key_checks(const InArray& q, const InArray& k, Device* dev) {
  *dev = backend_device<Backend>("q", q);
  require_device("k", k, *dev);
  require_rank("q", q, 4, "[B, rows, H, D]");
  require_rank("k", k, 4, "[B, L, H_kv, D]");
  const Elem e = require_float("q", q);
  require_float("k", k);
  if (elem_of(k.dtype()) != e)
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "q and k must have the same dtype, got %s and %s",
                     dtype_name(q.dtype()).c_str(), dtype_name(k.dtype()).c_str()));
  if (k.shape(1) == 0)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "k has no tokens (empty prompt)"));
  if (q.shape(1) == 0) raise(pd::Status(pd::StatusCode::kInvalidArgument, "q has no query rows"));
  return e;
}

template <class Backend, class T>
std::size_t select_typed(const InArray& q, const InArray& k, const InArray& lengths,
                         const InArray& indices, const InArray& counts, const InArray& positions,
                         const InArray& scores, const pd::MethodConfig& cfg,
                         const std::optional<InArray>& workspace, const Device& dev,
                         uintptr_t stream) {
  pd::SelectArgs<T> a;
  a.config = cfg;
  a.q = view_of<const T, 4>(q);
  a.k = key_view<T>(k);
  a.lengths = int_vector("lengths", lengths, dev, int64_t(q.shape(0)));
  a.max_length = int64_t(k.shape(1));
  a.indices =
      checked_view<int32_t, 3>("indices", indices, dev, Elem::kI32, "int32", "[B, rows, capacity]");
  a.counts = checked_view<int32_t, 2>("counts", counts, dev, Elem::kI32, "int32", "[B, rows]");
  a.positions = checked_view<int32_t, 3>("positions", positions, dev, Elem::kI32, "int32",
                                         "[B, rows, capacity]");
  a.final_scores =
      checked_view<float, 3>("scores", scores, dev, Elem::kF32, "float32", "[B, rows, L]");
  return plan_or_run<typename Backend::template Select<T>>(a, workspace, dev, stream);
}

template <class Backend>
std::size_t select(const InArray& q, const InArray& k, const InArray& lengths,
                   const InArray& indices, const InArray& counts, const InArray& positions,
                   const InArray& scores, const std::string& method, int64_t budget, int64_t window,
                   const std::string& pool, int64_t pool_kernel, const std::string& per,
                   const std::optional<InArray>& workspace, uintptr_t stream) {
  const pd::MethodConfig cfg = method_config(method, budget, window, pool, pool_kernel, per);
  Device dev;
  switch (query_key_checks<Backend>(q, k, &dev)) {
    case Elem::kF32:
      return select_typed<Backend, float>(q, k, lengths, indices, counts, positions, scores, cfg,
                                          workspace, dev, stream);
    case Elem::kF16:
      return select_typed<Backend, pd::f16>(q, k, lengths, indices, counts, positions, scores, cfg,
                                            workspace, dev, stream);
    default:
      return select_typed<Backend, pd::bf16>(q, k, lengths, indices, counts, positions, scores, cfg,
                                             workspace, dev, stream);
  }
}

// ---- tensor parallelism -------------------------------------------------------------------------

//! A [B, L] float32 array as the [B, 1, L] rows the tensor-parallel operations take.
template <class T>
pd::TensorView<T, 3> score_rows_view(const char* name, const InArray& a, const Device& dev) {
  const auto v = checked_view<T, 2>(name, a, dev, Elem::kF32, "float32", "[B, L]");
  return pd::make_strided_view<T, 3>(v.data, {v.extents[0], 1, v.extents[1]},
                                     {v.strides[0], v.strides[0], v.strides[1]});
}

template <class Backend, class T>
std::size_t score_partial_typed(const InArray& q, const InArray& k, const InArray& lengths,
                                const InArray& partial, pd::Method method, int64_t head_offset,
                                int64_t total_heads, const std::optional<InArray>& workspace,
                                const Device& dev, uintptr_t stream) {
  pd::ScorePartialArgs<T> a;
  a.method = method;
  a.q = view_of<const T, 4>(q);
  a.k = key_view<T>(k);
  a.lengths = int_vector("lengths", lengths, dev, int64_t(q.shape(0)));
  a.head_offset = head_offset;
  a.total_heads = total_heads;
  a.partial = score_rows_view<float>("partial", partial, dev);
  return plan_or_run<typename Backend::template ScorePartial<T>>(a, workspace, dev, stream);
}

template <class Backend>
std::size_t score_partial(const InArray& q, const InArray& k, const InArray& lengths,
                          const InArray& partial, const std::string& method, int64_t head_offset,
                          int64_t total_heads, const std::optional<InArray>& workspace,
                          uintptr_t stream) {
  const pd::Method m = parse_or_raise<pd::Method>(method);
  Device dev;
  switch (query_key_checks<Backend>(q, k, &dev)) {
    case Elem::kF32:
      return score_partial_typed<Backend, float>(q, k, lengths, partial, m, head_offset,
                                                 total_heads, workspace, dev, stream);
    case Elem::kF16:
      return score_partial_typed<Backend, pd::f16>(q, k, lengths, partial, m, head_offset,
                                                   total_heads, workspace, dev, stream);
    default:
      return score_partial_typed<Backend, pd::bf16>(q, k, lengths, partial, m, head_offset,
                                                    total_heads, workspace, dev, stream);
  }
}

template <class Backend>
std::size_t finish_select(const InArray& scores, const InArray& lengths, const InArray& indices,
                          const InArray& counts, const InArray& positions,
                          const InArray& final_scores, const std::string& method, int64_t budget,
                          const std::string& pool, int64_t pool_kernel, int64_t total_heads,
                          const std::optional<InArray>& workspace, uintptr_t stream) {
  pd::FinishSelectArgs a;
  // The configuration is checked by can_implement, which names a method that needs no finishing
  // stage before anything else.
  a.config.method = parse_or_raise<pd::Method>(method);
  a.config.budget = budget;
  a.config.pool = parse_or_raise<pd::PoolMode>(pool);
  if (pool_kernel < 1 || pool_kernel > INT32_MAX)
    raise(pd::Status(pd::StatusCode::kInvalidArgument, "pool kernel must be odd and >= 1, got %lld",
                     (long long)pool_kernel));
  a.config.pool_kernel = int32_t(pool_kernel);
  const Device dev = backend_device<Backend>("scores", scores);
  a.summed = score_rows_view<const float>("scores", scores, dev);
  a.total_heads = total_heads;
  a.lengths = int_vector("lengths", lengths, dev, int64_t(scores.shape(0)));
  a.indices =
      checked_view<int32_t, 3>("indices", indices, dev, Elem::kI32, "int32", "[B, 1, capacity]");
  a.counts = checked_view<int32_t, 2>("counts", counts, dev, Elem::kI32, "int32", "[B, 1]");
  a.positions = checked_view<int32_t, 3>("positions", positions, dev, Elem::kI32, "int32",
                                         "[B, 1, capacity]");
  a.final_scores =
      checked_view<float, 3>("final_scores", final_scores, dev, Elem::kF32, "float32", "[B, 1, L]");
  return plan_or_run<typename Backend::FinishSelect>(a, workspace, dev, stream);
}

//! Rows of a selection ([B, rows, capacity] indices) and their counts, checked against `dev`.
struct SelectionViews {
  pd::TensorView<const int32_t, 3> indices;
  pd::TensorView<const int32_t, 2> counts;
};
inline SelectionViews selection_views(const InArray& indices, const InArray& counts,
                                      const Device& dev) {
  return {checked_view<const int32_t, 3>("indices", indices, dev, Elem::kI32, "int32",
                                         "[B, rows, capacity]"),
          checked_view<const int32_t, 2>("counts", counts, dev, Elem::kI32, "int32", "[B, rows]")};
}

template <class Backend, class T>
std::size_t gather_typed(const InArray& src, const SelectionViews& sel, const InArray& dst,
                         const std::optional<InArray>& workspace, const Device& dev,
                         uintptr_t stream) {
  pd::GatherArgs<T> a;
  a.src = view_of<const T, 3>(src);
  a.indices = sel.indices;
  a.counts = sel.counts;
  a.dst = view_of<T, 3>(dst);
  return plan_or_run<typename Backend::template Gather<T>>(a, workspace, dev, stream);
}

template <class Backend>
std::size_t gather(const InArray& src, const InArray& indices, const InArray& counts,
                   const InArray& dst, const std::optional<InArray>& workspace, uintptr_t stream) {
  const Device dev = backend_device<Backend>("hidden", src);
  require_rank("hidden", src, 3, "[B, L, E]");
  require_rank("out", dst, 3, "[B, capacity, E]");
  require_device("out", dst, dev);
  const SelectionViews sel = selection_views(indices, counts, dev);
  if (sel.indices.extents[1] != 1)
    raise(pd::Status(pd::StatusCode::kUnsupported,
                     "gather needs a head-uniform selection (promptdistill or gemfilter); this one "
                     "has %lld rows per request",
                     (long long)sel.indices.extents[1]));
  const Elem e = elem_of(src.dtype());
  if (elem_of(dst.dtype()) != e)
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "out must have the dtype of hidden (%s), got %s",
                     dtype_name(src.dtype()).c_str(), dtype_name(dst.dtype()).c_str()));
  switch (e) {
    case Elem::kF32: return gather_typed<Backend, float>(src, sel, dst, workspace, dev, stream);
    case Elem::kF16: return gather_typed<Backend, pd::f16>(src, sel, dst, workspace, dev, stream);
    case Elem::kBF16: return gather_typed<Backend, pd::bf16>(src, sel, dst, workspace, dev, stream);
    case Elem::kI32: return gather_typed<Backend, int32_t>(src, sel, dst, workspace, dev, stream);
    default:
      raise(pd::Status(pd::StatusCode::kUnsupported,
                       "hidden must be float32, float16, bfloat16 or int32, got %s",
                       dtype_name(src.dtype()).c_str()));
  }
}

template <class Backend>
std::size_t remap_positions(const InArray& indices, const InArray& counts,
                            const std::optional<InArray>& positions_in,
                            const InArray& positions_out, bool renumber,
                            const std::optional<InArray>& workspace, uintptr_t stream) {
  const Device dev = backend_device<Backend>("indices", indices);
  const SelectionViews sel = selection_views(indices, counts, dev);
  pd::RemapPositionsArgs a;
  a.mode = renumber ? pd::PositionMode::kRenumber : pd::PositionMode::kOriginal;
  if (positions_in)
    a.positions_in = checked_view<const int32_t, 2>("positions", *positions_in, dev, Elem::kI32,
                                                    "int32", "[B, L]");
  a.indices = sel.indices;
  a.counts = sel.counts;
  a.positions_out = checked_view<int32_t, 3>("out", positions_out, dev, Elem::kI32, "int32",
                                             "[B, rows, capacity]");
  return plan_or_run<typename Backend::RemapPositions>(a, workspace, dev, stream);
}

//! Page tables of a paged cache (each one optional; which ones a layout needs is checked here).
struct PageTables {
  std::optional<InArray> block_table, kv_indptr, kv_indices, kv_last_page_len;
};

//! One layer's K (or V) cache in `layout`, described by the array's own strides.
template <class T>
pd::KvCacheView<T> cache_view(const char* name, const InArray& c, const std::string& layout,
                              const PageTables& pages, const Device& dev) {
  const bool paged = layout.rfind("paged_", 0) == 0,
             flashinfer = layout.rfind("flashinfer_", 0) == 0;
  const bool head_major = layout == "bhsd" || layout == "paged_hnd" || layout == "flashinfer_hnd";
  if (!paged && !flashinfer && layout != "bshd" && layout != "bhsd")
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "layout must be bshd, bhsd, paged_nhd, paged_hnd, flashinfer_nhd or "
                     "flashinfer_hnd, got '%.40s'",
                     layout.c_str()));
  if (!paged && pages.block_table)
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "block_table is only used by the paged_* layouts"));
  if (!flashinfer && (pages.kv_indptr || pages.kv_indices || pages.kv_last_page_len))
    raise(pd::Status(
        pd::StatusCode::kInvalidArgument,
        "kv_indptr, kv_indices and kv_last_page_len are only used by the flashinfer_* layouts"));
  if (paged && !pages.block_table)
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "the %s layout needs block_table [B, max_blocks]", layout.c_str()));
  if (flashinfer && (!pages.kv_indptr || !pages.kv_indices || !pages.kv_last_page_len))
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "the %s layout needs kv_indptr [B+1], kv_indices and kv_last_page_len [B]",
                     layout.c_str()));
  require_device(name, c, dev);
  require_rank(name, c, 4,
               paged || flashinfer
                   ? (head_major ? "[num_blocks, H_kv, block, D]" : "[num_blocks, block, H_kv, D]")
                   : (head_major ? "[B, H_kv, S, D]" : "[B, S, H_kv, D]"));
  if (c.stride(3) != 1 && c.shape(3) > 1)
    raise(pd::Status(pd::StatusCode::kUnsupported,
                     "%s: head_dim must be contiguous (stride 1), got stride %lld", name,
                     (long long)c.stride(3)));
  pd::KvCacheView<T> v;
  v.data = static_cast<T*>(const_cast<void*>(c.data()));
  v.head_dim = int64_t(c.shape(3));
  v.num_heads = int64_t(c.shape(head_major ? 1 : 2));
  v.capacity = int64_t(c.shape(head_major ? 2 : 1));  // tokens per request (contiguous) or per page
  v.stride_seq = c.stride(0);
  v.stride_token = c.stride(head_major ? 2 : 1);
  v.stride_head = c.stride(head_major ? 1 : 2);
  if (!paged && !flashinfer) {
    v.batch = int64_t(c.shape(0));
    return v;
  }
  v.num_blocks = int64_t(c.shape(0));
  if (paged) {
    v.layout = pd::KvLayout::kPagedBlockTable;
    const InArray& bt = *pages.block_table;
    require_device("block_table", bt, dev);
    require_rank("block_table", bt, 2, "[B, max_blocks]");
    require_elem("block_table", bt, Elem::kI32, "int32");
    if (bt.stride(1) != 1 && bt.shape(1) > 1)
      raise(pd::Status(pd::StatusCode::kInvalidArgument, "block_table rows must be contiguous"));
    v.batch = int64_t(bt.shape(0));
    v.block_table = static_cast<const int32_t*>(bt.data());
    v.max_blocks_per_request = int64_t(bt.shape(1));
    v.block_table_stride = bt.shape(0) > 1 ? bt.stride(0) : v.max_blocks_per_request;
    return v;
  }
  v.layout = pd::KvLayout::kPagedIndptr;
  v.indptr = int_vector("kv_indptr", *pages.kv_indptr, dev);
  if (pages.kv_indptr->shape(0) < 1)
    raise(pd::Status(pd::StatusCode::kShapeMismatch, "kv_indptr must have B + 1 >= 1 elements"));
  v.batch = int64_t(pages.kv_indptr->shape(0)) - 1;
  v.indices = int_vector("kv_indices", *pages.kv_indices, dev);
  v.num_indices = int64_t(pages.kv_indices->shape(0));  // the data checks keep kv_indptr inside it
  v.last_page_len = int_vector("kv_last_page_len", *pages.kv_last_page_len, dev, v.batch);
  return v;
}

template <class Backend, class T>
std::size_t compact_typed(const InArray& k, const InArray& v, const std::string& layout,
                          const std::optional<InArray>& seq_lens, const PageTables& pages,
                          const SelectionViews& sel, const InArray& new_lengths,
                          const std::optional<InArray>& freed_pages,
                          const std::optional<InArray>& workspace, const Device& dev,
                          uintptr_t stream) {
  pd::CompactKvArgs<T> a;
  a.k = cache_view<T>("k_cache", k, layout, pages, dev);
  a.v = cache_view<T>("v_cache", v, layout, pages, dev);
  if (seq_lens) a.seq_lens = int_vector("seq_lens", *seq_lens, dev, a.k.batch);
  a.indices = sel.indices;
  a.counts = sel.counts;
  a.new_lengths = const_cast<int32_t*>(int_vector("new_lengths", new_lengths, dev, a.k.batch));
  if (freed_pages)
    a.freed_pages = const_cast<int32_t*>(int_vector("freed_pages", *freed_pages, dev, a.k.batch));
  return plan_or_run<typename Backend::template CompactKv<T>>(a, workspace, dev, stream);
}

template <class Backend>
std::size_t compact_kv(const InArray& k, const InArray& v, const std::string& layout,
                       const std::optional<InArray>& seq_lens,
                       const std::optional<InArray>& block_table,
                       const std::optional<InArray>& kv_indptr,
                       const std::optional<InArray>& kv_indices,
                       const std::optional<InArray>& kv_last_page_len, const InArray& indices,
                       const InArray& counts, const InArray& new_lengths,
                       const std::optional<InArray>& freed_pages,
                       const std::optional<InArray>& workspace, uintptr_t stream) {
  const Device dev = backend_device<Backend>("k_cache", k);
  const Elem e = require_float("k_cache", k);
  require_float("v_cache", v);
  if (elem_of(v.dtype()) != e)
    raise(pd::Status(pd::StatusCode::kInvalidArgument,
                     "k_cache and v_cache must have the same dtype, got %s and %s",
                     dtype_name(k.dtype()).c_str(), dtype_name(v.dtype()).c_str()));
  const SelectionViews sel = selection_views(indices, counts, dev);
  const PageTables pages{block_table, kv_indptr, kv_indices, kv_last_page_len};
  switch (e) {
    case Elem::kF32:
      return compact_typed<Backend, float>(k, v, layout, seq_lens, pages, sel, new_lengths,
                                           freed_pages, workspace, dev, stream);
    case Elem::kF16:
      return compact_typed<Backend, pd::f16>(k, v, layout, seq_lens, pages, sel, new_lengths,
                                             freed_pages, workspace, dev, stream);
    default:
      return compact_typed<Backend, pd::bf16>(k, v, layout, seq_lens, pages, sel, new_lengths,
                                              freed_pages, workspace, dev, stream);
  }
}

//! The operations of one backend, as module functions (and the translation of their errors).
template <class Backend>
void define_ops(nb::module_& m) {
  using namespace nb::literals;
  register_error_translator();
  m.def("select", &select<Backend>, "q"_a, "k"_a, "lengths"_a, "indices"_a, "counts"_a,
        "positions"_a, "scores"_a, "method"_a, "budget"_a, "window"_a, "pool"_a, "pool_kernel"_a,
        "per"_a, "workspace"_a.none(), "stream"_a);
  m.def("gather", &gather<Backend>, "hidden"_a, "indices"_a, "counts"_a, "out"_a,
        "workspace"_a.none(), "stream"_a);
  m.def("remap_positions", &remap_positions<Backend>, "indices"_a, "counts"_a, "positions"_a.none(),
        "out"_a, "renumber"_a, "workspace"_a.none(), "stream"_a);
  m.def("compact_kv", &compact_kv<Backend>, "k_cache"_a, "v_cache"_a, "layout"_a,
        "seq_lens"_a.none(), "block_table"_a.none(), "kv_indptr"_a.none(), "kv_indices"_a.none(),
        "kv_last_page_len"_a.none(), "indices"_a, "counts"_a, "new_lengths"_a,
        "freed_pages"_a.none(), "workspace"_a.none(), "stream"_a);
  m.def("score_partial", &score_partial<Backend>, "q"_a, "k"_a, "lengths"_a, "partial"_a,
        "method"_a, "head_offset"_a, "total_heads"_a, "workspace"_a.none(), "stream"_a);
  m.def("finish_select", &finish_select<Backend>, "scores"_a, "lengths"_a, "indices"_a, "counts"_a,
        "positions"_a, "final_scores"_a, "method"_a, "budget"_a, "pool"_a, "pool_kernel"_a,
        "total_heads"_a, "workspace"_a.none(), "stream"_a);
  m.attr("STATUS_BYTES") = sizeof(pd::detail::DeviceStatusWord);
}

}  // namespace pdpy
