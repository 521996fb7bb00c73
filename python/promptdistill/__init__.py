# SPDX-License-Identifier: Apache-2.0
"""promptdistill: PromptDistill token selection (and GemFilter, SnapKV, H2O) for engines and models.

Engine API (NumPy arrays run on the CPU reference; PyTorch tensors on the backend of their device):
    select(q, k, topk, method=...) -> Selection    score, pool and top-k the prompt tokens
    gather(hidden, selection)                      the kept rows of the hidden states
    remap_positions(selection, positions)          the positions the kept tokens carry
    compact_kv(k_cache, v_cache, selection, layout=...)   compact a KV cache in place
Tensor parallelism (heads sharded across ranks), three calls per selection layer on every rank:
    score_partial(q, k, total_heads=H)             the rank's partial scores
    (the engine's all-reduce of them)
    finish_select(scores, topk, total_heads=H)     the same Selection on every rank
The same operations are PyTorch custom operators: torch.ops.promptdistill.{select, gather,
remap_positions, compact_kv, score_partial, finish_select}. Every bad input raises
promptdistill.Error (a ValueError).

Pipelines: published_default(method) -> PipelineConfig (the one set of defaults), plan(config,
num_layers) -> Plan (what a prefill does: stages, budgets, kept_tokens), as the C++ pipelines read them;
estimate_prefill_bytes(config, model, prompt_length) -> PrefillMemory (its peak memory, before any work).
Hugging Face models: promptdistill.hf.generate(model, input_ids, method=...), driven by the plan.
"""

import importlib
import importlib.util

from ._core import VERSION as __version__
from ._errors import Error
from ._engine import KvCompaction, Selection, check_status, compact_kv, gather, remap_positions, select
from ._tensor_parallel import finish_select, score_partial
from ._pipeline import Plan, PipelineConfig, SelectionPlan, Stage, pipeline_config, plan, published_default
from ._memory import PrefillMemory, available_memory_bytes, estimate_prefill_bytes
from . import _backends

__all__ = ["Error", "KvCompaction", "PipelineConfig", "Plan", "PrefillMemory", "Selection", "SelectionPlan", "Stage",
           "available_memory_bytes", "check_status", "compact_kv", "cuda_available", "estimate_prefill_bytes", "finish_select",
           "gather", "hf", "pipeline_config", "plan", "published_default", "remap_positions", "score_partial", "select"]

# The custom operators are registered whenever PyTorch is installed, so that code calling
# torch.ops.promptdistill.* directly finds them after `import promptdistill`.
if importlib.util.find_spec("torch") is not None:
    from . import _torch_ops  # noqa: F401


def cuda_available():
    """True when the CUDA backend is built and loadable and a CUDA device is present."""
    return _backends._cuda is not None and _backends._cuda.device_available()


def __getattr__(name):  # `promptdistill.hf` imports transformers only when used
    if name == "hf":
        return importlib.import_module(".hf", __name__)
    raise AttributeError(f"module 'promptdistill' has no attribute {name!r}")
