# SPDX-License-Identifier: Apache-2.0
"""Shared by the vLLM plugin's tests: the engine's environment, SmolLM2 as a float32 Hugging Face
folder (converted once from the embedded GGUF by scripts/gguf_to_hf.py, under build/), a needle
prompt of 2,048 tokens, the reference (promptdistill.hf.generate on transformers) and an engine
factory. Run in the vLLM environment (scripts/run_vllm_tests.sh); elsewhere they skip."""

import gc
import os
import pathlib
import random
import sys

import pytest

# vLLM reads these when it is imported: its CPU backend, a 2 GiB KV cache, the engine in this
# process (so that tests can read the scheduler's block accounting).
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
# Idle OpenMP threads sleep (scripts/run_vllm_tests.sh says why); read when OpenMP starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here (scripts/run_vllm_tests.sh makes its environment)")

ROOT = pathlib.Path(__file__).resolve().parents[2]
GGUF = pathlib.Path(os.environ.get("PROMPTDISTILL_MODEL", ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
MODEL_DIR = pathlib.Path(os.environ.get("PROMPTDISTILL_VLLM_MODEL_DIR", ROOT / "build" / "vllm-tests" / "smollm2-f32"))
NEW_TOKENS = 16

QUESTION = "\nQuestion: What is the secret code of the blue door?\nAnswer: The secret code of the blue door is"
WORDS = ("the of and to in is was for on are with as by at from that this which be have one all were when there their "
         "so can about would these other into more some could time only new many may first after two years over also "
         "been under such most than its between during garden river mountain library kernel token attention memory "
         "selection quantum compiler syntax ancient gradient").split()


@pytest.fixture(scope="session")
def model_dir():
    if not GGUF.exists():
        pytest.skip(f"the embedded SmolLM2 GGUF is not at {GGUF} (scripts/fetch_model.sh fetches it)")
    sys.path.insert(0, str(ROOT / "scripts"))
    import gguf_to_hf

    return gguf_to_hf.convert(GGUF, MODEL_DIR)


@pytest.fixture(scope="session")
def tokenizer(model_dir):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(model_dir)


def needle_prompt(tokenizer, length, seed=7, code="4817"):
    """Token ids of exactly `length` tokens: filler sentences with a fact at 40 % depth, then the
    question (cut filler from the end of the haystack, never the fact or the question)."""
    rng = random.Random(seed)
    question = tokenizer(QUESTION, add_special_tokens=False).input_ids
    sentences = []
    while len(tokenizer(" ".join(sentences)).input_ids) < length:
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))).capitalize() + ".")
    sentences.insert(len(sentences) * 2 // 5, f"The secret code of the blue door is {code}.")
    body = tokenizer(" ".join(sentences)).input_ids
    return body[:length - len(question)] + question


@pytest.fixture(scope="session")
def needle(tokenizer):
    return needle_prompt(tokenizer, 2048)


@pytest.fixture(scope="session")
def hf_model(model_dir):
    import torch
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def reference(hf_model):
    """promptdistill.hf.generate with the plugin's configuration: 16 greedy tokens, no stop token."""
    import promptdistill.hf

    def run(ids, max_new_tokens=NEW_TOKENS, **config):
        return promptdistill.hf.generate(hf_model, list(ids), max_new_tokens=max_new_tokens, eos_token_id=[], **config)

    return run


def greedy(max_tokens=NEW_TOKENS):
    return vllm.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)


def generate(llm, prompts, max_tokens=NEW_TOKENS):
    """Token ids generated for each prompt (lists of ids), in order."""
    outs = llm.generate([vllm.TokensPrompt(prompt_token_ids=list(p)) for p in prompts], greedy(max_tokens), use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs]


class Engines:
    """One engine alive at a time (each holds a 2 GiB KV cache); closed when the next starts."""

    def __init__(self):
        self.llm = None

    def start(self, **kwargs):
        self.close()
        self.llm = vllm.LLM(dtype="float32", seed=0, **kwargs)
        return self.llm

    def close(self):
        if self.llm is not None:
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None
            gc.collect()


@pytest.fixture(scope="session")
def engines():
    e = Engines()
    yield e
    e.close()
