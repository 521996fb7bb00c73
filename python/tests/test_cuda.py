# SPDX-License-Identifier: Apache-2.0
"""The CUDA backend through PyTorch tensors: the same results as the CPU reference bit for bit
(indices, positions, float32 scores, compacted caches), on the current stream without host
synchronisation, inside CUDA graph capture, with device-side errors reported by check().
Skipped (with the reason) where no CUDA device or no CUDA backend is available."""

import numpy as np
import pytest
import torch

import promptdistill as pd

if not torch.cuda.is_available():
    pytestmark = pytest.mark.skip(reason="no CUDA device (torch.cuda.is_available() is False)")
elif not pd.cuda_available():
    pytestmark = pytest.mark.skip(reason=pd._backends.CUDA_PROBLEM or "the CUDA backend sees no device")

H, H_KV, D = 8, 2, 64
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def batched_inputs(seed, method, lengths, dtype):
    g = torch.Generator().manual_seed(seed)
    L_max = max(lengths)
    rows = {"promptdistill": 1, "gemfilter": 1, "snapkv": 32, "h2o": L_max}[method]
    q = torch.randn(len(lengths), rows, H, D, generator=g).to(dtype)
    k = torch.randn(len(lengths), L_max, H_KV, D, generator=g).to(dtype)
    return q, k, torch.tensor(lengths, dtype=torch.int32)


def to_cuda(*tensors):
    return [t.cuda() for t in tensors]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method,per", [("promptdistill", "kv-group"), ("gemfilter", "kv-group"), ("snapkv", "kv-group"),
                                        ("snapkv", "head"), ("h2o", "kv-group")])
def test_select_cuda_equals_cpu(method, per, dtype):
    seed, lengths = 1, [700, 513, 64]
    q, k, lengths_t = batched_inputs(seed, method, lengths, dtype)
    cpu = pd.select(q, k, 128, method=method, per=per, lengths=lengths_t)
    with torch.cuda.device(0):
        torch.cuda.set_sync_debug_mode("error")  # any synchronising call inside select raises
        try:
            gpu = pd.select(*to_cuda(q, k), 128, method=method, per=per, lengths=lengths_t.cuda())
        finally:
            torch.cuda.set_sync_debug_mode("default")
    gpu.check()
    case = f"method={method} per={per} dtype={dtype} seed={seed} lengths={lengths}"
    assert gpu.indices.device.type == "cuda", case
    for name in ("indices", "counts", "positions", "scores"):
        assert torch.equal(getattr(cpu, name), getattr(gpu, name).cpu()), f"{case}: {name} differs"


def test_select_on_a_side_stream():
    q, k, lengths = batched_inputs(2, "promptdistill", [300, 200], torch.bfloat16)
    cpu = pd.select(q, k, 50, lengths=lengths)
    stream = torch.cuda.Stream()
    qc, kc, lc = to_cuda(q, k, lengths)
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        gpu = pd.select(qc, kc, 50, lengths=lc)
    stream.synchronize()
    assert torch.equal(cpu.indices, gpu.indices.cpu())


@pytest.mark.parametrize("layout", ["bshd", "bhsd"])
def test_gather_remap_compact_cuda_equal_cpu(layout):
    q, k, lengths = batched_inputs(3, "snapkv", [400, 250], torch.float16)
    cpu = pd.select(q, k, 96, method="snapkv", lengths=lengths)
    gpu = pd.select(*to_cuda(q, k), 96, method="snapkv", lengths=lengths.cuda())
    shape = (2, 400, H_KV, D) if layout == "bshd" else (2, H_KV, 400, D)
    cache = torch.randn(shape, generator=torch.Generator().manual_seed(4)).half()
    k_cpu, v_cpu, k_gpu, v_gpu = cache.clone(), cache.clone() + 1, cache.cuda(), cache.cuda() + 1
    res_cpu = pd.compact_kv(k_cpu, v_cpu, cpu, layout=layout)
    res_gpu = pd.compact_kv(k_gpu, v_gpu, gpu, layout=layout).check()
    assert torch.equal(res_cpu.new_lengths, res_gpu.new_lengths.cpu())
    for b, n in enumerate(res_cpu.new_lengths.tolist()):
        a, c = (k_cpu[b, :n], k_gpu[b, :n].cpu()) if layout == "bshd" else (k_cpu[b, :, :n], k_gpu[b, :, :n].cpu())
        assert torch.equal(a, c), f"layout={layout} request={b}"
    q5, k5, lengths5 = batched_inputs(5, "promptdistill", [300, 120], torch.float32)
    hc = pd.select(q5, k5, 40, lengths=lengths5)
    hd = pd.select(q5.cuda(), k5.cuda(), 40, lengths=lengths5.cuda())
    hidden = torch.randn(2, 300, 96)
    assert torch.equal(pd.gather(hidden, hc), pd.gather(hidden.cuda(), hd).cpu())
    positions = torch.arange(1000, 1300, dtype=torch.int32).repeat(2, 1)
    assert torch.equal(pd.remap_positions(hc, positions), pd.remap_positions(hd, positions.cuda()).cpu())


def test_cuda_graph_capture():
    q, k, lengths = to_cuda(*batched_inputs(6, "promptdistill", [512, 300], torch.bfloat16))
    hidden = torch.randn(2, 512, 128, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(2, 512, H_KV, D, device="cuda", dtype=torch.bfloat16)
    ops = torch.ops.promptdistill

    def step(k_cache, v_cache):
        indices, counts, positions, scores, _ = ops.select(q, k, lengths, 100, "promptdistill", 32, "avg", 5, "kv-group")
        kept, _ = ops.gather(hidden, indices, counts)
        new_lengths, _, _ = ops.compact_kv(k_cache, v_cache, indices, counts, "bshd", lengths, None, None, None, None)
        return indices, kept, new_lengths

    eager_k, eager_v = cache.clone(), cache.clone()
    expected = step(eager_k, eager_v)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graphs recommends
        step(cache.clone(), cache.clone())
    torch.cuda.current_stream().wait_stream(side)
    graph_k, graph_v = cache.clone(), cache.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step(graph_k, graph_v)
    graph_k.copy_(cache)
    graph_v.copy_(cache)
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(expected, captured):
        assert torch.equal(a, b)
    assert torch.equal(graph_k, eager_k)


def test_device_side_errors_are_reported_by_check():
    q, k, _ = to_cuda(*batched_inputs(7, "promptdistill", [64, 64], torch.float32))
    bad = torch.tensor([64, 65], dtype=torch.int32, device="cuda")  # beyond the array: only the device can see it
    sel = pd.select(q, k, 8, lengths=bad)
    with pytest.raises(pd.Error, match="exceeds"):
        sel.check()
    assert (sel.indices == -1).all(), "outputs must stay untouched after a device-side error"


def flat_tokens(selected):
    """Every (stage or layer, row, token) a run selected, as a set."""
    out = set()
    for stage, entry in enumerate(selected):
        rows = entry if entry and isinstance(entry[0], list) else [entry]
        out |= {(stage, r, t) for r, row in enumerate(rows) for t in row}
    return out


def test_hf_generate_on_cuda_matches_cpu():
    import transformers

    from conftest import GOLDEN
    cpu_model = transformers.AutoModelForCausalLM.from_pretrained(GOLDEN / "tiny_llama31", dtype=torch.float32).eval()
    gpu_model = transformers.AutoModelForCausalLM.from_pretrained(GOLDEN / "tiny_llama31", dtype=torch.float32).cuda().eval()
    ids = list(np.random.default_rng(7).integers(3, 512, 100).tolist())
    for method in ("promptdistill", "gemfilter", "snapkv", "h2o"):
        args = dict(method=method, selection_layers=[0], n_topks=[32], budget=48, window=16, max_new_tokens=8)
        a, b = pd.hf.generate(cpu_model, ids, **args), pd.hf.generate(gpu_model, ids, **args)
        # Different GEMMs (Tier C): the selections agree up to near-ties, the first token exactly.
        kept_cpu, kept_gpu = flat_tokens(a.selected_indices), flat_tokens(b.selected_indices)
        assert len(kept_cpu & kept_gpu) >= 0.9 * len(kept_cpu), f"method={method}: {kept_cpu ^ kept_gpu} differ"
        assert a.generated_ids[0] == b.generated_ids[0], f"method={method}"
        assert a.cache_lengths == b.cache_lengths and a.retained == b.retained, f"method={method}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["promptdistill", "gemfilter"])
def test_tensor_parallel_calls_cuda_equal_cpu_and_capture(method, dtype):
    """Two simulated ranks of 4 heads: score_partial per rank, the sum in rank order, finish_select:
    the same bits as on the CPU, without a synchronising call, and inside a CUDA graph."""
    q, k, lengths = batched_inputs(7, method, [600, 311], dtype)

    def layer(q, k, lengths):
        partials = [pd.score_partial(q[:, :, 4 * r:4 * r + 4], k[:, :, r:r + 1], method=method, total_heads=H, head_offset=4 * r,
                                     lengths=lengths) for r in range(2)]
        return pd.finish_select(partials[0] + partials[1], 100, method=method, total_heads=H, lengths=lengths)

    cpu = layer(q, k, lengths)
    qc, kc, lc = to_cuda(q, k, lengths)
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu = layer(qc, kc, lc)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    gpu.check()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graphs recommends
        layer(qc, kc, lc)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = layer(qc, kc, lc)
    graph.replay()
    torch.cuda.synchronize()
    for name in ("indices", "counts", "positions", "scores"):
        assert torch.equal(getattr(cpu, name), getattr(gpu, name).cpu()), f"method={method} dtype={dtype}: {name} differs"
        assert torch.equal(getattr(cpu, name), getattr(captured, name).cpu()), f"method={method} dtype={dtype}: graph {name}"
