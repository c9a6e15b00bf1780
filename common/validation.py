"""The value checks every config value goes through (`common.config.from_dict`), beyond its type.

A plan is JSON, and Python's JSON reader accepts what no run can use: NaN and Infinity, integers far
beyond any count, NUL bytes, names longer than a file system allows. Each is rejected here with the
JSON path of the value, before anything runs:

- numbers finite; integers within +-2**53 (what a float, hence JSON elsewhere, holds exactly);
- seeds (a field named `seed` or `*_seed`) in [0, 2**32), the range numpy and torch accept;
- strings without NUL; path fields (`option(..., path=True)`: experiment_name, outputs_dir, data
  paths) at most 255 bytes per component and 4096 in all;
- nested values (dict / Any fields such as `lora` or a judge's keyword arguments) checked the same way.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Any

MAX_INTEGER = 2 ** 53
SEED_LIMIT = 2 ** 32
MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux and macOS)
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux


def is_seed_field(name: str) -> bool:
    return name == "seed" or name.endswith("_seed")


def value_problem(value: Any, depth: int = 0) -> str | None:
    """Why a JSON value cannot be a config value (None when it can): non-finite, huge, NUL, too deep."""
    if depth > 20:
        return "nested more than 20 levels deep"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number, got {value}"
    if isinstance(value, (int, float)) and abs(value) > MAX_INTEGER:
        return f"expected a number of magnitude <= 2**53, got {value:.6g}"
    if isinstance(value, str) and "\0" in value:
        return f"contains a NUL character: {json.dumps(value)}"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        problem = value_problem(item, depth + 1)
        if problem is not None:
            return f"[{json.dumps(key)}]: {problem}" if isinstance(value, dict) else f"[{key}]: {problem}"
    return None


def path_problem(text: str) -> str | None:
    """Why `text` cannot name a file or directory (None when it can)."""
    encoded = os.fsencode(text)
    if len(encoded) > MAX_PATH_BYTES:
        return f"is {len(encoded)} bytes long; a path has at most {MAX_PATH_BYTES}"
    for part in encoded.split(b"/"):
        if len(part) > MAX_NAME_BYTES:
            return (f"has a component of {len(part)} bytes ({os.fsdecode(part[:40])}...); a file or directory "
                    f"name has at most {MAX_NAME_BYTES}: shorten it")
    return None


def field_problem(name: str, value: Any, metadata) -> str | None:
    """Why `value` (already of the field's type) is not a valid value of field `name`, or None."""
    problem = value_problem(value)
    if problem is not None:
        return problem.lstrip(": ")
    if is_seed_field(name) and isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < SEED_LIMIT:
            return f"a seed is in [0, 2**32), got {value}"
    if metadata.get("path") and isinstance(value, str):
        return path_problem(value)
    return None


# ----------------------------------------------------------------------------------------------
# LoRA keyword arguments


@functools.lru_cache(maxsize=1)
def lora_fields() -> frozenset[str]:
    """The keyword arguments of peft.LoraConfig a plan may give (task_type is set by common.models)."""
    from peft import LoraConfig  # local: peft imports torch

    return frozenset(f.name for f in dataclasses.fields(LoraConfig) if f.init) - {"task_type"}


def unknown_lora_key(lora: dict) -> str | None:
    """The first key of `lora` that peft.LoraConfig does not take, or None."""
    known = lora_fields()
    return next((k for k in lora if k not in known), None)
