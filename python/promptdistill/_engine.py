# SPDX-License-Identifier: Apache-2.0
"""The engine API: select -> gather / remap_positions -> compact_kv, on NumPy arrays (the CPU
reference) and PyTorch tensors (the backend of their device), with the CLI's semantics."""

import dataclasses

import numpy as np

from . import _backends, _core
from ._compat import renamed_argument
from ._errors import Error
from ._geometry import HEAD_SUM_METHODS, batched_form, require_int, require_str, select_geometry, selection_outputs

#: Methods whose selection is one row per request (every head keeps the same tokens).
HEAD_UNIFORM = HEAD_SUM_METHODS


@dataclasses.dataclass(frozen=True)
class Selection:
    """What ``select`` kept, as arrays of the input's library and device.

    ``indices``: kept token indices, ascending. Unbatched: ``[C]`` for promptdistill/gemfilter,
    ``[rows, C]`` for snapkv/h2o (one row per KV group, or per query head with ``per="head"``).
    Batched: the same with a leading ``B``; ragged requests are padded with -1 past ``counts``.
    ``positions``: the positions the kept tokens carry (original ones; 0..C-1 for gemfilter).
    ``scores``: float32 pooled scores that ranked them, ``[L]`` / ``[rows, L]`` (leading ``B``).
    ``counts``: tokens kept, shaped like ``indices`` without its last dimension.
    ``lengths``: int32 ``[B]`` prompt lengths it was selected over (``[1]`` unbatched).
    """

    indices: object
    positions: object
    scores: object
    counts: object
    lengths: object
    method: str
    batched: bool
    #: The padded [B, rows, C] indices and [B, rows] counts the other operations take.
    rows_indices: object = dataclasses.field(repr=False)
    rows_counts: object = dataclasses.field(repr=False)
    status: object = dataclasses.field(repr=False, default=None)

    def check(self):
        """Raises the Error a CUDA run recorded (lengths beyond the array, ...); waits for the
        stream. A no-op on the CPU, where errors are raised by ``select`` itself."""
        check_status(self.status)
        return self


@dataclasses.dataclass(frozen=True)
class KvCompaction:
    """What ``compact_kv`` did: int32 ``[B]`` new lengths and whole tail pages freed (paged layouts)."""

    new_lengths: object
    freed_pages: object
    status: object = dataclasses.field(repr=False, default=None)

    def check(self):
        """Raises the Error a CUDA run recorded (page table out of range, ...); waits for the stream."""
        check_status(self.status)
        return self


def check_status(status):
    """Raises the Error recorded in a status word that a CUDA operation returned (waits for the
    current stream); does nothing for CPU runs. For code that calls ``torch.ops.promptdistill.*``."""
    if status is not None:
        _backends.check_status(status)


def _shape_of_rows(x, method, batched):
    """[B, rows, ...] -> the public shape: rows dropped for head-uniform methods, B when unbatched."""
    if method in HEAD_UNIFORM:
        x = x[:, 0]
    return x if batched else x[0]


def _unbatched_rank_error(q, k):
    return Error(f"q must be [Lq, H, D] and k [L, H_kv, D], or both with a leading batch dimension; got q with {q.ndim} "
                 f"and k with {k.ndim} dimensions", "shape mismatch")


def select(q, k, budget=None, *, method="promptdistill", window=None, pool=None, pool_kernel=None, per="kv-group", lengths=None,
           topk=None):
    """Selects the prompt tokens to keep, as ``promptdistill select`` does on the CLI.

    q: ``[Lq, H, D]`` post-RoPE queries (the last token for promptdistill/gemfilter, the last W for
    snapkv, all L for h2o); k: ``[L, H_kv, D]`` post-RoPE keys; float32, float16 or bfloat16.
    Batched: ``[B, Lq, H, D]`` and ``[B, L_max, H_kv, D]`` with int32 ``lengths [B]`` (request b's
    query rows end at its own last token). budget: promptdistill: tokens chosen besides the
    always-kept last one; gemfilter: tokens kept; snapkv/h2o: tokens per row, window included
    (``topk`` is its former name, accepted with a DeprecationWarning).
    window (32), pool ("avg", "max" or "none"; h2o never pools), pool_kernel (5), per
    ("kv-group" or "head"): as on the CLI. NumPy in, NumPy out (CPU reference); PyTorch in, PyTorch
    out on the same device (CUDA: the current stream, no synchronisation; see Selection.check).
    """
    budget = renamed_argument(budget, topk, "budget", "topk", "select")
    if budget is None:
        raise Error("select needs a budget (the tokens to keep; see the docstring for each method's meaning)")
    q, k = _backends.as_array(q, "q"), _backends.as_array(k, "k")
    k = _backends.same_kind(q, k, "k", "q")
    lengths = _backends.same_kind(q, lengths, "lengths", "q")
    if q.ndim not in (3, 4) or k.ndim != q.ndim:
        raise _unbatched_rank_error(q, k)
    batched = q.ndim == 4
    budget = require_int("budget", budget)
    window, pool_kernel = require_int("window", window, 32), require_int("pool_kernel", pool_kernel, 5)
    method, pool, per = require_str("method", method), require_str("pool", pool, "avg"), require_str("per", per)
    q, k, lengths = batched_form((q, k), "q", batched, lengths,
                                 "lengths is for the batched form ([B, Lq, H, D] queries); an unbatched call selects over all of k")
    if _backends.is_torch(q):
        torch = _backends.torch_module()
        indices, counts, positions, scores, status = torch.ops.promptdistill.select(q, k, lengths, budget, method, window, pool,
                                                                                    pool_kernel, per)
    else:
        B, L = k.shape[0], k.shape[1]
        rows, kept = select_geometry(method, budget, window, pool, pool_kernel, per, q.shape[2], k.shape[2], L)
        indices, counts, positions, scores = selection_outputs(q, B, rows, kept, L)
        _backends.run_numpy(_core.select, (q, k, lengths, indices, counts, positions, scores, method, budget, window, pool,
                                           pool_kernel, per))
        status = None
    return Selection(indices=_shape_of_rows(indices, method, batched), positions=_shape_of_rows(positions, method, batched),
                     scores=_shape_of_rows(scores, method, batched), counts=_shape_of_rows(counts, method, batched),
                     lengths=lengths, method=method, batched=batched, rows_indices=indices, rows_counts=counts, status=status)


def _require_selection(selection):
    if not isinstance(selection, Selection):
        raise Error(f"selection must be what promptdistill.select returned, got {type(selection).__name__}")


def gather(hidden, selection):
    """The rows of ``hidden`` (``[L, E]``, or ``[B, L, E]`` for a batched selection) at the kept
    indices of a head-uniform selection: ``[C, E]`` / ``[B, C, E]`` (ragged tails are zeros)."""
    _require_selection(selection)
    hidden = _backends.same_kind(selection.rows_indices, _backends.as_array(hidden, "hidden"), "hidden", "the selection")
    want = 3 if selection.batched else 2
    if hidden.ndim != want:
        raise Error(f"hidden must have {want} dimensions ({'[B, L, E]' if selection.batched else '[L, E]'}) for this selection, "
                    f"got {hidden.ndim}", "shape mismatch")
    src = hidden if selection.batched else hidden[None]
    if _backends.is_torch(src):
        torch = _backends.torch_module()
        _backends.module_for(src, "hidden")
        out, _ = torch.ops.promptdistill.gather(src.detach(), selection.rows_indices, selection.rows_counts)
    else:
        out = np.zeros((src.shape[0], selection.rows_indices.shape[2], src.shape[2]), src.dtype)
        _backends.run_numpy(_core.gather, (src, selection.rows_indices, selection.rows_counts, out))
    return out if selection.batched else out[0]


def remap_positions(selection, positions=None, *, renumber=False):
    """Positions for the kept tokens, shaped like ``selection.indices``: ``positions[indices]`` of an
    int32 ``[L]`` / ``[B, L]`` array (multi-stage selection: the survivors' original positions),
    the indices themselves when ``positions`` is None, or 0..count-1 with ``renumber=True``."""
    _require_selection(selection)
    if positions is not None:
        positions = _backends.same_kind(selection.rows_indices, _backends.as_array(positions, "positions"), "positions",
                                        "the selection")
        want = 2 if selection.batched else 1
        if positions.ndim != want:
            raise Error(f"positions must have {want} dimension(s) for this selection, got {positions.ndim}", "shape mismatch")
        if not selection.batched:
            positions = positions[None]
    if _backends.is_torch(selection.rows_indices):
        torch = _backends.torch_module()
        out, _ = torch.ops.promptdistill.remap_positions(selection.rows_indices, selection.rows_counts, positions, bool(renumber))
    else:
        out = np.full(selection.rows_indices.shape, -1, np.int32)
        _backends.run_numpy(_core.remap_positions, (selection.rows_indices, selection.rows_counts, positions, out, bool(renumber)))
    return _shape_of_rows(out, selection.method, selection.batched)


_CONTIGUOUS_LAYOUTS = ("bshd", "bhsd")


def compact_kv(k_cache, v_cache, selection, *, layout="bshd", seq_lens=None, block_table=None, kv_indptr=None, kv_indices=None,
               kv_last_page_len=None):
    """Compacts one layer's K and V caches in place: each request's kept tokens move to the front
    of its sequence, in ascending order. Returns ``KvCompaction(new_lengths, freed_pages)``.

    layout: ``"bshd"`` ``[B, S, H_kv, D]`` (``[S, H_kv, D]`` for an unbatched selection), ``"bhsd"``
    ``[B, H_kv, S, D]`` (Hugging Face), ``"paged_nhd"`` / ``"paged_hnd"`` (vLLM: pages
    ``[num_blocks, block, H_kv, D]`` / ``[num_blocks, H_kv, block, D]`` with int32
    ``block_table [B, max_blocks]``), ``"flashinfer_nhd"`` / ``"flashinfer_hnd"`` (the same pages
    with ``kv_indptr [B+1]``, ``kv_indices``, ``kv_last_page_len [B]``). ``seq_lens`` (int32 [B],
    the current lengths) defaults to the lengths the selection was made over.
    """
    _require_selection(selection)
    ref = selection.rows_indices
    k_cache = _backends.same_kind(ref, _backends.as_array(k_cache, "k_cache"), "k_cache", "the selection")
    v_cache = _backends.same_kind(ref, _backends.as_array(v_cache, "v_cache"), "v_cache", "the selection")
    tables = {name: _backends.same_kind(ref, value, name, "the selection") for name, value in
              (("seq_lens", seq_lens), ("block_table", block_table), ("kv_indptr", kv_indptr), ("kv_indices", kv_indices),
               ("kv_last_page_len", kv_last_page_len))}
    layout = require_str("layout", layout)
    for name, cache in (("k_cache", k_cache), ("v_cache", v_cache)):
        if isinstance(cache, np.ndarray) and not cache.flags.writeable:
            raise Error(f"{name} is read-only; compact_kv compacts it in place")
    if not selection.batched:
        if layout in _CONTIGUOUS_LAYOUTS and k_cache.ndim == 3 and v_cache.ndim == 3:
            k_cache, v_cache = k_cache[None], v_cache[None]
        if tables["block_table"] is not None and tables["block_table"].ndim == 1:
            tables["block_table"] = tables["block_table"][None]
    if tables["seq_lens"] is None and not layout.startswith("flashinfer_"):
        tables["seq_lens"] = selection.lengths
    order = ("seq_lens", "block_table", "kv_indptr", "kv_indices", "kv_last_page_len")
    if _backends.is_torch(ref):
        torch = _backends.torch_module()
        _backends.module_for(k_cache, "k_cache")
        new_lengths, freed, status = torch.ops.promptdistill.compact_kv(
            k_cache.detach(), v_cache.detach(), ref, selection.rows_counts, layout, *(tables[n] for n in order))
        return KvCompaction(new_lengths=new_lengths, freed_pages=freed, status=status)
    new_lengths = np.zeros(ref.shape[0], np.int32)
    freed = np.zeros(ref.shape[0], np.int32)
    _backends.run_numpy(_core.compact_kv, (k_cache, v_cache, layout, *(tables[n] for n in order), ref, selection.rows_counts,
                                           new_lengths, freed))
    return KvCompaction(new_lengths=new_lengths, freed_pages=freed)
