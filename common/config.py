"""Typed run configs: dataclasses with defaults, validated from plan JSON with errors that name the path.

Every study declares one dataclass (subclassing `RunConfig`, or `TrainConfig` when it trains).
Defaults live here, not in every plan. `from_dict` checks each value against the field's type
annotation and its `option(...)` constraints and raises `ConfigError` naming the JSON path the value
came from, e.g. `configurations[0].base_config.lr: expected a number, got "fast"`; unknown keys get a
"did you mean" suggestion.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional

from common.errors import ConfigError
from common.validation import field_problem, lora_fields, unknown_lora_key

GRADIENT_OPTIMIZERS = ("rmsprop", "adam", "adamw", "sgd")
ZEROTH_ORDER_OPTIMIZERS = ("mezo", "tezo", "tezo_adam")  # forwards only: common/zeroth_order.py


def option(default: Any = dataclasses.MISSING, *, help: str = "", choices: Optional[list] = None,
           min: Optional[float] = None, max: Optional[float] = None, min_exclusive: bool = False,
           path: bool = False, data_path: bool = False):
    """A dataclass field with documentation and range constraints checked by `from_dict`.

    Mutable defaults (lists, dicts) are copied per instance. `min`/`max` bound numbers (inclusive,
    unless `min_exclusive`); `choices` restricts the allowed values. `path`: the value names a file or
    directory (its length is checked, see common/validation.py). `data_path` (implies `path`): an input
    data file or directory of the run; a finished run records its fingerprint, and a run whose local
    data changed since counts as changed (common/plans.py).
    """
    metadata = {"help": help, "choices": choices, "min": min, "max": max, "min_exclusive": min_exclusive,
                "path": path or data_path, "data_path": data_path}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class FieldError(ValueError):
    """Raised by a config's `validate()` for a cross-field constraint; `field` locates the error."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class RunConfig:
    """Fields every run has. A run's directory is `outputs_dir/experiment_name`."""

    experiment_name: str = option("run", path=True, help="run directory name under outputs_dir; may use {field}")
    outputs_dir: str = option("outputs", path=True, help="parent directory of the run directory")
    seed: int = option(0, help="seeds python, numpy and torch for the run")

    def validate(self) -> None:
        """Cross-field checks; raise FieldError(field, message). Subclasses extend it."""
        if not self.experiment_name or self.experiment_name.strip("./") == "":
            raise FieldError("experiment_name", "must be a non-empty directory name")
        name = os.path.normpath(self.experiment_name)
        if os.path.isabs(name) or name in (".", "..") or name.startswith(".." + os.sep):  # --force clears it
            raise FieldError("experiment_name", f"{self.experiment_name!r} leaves outputs_dir; use a relative "
                                                f"path without '..' (a directory name under outputs_dir)")
        for field in ("experiment_name", "outputs_dir"):
            if "{" in getattr(self, field) or "}" in getattr(self, field):
                raise FieldError(field, f"{getattr(self, field)!r} has a brace left after filling the templates; "
                                        f"a template is {{field}} with a config field's name")


# Below this lr, full fine-tuning of bf16 weights (8-bit mantissa: an update smaller than about
# |w| * 2^-9 rounds to nothing) loses most updates: at lr 2e-5 a 10-step AdamW check changed 29% of the
# weights and lost ~70% of the update against fp32; norm weights (|w| ~ 1) stay frozen up to lr ~2e-3.
HALF_PRECISION_MIN_LR = 1e-3


@dataclass
class TrainConfig(RunConfig):
    """What the shared trainer needs. Study configs that train subclass this."""

    model: str = option("", help="hub id or local path of a causal LM")
    dtype: str = option("float32", choices=["float32", "bfloat16", "float16"],
                        help="dtype the weights are loaded in (fp32 keeps tiny lrs such as 1e-7 meaningful)")
    trust_remote_code: bool = option(False, help="allow model code from the hub (off unless a plan asks)")
    lora: Optional[dict] = option(None, help="peft LoraConfig kwargs, e.g. {\"r\": 8}; None trains all weights")
    device_map: Optional[str] = option(None, help="\"auto\": split the layers over the visible GPUs in ONE process "
                                                  "(models too big for one GPU, as the paper ran Llama-3-8B)")
    objective: str = option("dpo", help="a loss of common.losses.LOSSES")
    beta: float = option(0.1, min=0, min_exclusive=True, help="DPO beta / IPO tau")
    label_smoothing: float = option(0.0, min=0.0, max=0.5, help="cDPO / robust DPO label noise e")
    ipo_length_normalize: bool = option(False, help="IPO: divide log-probs by response length (TRL)")
    simpo_gamma: float = option(0.5, help="SimPO target reward margin")
    sft_coeff: float = option(0.0, min=0.0, help="adds sft_coeff * cross-entropy on y+ to the loss")
    optimizer: str = option("rmsprop", choices=[*GRADIENT_OPTIMIZERS, *ZEROTH_ORDER_OPTIMIZERS],
                            help="mezo / tezo / tezo_adam: zeroth-order (two forwards, no backward; zo_eps, "
                                 "tezo_rank; tezo_adam: Adam moments on TeZO's rank-r coefficients)")
    lr: float = option(1e-7, min=0.0, max=10.0, help="learning rate")
    weight_decay: float = option(0.0, min=0.0)
    lr_scheduler: str = option("constant", choices=["constant", "linear", "cosine"],
                               help="lr after warm-up: constant (the papers' setting), linear or cosine decay to 0")
    warmup_ratio: float = option(0.0, min=0.0, max=1.0, help="share of the steps with a linear warm-up from 0")
    batch_size: int = option(32, min=1, help="examples per optimizer step (global, over all processes)")
    micro_batch_size: int = option(0, min=0, help="examples per forward per process; 0 = no accumulation")
    num_epochs: float = option(1, min=0, min_exclusive=True, help="passes over the training set")
    max_steps: int = option(-1, help="stop after this many optimizer steps; -1 = num_epochs decides")
    max_grad_norm: float = option(0.0, min=0.0, help="clip the global grad norm; 0 = no clipping")
    precision: str = option("fp32", choices=["fp32", "bf16"],
                            help="bf16 = autocast with fp32 master weights")
    max_length: int = option(512, min=2, help="prompt+response tokens; longer examples are truncated (truncation_mode)")
    eval_every_steps: int = option(0, min=0, help="evaluate every N steps (also before and after); "
                                                  "0 = only before/after")
    eval_batch_size: int = option(16, min=1)
    save_every_steps: int = option(0, min=0, help="checkpoint for resume every N steps; 0 = never")
    save_model: bool = option(False, help="save the trained model to run_dir/model (safetensors)")
    use_wandb: bool = option(False, help="log to wandb too (honours WANDB_MODE)")
    wandb_project: str = option("alignment-lab")
    shuffle: bool = option(True, help="reshuffle the training set each epoch (seeded)")
    allow_bf16_weights: bool = option(False, help="train half-precision (bfloat16/float16) weights at lr < "
                                                  f"{HALF_PRECISION_MIN_LR:g} anyway (most updates are rounded "
                                                  "away; see dtype)")
    pack_sequences: bool = option(False, help="run each micro-batch's short sequences as one padding-free row where "
                                              "that costs fewer FLOPs (llama, gemma2, qwen2, mistral decoders; never "
                                              "with hooks, e.g. Vaccine): same numbers up to float rounding")
    share_prompt: bool = option(False, help="score a preference pair as one row (prompt, chosen, rejected) with the "
                                            "prompt computed once (llama, qwen2, mistral, gemma2; never with hooks): "
                                            "faster when prompts are long against the completions; same numbers up "
                                            "to float rounding")
    gradient_checkpointing: bool = option(False, help="recompute activations in the backward (transformers' "
                                                      "non-reentrant checkpointing): less memory, same numbers")
    merge_lora: bool = option(False, help="with lora and save_model: save the full model with the adapters merged "
                                          "in, instead of the adapter alone (peft's format)")
    # Tokenization (common.preference_data.Tokenization): TRL's truncation; the format without a chat template
    max_prompt_length: int = option(-1, help="prompt tokens kept (TRL's max_prompt_length); -1 = no limit")
    truncation_mode: str = option("keep_start", choices=["keep_start", "keep_end"], help="side kept by max_length "
                                  "and max_prompt_length; an example is dropped only if a response ends up empty")
    prompt_format: str = option("text", choices=["text", "prompter_assistant"], help="without a chat template: "
                                "prompt, prompt_separator, response; or the public code's <|prompter|>x<|assistant|>y")
    prompt_separator: str = option("\n", help="prompt_format text: written after each prompt message")
    discopop_tau: float = option(0.05, min=0, min_exclusive=True, help="DiscoPOP temperature (TRL's default)")
    sft_loss_type: str = option("sum", choices=["sum", "token_mean"],
                                help="SFT term: summed NLL of y+ per example, or TRL's token mean over the batch")
    fsdp: bool = option(False, help="shard weights, gradients and optimizer state over the processes (FSDP2, "
                                    "each decoder layer a unit); launch with torchrun / accelerate launch")
    zo_eps: float = option(1e-3, min=0, min_exclusive=True, help="mezo / tezo*: perturbation scale eps "
                                                                 "(MeZO: 1e-3 full parameters, 1e-2 LoRA)")
    tezo_rank: int = option(1, min=1, help="tezo / tezo_adam: rank r of the perturbation U diag(tau) V^T per "
                                           "weight matrix")

    def validate(self) -> None:
        super().validate()
        from common.losses import LOSSES  # local: losses imports torch, config stays light

        if self.objective not in LOSSES:
            raise FieldError("objective", f"unknown loss {self.objective!r}; choose one of {sorted(LOSSES)}")
        if self.objective == "cross_entropy" and self.sft_coeff:
            raise FieldError("sft_coeff", "objective cross_entropy is the SFT loss already (sft_coeff would count "
                                          "it twice); leave sft_coeff 0 or scale the lr")
        if self.objective == "robust" and not self.label_smoothing < 0.5:
            raise FieldError("label_smoothing", "robust DPO needs 0 <= label_smoothing < 0.5")
        if self.objective == "exo_pair" and not self.label_smoothing > 0:
            raise FieldError("label_smoothing", "exo_pair needs label_smoothing > 0 (EXO's epsilon; 1e-3 in the paper)")
        if (self.dtype != "float32" and self.lr < HALF_PRECISION_MIN_LR and not self.lora
                and not self.allow_bf16_weights):
            raise FieldError("dtype", f"{self.dtype} weights trained at lr {self.lr:g} lose most updates to "
                                      "rounding; use dtype float32 (with precision bf16 for bf16 speed and "
                                      "memory), LoRA, or allow_bf16_weights true to train them anyway")
        if self.optimizer in ZEROTH_ORDER_OPTIMIZERS and self.fsdp:
            raise FieldError("fsdp", f"optimizer {self.optimizer} with fsdp is not supported (it perturbs the full "
                                     "weights in place); drop fsdp, a zeroth-order run needs inference memory only")
        if self.lora is not None and unknown_lora_key(self.lora) is not None:
            key = unknown_lora_key(self.lora)
            raise FieldError("lora", f"unknown peft.LoraConfig keyword {key!r}{did_you_mean(key, lora_fields())}"
                                     + ("; common.models sets it" if key == "task_type" else ""))
        if self.micro_batch_size and self.batch_size % self.micro_batch_size:
            raise FieldError("micro_batch_size", f"batch_size {self.batch_size} is not a multiple of "
                                                 f"micro_batch_size {self.micro_batch_size}")


# ----------------------------------------------------------------------------------------------
# Validation


def _describe(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, list, dict)) else repr(value)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp in (int,):
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        return f"an object whose values are each {_type_name(args[1])}" if args else "an object"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _check_type(value: Any, tp: Any) -> Any:
    """Return `value` converted to `tp` (int -> float only) or raise TypeError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(value, arg)
            except TypeError:
                pass
        raise TypeError
    if tp in (bool, str):  # as they are: no 0/1 for a bool, no number for a string
        if isinstance(value, tp):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) if abs(value) <= 1e308 else math.inf  # a huge integer: reported as not finite
        raise TypeError
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise TypeError
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list):
            raise TypeError
        args = typing.get_args(tp)
        return [_check_type(v, args[0]) for v in value] if args else list(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise TypeError
        args = typing.get_args(tp)
        return {k: _check_type(v, args[1]) for k, v in value.items()} if args else dict(value)
    raise TypeError(f"unsupported config type {tp}")


@functools.lru_cache(maxsize=None)  # a plan of 10**5 runs asks 3 times a run: cached (callers only read it)
def config_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@functools.lru_cache(maxsize=None)
def type_hints(cls: type) -> dict[str, Any]:
    """The evaluated annotations of `cls` (cached: evaluating them is most of a small config's build time)."""
    return typing.get_type_hints(cls)


def did_you_mean(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# TRL (DPOConfig / TrainingArguments) names a plan may bring, and the lab's way to say each: a hint,
# not an alias, so that every setting has one name. Shown only where the named field exists.
TRL_NAMES = {
    "learning_rate": ("lr", "use lr"),
    "loss_type": ("objective", 'use objective (TRL loss_type "sigmoid" is objective "dpo"; the other TRL pairwise '
                               'loss types keep their names, e.g. "ipo", "exo_pair", "discopop"; docs/plans.md)'),
    "per_device_train_batch_size": ("micro_batch_size", "use micro_batch_size (examples per forward per "
                                                        "process) and batch_size (examples per optimizer step)"),
    "gradient_accumulation_steps": ("batch_size", "use batch_size (examples per optimizer step, global) and "
                                                  "micro_batch_size; accumulation = batch_size / (micro_batch_size "
                                                  "x processes)"),
    "per_device_eval_batch_size": ("eval_batch_size", "use eval_batch_size"),
    "bf16": ("precision", 'use precision "bf16" (autocast) or dtype "bfloat16" (weights)'),
    "fp16": ("precision", 'use precision "bf16" (fp16 autocast is not supported) or dtype "float16"'),
    "torch_dtype": ("dtype", "use dtype"),
    "report_to": ("use_wandb", "use use_wandb: true (and wandb_project)"),
    "peft_config": ("lora", 'use lora: the peft LoraConfig kwargs, e.g. {"r": 8}'),
    "warmup_steps": ("warmup_ratio", "use warmup_ratio (share of the steps)"),
    "num_train_epochs": ("num_epochs", "use num_epochs"),
    "lr_scheduler_type": ("lr_scheduler", "use lr_scheduler"),
    "output_dir": ("outputs_dir", "use outputs_dir (the run directory is outputs_dir/experiment_name)"),
    "run_name": ("experiment_name", "use experiment_name"),
    "max_prompt_length": ("max_length", "use max_length (prompt + response tokens)"),
    "model_name_or_path": ("model", "use model"),
    "dataset_name": ("dataset", "use dataset"),
    "dataset_train_split": ("split", "use split"),
    "logging_steps": ("eval_every_steps", "every step's train metrics are logged; use eval_every_steps for evals"),
    "eval_steps": ("eval_every_steps", "use eval_every_steps"),
    "save_steps": ("save_every_steps", "use save_every_steps"),
    "rpo_alpha": ("sft_coeff", "use sft_coeff (the weight of the cross-entropy on y+)"),
}


def unknown_key_hint(key: str, known) -> str:
    """What to write instead of an unknown key: the TRL name's lab equivalent, else the closest key."""
    trl = TRL_NAMES.get(key)
    if trl is not None and trl[0] in known:
        return f"; TRL name: {trl[1]}"
    return did_you_mean(key, known)


def check_known_keys(keys, cls: type, where: Mapping[str, str] | str) -> None:
    """Raise ConfigError for the first key that is not a field of `cls`, with a suggestion."""
    known = config_fields(cls)
    for key in keys:
        if key not in known:
            location = where[key] if isinstance(where, Mapping) else f"{where}.{key}"
            raise ConfigError(f"{location}: unknown key {key!r}{unknown_key_hint(key, known)}")


def _location(where: Mapping[str, str] | str, key: str) -> str:
    return where.get(key, key) if isinstance(where, Mapping) else f"{where}.{key}"


def run_config_class(cls: type, values: Mapping[str, Any], where: Mapping[str, str] | str = "config") -> type:
    """The config class that builds a run from `values`, whose keys are checked against it.

    `cls` itself, unless it dispatches: a study whose runs are of several kinds gives the class it
    expands plans with a classmethod `run_classes() -> (field, {value: config class})`, and the run's
    value of `field` (`cls`'s default when absent) picks the class. A key that only other kinds use is
    then an error naming the run's kind, e.g. `...kl_epsilon: not a field of experiment "classifier"
    (only of "rebound")`.
    """
    if not hasattr(cls, "run_classes"):
        check_known_keys(values, cls, where)
        return cls
    field, classes = cls.run_classes()
    value = values.get(field, config_fields(cls)[field].default)
    if value not in classes:
        raise ConfigError(f"{_location(where, field)}: {_describe(value)} is not one of "
                          f"{', '.join(_describe(v) for v in classes)}{did_you_mean(str(value), classes)}")
    chosen = classes[value]
    for key in values:
        users = [_describe(v) for v, c in classes.items() if key in config_fields(c)]
        if key not in config_fields(chosen) and users:
            raise ConfigError(f"{_location(where, key)}: not a field of {field} {_describe(value)} "
                              f"(only of {', '.join(users)}); remove it or change {field}")
    check_known_keys(values, chosen, where)
    return chosen


def from_dict(cls: type, values: Mapping[str, Any], where: Mapping[str, str] | str = "config"):
    """Build a `cls` instance from plain JSON values, checking keys, types, ranges and the value checks of
    common/validation.py (finite numbers, seeds, NUL, path lengths).

    `where` maps each key to the JSON path it came from (or is a prefix string for all keys); it
    is what the error message names.
    """

    def loc(key: str) -> str:
        if isinstance(where, Mapping):
            return where.get(key, key)
        return f"{where}.{key}"

    check_known_keys(values, cls, where)
    defaults, order, required = _field_table(cls)
    # A plan's runs pass every field, most at the class's own default: those are valid and left to the
    # class, and the rest is checked in field order (so an error names the first bad field).
    checked = [k for k, v in values.items() if v is not defaults[k]] + [k for k in required if k not in values]
    kwargs = {}
    for name in sorted(checked, key=order.__getitem__):
        if name not in values:
            raise ConfigError(f"{loc(name)}: required key is missing")
        value = values[name]
        try:
            try:  # a plan's runs share most values: each distinct scalar is checked once
                kwargs[name] = _checked_scalar(cls, name, type(value), value)
            except TypeError:  # unhashable: a list or dict
                kwargs[name] = _checked_value(cls, name, value)
        except _Invalid as e:
            raise ConfigError(f"{loc(name)}: {e}") from None
    config = cls(**kwargs)
    try:
        if hasattr(config, "validate"):  # command-line option dataclasses may have no cross-field rule
            config.validate()
    except FieldError as e:
        raise ConfigError(f"{loc(e.field)}: {e}") from None
    return config


@functools.lru_cache(maxsize=None)
def _field_table(cls: type) -> tuple[dict[str, Any], dict[str, int], tuple[str, ...]]:
    """Each field's default (MISSING when it has none or a factory), its position, and the required fields."""
    fields = dataclasses.fields(cls)
    required = tuple(f.name for f in fields
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    return {f.name: f.default for f in fields}, {f.name: i for i, f in enumerate(fields)}, required


class _Invalid(ValueError):
    """A value that its field does not accept; from_dict adds where it came from."""


@functools.lru_cache(maxsize=65536)
def _checked_scalar(cls: type, name: str, kind: type, value: Any) -> Any:
    return _checked_value(cls, name, value)  # `kind` keeps 1, 1.0 and True apart in the cache


def _checked_value(cls: type, name: str, value: Any) -> Any:
    """`value` converted to field `name`'s type, or _Invalid saying why it is not a valid value."""
    tp, meta = type_hints(cls)[name], config_fields(cls)[name].metadata
    try:
        value = _check_type(value, tp)
    except TypeError:
        raise _Invalid(f"expected {_type_name(tp)}, got {_describe(value)}") from None
    problem = field_problem(name, value, meta)
    if problem is not None:
        raise _Invalid(problem)
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise _Invalid(f"{_describe(value)} is not one of {', '.join(_describe(c) for c in meta['choices'])}"
                       f"{did_you_mean(str(value), [str(c) for c in meta['choices']])}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = meta.get("min"), meta.get("max")
        if low is not None and (value < low or (meta.get("min_exclusive") and value == low)):
            raise _Invalid(f"expected a value {'>' if meta.get('min_exclusive') else '>='} {low}, "
                           f"got {_describe(value)}")
        if high is not None and value > high:
            raise _Invalid(f"expected a value <= {high}, got {_describe(value)}")
    return value


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def describe_fields(cls: type) -> str:
    """One line per field: name, type, default and help (used by `--help_config`); for a dispatching
    class (`run_classes`, see run_config_class) then each run class's own fields."""
    lines = _field_lines(cls, config_fields(cls))
    if hasattr(cls, "run_classes"):
        field, classes = cls.run_classes()
        for value, run_cls in classes.items():
            lines.append(f"{field} {_describe(value)} ({run_cls.__name__}) adds:")
            lines += _field_lines(run_cls, [n for n in config_fields(run_cls) if n not in config_fields(cls)])
    return "\n".join(lines)


def _field_lines(cls: type, names) -> list[str]:
    hints = typing.get_type_hints(cls)
    lines = []
    for name in names:
        f = config_fields(cls)[name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        meta = f.metadata
        limits = range_notes(meta) + ([] if not meta.get("choices") else
                                      ["one of " + ", ".join(_describe(c) for c in meta["choices"])])
        text = " ".join(t for t in [meta.get("help", ""), f"({'; '.join(limits)})" if limits else ""] if t)
        lines.append(f"  {name}: {_type_name(hints[name])} = {json.dumps(default)}  {text}".rstrip())
    return lines


def range_notes(meta: Mapping[str, Any]) -> list[str]:
    """A field's bounds from its `option(...)` metadata, e.g. [">= 0", "<= 0.5"]."""
    notes = [] if meta.get("min") is None else [f"{'>' if meta.get('min_exclusive') else '>='} {meta['min']}"]
    return notes + ([] if meta.get("max") is None else [f"<= {meta['max']}"])
