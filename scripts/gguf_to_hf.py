#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Converts a GGUF model (the embedded SmolLM2 by default) to a float32 Hugging Face folder
(config.json, model.safetensors, the tokenizer files) that engines such as vLLM load.

transformers dequantizes the GGUF blocks while loading (``gguf_file=``); the weights are then
copied into a model built ``from_config`` without the GGUF's quantization config, so that
``save_pretrained`` writes plain float32 tensors, the same values transformers computes with when
it loads the GGUF itself (what ``promptdistill.hf.generate`` runs in the tests).

    python scripts/gguf_to_hf.py OUT_DIR [--gguf PATH]

Reuses OUT_DIR when it already holds a conversion of the same file (same size and mtime), so the
tests can call it every time. Write OUT_DIR under build/ (ignored), never into the source tree.
"""

import argparse
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_GGUF = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
STAMP = "promptdistill-conversion.json"


def _stamp(gguf):
    st = gguf.stat()
    return {"gguf": str(gguf.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "dtype": "float32"}


def convert(gguf, out):
    """Writes the float32 folder for `gguf` into `out` (unless it is there already); returns `out`."""
    gguf, out = pathlib.Path(gguf), pathlib.Path(out)
    if not gguf.is_file():
        raise SystemExit(f"error: no GGUF file at {gguf} (scripts/fetch_model.sh fetches the embedded model)")
    stamp = out / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == _stamp(gguf):
        return out
    import torch
    import transformers

    loaded = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # The GGUF's quantization config would make save_pretrained describe (and vLLM expect)
    # quantized weights: the copy is built without it.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = "float32"
    plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # A tied LM head is the embedding itself, so it may be absent from either side; nothing else may.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"error: the GGUF's weights do not fit the config: missing {missing}, unexpected {unexpected}")
    tmp = out.with_name(out.name + ".part")
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(tmp)
    if loaded.generation_config is not None:
        loaded.generation_config.save_pretrained(tmp)
    (tmp / STAMP).write_text(json.dumps(_stamp(gguf)))
    if out.exists():
        import shutil
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=pathlib.Path, help="output folder (under build/)")
    p.add_argument("--gguf", type=pathlib.Path, default=DEFAULT_GGUF, help=f"GGUF file (default {DEFAULT_GGUF})")
    args = p.parse_args(argv)
    print(convert(args.gguf, args.out))


if __name__ == "__main__":
    sys.exit(main())
