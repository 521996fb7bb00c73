#!/usr/bin/env python3
"""PyTorch/transformers baseline for the end-to-end GPU benchmark (docs/design.md §8): full-KV prefill
time (TTFT), decode ms/token and peak device memory of LlamaForCausalLM at a paper model's shape
with random bf16 weights, on the same GPU and prompt lengths as `promptdistill.bench.e2e_shape`.
One JSON object per line on stdout, in the same field names.

Usage: python3 bench/torch_baseline.py [--shape llama31-8b|smollm2|tiny] [--layers N] [--lengths 8192 32768]
       [--decode 32] [--attn sdpa|flash_attention_2|eager] [--device cuda|cpu] [--config-only]
Needs torch and transformers (GPU machines have both; transformers 4.x and 5.x name the RoPE settings
differently, see llama_config). `--shape tiny --device cpu` is the test suite's check of this script
(python/tests/test_torch_baseline.py); `--config-only` prints the configuration and builds no model.
"""
import argparse
import inspect
import json
import sys
import time

SKIPPED = 77  # exit code of a run that cannot happen here, as the CUDA tests (scripts/gpu_run.sh)

# Each shape's RoPE as (theta, scaling or None); llama_config() spells it for the installed transformers.
SHAPES = {
    "llama31-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
                       rope=(500000.0, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
                       tie_word_embeddings=False),
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope=(100000.0, None),
                    tie_word_embeddings=True),
    # The 8B shape's kind of model (GQA, llama3 RoPE scaling) small enough for a CPU.
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, max_position_embeddings=4096,
                 rope=(500000.0, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 256}),
                 tie_word_embeddings=False),
}


def llama_config(shape, layers, torch):
    """LlamaConfig of `shape` (SHAPES) for the installed transformers: 5.x takes the RoPE theta and
    scaling as one `rope_parameters` dict and the dtype as `dtype`; 4.x takes `rope_theta`,
    `rope_scaling` and `torch_dtype`."""
    from transformers import LlamaConfig
    params = inspect.signature(LlamaConfig.__init__).parameters
    kwargs = {k: v for k, v in SHAPES[shape].items() if k != "rope"}
    if layers:
        kwargs["num_hidden_layers"] = layers
    theta, scaling = SHAPES[shape]["rope"]
    if "rope_parameters" in params:
        kwargs["rope_parameters"] = dict(scaling or {"rope_type": "default"}, rope_theta=theta)
    else:
        kwargs["rope_theta"] = theta
        if scaling:
            kwargs["rope_scaling"] = dict(scaling)
    kwargs["dtype" if "dtype" in params else "torch_dtype"] = torch.bfloat16
    return LlamaConfig(**kwargs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama31-8b", choices=sorted(SHAPES))
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768])
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test of the script")
    ap.add_argument("--config-only", action="store_true", help="print the configuration as JSON and stop")
    args = ap.parse_args()
    try:
        import torch
        import transformers
        from transformers import LlamaForCausalLM
    except ImportError as err:
        print(f"SKIPPED: PyTorch or transformers is not installed ({err})")
        return SKIPPED

    config = llama_config(args.shape, args.layers, torch)
    if args.config_only:
        rope = getattr(config, "rope_parameters", None) or dict(getattr(config, "rope_scaling", None) or {},
                                                                rope_theta=getattr(config, "rope_theta", None))
        print(json.dumps({"shape": args.shape, "layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
                          "num_key_value_heads": config.num_key_value_heads, "vocab_size": config.vocab_size,
                          "rope": rope, "transformers": transformers.__version__}, default=str))
        return 0
    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        print("SKIPPED: no CUDA device")
        return SKIPPED
    sync = torch.cuda.synchronize if gpu else (lambda: None)
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
        # e2e_shape's prompt ids (every id below the vocabulary of the real shapes; tiny wraps them)
        ids = (((torch.arange(L, device=args.device) * 2654435761) % 30000 + 1000) % config.vocab_size).unsqueeze(0)
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
        print(json.dumps({"device": device, "shape": args.shape, "layers": config.num_hidden_layers, "length": L,
                          "method": f"torch-{args.attn} full", "ttft_ms": ttft, "decode_ms_per_token": decode,
                          "peak_device_bytes": torch.cuda.max_memory_allocated() if gpu else None, "torch": torch.__version__}),
              flush=True)
        del out, past


if __name__ == "__main__":
    sys.exit(main())
