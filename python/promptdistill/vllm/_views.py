# SPDX-License-Identifier: Apache-2.0
"""Per-layer attention metadata and slots in vLLM's paged caches.

vLLM gives every layer of a KV cache group the same view of a request: one sequence length, one
block table row, one slot per new token. After a selection, layers hold different numbers of
tokens, so the plugin describes each layer's view itself and builds its metadata with the
backend's own metadata builder:

- a request's cache in a layer is a contiguous range of logical slots [base, base + n) of its
  block table row, with base a multiple of the block size (so the row shifted by base / block_size
  blocks is an ordinary block table);
- ``Rows`` says, for one pass over one layer, how many of a request's rows run (``count``), how
  many entries that layer's cache holds before them (``cache_before``) and where the cache starts
  (``base``): the rows are written at base + cache_before + j and attend causally to
  [base, base + cache_before + j].

A view is the same for every layer with the same ``Rows`` tuple, so a step builds a handful.
"""

import dataclasses

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class Rows:
    req: int  # index of the request in the step
    count: int
    cache_before: int
    base: int


class Views:
    """Attention metadata for the passes of one step, built once per distinct list of Rows."""

    def __init__(self, step, device):
        self.step = step
        self.device = device
        self._cache = {}

    def slots(self, req, indices):
        """Slot ids (block id * block size + offset) of logical indices of request `req`'s row."""
        bs = self.step.block_size
        indices = np.asarray(indices, dtype=np.int64)
        blocks = self.step.block_table[req, indices // bs].astype(np.int64)
        return blocks * bs + indices % bs

    def get(self, rows):
        """(metadata, slot_mapping) for a pass whose hidden rows are `rows` in order."""
        key = tuple(rows)
        if key not in self._cache:
            self._cache[key] = self._build(key)
        return self._cache[key]

    def _build(self, rows):
        from vllm.v1.attention.backend import CommonAttentionMetadata

        step, bs = self.step, self.step.block_size
        counts = np.array([r.count for r in rows], dtype=np.int64)
        seq_lens = np.array([r.cache_before + r.count for r in rows], dtype=np.int64)
        query_start = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=query_start[1:])
        width = step.block_table.shape[1]
        table = np.zeros((len(rows), width), dtype=np.int32)
        slots = []
        for i, r in enumerate(rows):
            shift = r.base // bs
            table[i, :width - shift] = step.block_table[r.req, shift:]
            start = r.base + r.cache_before
            slots.append(self.slots(r.req, np.arange(start, start + r.count)))
        slot_mapping = torch.from_numpy(np.concatenate(slots)).to(self.device)
        cpu_start = torch.from_numpy(query_start.astype(np.int32))
        cpu_lens = torch.from_numpy(seq_lens.astype(np.int32))
        common = CommonAttentionMetadata(
            query_start_loc=cpu_start.to(self.device), query_start_loc_cpu=cpu_start,
            seq_lens=cpu_lens.to(self.device), seq_lens_cpu_upper_bound=cpu_lens,
            num_reqs=len(rows), num_actual_tokens=int(counts.sum()), max_query_len=int(counts.max()),
            max_seq_len=int(seq_lens.max()), block_table_tensor=torch.from_numpy(table).to(self.device),
            slot_mapping=slot_mapping, causal=True,
            is_prefilling=torch.from_numpy(np.array([r.cache_before == 0 for r in rows])).to(self.device))
        return step.builder.build(common_prefix_len=0, common_attn_metadata=common), slot_mapping
