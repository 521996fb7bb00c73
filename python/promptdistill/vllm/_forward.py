# SPDX-License-Identifier: Apache-2.0
"""One engine step of a PromptDistill or GemFilter model: every request vLLM scheduled, in one
pass over the layers.

Requests are of three kinds, told apart by what vLLM already computed for them:

- prefill (nothing computed): its prompt rows run layer by layer; at a PromptDistill selection
  layer, one batched ``promptdistill.select`` over every prefill request of the step (ragged
  lengths) ranks the rows by the last row's post-RoPE query against the layer's keys, the hidden
  states and residuals of the kept rows are gathered, and the later layers run on them at their
  original positions. GemFilter runs the filter pass to its layer without keeping anything, then
  prefills the kept ids again at positions 0..k-1.
- decode (a prefill done): one row per step at position L + t (GemFilter: k + t), each layer
  attending to what it kept.
- resumed (vLLM preempted it and recomputes prompt and generated tokens in one step): the prompt
  is prefilled as above, then the generated tokens run as a continuation on the compacted caches,
  so the request continues exactly as if it had not been preempted.

Where each layer keeps its tokens in the request's blocks (and why) is in ``_views`` and
``_plan.Layout.kv_start``; the per-request state between steps is a ``Request``.
"""

import dataclasses

import numpy as np
import torch

from .. import _engine
from ._views import Rows, Views


@dataclasses.dataclass
class Request:
    """What decoding needs to know about a request after its prefill."""

    prompt_tokens: int
    kv_start: int  # the compacted caches start at this logical slot of the block table row
    cache_lengths: list  # per layer, entries after the prefill
    position_offset: int  # GemFilter: k - L
    selected: list  # per stage, the original positions kept (for tests and reports)


@dataclasses.dataclass
class _Seg:
    """One request's rows in a pass: rows [start, start + count) of the pass's tensors."""

    req: int
    start: int
    count: int
    kind: str  # "prefill", "decode" or "continue"


class StepRun:
    def __init__(self, model, step, input_ids, positions):
        self.m = model
        self.plan = model.promptdistill_plan
        self.step = step
        self.input_ids = input_ids
        self.positions = positions
        self.device = input_ids.device
        self.views = Views(step, self.device)
        self.requests = model.promptdistill_requests
        self.last_truncating = self.plan.last_truncating

    # ---- per-request bookkeeping ------------------------------------------------------------
    def _new_request(self, i):
        L = int(self.step.num_prompt[i])
        return Request(prompt_tokens=L, kv_start=self.plan.kv_start(L, self.step.block_size),
                       cache_lengths=self.plan.cache_lengths(L), position_offset=self.plan.position_offset(L), selected=[])

    def _layer_view(self, seg, layer):
        """(cache_before, base) of a segment's rows in `layer`."""
        req = self.reqs[seg.req]
        if seg.kind == "prefill":
            base = 0 if (layer <= self.last_truncating or self.filtering) else req.kv_start
            return 0, base
        computed = int(self.step.num_computed[seg.req]) - req.prompt_tokens  # generated tokens already cached
        return req.cache_lengths[layer] + (computed if seg.kind == "decode" else 0), req.kv_start

    # ---- running layers ---------------------------------------------------------------------
    def _run_layer(self, layer, segs, hidden, residual, positions):
        views = [Rows(s.req, s.count, *self._layer_view(s, layer)) for s in segs]
        metadata, slots = self.views.get(views)
        name = self.m.promptdistill_attn_names[layer]
        self.ctx.attn_metadata[name] = metadata
        self.ctx.slot_mapping[name] = slots
        return self.m.promptdistill_layers[layer](positions, hidden, residual)

    def run(self):
        from vllm.forward_context import get_forward_context

        self.ctx = get_forward_context()
        saved = (dict(self.ctx.attn_metadata), dict(self.ctx.slot_mapping))
        try:
            return self._run()
        finally:
            self.ctx.attn_metadata.clear()
            self.ctx.attn_metadata.update(saved[0])
            self.ctx.slot_mapping.clear()
            self.ctx.slot_mapping.update(saved[1])

    def _run(self):
        step = self.step
        for req_id in list(self.requests):  # requests vLLM finished or preempted
            if req_id not in step.live_req_ids:
                del self.requests[req_id]
        self.reqs, segs, cont = {}, [], []
        starts, counts = step.query_start[:-1], step.num_scheduled
        for i, req_id in enumerate(step.req_ids):
            if step.num_computed[i] == 0:
                self.reqs[i] = self._new_request(i)
                L = self.reqs[i].prompt_tokens
                segs.append(_Seg(i, int(starts[i]), L, "prefill"))
                if counts[i] < L:
                    raise RuntimeError(f"promptdistill: request {req_id}'s prompt of {L} tokens is split over steps "
                                       "(chunked prefill)")
                if counts[i] > L:  # resumed after preemption: its generated tokens follow
                    cont.append(_Seg(i, int(starts[i]) + L, int(counts[i]) - L, "continue"))
                    self.m.promptdistill_resumed += 1
            else:
                if req_id not in self.requests:
                    raise RuntimeError(f"promptdistill: request {req_id} decodes but its prefill was not seen")
                self.reqs[i] = self.requests[req_id]
                segs.append(_Seg(i, int(starts[i]), int(counts[i]), "decode"))
        if cont or any(s.kind == "decode" for s in segs) and any(s.kind == "prefill" for s in segs):
            self.m.promptdistill_mixed_steps += 1
        self.filtering = False
        if self.plan.method == "gemfilter":
            hidden, residual, segs = self._gemfilter(segs)
        else:
            hidden, residual, segs = self._promptdistill(segs)
        out = hidden.new_zeros(self.input_ids.shape[0], hidden.shape[1])
        self._emit(out, segs, hidden, residual, skip={c.req for c in cont})
        for i, req in self.reqs.items():
            if step.num_computed[i] == 0:
                self.requests[step.req_ids[i]] = req
        if cont:
            hidden, residual = self._pass(cont, *self._inputs(cont), range(len(self.m.promptdistill_layers)))
            self._emit(out, cont, hidden, residual)
        return out

    def _inputs(self, segs):
        """Embeddings, positions (with GemFilter's offset for decoding rows) of the segments' rows."""
        index = torch.cat([torch.arange(s.start, s.start + s.count, device=self.device) for s in segs])
        positions = self.positions[index].clone()
        offsets = [self.reqs[s.req].position_offset if s.kind != "prefill" else 0 for s in segs]
        if any(offsets):
            positions += torch.repeat_interleave(torch.tensor(offsets, device=self.device),
                                                 torch.tensor([s.count for s in segs], device=self.device))
        return self.m.embed_input_ids(self.input_ids[index]), None, positions

    @staticmethod
    def _restart(segs):
        start, out = 0, []
        for s in segs:
            out.append(dataclasses.replace(s, start=start))
            start += s.count
        return out

    def _pass(self, segs, hidden, residual, positions, layers):
        segs = self._restart(segs)
        for layer in layers:
            hidden, residual = self._run_layer(layer, segs, hidden, residual, positions)
        return hidden, residual

    def _emit(self, out, segs, hidden, residual, skip=()):
        """Final norm of each segment's last row, written where vLLM reads the request's logits."""
        segs = self._restart(segs)
        keep = [s for s in segs if s.req not in skip]
        if not keep:
            return
        rows = torch.tensor([s.start + s.count - 1 for s in keep], device=self.device)
        h = hidden[rows]
        normed = self.m.model.norm(h) if residual is None else self.m.model.norm(h, residual[rows])[0]
        target = torch.tensor([int(self.step.query_start[s.req + 1]) - 1 for s in keep], device=self.device)
        out[target] = normed

    # ---- PromptDistill ----------------------------------------------------------------------
    def _promptdistill(self, segs):
        hidden, residual, positions = self._inputs(segs)
        segs = self._restart(segs)
        stages = {s.layer: (i, s) for i, s in enumerate(self.plan.stages)}
        prefilling = any(s.kind == "prefill" for s in segs)
        # Layers up to the last truncating stage keep their K/V rows of this pass until that stage
        # knows which survive: they are then written at [kv_start, kv_start + n) with the
        # backend's own cache writer (its in-block layout is its own).
        self.kept_kv, self.maps = {}, {}
        for layer in range(len(self.m.promptdistill_layers)):
            selecting = layer in stages and prefilling
            keep_kv = prefilling and layer <= self.last_truncating
            capture = self.m.promptdistill_capture(layer) if (selecting or keep_kv) else None
            hidden, residual = self._run_layer(layer, segs, hidden, residual, positions)
            if capture is None:
                continue
            q, k, v = capture.take()
            if keep_kv:  # copies: views would keep the layer's whole q/k/v projection alive
                self.kept_kv[layer] = (k.contiguous(), v.contiguous(), segs)
            if selecting:
                hidden, residual, positions, segs = self._select(layer, *stages[layer], segs, q, k, hidden, residual,
                                                                 positions)
        return hidden, residual, segs

    def _padded(self, x, segs, width):
        """[B, width, ...] of the segments' rows of x (a view when there is one segment)."""
        if len(segs) == 1 and segs[0].start == 0 and segs[0].count == x.shape[0]:
            return x[None]
        out = x.new_zeros((len(segs), width) + tuple(x.shape[1:]))
        for b, s in enumerate(segs):
            out[b, :s.count] = x[s.start:s.start + s.count]
        return out

    def _select(self, layer, stage_index, stage, segs, q, k, hidden, residual, positions):
        attn = self.m.promptdistill_layers[layer].self_attn
        pre = [s for s in segs if s.kind == "prefill"]
        width = max(s.count for s in pre)
        lengths = torch.tensor([s.count for s in pre], dtype=torch.int32, device=self.device)
        q_last = torch.stack([q[s.start + s.count - 1] for s in pre]).view(len(pre), 1, attn.num_heads, attn.head_dim)
        keys = self._padded(k.view(k.shape[0], attn.num_kv_heads, attn.head_dim), pre, width)
        sel = _engine.select(q_last, keys, stage.selection.budget, lengths=lengths, **stage.selection.select_kwargs())
        kept_h = _engine.gather(self._padded(hidden, pre, width), sel)
        kept_r = _engine.gather(self._padded(residual, pre, width), sel)
        kept_p = _engine.remap_positions(sel, self._padded(positions.to(torch.int32), pre, width))
        counts = sel.counts.tolist()
        indices = sel.indices.cpu().numpy()
        for b, s in enumerate(pre):
            self.maps.setdefault(s.req, []).append(indices[b, :counts[b]])
        if stage.truncates_cache and stage.layer == self.last_truncating:
            self._truncate(pre, stage_index)
        parts_h, parts_r, parts_p, new_segs, b = [], [], [], [], 0
        for s in segs:
            if s.kind == "prefill":
                n = counts[b]
                parts_h.append(kept_h[b, :n])
                parts_r.append(kept_r[b, :n])
                parts_p.append(kept_p[b, :n].to(positions.dtype))
                self.reqs[s.req].selected.append([int(p) for p in kept_p[b, :n].tolist()])
                new_segs.append(dataclasses.replace(s, count=n))
                b += 1
            else:
                parts_h.append(hidden[s.start:s.start + s.count])
                parts_r.append(residual[s.start:s.start + s.count])
                parts_p.append(positions[s.start:s.start + s.count])
                new_segs.append(s)
        return torch.cat(parts_h), torch.cat(parts_r), torch.cat(parts_p), self._restart(new_segs)

    def _truncate(self, pre, last_stage):
        """Writes the survivors of the last truncating stage into the caches of every layer up to
        its selection layer, at [kv_start, kv_start + n) of each prefill request (the prefill wrote
        those layers at [0, rows)). Earlier truncating stages need no write of their own: no layer
        up to them is read again before this one. Each layer's rows are found by composing the
        stages' selections back to the row set the layer ran on."""
        stage_layers = [s.layer for s in self.plan.stages]
        for layer, (k, v, segs) in self.kept_kv.items():
            first = sum(1 for l in stage_layers if l < layer)  # the layer ran on the input rows of this stage
            start = {s.req: s.start for s in segs if s.kind == "prefill"}
            rows, slots = [], []
            for s in pre:
                idx = self.maps[s.req][last_stage]
                for j in range(last_stage - 1, first - 1, -1):
                    idx = self.maps[s.req][j][idx]
                base = self.reqs[s.req].kv_start
                rows.append(idx + start[s.req])
                slots.append(self.views.slots(s.req, np.arange(base, base + len(idx))))
            rows = torch.as_tensor(np.concatenate(rows), device=self.device)
            self.m.promptdistill_write_kv(layer, k[rows], v[rows], torch.from_numpy(np.concatenate(slots)).to(self.device))
        self.kept_kv = {}

    # ---- GemFilter --------------------------------------------------------------------------
    def _gemfilter(self, segs):
        stage = self.plan.stages[0]
        pre = [s for s in segs if s.kind == "prefill"]
        if pre:
            hidden, residual, positions = self._inputs(pre)
            pre = self._restart(pre)
            self.filtering = True  # the filter pass uses the request's blocks from slot 0 as scratch
            for layer in range(stage.layer):
                hidden, residual = self._run_layer(layer, pre, hidden, residual, positions)
            self.filtering = False
            q, k = self.m.promptdistill_qk(stage.layer, hidden, residual, positions)
            attn = self.m.promptdistill_layers[stage.layer].self_attn
            width = max(s.count for s in pre)
            lengths = torch.tensor([s.count for s in pre], dtype=torch.int32, device=self.device)
            q_last = torch.stack([q[s.start + s.count - 1] for s in pre]).view(len(pre), 1, attn.num_heads, attn.head_dim)
            keys = self._padded(k.view(k.shape[0], attn.num_kv_heads, attn.head_dim), pre, width)
            sel = _engine.select(q_last, keys, stage.selection.budget, lengths=lengths, **stage.selection.select_kwargs())
            counts, indices = sel.counts.tolist(), sel.indices.cpu().numpy()
            kept = {}
            for b, s in enumerate(pre):
                kept[s.req] = indices[b, :counts[b]]
                self.reqs[s.req].selected.append([int(i) for i in kept[s.req]])
        # The second pass: the kept ids of every prefill request at 0..k-1, and the decoding rows.
        ids, pos, new_segs = [], [], []
        for s in segs:
            if s.kind == "prefill":
                start = int(self.step.query_start[s.req])
                ids.append(self.input_ids[torch.as_tensor(kept[s.req] + start, device=self.device)])
                pos.append(torch.arange(len(kept[s.req]), device=self.device, dtype=self.positions.dtype))
                new_segs.append(dataclasses.replace(s, count=len(kept[s.req])))
            else:
                ids.append(self.input_ids[s.start:s.start + s.count])
                pos.append(self.positions[s.start:s.start + s.count] + self.reqs[s.req].position_offset)
                new_segs.append(s)
        segs = self._restart(new_segs)
        hidden, residual = self._pass(segs, self.m.embed_input_ids(torch.cat(ids)), None, torch.cat(pos),
                                      range(len(self.m.promptdistill_layers)))
        return hidden, residual, segs
