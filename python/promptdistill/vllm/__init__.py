# SPDX-License-Identifier: Apache-2.0
"""PromptDistill and GemFilter inside vLLM: a general plugin (entry point group
``vllm.general_plugins``, name ``promptdistill``) that vLLM loads by itself in every process.

It registers ``PromptDistillLlamaForCausalLM``, ``PromptDistillQwen2ForCausalLM`` and
``PromptDistillMistralForCausalLM``, chosen with ``hf_overrides``::

    import vllm, promptdistill.vllm as pdv
    llm = vllm.LLM(**pdv.engine_kwargs("path/to/model", method="promptdistill", selection_layers=[20],
                                       n_topks=[1024], cache_truncation_end=1), dtype="float32")

or ``vllm serve DIR --hf-overrides '{"architectures": [...], "promptdistill": {...}}'`` with the
engine flags ``engine_kwargs`` sets. docs/vllm.md describes the mechanism and its limits.
"""

import json
import pathlib

from .._errors import Error
from . import _plan

#: The architectures the plugin wraps (vLLM's classes of the same name).
ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM")


def register():
    """The plugin's entry point: registers the model classes, the KV cache spec and its manager,
    and the two hooks (the step information for the model, the request check). Safe to call more
    than once, as vLLM does."""
    from vllm import ModelRegistry

    for arch in ARCHITECTURES:
        if "PromptDistill" + arch not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model("PromptDistill" + arch, f"promptdistill.vllm._model:PromptDistill{arch}")
    from . import _kv, _requests, _step

    _kv.register()
    _step.install()
    _requests.install()


def engine_kwargs(model_dir, *, method="promptdistill", selection_layers=None, n_topks=None, cache_truncation_end=None,
                  pool=None, pool_kernel=None):
    """Keyword arguments for ``vllm.LLM(**kwargs)`` that serve the Hugging Face folder
    ``model_dir`` with ``method`` ("full", "promptdistill" or "gemfilter"; the settings left None
    are the method's published defaults, ``promptdistill.published_default``): ``model``, the
    ``hf_overrides`` that choose the plugin's class for the folder's architecture and carry the
    configuration, and the engine settings the plugin needs (no prefix caching, no chunked prefill,
    a token budget of the whole context, eager execution). The configuration is checked here
    against the model (``promptdistill.Error`` with the library's message), as the engine does."""
    folder = pathlib.Path(model_dir)
    try:
        hf = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise Error(f"cannot read {folder / 'config.json'}: {e}") from None
    archs = hf.get("architectures") or []
    if len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise Error(f"the promptdistill plugin runs {', '.join(ARCHITECTURES)}; {folder} is {archs}", "unsupported")
    given = {"method": method, "selection_layers": selection_layers, "n_topks": n_topks,
             "cache_truncation_end": cache_truncation_end, "pool": pool, "pool_kernel": pool_kernel}
    config = _plan.parse_config({k: (list(v) if isinstance(v, tuple) else v) for k, v in given.items()})
    context = int(hf.get("max_position_embeddings") or 0)
    _plan.Layout(config, int(hf["num_hidden_layers"]), context or 1 << 30)
    kwargs = {"model": str(folder),
              "hf_overrides": {"architectures": ["PromptDistill" + archs[0]], "promptdistill": _plan.as_dict(config)},
              "enable_prefix_caching": False, "enable_chunked_prefill": False, "enforce_eager": True,
              "async_scheduling": False}
    if context:
        kwargs["max_num_batched_tokens"] = context
    return kwargs


def serve_args(model_dir, **config):
    """The same as ``engine_kwargs`` for ``vllm serve``: the command line arguments after ``vllm``
    (``["serve", DIR, "--hf-overrides", JSON, ...]``)."""
    kw = engine_kwargs(model_dir, **config)
    args = ["serve", kw["model"], "--hf-overrides", json.dumps(kw["hf_overrides"]), "--no-enable-prefix-caching",
            "--no-enable-chunked-prefill", "--enforce-eager", "--no-async-scheduling"]
    if "max_num_batched_tokens" in kw:
        args += ["--max-num-batched-tokens", str(kw["max_num_batched_tokens"])]
    return args


def selections(llm):
    """What the plugin did in the prefill of each recent request of an ``LLM``: request id ->
    {"prompt_tokens", "selected_indices" (per stage, the original positions kept; GemFilter: the
    kept positions), "retained" (per stage), "cache_lengths" (per layer), "kv_start"}. Request
    ids are vLLM's internal ones (the output's ``request_id`` with a suffix)."""
    def read(model):
        return {rid: {"prompt_tokens": r.prompt_tokens, "selected_indices": r.selected,
                      "retained": [len(s) for s in r.selected], "cache_lengths": list(r.cache_lengths),
                      "kv_start": r.kv_start}
                for rid, r in getattr(model, "promptdistill_report", {}).items()}

    return llm.apply_model(read)[0]


def kv_blocks(llm):
    """Request id -> (blocks held, blocks freed) right after each recent request's prefill, from
    the scheduler's KV manager. Only for an engine in this process
    (VLLM_ENABLE_V1_MULTIPROCESSING=0); the same numbers are logged at debug level otherwise."""
    client = llm.llm_engine.engine_core
    core = getattr(client, "engine_core", None)
    if core is None or not hasattr(core, "scheduler"):
        raise Error("kv_blocks reads the scheduler of an in-process engine: set VLLM_ENABLE_V1_MULTIPROCESSING=0")
    managers = core.scheduler.kv_cache_manager.coordinator.single_type_managers
    return {rid: held for m in managers for rid, held in getattr(m, "report", {}).items()}
