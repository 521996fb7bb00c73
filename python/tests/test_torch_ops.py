# SPDX-License-Identifier: Apache-2.0
"""The PyTorch custom operators: schema, fake implementations and autograd registration checked by
torch.library.opcheck, and torch.compile(fullgraph=True) tracing a function that calls them
(on the CPU), with the same results as eager calls."""

import numpy as np
import pytest
import torch

import promptdistill as pd  # noqa: F401  (registers torch.ops.promptdistill.*)

H, H_KV, D = 4, 2, 16
ops = torch.ops.promptdistill


def inputs(seed, B=2, L=48, rows=1):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, rows, H, D, generator=g)
    k = torch.randn(B, L, H_KV, D, generator=g)
    lengths = torch.tensor([L, L - 13][:B], dtype=torch.int32)
    return q, k, lengths


@pytest.mark.parametrize("method,rows", [("promptdistill", 1), ("gemfilter", 1), ("snapkv", 8), ("h2o", 48)])
def test_opcheck_select(method, rows):
    q, k, lengths = inputs(1, rows=rows)
    torch.library.opcheck(ops.select.default, (q, k, lengths, 20, method, 8, "avg", 5, "kv-group"))


def test_opcheck_gather_remap_compact():
    q, k, lengths = inputs(2)
    indices, counts, _, _, _ = ops.select(q, k, lengths, 10, "promptdistill", 8, "avg", 5, "kv-group")
    hidden = torch.randn(2, 48, 32)
    torch.library.opcheck(ops.gather.default, (hidden, indices, counts))
    torch.library.opcheck(ops.remap_positions.default, (indices, counts, torch.arange(48, dtype=torch.int32).repeat(2, 1), False))
    torch.library.opcheck(ops.remap_positions.default, (indices, counts, None, True))
    cache = torch.randn(2, H_KV, 48, D)
    torch.library.opcheck(ops.compact_kv.default, (cache.clone(), cache.clone(), indices, counts, "bhsd", lengths, None, None, None,
                                                   None))


def prefill_step(q, k, lengths, hidden, k_cache, v_cache):
    """What an engine does at a selection layer: select, gather the kept hidden rows, give them
    their positions, compact the layer's cache."""
    indices, counts, positions, scores, _ = ops.select(q, k, lengths, 12, "promptdistill", 32, "avg", 5, "kv-group")
    kept_hidden, _ = ops.gather(hidden, indices, counts)
    new_lengths, _, _ = ops.compact_kv(k_cache, v_cache, indices, counts, "bshd", lengths, None, None, None, None)
    return indices, counts, positions, scores, kept_hidden * 2.0, new_lengths


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    q, k, lengths = inputs(3)
    hidden = torch.randn(2, 48, 32)
    cache_k, cache_v = torch.randn(2, 48, H_KV, D), torch.randn(2, 48, H_KV, D)
    eager_k, eager_v = cache_k.clone(), cache_v.clone()
    expected = prefill_step(q, k, lengths, hidden, eager_k, eager_v)
    compiled = torch.compile(prefill_step, fullgraph=True, backend=backend)
    got = compiled(q, k, lengths, hidden, cache_k, cache_v)
    for name, a, b in zip(("indices", "counts", "positions", "scores", "hidden", "new_lengths"), expected, got):
        assert torch.equal(a, b), f"backend={backend}: {name} differs from eager"
    assert torch.equal(cache_k, eager_k) and torch.equal(cache_v, eager_v), f"backend={backend}: compacted caches differ"


def test_public_select_on_tensors_uses_the_ops():
    q, k, lengths = inputs(4)
    sel = pd.select(q, k, 12, lengths=lengths)
    indices, counts, positions, scores, _ = ops.select(q, k, lengths, 12, "promptdistill", 32, "avg", 5, "kv-group")
    assert torch.equal(sel.indices, indices[:, 0]) and torch.equal(sel.counts, counts[:, 0])
    # A tensor that requires grad is read, not differentiated through.
    sel_grad = pd.select(q.requires_grad_(), k, 12, lengths=lengths)
    assert torch.equal(sel_grad.indices, sel.indices)
    assert np.array_equal(sel.scores.numpy(), scores[:, 0].numpy())
