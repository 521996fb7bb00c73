#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Full KV vs PromptDistill on a long prompt with a Hugging Face model, side by side.

    python examples/hf_promptdistill.py --model PATH [--layer 20] [--k 1024] [--words 2400]

PATH is a transformers model folder (Llama, SmolLM2, Mistral, Qwen2, Phi-3) or a .gguf file (such as
the embedded SmolLM2: .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf, which needs `gguf` and
`accelerate`). The default prompt hides a fact ("The secret code of the blue door is NNNN.") at 40 %
depth in filler text and asks for it at the end; --prompt-file gives your own. Prints both answers,
the time to first token and the tokens each method kept.
"""

import argparse
import pathlib
import random

import torch
import transformers

import promptdistill as pd

FILLER = ("the river garden morning library village mountain quiet old market children walked along road and watched birds "
          "over fields where farmers worked near a small bridge with stone walls that were built long ago by people who lived "
          "in houses of wood during winter evenings stories told about ships travelers distant cities full light music bread "
          "tea").split()


def haystack(words, seed=7):
    """A fact at 40 % depth of `words` words of filler, then the question; returns (text, answer)."""
    rng = random.Random(seed)
    code = str(1000 + seed * 7919 % 9000)
    sentences, written = [], 0
    while written < words:
        n = rng.randint(6, 15)
        sentences.append(" ".join(rng.choice(FILLER) for _ in range(n)).capitalize() + ".")
        written += n
    sentences.insert(len(sentences) * 2 // 5, f"The secret code of the blue door is {code}.")
    question = "\nQuestion: What is the secret code of the blue door?\nAnswer: The secret code of the blue door is"
    return " ".join(sentences) + question, code


def load(path, dtype, device):
    path = pathlib.Path(path)
    kwargs = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
    folder = path.parent if path.suffix == ".gguf" else path
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs).to(device).eval()
    return tokenizer, model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a transformers model folder or a .gguf file")
    ap.add_argument("--layer", type=int, default=20, help="0-based selection layer (13 in the paper, for 32-layer models)")
    ap.add_argument("--k", type=int, default=1024, help="tokens kept besides the last one")
    ap.add_argument("--words", type=int, default=2400, help="words of filler in the built-in prompt")
    ap.add_argument("--prompt-file", help="use this text as the prompt instead")
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()

    tokenizer, model = load(args.model, getattr(torch, args.dtype), args.device)
    if args.prompt_file:
        text, expected = pathlib.Path(args.prompt_file).read_text(), None
    else:
        text, expected = haystack(args.words)
    input_ids = tokenizer(text, return_tensors="pt").input_ids
    print(f"model {args.model} ({model.config.num_hidden_layers} layers, {args.device}, {args.dtype}), prompt of "
          f"{input_ids.shape[1]} tokens" + (f"; the answer should contain {expected}" if expected else ""))
    print(f"{'method':<14} {'kept':>6} {'TTFT ms':>9} {'decode ms/t':>12}  answer")
    for method in ("full", "promptdistill"):
        try:
            r = pd.hf.generate(model, input_ids, method=method, selection_layers=[args.layer], n_topks=[args.k],
                               max_new_tokens=args.max_new_tokens)
        except pd.Error as e:
            raise SystemExit(f"{method}: {e}")
        answer = tokenizer.decode(r.generated_ids, skip_special_tokens=True)
        kept = r.retained[-1] if r.retained else r.prompt_tokens
        verdict = "" if expected is None else ("  [correct]" if expected in answer else "  [wrong]")
        print(f"{method:<14} {kept:>6} {r.ttft_s * 1e3:>9.0f} {r.decode_s_per_token * 1e3:>12.1f}  {answer!r}{verdict}")


if __name__ == "__main__":
    main()
