# SPDX-License-Identifier: Apache-2.0
"""Request checks in vLLM's input processor: a request the plugin cannot answer correctly is
refused with ``VLLMValidationError``, which the OpenAI server turns into a 400 (and ``LLM`` into a
``ValueError``) before it reaches the engine.

The only such request is one asking for prompt logprobs: the rows of dropped prompt tokens never
reach the last layer, so they have no logits. The check wraps ``InputProcessor._validate_params``
(the method that validates every request's sampling parameters) and applies to the plugin's
models with a selecting method only.
"""

from . import _plan

_installed = False


def plugin_method(model_config):
    """The plugin's method for an engine's model config ("full" too), or None for other models."""
    archs = getattr(model_config.hf_config, "architectures", None) or []
    if not any(a.startswith("PromptDistill") for a in archs):
        return None
    try:
        return _plan.parse_config(getattr(model_config.hf_config, "promptdistill", None)).method
    except Exception:  # the engine refuses the configuration itself, with its message
        return None


def install():
    global _installed
    if _installed:
        return
    from vllm.exceptions import VLLMValidationError
    from vllm.sampling_params import SamplingParams
    from vllm.v1.engine.input_processor import InputProcessor

    validate = InputProcessor._validate_params

    def _validate_params(self, params, *args, **kwargs):
        result = validate(self, params, *args, **kwargs)
        if isinstance(params, SamplingParams) and params.prompt_logprobs is not None:
            method = plugin_method(self.model_config)
            if method not in (None, "full"):
                raise VLLMValidationError(f"prompt_logprobs is not available with promptdistill method {method!r}: the "
                                          "prompt tokens dropped at the selection layer have no logits",
                                          parameter="prompt_logprobs", value=params.prompt_logprobs)
        return result

    _validate_params.__wrapped__ = validate
    InputProcessor._validate_params = _validate_params
    _installed = True
