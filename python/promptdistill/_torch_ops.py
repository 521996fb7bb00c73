# SPDX-License-Identifier: Apache-2.0
"""The Selector (and the tensor-parallel score_partial and finish_select) as PyTorch custom
operators (namespace ``promptdistill``), each with a fake implementation, so that
``torch.compile(fullgraph=True)`` traces code that calls them and CUDA graphs capture them.

Every output is padded to what the longest request can keep (ragged requests leave -1 / 0 in the
tail; ``counts`` says how many are real) so that output shapes depend on input shapes only. The
last output of every operator is its status word: zeros on the CPU (errors are raised at once);
on CUDA a device copy that ``promptdistill.check_status`` reads (the only place that waits)."""

from typing import Optional

import torch

from . import _backends, _core
from ._geometry import finish_geometry, select_geometry, selection_outputs

_LIB = "promptdistill"


def _concrete(*sizes):
    """The sizes as ints, or None when one is symbolic (dynamic shapes under torch.compile)."""
    return list(sizes) if all(isinstance(s, int) for s in sizes) else None


def _status_like(device):
    return torch.empty(_core.STATUS_BYTES, dtype=torch.uint8, device=device)


@torch.library.custom_op(f"{_LIB}::select", mutates_args=())
def select(q: torch.Tensor, k: torch.Tensor, lengths: torch.Tensor, budget: int, method: str, window: int, pool: str,
           pool_kernel: int, per: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q [B, rows, H, D], k [B, L, H_kv, D], lengths int32 [B] -> indices int32 [B, R, C] (ascending,
    -1 padded), counts int32 [B, R], positions int32 [B, R, C], scores float32 [B, R, L], status."""
    module = _backends.module_for(q, "q")
    B, L = k.shape[0], k.shape[1]
    rows, kept = select_geometry(method, budget, window, pool, pool_kernel, per, q.shape[2], k.shape[2], L)
    indices, counts, positions, scores = selection_outputs(q, B, rows, kept, L)
    status = _backends.run_torch(module.select, (q, k, lengths, indices, counts, positions, scores, method, budget, window, pool,
                                                 pool_kernel, per), q.device)
    return indices, counts, positions, scores, status


@select.register_fake
def _select_fake(q, k, lengths, budget, method, window, pool, pool_kernel, per):
    B, L = k.shape[0], k.shape[1]
    sizes = _concrete(q.shape[2], k.shape[2], L)
    if sizes is not None:
        rows, kept = select_geometry(method, budget, window, pool, pool_kernel, per, *sizes)
    else:  # a symbolic prompt length: the kept count is a new size the compiler must not assume
        rows, _ = select_geometry(method, budget, window, pool, pool_kernel, per, int(q.shape[2]), int(k.shape[2]), 1)
        kept = torch.library.get_ctx().new_dynamic_size()
    return (q.new_empty((B, rows, kept), dtype=torch.int32), q.new_empty((B, rows), dtype=torch.int32),
            q.new_empty((B, rows, kept), dtype=torch.int32), q.new_empty((B, rows, L), dtype=torch.float32),
            _status_like(q.device))


@torch.library.custom_op(f"{_LIB}::gather", mutates_args=())
def gather(hidden: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [B, L, E] rows of a head-uniform selection -> out [B, C, E] (zero rows past counts), status."""
    module = _backends.module_for(hidden, "hidden")
    out = hidden.new_zeros((hidden.shape[0], indices.shape[2], hidden.shape[2]))
    status = _backends.run_torch(module.gather, (hidden, indices, counts, out), hidden.device)
    return out, status


@gather.register_fake
def _gather_fake(hidden, indices, counts):
    return hidden.new_empty((hidden.shape[0], indices.shape[2], hidden.shape[2])), _status_like(hidden.device)


@torch.library.custom_op(f"{_LIB}::remap_positions", mutates_args=())
def remap_positions(indices: torch.Tensor, counts: torch.Tensor, positions: Optional[torch.Tensor],
                    renumber: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the kept tokens: positions[indices] (identity when None) or 0..count-1."""
    module = _backends.module_for(indices, "indices")
    out = torch.full(indices.shape, -1, dtype=torch.int32, device=indices.device)
    status = _backends.run_torch(module.remap_positions, (indices, counts, positions, out, renumber), indices.device)
    return out, status


@remap_positions.register_fake
def _remap_fake(indices, counts, positions, renumber):
    return torch.empty_like(indices), _status_like(indices.device)


@torch.library.custom_op(f"{_LIB}::compact_kv", mutates_args=("k_cache", "v_cache"))
def compact_kv(k_cache: torch.Tensor, v_cache: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor, layout: str,
               seq_lens: Optional[torch.Tensor], block_table: Optional[torch.Tensor], kv_indptr: Optional[torch.Tensor],
               kv_indices: Optional[torch.Tensor],
               kv_last_page_len: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Moves each request's kept tokens to the front of its sequence, in place -> new_lengths int32
    [B], freed_pages int32 [B] (whole tail pages a paged cache no longer needs), status."""
    module = _backends.module_for(k_cache, "k_cache")
    B = counts.shape[0]
    new_lengths = torch.zeros(B, dtype=torch.int32, device=k_cache.device)
    freed_pages = torch.zeros(B, dtype=torch.int32, device=k_cache.device)
    status = _backends.run_torch(module.compact_kv, (k_cache, v_cache, layout, seq_lens, block_table, kv_indptr, kv_indices,
                                                     kv_last_page_len, indices, counts, new_lengths, freed_pages), k_cache.device)
    return new_lengths, freed_pages, status


@compact_kv.register_fake
def _compact_fake(k_cache, v_cache, indices, counts, layout, seq_lens, block_table, kv_indptr, kv_indices, kv_last_page_len):
    B = counts.shape[0]
    return (counts.new_empty((B,), dtype=torch.int32), counts.new_empty((B,), dtype=torch.int32), _status_like(k_cache.device))


@torch.library.custom_op(f"{_LIB}::score_partial", mutates_args=())
def score_partial(q: torch.Tensor, k: torch.Tensor, lengths: torch.Tensor, method: str, head_offset: int,
                  total_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A tensor-parallel rank's partial scores: q [B, 1, H_r, D], k [B, L, H_kv_r, D], lengths int32
    [B] -> partial float32 [B, L] (zeros past each length), status."""
    module = _backends.module_for(q, "q")
    partial = torch.zeros((k.shape[0], k.shape[1]), dtype=torch.float32, device=q.device)
    status = _backends.run_torch(module.score_partial, (q, k, lengths, partial, method, head_offset, total_heads), q.device)
    return partial, status


@score_partial.register_fake
def _score_partial_fake(q, k, lengths, method, head_offset, total_heads):
    return q.new_empty((k.shape[0], k.shape[1]), dtype=torch.float32), _status_like(q.device)


@torch.library.custom_op(f"{_LIB}::finish_select", mutates_args=())
def finish_select(scores: torch.Tensor, lengths: torch.Tensor, budget: int, method: str, total_heads: int, pool: str,
                  pool_kernel: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The summed partial scores float32 [B, L] -> indices int32 [B, 1, C] (ascending, -1 padded),
    counts int32 [B, 1], positions int32 [B, 1, C], the pooled scores float32 [B, 1, L], status."""
    module = _backends.module_for(scores, "scores")
    B, L = scores.shape[0], scores.shape[1]
    _, kept = finish_geometry(method, budget, pool, pool_kernel, L)
    indices, counts, positions, final = selection_outputs(scores, B, 1, kept, L)
    status = _backends.run_torch(module.finish_select, (scores, lengths, indices, counts, positions, final, method, budget, pool,
                                                        pool_kernel, total_heads), scores.device)
    return indices, counts, positions, final, status


@finish_select.register_fake
def _finish_select_fake(scores, lengths, budget, method, total_heads, pool, pool_kernel):
    B, L = scores.shape[0], scores.shape[1]
    if isinstance(L, int):
        _, kept = finish_geometry(method, budget, pool, pool_kernel, L)
    else:  # a symbolic prompt length: the kept count is a new size
        kept = torch.library.get_ctx().new_dynamic_size()
    return (scores.new_empty((B, 1, kept), dtype=torch.int32), scores.new_empty((B, 1), dtype=torch.int32),
            scores.new_empty((B, 1, kept), dtype=torch.int32), scores.new_empty((B, 1, L), dtype=torch.float32),
            _status_like(scores.device))
