# SPDX-License-Identifier: Apache-2.0
"""PromptDistill's selection under tensor parallelism with a real distributed runtime:
torch.distributed on the gloo backend (CPU, one machine, loopback), R processes each holding only
its heads' queries and keys of a real model's selection layer.

    # 1. The selection layer's post-RoPE queries and keys of a prompt, cut into R head shards
    #    (rank r: query heads [r H/R, (r+1) H/R) and their KV heads), and the single-process selection:
    python examples/tp_gloo_select.py prepare --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --ranks 3 --layer 13 --budget 64 --dir /tmp/tp
    # 2. R processes: each scores its own heads, all-reduces, finishes the selection:
    python -m torch.distributed.run --standalone --nproc-per-node 3 examples/tp_gloo_select.py run --dir /tmp/tp

Each rank makes the three calls an engine makes per selection layer (score_partial, the all-reduce,
finish_select) and writes its selection to DIR/rank<r>.npz; rank 0 prints whether every rank got
the same selection and whether it equals the single-process one. python/tests/test_tensor_parallel_gloo.py
runs both steps on SmolLM2 and checks the results.
"""

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np


def layer_queries_and_keys(model, ids, layer):
    """Post-RoPE queries of the last prompt token [1, H, D] and keys [L, H_kv, D] of decoder layer
    `layer` of a Llama-family transformers model (SmolLM2, Llama, Mistral, Qwen2), float32 NumPy."""
    import torch

    cfg = model.config
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    decoder = model.get_decoder()
    attention = decoder.layers[layer].self_attn
    rope = sys.modules[type(attention).__module__].apply_rotary_pos_emb
    with torch.no_grad():
        input_ids = torch.tensor([ids])
        # hidden_states[layer] is the input of decoder layer `layer`.
        hidden = model(input_ids, output_hidden_states=True).hidden_states[layer]
        x = decoder.layers[layer].input_layernorm(hidden)
        L = x.shape[1]
        q = attention.q_proj(x).view(1, L, heads, dim).transpose(1, 2)
        k = attention.k_proj(x).view(1, L, kv_heads, dim).transpose(1, 2)
        cos, sin = decoder.rotary_emb(x, torch.arange(L)[None])
        q, k = rope(q, k, cos, sin)
    return (q[0, :, -1:].transpose(0, 1).float().contiguous().numpy(), k[0].transpose(0, 1).float().contiguous().numpy())


def write_shards(q, k, ranks, budget, directory, method="promptdistill"):
    """Rank r's head shard of q [1, H, D] and k [L, H_kv, D] to DIR/shard<r>.npz, and the
    single-process selection (promptdistill.select on every head) to DIR/single.npz."""
    import promptdistill as pd

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    heads, kv_heads = q.shape[1], k.shape[1]
    if heads % ranks or (kv_heads % ranks and ranks % kv_heads):
        raise SystemExit(f"{ranks} ranks cannot shard {heads} query heads and {kv_heads} KV heads evenly")
    per_rank, group = heads // ranks, heads // kv_heads
    for r in range(ranks):
        kv_first = r * per_rank // group
        kv_count = max(per_rank // group, 1)  # more ranks than KV heads: each KV head is replicated
        np.savez(directory / f"shard{r}.npz", q=q[:, r * per_rank:(r + 1) * per_rank], k=k[:, kv_first:kv_first + kv_count],
                 head_offset=r * per_rank, total_heads=heads)
    single = pd.select(q, k, budget, method=method)
    np.savez(directory / "single.npz", indices=single.indices, scores=single.scores)
    (directory / "config.json").write_text(json.dumps({"ranks": ranks, "budget": budget, "method": method}))


def run_rank(directory):
    """One rank (launched by torch.distributed.run): its shard, the three calls, its selection."""
    import torch
    import torch.distributed as dist

    import promptdistill as pd

    directory = pathlib.Path(directory)
    config = json.loads((directory / "config.json").read_text())
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != config["ranks"]:
        raise SystemExit(f"the shards are for {config['ranks']} ranks, but {world} processes were launched")
    shard = np.load(directory / f"shard{rank}.npz")
    q, k = torch.from_numpy(shard["q"]), torch.from_numpy(shard["k"])
    total_heads, head_offset = int(shard["total_heads"]), int(shard["head_offset"])
    start = time.perf_counter()
    # The three calls of a selection layer.
    partial = pd.score_partial(q, k, method=config["method"], total_heads=total_heads, head_offset=head_offset)
    dist.all_reduce(partial)  # sum over the ranks, with the runtime's own communicator
    selection = pd.finish_select(partial, config["budget"], method=config["method"], total_heads=total_heads)
    elapsed = time.perf_counter() - start
    np.savez(directory / f"rank{rank}.npz", indices=selection.indices.numpy(), scores=selection.scores.numpy(),
             summed=partial.numpy(), heads=np.array([head_offset, q.shape[1], k.shape[1]]), seconds=elapsed)
    # Rank 0 compares every rank's selection (gathered over the same runtime) with the single-process one.
    gathered = [torch.empty_like(selection.indices) for _ in range(world)]
    dist.all_gather(gathered, selection.indices)
    if rank == 0:
        single = np.load(directory / "single.npz")
        same = all(torch.equal(g, gathered[0]) for g in gathered)
        print(json.dumps({"ranks": world, "every_rank_same_selection": same,
                          "equals_single_process": bool(np.array_equal(gathered[0].numpy(), single["indices"])),
                          "kept": int(selection.indices.numel()), "seconds": round(elapsed, 4)}))
    # Every rank leaves together: a rank tearing gloo down while another still works on its last
    # collective aborted now and then ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    prepare = sub.add_parser("prepare", help="write the head shards of a model's selection layer")
    prepare.add_argument("--model", required=True, help="a GGUF file or a Hugging Face model folder")
    prepare.add_argument("--ranks", type=int, default=3)
    prepare.add_argument("--layer", type=int, default=13)
    prepare.add_argument("--budget", type=int, default=64)
    prepare.add_argument("--prompt-ids", help="a file of whitespace-separated token ids (default: a built-in text)")
    prepare.add_argument("--dir", required=True)
    run = sub.add_parser("run", help="one rank (launch with python -m torch.distributed.run)")
    run.add_argument("--dir", required=True)
    args = parser.parse_args()
    if args.step == "run":
        return run_rank(args.dir)

    import torch
    import transformers

    path = pathlib.Path(args.model)
    gguf = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
    folder = path.parent if gguf else path
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **gguf).eval()
    if args.prompt_ids:
        ids = [int(t) for t in pathlib.Path(args.prompt_ids).read_text().split()]
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **gguf)
        text = " ".join(f"Line {i}: the sky is blue and the grass is green." for i in range(40))
        ids = tokenizer(text + " The pass key is 71432. What is the pass key?").input_ids
    q, k = layer_queries_and_keys(model, ids, args.layer)
    write_shards(q, k, args.ranks, args.budget, args.dir)
    print(f"{len(ids)} tokens, layer {args.layer}: q {tuple(q.shape)}, k {tuple(k.shape)} cut into {args.ranks} shards in {args.dir}")


if __name__ == "__main__":
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only
    main()
