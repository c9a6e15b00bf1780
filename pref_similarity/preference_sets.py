"""Preference sets in the formats users have, normalised to rows {"prompt", "chosen", "rejected"}.

Formats (`auto` picks one from the first row's fields):
- `ultrafeedback` (HuggingFaceH4/ultrafeedback_binarized): `prompt` text, `chosen` / `rejected` message
  lists whose last message is the assistant's response.
- `alpaca_farm` (tatsu-lab/alpaca_farm, alpaca_human_preference): `instruction`, `input` (may be
  empty), `output_1`, `output_2`, `preference` 1 or 2 (the preferred output). The prompt is
  "instruction\\ninput" (just the instruction when the input is empty), as in the public code.
- `plain`: `prompt` (text or a message list), `chosen` and `rejected` text.

A row keeps its position in the loaded split as its `index`: the similarity file and the quantile
runs name examples by it. Rows are checked as they are normalised, so an error names the row.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from common.data import PreferenceExample, load_records, require_fields, tokenize_rows
from common.errors import DataError

FORMATS = ("auto", "ultrafeedback", "alpaca_farm", "plain")
# Split and hub config of the paper's datasets, so `--dataset <hub id>` alone loads what the paper used.
HUB_DEFAULTS = {
    "HuggingFaceH4/ultrafeedback_binarized": {"split": "train_prefs", "config_name": ""},
    "tatsu-lab/alpaca_farm": {"split": "preference", "config_name": "alpaca_human_preference"},
}


@dataclass
class PreferenceSet:
    source: str
    format: str  # the resolved format, never "auto"
    split: str
    config_name: str
    rows: list[dict]  # {"prompt", "chosen", "rejected"}; list position = example index


def detect_format(row: dict) -> str:
    if "output_1" in row or "preference" in row:
        return "alpaca_farm"
    if isinstance(row.get("chosen"), list):
        return "ultrafeedback"
    return "plain"


def _last_assistant_message(messages, field: str, source: str, i: int) -> str:
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        raise DataError(f"{source}: row {i}: field {field!r} must be a list of messages ending with the response")
    last = messages[-1]
    if last.get("role") != "assistant" or not isinstance(last.get("content"), str) or not last["content"]:
        raise DataError(f"{source}: row {i}: the last message of {field!r} must be an assistant message with "
                        f"content (got role {last.get('role')!r})")
    return last["content"]


def from_ultrafeedback(rows: list[dict], source: str) -> list[dict]:
    require_fields(rows, ["prompt", "chosen", "rejected"], source)
    return [{"prompt": row["prompt"],
             "chosen": _last_assistant_message(row["chosen"], "chosen", source, i),
             "rejected": _last_assistant_message(row["rejected"], "rejected", source, i)}
            for i, row in enumerate(rows)]


def from_alpaca_farm(rows: list[dict], source: str) -> list[dict]:
    require_fields(rows, ["instruction", "output_1", "output_2", "preference"], source)
    out = []
    for i, row in enumerate(rows):
        if row["preference"] not in (1, 2):
            raise DataError(f"{source}: row {i}: 'preference' must be 1 or 2 (the preferred output), "
                            f"got {row['preference']!r}")
        input_text = row.get("input") or ""
        preferred, other = ("output_1", "output_2") if row["preference"] == 1 else ("output_2", "output_1")
        out.append({"prompt": row["instruction"] + (f"\n{input_text}" if input_text else ""),
                    "chosen": row[preferred], "rejected": row[other]})
    return out


def from_plain(rows: list[dict], source: str) -> list[dict]:
    require_fields(rows, ["prompt", "chosen", "rejected"], source)
    return [{"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]} for row in rows]


NORMALIZERS = {"ultrafeedback": from_ultrafeedback, "alpaca_farm": from_alpaca_farm, "plain": from_plain}


def load_preference_set(source: str, *, format: str = "auto", split: str = "", config_name: str = "") -> PreferenceSet:
    """Load and normalise a preference set from a local file/dir or the hub.

    An empty `split` / `config_name` means the paper's choice for the two known hub datasets
    (`HUB_DEFAULTS`) and split "train" otherwise (a local .jsonl/.json file has no splits).
    """
    if format not in FORMATS:
        raise DataError(f"unknown preference set format {format!r}; choose one of {', '.join(FORMATS)}")
    defaults = HUB_DEFAULTS.get(source, {"split": "train", "config_name": ""})
    split = split or defaults["split"]
    config_name = config_name or defaults["config_name"]
    rows = load_records(source, split=split, name=config_name or None)
    if not rows:
        raise DataError(f"{source}: the preference set is empty")
    resolved = detect_format(rows[0]) if format == "auto" else format
    normalized = NORMALIZERS[resolved](rows, source)
    check_types(normalized, source)
    return PreferenceSet(source, resolved, split, config_name, normalized)


def check_types(rows: list[dict], source: str) -> None:
    """Responses are text and prompts text or message lists, whatever the format (errors name the row)."""
    for i, row in enumerate(rows):
        for field in ("chosen", "rejected"):
            if not isinstance(row[field], str):
                raise DataError(f"{source}: row {i}: the {field} response must be text, got {type(row[field]).__name__}")
        if not isinstance(row["prompt"], (str, list)):
            raise DataError(f"{source}: row {i}: the prompt must be text or a list of messages, "
                            f"got {type(row['prompt']).__name__}")
        if isinstance(row["prompt"], list):
            for k, message in enumerate(row["prompt"]):
                if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                        and isinstance(message.get("content"), str)):
                    raise DataError(f"{source}: row {i}: prompt message {k} must be an object with text "
                                    f"'role' and 'content', got {json.dumps(message)[:80]}")
            if not row["prompt"]:
                raise DataError(f"{source}: row {i}: the prompt is an empty list of messages")


def tokenize_examples(preference_set: PreferenceSet, tokenizer, *, max_length: int,
                      indices: Optional[Iterable[int]] = None, use_chat_template: Optional[bool] = None,
                      ) -> tuple[list[PreferenceExample], int]:
    """Tokenized examples of `indices` (all rows by default), each carrying its row index, and the
    number dropped because prompt + the longer response exceeds `max_length` tokens (<= 0: no limit)."""
    indices = list(range(len(preference_set.rows))) if indices is None else list(indices)
    rows = [preference_set.rows[i] for i in indices]
    examples, dropped = tokenize_rows(rows, tokenizer, source=preference_set.source, prompt_field="prompt",
                                      chosen_field="chosen", rejected_field="rejected",
                                      max_length=max_length if max_length > 0 else float("inf"),
                                      use_chat_template=use_chat_template)
    for example in examples:  # tokenize_rows numbers the rows it was given; restore the set's indices
        example.index = indices[example.index]
    return examples, dropped


def dataset_identity(source: str) -> str:
    """What a similarity file records about its dataset: the absolute path of a local one, else the hub id."""
    path = Path(os.path.expanduser(source))
    return str(path.resolve()) if path.exists() else source
