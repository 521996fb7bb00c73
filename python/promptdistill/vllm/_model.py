# SPDX-License-Identifier: Apache-2.0
"""The out-of-tree model classes: vLLM's own Llama, Qwen2 and Mistral classes (same modules, same
weights, same kernels) whose ``forward`` runs the prefill and decoding of PromptDistill or
GemFilter (``_forward.StepRun``). With method ``full`` they are vLLM's classes unchanged.

The configuration comes from ``hf_config.promptdistill`` (set with ``hf_overrides``) and is
checked when the engine builds the model, with the engine settings the plugin cannot run with.
"""

import json
import types

import torch

from .._errors import Error
from . import _plan, _step
from ._forward import StepRun
from ._kv import PromptDistillAttentionSpec

# Requests whose selection stays readable by tests (``promptdistill.vllm.selections``).
_REPORTED = 256


def engine_errors(vllm_config):
    """The engine settings under which the plugin would give wrong tokens, each with the setting to
    change. An empty list when the engine can run it."""
    errors = []
    cache, sched = vllm_config.cache_config, vllm_config.scheduler_config
    par, comp = vllm_config.parallel_config, vllm_config.compilation_config
    if cache.enable_prefix_caching:
        errors.append("prefix caching shares KV blocks between requests, whose caches PromptDistill compacts in place: "
                      "set enable_prefix_caching=False (vllm serve: --no-enable-prefix-caching)")
    if sched.enable_chunked_prefill:
        errors.append("chunked prefill splits a prompt over steps, and the selection needs the whole prompt at its layer: "
                      "set enable_chunked_prefill=False and max_num_batched_tokens >= max_model_len "
                      "(vllm serve: --no-enable-chunked-prefill --max-num-batched-tokens N)")
    if getattr(sched, "long_prefill_token_threshold", 0):
        errors.append("long_prefill_token_threshold splits long prompts over steps: leave it at 0")
    if getattr(sched, "async_scheduling", False):
        errors.append("asynchronous scheduling is not supported: set async_scheduling=False (vllm serve: --no-async-scheduling)")
    if vllm_config.speculative_config is not None:
        errors.append("speculative decoding is not supported: remove speculative_config")
    if vllm_config.lora_config is not None:
        errors.append("LoRA is not supported: remove enable_lora")
    if getattr(vllm_config, "kv_transfer_config", None) is not None:
        errors.append("KV transfer connectors are not supported: remove kv_transfer_config")
    if par.tensor_parallel_size != 1 or par.pipeline_parallel_size != 1:
        errors.append("tensor and pipeline parallelism are not supported yet (the selection would need "
                      "promptdistill.score_partial and an all-reduce): set tensor_parallel_size=1, pipeline_parallel_size=1")
    if getattr(par, "decode_context_parallel_size", 1) != 1:
        errors.append("decode context parallelism is not supported: set decode_context_parallel_size=1")
    mode = getattr(comp, "cudagraph_mode", None)
    if mode is not None and getattr(mode, "name", str(mode)) != "NONE":
        errors.append("CUDA graphs would replay a prefill-free forward: set enforce_eager=True (vllm serve: --enforce-eager)")
    if getattr(vllm_config.model_config, "enable_prompt_embeds", False):
        errors.append("prompts given as embeddings are not supported: remove enable_prompt_embeds")
    if cache.cache_dtype not in ("auto", None):
        errors.append(f"kv_cache_dtype {cache.cache_dtype!r} is not supported: use 'auto'")
    return errors


def _model_errors(hf_config):
    errors = []
    if getattr(hf_config, "is_causal", True) is False:
        errors.append("the model is not causal")
    types_ = getattr(hf_config, "layer_types", None) or []
    if "sliding_attention" in types_ or getattr(hf_config, "use_sliding_window", False):
        errors.append("sliding-window attention is not supported")
    if getattr(hf_config, "dual_chunk_attention_config", None):
        errors.append("dual chunk attention is not supported")
    if getattr(hf_config, "llama_4_scaling", None):
        errors.append("llama_4_scaling is not supported")
    return errors


class PromptDistillMixin:
    """Added in front of a vLLM causal LM class whose decoder layers take (positions, hidden,
    residual) and whose attention has qkv_proj / rotary_emb / attn."""

    promptdistill_model = True
    promptdistill_model_types = ()  # the Hugging Face model_type values the class runs

    def __init__(self, *, vllm_config, prefix=""):
        hf_config = vllm_config.model_config.hf_config
        model_type = getattr(hf_config, "model_type", None)
        if model_type not in self.promptdistill_model_types:
            raise Error(f"{type(self).__name__} runs models of model_type {', '.join(self.promptdistill_model_types)}, "
                        f"got {model_type!r} (the plugin runs Llama, Qwen2 and Mistral)", "unsupported")
        config = _plan.parse_config(getattr(hf_config, "promptdistill", None))
        num_layers = hf_config.num_hidden_layers
        max_positions = vllm_config.model_config.max_model_len
        plan = _plan.Layout(config, num_layers, max_positions)
        if plan.method != "full":
            problems = engine_errors(vllm_config) + _model_errors(hf_config)
            if problems:
                raise Error(f"the promptdistill plugin ({plan.method}) cannot run with this engine configuration: "
                            + "; ".join(problems))
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.promptdistill_plan = plan
        self.promptdistill_requests = {}
        self.promptdistill_report = {}
        self.promptdistill_resumed = 0  # prefills of preempted requests that recomputed generated tokens
        self.promptdistill_mixed_steps = 0  # steps that prefilled some requests while decoding others
        self.promptdistill_layers = list(self.model.layers)
        attns = [layer.self_attn.attn for layer in self.promptdistill_layers]
        self.promptdistill_attn_names = [a.layer_name for a in attns]
        if plan.method == "full":
            return
        backend = attns[0].attn_backend
        if backend.forward_includes_kv_cache_update or not hasattr(attns[0].impl, "do_kv_cache_update"):
            raise Error(f"the promptdistill plugin writes kept K/V with the attention backend's own cache update; "
                        f"{backend.get_name()} has none (CPU_ATTN and FLASH_ATTN do)")
        self.promptdistill_block_size = vllm_config.cache_config.block_size
        spec_json = json.dumps({"config": _plan.as_dict(config), "num_layers": num_layers, "max_positions": max_positions})
        for a in attns:  # the KV manager of these layers frees the blocks no layer reads after the prefill
            a.get_kv_cache_spec = types.MethodType(_spec_with(spec_json, type(a).get_kv_cache_spec), a)
        self._promptdistill_captured = {}
        for layer, a in enumerate(attns):
            a.register_forward_pre_hook(self._promptdistill_hook(layer))

    # ---- what StepRun uses ----------------------------------------------------------------
    def _promptdistill_hook(self, layer):
        def hook(module, args):
            slot = self._promptdistill_captured.get(layer)
            if slot is not None:
                slot.qkv = args[:3]
        return hook

    def promptdistill_capture(self, layer):
        """Arms the capture of layer `layer`'s post-RoPE queries, keys and values ([rows, heads *
        head_dim] each, as the layer passes them to its attention) in its next forward."""
        captured = self._promptdistill_captured

        class _Slot:
            qkv = None

            def take(self):
                del captured[layer]
                if self.qkv is None:
                    raise RuntimeError(f"promptdistill: layer {layer}'s attention did not run")
                return self.qkv

        slot = captured[layer] = _Slot()
        return slot

    def promptdistill_qk(self, layer, hidden, residual, positions):
        """Post-RoPE queries and keys of `layer` for its input (hidden + residual), without running
        it (GemFilter's filter layer)."""
        block = self.promptdistill_layers[layer]
        attn = block.self_attn
        if residual is None:
            x = block.input_layernorm(hidden.clone())
        else:
            x, _ = block.input_layernorm(hidden.clone(), residual.clone())
        qkv, _ = attn.qkv_proj(x)
        q, k, _ = qkv.split([attn.q_size, attn.kv_size, attn.kv_size], dim=-1)
        if getattr(attn, "qk_norm", False):
            n = q.shape[0]
            q = attn.q_norm(q.reshape(n, attn.num_heads, attn.head_dim)).reshape(n, attn.q_size)
            k = attn.k_norm(k.reshape(n, attn.num_kv_heads, attn.head_dim)).reshape(n, attn.kv_size)
        return attn.rotary_emb(positions, q.contiguous(), k.contiguous())

    def promptdistill_write_kv(self, layer, k, v, slots):
        """Writes K/V rows ([n, H_kv * D]) of `layer` at `slots` with the backend's cache writer."""
        attn = self.promptdistill_layers[layer].self_attn.attn
        attn.impl.do_kv_cache_update(attn, k.view(-1, attn.num_kv_heads, attn.head_size),
                                     v.view(-1, attn.num_kv_heads, attn.head_size_v), attn.kv_cache, slots)

    # ---- vLLM's entry point ---------------------------------------------------------------
    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        step = _step.current()
        if self.promptdistill_plan.method == "full" or step is None:  # start-up profile and warm-up runs
            return super().forward(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)
        if inputs_embeds is not None or input_ids is None:
            raise RuntimeError("promptdistill: prompts given as embeddings are not supported")
        if step.block_size != self.promptdistill_block_size:
            raise RuntimeError(f"promptdistill: the attention kernel's block size {step.block_size} differs from the KV "
                               f"manager's {self.promptdistill_block_size}")
        with torch.inference_mode():
            out = StepRun(self, step, input_ids, positions).run()
        for req_id, req in self.promptdistill_requests.items():
            if req_id not in self.promptdistill_report:
                self.promptdistill_report[req_id] = req
                if len(self.promptdistill_report) > _REPORTED:
                    del self.promptdistill_report[next(iter(self.promptdistill_report))]
        return out


def _spec_with(spec_json, stock):
    """get_kv_cache_spec of a layer, returning the plugin's spec (the stock full-attention one with
    the configuration attached, so that the scheduler's KV manager can read the plan)."""

    def get_kv_cache_spec(self, vllm_config):
        spec = stock(self, vllm_config)
        if spec is None or type(spec).__name__ != "FullAttentionSpec":
            raise Error(f"promptdistill: layer {self.layer_name} has a {type(spec).__name__}, only full attention is supported")
        return PromptDistillAttentionSpec.from_full(spec, spec_json)

    return get_kv_cache_spec


def _make(base_module, base_name, model_types):
    import importlib

    base = getattr(importlib.import_module(base_module), base_name)
    return type("PromptDistill" + base_name, (PromptDistillMixin, base),
                {"__module__": __name__, "promptdistill_model_types": model_types})


PromptDistillLlamaForCausalLM = _make("vllm.model_executor.models.llama", "LlamaForCausalLM", ("llama",))
PromptDistillQwen2ForCausalLM = _make("vllm.model_executor.models.qwen2", "Qwen2ForCausalLM", ("qwen2",))
PromptDistillMistralForCausalLM = _make("vllm.model_executor.models.mistral", "MistralForCausalLM", ("mistral",))
