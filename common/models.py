"""Loading causal LMs and their tokenizers by hub id or local path, with optional LoRA.

`trust_remote_code` is off unless a plan turns it on. Weights are saved as safetensors
(`save_pretrained`'s default); transformers loads legacy .bin files with `weights_only=True`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from common.errors import DataError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_model_source(name_or_path: str) -> None:
    """A path that does not exist is a user error; say so before transformers tries the hub."""
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local and not Path(os.path.expanduser(name_or_path)).exists():
        raise DataError(f"model {name_or_path!r}: no such directory (for a hub model give its id, "
                        "e.g. google/gemma-2b)")


def _load_error(name_or_path: str, e: Exception) -> DataError:
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return DataError(f"model {name_or_path!r}: could not load: {first_line}")


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    check_model_source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise _load_error(name_or_path, e) from None
    if tokenizer.pad_token_id is None:  # Llama-style tokenizers have no pad token; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, *, dtype: str = "float32", trust_remote_code: bool = False,
               lora: Optional[dict] = None, device_map: Optional[str] = None):
    """A causal LM in `dtype`; with `lora` (peft LoraConfig kwargs) only the adapters are trainable;
    `device_map="auto"` spreads the layers over the visible GPUs (one process, pipeline style)."""
    from transformers import AutoModelForCausalLM

    check_model_source(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=DTYPES[dtype], device_map=device_map,
                                                     trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise _load_error(name_or_path, e) from None
    return apply_lora(model, lora)


def apply_lora(model, lora: Optional[dict]):
    """`model` with LoRA adapters (peft LoraConfig kwargs) as its only trainable weights; as is without."""
    if not lora:
        return model
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))


def load_model_and_tokenizer(name_or_path: str, *, dtype: str = "float32", trust_remote_code: bool = False,
                             lora: Optional[dict] = None, device_map: Optional[str] = None):
    return (load_model(name_or_path, dtype=dtype, trust_remote_code=trust_remote_code, lora=lora,
                       device_map=device_map),
            load_tokenizer(name_or_path, trust_remote_code=trust_remote_code))


def load_for_training(config, name_or_path: Optional[str] = None):
    """Model and tokenizer as a TrainConfig asks (dtype, trust_remote_code, lora, device_map, the added
    tokens of prompt_format prompter_assistant); a `config.max_length` beyond the model's context is
    lowered to it (see fit_max_length)."""
    name_or_path = name_or_path or config.model
    model = load_model(name_or_path, dtype=config.dtype, trust_remote_code=config.trust_remote_code,
                       device_map=config.device_map)
    tokenizer = load_tokenizer(name_or_path, trust_remote_code=config.trust_remote_code)
    add_prompt_format_tokens(model, tokenizer, config.prompt_format, getattr(config, "use_chat_template", None))
    fit_max_length(config, model, name_or_path)
    return apply_lora(model, config.lora), tokenizer


def add_prompt_format_tokens(model, tokenizer, prompt_format: Optional[str], use_chat_template=None) -> None:
    """For prompt_format prompter_assistant without a chat template: add <|prompter|> and <|assistant|>
    as tokens, as the public CHES code does, and grow the embeddings when the new ids do not fit (a
    vocabulary padded beyond the tokenizer already has rows for them). New rows are drawn under a fixed
    seed, so the similarity computation and training start from the same model."""
    from common.data import ASSISTANT, PROMPTER, uses_chat_template

    if prompt_format != "prompter_assistant" or uses_chat_template(tokenizer, use_chat_template):
        return
    tokenizer.add_tokens([PROMPTER, ASSISTANT], special_tokens=True)  # no-op for a checkpoint saved with them
    if len(tokenizer) <= model.get_input_embeddings().num_embeddings:
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.resize_token_embeddings(len(tokenizer))


def model_context(model) -> Optional[int]:
    """The number of positions the model was built for (None when its config does not say)."""
    return getattr(model.config, "max_position_embeddings", None)


def fit_max_length(config, model, name: str) -> None:
    """Lower `config.max_length` to the model's context, with a warning, when it is longer.

    Longer sequences would index past the position table (or extrapolate rotary positions nobody
    trained). Lowering rather than failing keeps plans that leave max_length at its default (512)
    working on small models (the tiny ones have 256 positions): examples that no longer fit are
    truncated and counted like any other over-long example. config.json keeps the value the plan gave.
    """
    context = model_context(model)
    if context and getattr(config, "max_length", 0) > context:
        from common.tracking import logger

        logger.warning(f"max_length {config.max_length} exceeds the {context} positions of model {name}; "
                       f"using max_length={context} (longer examples are truncated)")
        config.max_length = context


def load_for_inference(name_or_path: str, *, dtype: str = "float32", device=None, trust_remote_code: bool = False):
    """A causal LM (eval mode, on `device`; default: cuda when available, else cpu) and its tokenizer,
    for sampling, judging or scoring. Free it with `del model; free_memory()` before the next loads."""
    return (load_inference_model(name_or_path, dtype=dtype, device=device, trust_remote_code=trust_remote_code),
            load_tokenizer(name_or_path, trust_remote_code=trust_remote_code))


def load_inference_model(name_or_path: str, *, dtype: str = "float32", device=None, trust_remote_code: bool = False):
    """The model of `load_for_inference` alone, frozen (for callers that share one tokenizer between
    models, e.g. TDS's base and aligned models or elasticity's reference model)."""
    model = load_model(name_or_path, dtype=dtype, trust_remote_code=trust_remote_code)
    return model.to(resolve_device(device)).eval().requires_grad_(False)


def resolve_device(device: Optional[str] = None) -> torch.device:
    """The given device, else "cuda" when available, else "cpu"."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def free_memory() -> None:
    """Collect models the caller just dropped and return cached CUDA blocks, so the next model has room
    (a judge after the policy, the next stage's model after this one's)."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every dropout probability to 0 (TRL's `disable_dropout`): nn.Dropout modules, and the float
    `*dropout*` attributes that attention modules copy from the config at init (Llama's
    `attention_dropout`) and the config's own, so that train mode computes what eval mode would."""
    configs = [m.config for m in model.modules() if hasattr(m, "config")]
    for owner in [*model.modules(), *configs]:
        if isinstance(owner, torch.nn.Dropout):
            owner.p = 0.0
        for name, value in list(vars(owner).items()):
            if "dropout" in name and isinstance(value, float):
                setattr(owner, name, 0.0)


def enable_gradient_checkpointing(model) -> None:
    """transformers' gradient checkpointing, non-reentrant (exact gradients, works with frozen inputs);
    with LoRA the embeddings' outputs require grad too, as peft asks for checkpointed adapters.
    (transformers >= 5.x names it `activation_checkpointing_enable`, the old name is deprecated.)"""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "peft_config"):
        model.enable_input_require_grads()


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def save_model(model, tokenizer, path: str | Path, *, merge_lora: bool = False, state_dict=None) -> None:
    """Save a model + tokenizer as safetensors, atomically. A LoRA (peft) model is saved as peft does,
    its adapter (`adapter_config.json` + `adapter_model.safetensors`, loadable with
    `PeftModel.from_pretrained(base, path)`), unless `merge_lora`: then the full model with the adapters
    merged in (in place: the model in memory is merged too; its outputs do not change). `state_dict`
    replaces the model's own (the full weights gathered from an FSDP-sharded model)."""
    import shutil

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if merge_lora and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
