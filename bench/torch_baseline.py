#!/usr/bin/env python3
"""PyTorch/transformers baseline for the end-to-end GPU benchmark (docs/design.md §8): full-KV prefill
time (TTFT), decode ms/token and peak device memory of LlamaForCausalLM at a paper model's shape
with random bf16 weights, on the same GPU and prompt lengths as `promptdistill.bench.e2e_shape`.
One JSON object per line on stdout, in the same field names.

Usage: python3 bench/torch_baseline.py [--shape llama31-8b|smollm2] [--layers N] [--lengths 8192 32768]
       [--decode 32] [--attn sdpa|flash_attention_2|eager]
Needs torch with CUDA and transformers (GPU machines have both).
"""
import argparse
import json
import sys
import time

SKIPPED = 77  # exit code of a run that cannot happen here, as the CUDA tests (scripts/gpu_run.sh)

SHAPES = {
    "llama31-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                       tie_word_embeddings=False),
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
                    tie_word_embeddings=True),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama31-8b", choices=sorted(SHAPES))
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768])
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test of the script")
    args = ap.parse_args()
    try:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as err:
        print(f"SKIPPED: PyTorch or transformers is not installed ({err})")
        return SKIPPED

    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        print("SKIPPED: no CUDA device")
        return SKIPPED
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    cfg = dict(SHAPES[args.shape])
    if args.layers:
        cfg["num_hidden_layers"] = args.layers
    config = LlamaConfig(**cfg, torch_dtype=torch.bfloat16)
    config._attn_implementation = args.attn
    torch.manual_seed(0)
    # Initialised in bf16 on the device: no f32 copy of the 8B shape's weights on either side.
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(args.device):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    torch.set_default_dtype(default_dtype)
    device = torch.cuda.get_device_name(0) if gpu else "cpu"
    for L in args.lengths:
        ids = ((torch.arange(L, device=args.device) * 2654435761) % 30000 + 1000).unsqueeze(0)
        sync()
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = model(ids, use_cache=True, logits_to_keep=1)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            sync()
            ttft = (time.perf_counter() - t0) * 1e3
            past = out.past_key_values
            t0 = time.perf_counter()
            for _ in range(args.decode - 1):
                out = model(token, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = out.logits[:, -1].argmax(-1, keepdim=True)
            sync()
            decode = (time.perf_counter() - t0) * 1e3 / max(args.decode - 1, 1)
        print(json.dumps({"device": device, "shape": args.shape, "layers": cfg["num_hidden_layers"], "length": L,
                          "method": f"torch-{args.attn} full", "ttft_ms": ttft, "decode_ms_per_token": decode,
                          "peak_device_bytes": torch.cuda.max_memory_allocated() if gpu else None, "torch": torch.__version__}),
              flush=True)
        del out, past


if __name__ == "__main__":
    sys.exit(main())
