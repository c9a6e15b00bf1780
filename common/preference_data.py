"""Preference and SFT sets in the formats users have, normalised, tokenized and truncated in one place.

Every runner and tool that reads preference rows (train_preferences, pref_similarity.compute and its
quantile runs, sorrybench) goes through `load_preference_rows` / `normalize_rows` and `tokenize_pairs`.

Formats (`auto` picks one from the first row's fields); a normalised row is {"prompt", "chosen",
"rejected"}, the prompt text or a message list, the responses text (`rejected` None for SFT):
- `plain` (TRL standard): `prompt` (text or messages), `chosen`, `rejected` text (no `rejected`: SFT).
  Without `prompt` (TRL's implicit prompt) the prompt is the common prefix of `chosen` and `rejected`,
  cut as TRL's `extract_prompt` cuts it.
- `conversational` (TRL conversational; UltraFeedback binarized is this format): `chosen` /
  `rejected` message lists ending with the assistant's response. The prompt is every message before
  that last assistant turn (multi-turn context kept; it must be the same in both lists), or, when
  the lists hold only the response, the `prompt` field (text or messages).
- `alpaca_farm` (tatsu-lab/alpaca_farm): `instruction`, `input` (may be empty), `output_1`,
  `output_2`, `preference` 1 or 2. The prompt is "instruction\\ninput" (the instruction alone when
  the input is empty), as in the public CHES code.
- `prompt_completion` (SFT): `prompt` (text or messages), `completion` (text or [assistant message]).
- `messages` (SFT): a message list; the response is the last (assistant) message, the prompt all before.

Token budgets follow TRL: `max_prompt_length` cuts the prompt, `max_length` the prompt + response;
`keep_start` keeps the first tokens (the public CHES code: prompt, x+y+ and x+y- cut to 512),
`keep_end` drops the prompt's first tokens so the longer response fits. Examples are kept; only one
whose response is empty after truncation is dropped, and both counts are reported.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from common.data import PreferenceExample, load_records, require_fields, tokenize_preference
from common.errors import DataError
from common.tracking import logger

FORMATS = ("auto", "plain", "conversational", "alpaca_farm", "prompt_completion", "messages")
TRUNCATION_MODES = ("keep_start", "keep_end")
WARN_SHARE = 0.05  # warn when more than this share of the examples is truncated or dropped


def detect_format(row: dict) -> str:
    if "output_1" in row or "preference" in row:
        return "alpaca_farm"
    if "chosen" in row:
        return "conversational" if isinstance(row["chosen"], list) else "plain"
    if "completion" in row:
        return "prompt_completion"
    if "messages" in row:
        return "messages"
    present = ", ".join(sorted(row)) or "none"
    raise DataError(f"row 0 has no known preference or SFT fields (fields present: {present}); "
                    f"expected prompt/chosen/rejected, chosen/rejected message lists, instruction/output_1/output_2/"
                    f"preference, prompt/completion or messages (or name your fields in the config)")


class _Rows:
    """Field access with errors that name the source, row and, on a format mismatch, the fix."""

    def __init__(self, source: str, format: str, format_field: str):
        self.source, self.format, self.format_field = source, format, format_field

    def fail(self, i: int, message: str) -> DataError:
        return DataError(f"{self.source}: row {i}: {message}")

    def mismatch(self, i: int, field: str, value) -> DataError:
        response = field in ("chosen", "rejected")
        if isinstance(value, list):
            seen, fix = "a list of messages" + (" (TRL conversational format)" if response else ""), "conversational"
        elif isinstance(value, str):
            seen, fix = "text" + (" (TRL standard format)" if response else ""), "plain" if response else "auto"
        else:  # no format takes a number, an object or null here
            seen = {type(None): "null", dict: "an object", bool: "true/false"}.get(type(value), "a number")
            return self.fail(i, f"field {field!r} is {seen}; it must be text or a list of "
                                "{\"role\": ..., \"content\": ...} messages")
        return self.fail(i, f"field {field!r} is {seen}, which the {self.format} format does not accept; set "
                            f"{self.format_field} to {fix} (auto detects the format from the first row)")

    def text(self, row: dict, i: int, field: str) -> str:
        if not isinstance(row[field], str):
            raise self.mismatch(i, field, row[field])
        return row[field]

    def messages(self, value, i: int, field: str) -> list[dict]:
        if not isinstance(value, list):
            raise self.mismatch(i, field, value)
        for k, m in enumerate(value):
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise self.fail(i, f"{field} message {k} must be an object with text 'role' and 'content', "
                                   f"got {json.dumps(m)[:80]}")
        return value

    def split_last_turn(self, value, i: int, field: str) -> tuple[list[dict], str]:
        """(the messages before the last one, the last one's content), the last being the assistant's."""
        messages = self.messages(value, i, field)
        if not messages or messages[-1]["role"] != "assistant" or not messages[-1]["content"]:
            role = messages[-1]["role"] if messages else None
            raise self.fail(i, f"the last message of {field!r} must be an assistant message with content "
                               f"(got role {role!r})")
        return messages[:-1], messages[-1]["content"]

    def prompt(self, row: dict, i: int) -> str | list:
        prompt = row["prompt"]
        return self.messages(prompt, i, "prompt") if not isinstance(prompt, str) else prompt


def implicit_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """TRL's `extract_prompt` for text: the common prefix, one character shorter when it ends in a space."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if 0 < n and chosen[n - 1] == " " and n < min(len(chosen), len(rejected)):
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def _plain(r: _Rows, rows: list[dict]) -> list[dict]:
    pairs, explicit = "rejected" in rows[0], "prompt" in rows[0]
    require_fields(rows, ["chosen"] + (["rejected"] if pairs else []) + (["prompt"] if explicit else []), r.source)
    out = []
    for i, row in enumerate(rows):
        chosen = r.text(row, i, "chosen")
        rejected = r.text(row, i, "rejected") if pairs else None
        if explicit:
            out.append({"prompt": r.prompt(row, i), "chosen": chosen, "rejected": rejected})
            continue
        if not pairs:
            raise r.fail(i, "no 'prompt' field: SFT rows need one (an implicit prompt needs chosen and rejected)")
        prompt, chosen, rejected = implicit_prompt(chosen, rejected)
        if not prompt:
            raise r.fail(i, "no 'prompt' field and 'chosen' and 'rejected' share no prefix (TRL's implicit prompt); "
                            "add a 'prompt' field")
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def _conversational(r: _Rows, rows: list[dict]) -> list[dict]:
    require_fields(rows, ["chosen", "rejected"], r.source)
    out = []
    for i, row in enumerate(rows):
        context, chosen = r.split_last_turn(row["chosen"], i, "chosen")
        rejected_context, rejected = r.split_last_turn(row["rejected"], i, "rejected")
        if context != rejected_context:
            raise r.fail(i, "'chosen' and 'rejected' differ before their last assistant turn; the prompt must be "
                            "shared")
        if context:
            prompt = context
        elif row.get("prompt") not in (None, "", []):
            prompt = r.prompt(row, i)
        else:
            raise r.fail(i, "no prompt: 'chosen' holds only the response and there is no 'prompt' field")
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def _alpaca_farm(r: _Rows, rows: list[dict]) -> list[dict]:
    require_fields(rows, ["instruction", "output_1", "output_2", "preference"], r.source)
    out = []
    for i, row in enumerate(rows):
        if row["preference"] not in (1, 2):
            raise r.fail(i, f"'preference' must be 1 or 2 (the preferred output), got {row['preference']!r}")
        input_text = row.get("input") or ""
        preferred, other = ("output_1", "output_2") if row["preference"] == 1 else ("output_2", "output_1")
        out.append({"prompt": r.text(row, i, "instruction") + (f"\n{input_text}" if input_text else ""),
                    "chosen": r.text(row, i, preferred), "rejected": r.text(row, i, other)})
    return out


def _prompt_completion(r: _Rows, rows: list[dict]) -> list[dict]:
    require_fields(rows, ["prompt", "completion"], r.source)
    out = []
    for i, row in enumerate(rows):
        completion = row["completion"]
        if not isinstance(completion, str):
            context, completion = r.split_last_turn(completion, i, "completion")
            if context:
                raise r.fail(i, "'completion' must hold only the assistant's response")
        out.append({"prompt": r.prompt(row, i), "chosen": completion, "rejected": None})
    return out


def _messages(r: _Rows, rows: list[dict]) -> list[dict]:
    require_fields(rows, ["messages"], r.source)
    out = []
    for i, row in enumerate(rows):
        context, response = r.split_last_turn(row["messages"], i, "messages")
        if not context:
            raise r.fail(i, "'messages' holds only the response; a prompt turn must come before it")
        out.append({"prompt": context, "chosen": response, "rejected": None})
    return out


NORMALIZERS = {"plain": _plain, "conversational": _conversational, "alpaca_farm": _alpaca_farm,
               "prompt_completion": _prompt_completion, "messages": _messages}


def rename_fields(rows: list[dict], fields: Optional[dict]) -> list[dict]:
    """Rows with the user's field names mapped to the standard ones ({standard: user's}; "" = absent)."""
    if not fields or all(k == v for k, v in fields.items()):
        return rows
    out = []
    for row in rows:
        row = dict(row)
        for standard, name in fields.items():
            if name != standard:
                value = row.pop(name, None) if name else None
                row.pop(standard, None)
                if value is not None:
                    row[standard] = value
        out.append(row)
    return out


def normalize_rows(rows: list[dict], source: str, *, format: str = "auto", fields: Optional[dict] = None,
                   format_field: str = "dataset_format") -> tuple[list[dict], str]:
    """Normalised rows (list position = row index) and the resolved format; errors name the row and,
    when the rows are in another format, `format_field`, the config field or flag that sets it."""
    if format not in FORMATS:
        raise DataError(f"unknown preference set format {format!r}; choose one of {', '.join(FORMATS)}")
    if not rows:
        raise DataError(f"{source}: the data set is empty")
    rows = rename_fields(rows, fields)
    try:
        resolved = detect_format(rows[0]) if format == "auto" else format
    except DataError as e:
        raise DataError(f"{source}: {e}") from None
    normalized = NORMALIZERS[resolved](_Rows(source, resolved, format_field), rows)
    for i, row in enumerate(normalized):
        if isinstance(row["prompt"], list) and not row["prompt"]:
            raise DataError(f"{source}: row {i}: the prompt is an empty list of messages")
    return normalized, resolved


def load_preference_rows(source: str, *, format: str = "auto", split: str = "train", config_name: str = "",
                         fields: Optional[dict] = None, format_field: str = "dataset_format") -> tuple[list[dict], str]:
    """Load (see common.data.load_records) and normalise a preference or SFT set."""
    rows = load_records(source, split=split, name=config_name or None)
    return normalize_rows(rows, source, format=format, fields=fields, format_field=format_field)


# ----------------------------------------------------------------------------------------------
# Tokenizing with truncation


@dataclass(frozen=True)
class Tokenization:
    """How rows become token ids: chat template or a plain prompt format, and the token budgets."""

    max_length: int = -1  # prompt + response tokens; <= 0: no limit
    max_prompt_length: int = -1  # <= 0: no limit
    truncation_mode: str = "keep_start"
    use_chat_template: Optional[bool] = None  # None: when the tokenizer has one
    prompt_format: Optional[str] = None  # without a chat template; see common.data.PROMPT_FORMATS
    prompt_separator: str = "\n"

    @classmethod
    def of(cls, config) -> "Tokenization":
        """The settings of a TrainConfig-based run config."""
        return cls(config.max_length, config.max_prompt_length, config.truncation_mode,
                   getattr(config, "use_chat_template", None), config.prompt_format, config.prompt_separator)

    def truncate(self, prompt: list[int], responses: list[list[int]]) -> tuple[list[int], list[list[int]]]:
        keep_start = self.truncation_mode == "keep_start"
        if self.max_prompt_length > 0 and len(prompt) > self.max_prompt_length:
            prompt = prompt[:self.max_prompt_length] if keep_start else prompt[-self.max_prompt_length:]
        if self.max_length > 0:
            if keep_start:
                prompt = prompt[:self.max_length]
            else:  # drop the prompt's first tokens so the longer response fits; keep at least one
                budget = max(self.max_length - max(len(r) for r in responses), 1)
                prompt = prompt[-budget:] if len(prompt) > budget else prompt
            responses = [r[:max(self.max_length - len(prompt), 0)] for r in responses]
        return prompt, responses


@dataclass
class TruncationCounts:
    examples: int = 0
    truncated: int = 0  # kept, with fewer tokens
    dropped_empty_response: int = 0

    def as_dict(self) -> dict:
        return {"examples": self.examples, "truncated": self.truncated,
                "dropped_empty_response": self.dropped_empty_response}


def tokenize_pairs(rows: Sequence[dict], tokenizer, settings: Tokenization, *, source: str,
                   indices: Optional[Iterable[int]] = None) -> tuple[list[PreferenceExample], TruncationCounts]:
    """Tokenized, truncated examples of normalised `rows` (those of `indices`, all by default), each
    carrying its row index, and the counts; logs a warning when many were truncated or dropped."""
    indices = list(range(len(rows))) if indices is None else list(indices)
    examples, counts = [], TruncationCounts(examples=len(indices))
    for i in indices:
        row = rows[i]
        e = tokenize_preference(tokenizer, row["prompt"], row["chosen"], row["rejected"], index=i,
                                use_chat_template=settings.use_chat_template, prompt_format=settings.prompt_format,
                                separator=settings.prompt_separator)
        responses = [e.chosen_ids] + ([e.rejected_ids] if e.rejected_ids is not None else [])
        prompt, cut = settings.truncate(e.prompt_ids, responses)
        if not all(cut):
            counts.dropped_empty_response += 1
            continue
        if len(prompt) < len(e.prompt_ids) or any(len(a) < len(b) for a, b in zip(cut, responses)):
            counts.truncated += 1
        examples.append(PreferenceExample(prompt, cut[0], cut[1] if len(cut) > 1 else None, i))
    changed = counts.truncated + counts.dropped_empty_response
    message = (f"{source}: {counts.truncated} of {counts.examples} examples truncated to max_length "
               f"{settings.max_length} / max_prompt_length {settings.max_prompt_length} ({settings.truncation_mode}), "
               f"{counts.dropped_empty_response} dropped (empty response after truncation)")
    (logger.warning if changed > WARN_SHARE * counts.examples else logger.info)(message)
    return examples, counts
