# SPDX-License-Identifier: Apache-2.0
"""Selection under tensor parallelism: each rank holds H/R query heads (and their KV heads), so
PromptDistill and GemFilter, which sum over every head, take three calls per selection layer, the
same on every rank::

    partial = promptdistill.score_partial(q_rank, k_rank, total_heads=H, head_offset=rank * H_r)
    torch.distributed.all_reduce(partial)            # the engine's own communicator
    sel = promptdistill.finish_select(partial, budget, total_heads=H)

``finish_select`` is deterministic, so every rank that receives the same sums makes the same
selection, with no broadcast. SnapKV and H2O select per KV group: each rank calls ``select`` on its
own heads and gets the unsharded rows of those heads."""

import numpy as np

from . import _backends, _core
from ._compat import renamed_argument
from ._engine import Selection, _shape_of_rows
from ._errors import Error
from ._geometry import batched_form, finish_geometry, require_int, require_str, selection_outputs


def _require_method(method, call):
    require_str("method", method)
    if method in ("snapkv", "h2o"):
        raise Error(f"{call}: {method} selects per KV group (or per query head), which needs no all-reduce under tensor "
                    "parallelism: call promptdistill.select on the rank's own heads", "unsupported")


def score_partial(q, k, *, method="promptdistill", total_heads, head_offset=0, lengths=None):
    """The rank's partial scores: for each key, the sum over the rank's query heads of the head terms
    (promptdistill: q.k / sqrt(d); gemfilter: q.k), not yet divided by the head count.

    q: ``[1, H_r, D]`` post-RoPE queries of the last prompt token on this rank's heads; k:
    ``[L, H_kv_r, D]`` this rank's post-RoPE keys (its KV heads, or the one it shares when there are
    more ranks than KV heads). Batched: ``[B, 1, H_r, D]``, ``[B, L_max, H_kv_r, D]`` and int32
    ``lengths [B]``. total_heads: H, the query heads of all ranks; head_offset: this rank's first
    query head (rank * H_r); both are checked. Returns float32 ``[L]`` (``[B, L]`` batched) of the
    input's library and device, to be summed over the ranks (an all-reduce) and passed to
    ``finish_select``. On CUDA, errors in device-resident lengths surface in the ``finish_select``
    that follows, which checks the same lengths.
    """
    q, k = _backends.as_array(q, "q"), _backends.as_array(k, "k")
    k = _backends.same_kind(q, k, "k", "q")
    lengths = _backends.same_kind(q, lengths, "lengths", "q")
    _require_method(method, "score_partial")
    total_heads, head_offset = require_int("total_heads", total_heads), require_int("head_offset", head_offset)
    if q.ndim not in (3, 4) or k.ndim != q.ndim:
        raise Error(f"q must be [1, H_r, D] and k [L, H_kv_r, D], or both with a leading batch dimension; got q with {q.ndim} "
                    f"and k with {k.ndim} dimensions", "shape mismatch")
    batched = q.ndim == 4
    q, k, lengths = batched_form((q, k), "q", batched, lengths,
                                 "lengths is for the batched form ([B, 1, H_r, D] queries); an unbatched call scores all of k")
    if _backends.is_torch(q):
        torch = _backends.torch_module()
        partial, _ = torch.ops.promptdistill.score_partial(q, k, lengths, method, head_offset, total_heads)
    else:
        partial = np.zeros((k.shape[0], k.shape[1]), np.float32)
        _backends.run_numpy(_core.score_partial, (q, k, lengths, partial, method, head_offset, total_heads))
    return partial if batched else partial[0]


def finish_select(scores, budget=None, *, method="promptdistill", total_heads, pool=None, pool_kernel=None, lengths=None,
                  topk=None):
    """The selection from the ranks' summed partial scores: normalise by ``total_heads``
    (promptdistill's mean; gemfilter sums), pool, top-k. Returns the ``Selection`` that
    ``promptdistill.select`` gives on all heads, the same on every rank that passes the same sums.

    scores: float32 ``[L]`` (``[B, L]`` batched, with int32 ``lengths [B]``), the all-reduced output
    of ``score_partial``. budget (former name ``topk``), pool ("avg", "max" or "none"), pool_kernel:
    as for ``select``.
    """
    scores = _backends.as_array(scores, "scores")
    lengths = _backends.same_kind(scores, lengths, "lengths", "scores")
    _require_method(method, "finish_select")
    budget = renamed_argument(budget, topk, "budget", "topk", "finish_select")
    budget, total_heads = require_int("budget", budget), require_int("total_heads", total_heads)
    pool_kernel, pool = require_int("pool_kernel", pool_kernel, 5), require_str("pool", pool, "avg")
    if scores.ndim not in (1, 2):
        raise Error(f"scores must be [L] or [B, L] (the summed partial scores), got {scores.ndim} dimensions", "shape mismatch")
    batched = scores.ndim == 2
    scores, lengths = batched_form((scores,), "scores", batched, lengths,
                                   "lengths is for the batched form ([B, L] scores); an unbatched call selects over all of scores")
    if _backends.is_torch(scores):
        torch = _backends.torch_module()
        indices, counts, positions, final, status = torch.ops.promptdistill.finish_select(scores, lengths, budget, method,
                                                                                          total_heads, pool, pool_kernel)
    else:
        B, L = scores.shape
        _, kept = finish_geometry(method, budget, pool, pool_kernel, L)
        indices, counts, positions, final = selection_outputs(scores, B, 1, kept, L)
        _backends.run_numpy(_core.finish_select, (scores, lengths, indices, counts, positions, final, method, budget, pool,
                                                  pool_kernel, total_heads))
        status = None
    return Selection(indices=_shape_of_rows(indices, method, batched), positions=_shape_of_rows(positions, method, batched),
                     scores=_shape_of_rows(final, method, batched), counts=_shape_of_rows(counts, method, batched),
                     lengths=lengths, method=method, batched=batched, rows_indices=indices, rows_counts=counts, status=status)
