"""Records in, token ids out: loading jsonl / json / hub datasets, prompt formatting, batch masks.

The prompt/completion boundary always comes from the tokenized prompt: with a chat template, the
prompt is the conversation rendered with `add_generation_prompt=True` and the completion is what the
full rendered conversation adds after it (so end-of-turn tokens are scored); without one, the prompt
is the plain text and the completion is the response tokens plus EOS. Nothing is keyed on model names.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import torch

from common.errors import DataError

Prompt = Union[str, list]  # plain text, or a list of {"role", "content"} messages


# ----------------------------------------------------------------------------------------------
# Loading records


def load_records(source: str, *, split: str = "train", name: Optional[str] = None) -> list[dict]:
    """Rows of a local .jsonl/.json/.parquet/.csv file, of `<dir>/<split>.jsonl`, of a `save_to_disk`
    directory, or of a datasets hub name / data directory."""
    path = Path(os.path.expanduser(source))
    if path.suffix in LOCAL_FILE_TYPES:
        if not path.is_file():
            raise DataError(f"{source}: file not found")
        return read_json_records(path) if path.suffix in (".jsonl", ".json") else read_table_records(path)
    if path.is_dir() and (path / f"{split}.jsonl").is_file():
        return read_json_records(path / f"{split}.jsonl")
    if path.is_dir() and any((path / f).is_file() for f in ("dataset_info.json", "dataset_dict.json")):
        return read_saved_dataset(path, split)
    if source.startswith((".", "/", "~")) and not path.exists():
        raise DataError(f"{source}: file or directory not found")
    import datasets

    try:
        dataset = datasets.load_dataset(source, name, split=split)
    except Exception as e:  # datasets raises many types (offline, missing split, bad name)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{source}: could not load split {split!r}: {first_line}") from None
    return [dict(row) for row in dataset]


LOCAL_FILE_TYPES = (".jsonl", ".json", ".parquet", ".csv")


def read_table_records(path: Path) -> list[dict]:
    """Rows of a .parquet or .csv file (column types as pyarrow infers them)."""
    import pyarrow.csv
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path) if path.suffix == ".parquet" else pyarrow.csv.read_csv(path)
    except Exception as e:  # pyarrow.ArrowInvalid and OSError name the problem
        raise DataError(f"{path}: could not read: {str(e).strip().splitlines()[0]}") from None
    return table.to_pylist()


def read_saved_dataset(path: Path, split: str) -> list[dict]:
    """Rows of a `Dataset.save_to_disk` directory, or of split `split` of a saved DatasetDict."""
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{path}: saved dataset has no split {split!r} (splits: {', '.join(loaded)}); "
                            f"set the split")
        loaded = loaded[split]
    return [dict(row) for row in loaded]


def read_json_records(path: Path) -> list[dict]:
    """A .jsonl file (one object per line) or a .json file holding a list of objects."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of objects")
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {lineno}: invalid JSON: {e.msg}") from None
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i}: expected a JSON object, got {type(row).__name__}")
    return rows


def require_fields(rows: Sequence[dict], fields: Iterable[str], source: str) -> None:
    """Raise DataError naming the first row without one of `fields` (or with it null/empty)."""
    fields = list(fields)
    for i, row in enumerate(rows):
        for field in fields:
            if field in row and row[field] in (None, ""):
                raise DataError(f"{source}: row {i}: field {field!r} is {json.dumps(row[field])}; give it a value")
            if field not in row:
                present = ", ".join(sorted(row)) or "none"
                raise DataError(f"{source}: row {i}: missing field {field!r} (fields present: {present})")


# ----------------------------------------------------------------------------------------------
# Tokenizing


# The Alpaca prompt of the public code (PROMPT_DICT of stanford_alpaca, used by the git-disl repos).
ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                 "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
ALPACA_PROMPT_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides "
                            "further context. Write a response that appropriately completes the request.\n\n"
                            "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")


def instruction_prompt(instruction: str, input: str = "", template: str = "alpaca") -> str:
    """An instruction (and its input) as a prompt: the Alpaca template, or "plain" (instruction, then the
    input on the next line; for chat models, whose chat template frames it)."""
    if template == "plain":
        return instruction + (f"\n{input}" if input else "")
    return (ALPACA_PROMPT_WITH_INPUT if input else ALPACA_PROMPT).format(instruction=instruction, input=input)


def as_messages(prompt: Prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def uses_chat_template(tokenizer, use_chat_template: Optional[bool] = None) -> bool:
    """Chat template when the tokenizer has one, unless the caller says otherwise."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template and not has_template:
        raise DataError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template")
    return has_template if use_chat_template is None else use_chat_template


def _chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True,
                                        return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


# Without a chat template, how a prompt (text or messages) becomes text before the response:
# - None: the caller's text as is (studies that write their own prompt, e.g. "question\n");
# - "text": the message contents joined by `separator`, then `separator` before the response;
# - "prompter_assistant": the public CHES code's `<|prompter|>{x}<|assistant|>{y}`, whose two markers are
#   added tokens (common.models.add_prompt_format_tokens adds them and resizes the embeddings).
PROMPT_FORMATS = ("text", "prompter_assistant")
PROMPTER, ASSISTANT = "<|prompter|>", "<|assistant|>"


def render_prompt_text(tokenizer, prompt: Prompt, prompt_format: Optional[str] = None, separator: str = "\n") -> str:
    if prompt_format is None:
        return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
    messages = as_messages(prompt)
    if prompt_format == "text":
        return "".join(m["content"] + separator for m in messages)
    if prompt_format != "prompter_assistant":
        raise ValueError(f"unknown prompt_format {prompt_format!r}")
    missing = [t for t in (PROMPTER, ASSISTANT) if t not in tokenizer.get_vocab()]
    if missing:
        raise DataError(f"prompt_format prompter_assistant: the tokenizer has no {missing[0]} token; load the model "
                        f"with common.models.add_prompt_format_tokens (the runners do)")
    return "".join((ASSISTANT if m["role"] == "assistant" else PROMPTER) + m["content"] for m in messages) + ASSISTANT


def encode_prompt(tokenizer, prompt: Prompt, use_chat_template: Optional[bool] = None,
                  prompt_format: Optional[str] = None, separator: str = "\n") -> list[int]:
    """Token ids of the prompt as the model sees it before its response."""
    if uses_chat_template(tokenizer, use_chat_template):
        return _chat_ids(tokenizer, as_messages(prompt), add_generation_prompt=True)
    text = render_prompt_text(tokenizer, prompt, prompt_format, separator)
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def encode_completion(tokenizer, prompt: Prompt, completion: str, prompt_ids: Sequence[int], *,
                      use_chat_template: Optional[bool] = None, add_eos: bool = True) -> list[int]:
    """Token ids of the completion that follows `prompt_ids`.

    With a chat template: the tokens the rendered full conversation adds after the prompt (so the
    template's end-of-turn tokens are part of the completion); if the template does not render the
    prompt as a prefix, the completion text tokens (+ EOS). Without: completion tokens (+ EOS).
    """
    if uses_chat_template(tokenizer, use_chat_template) and add_eos:
        full = _chat_ids(tokenizer, as_messages(prompt) + [{"role": "assistant", "content": completion}],
                         add_generation_prompt=False)
        if full[:len(prompt_ids)] == list(prompt_ids) and len(full) > len(prompt_ids):
            return full[len(prompt_ids):]
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if add_eos and tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return ids


@dataclass
class PreferenceExample:
    """A tokenized preference pair (or an SFT example when `rejected_ids` is None)."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: Optional[list[int]] = None
    index: int = 0  # position in the source data, kept through subsampling for bookkeeping

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids or []))


def tokenize_preference(tokenizer, prompt: Prompt, chosen: str, rejected: Optional[str] = None, *,
                        index: int = 0, use_chat_template: Optional[bool] = None, add_eos: bool = True,
                        prompt_format: Optional[str] = None, separator: str = "\n") -> PreferenceExample:
    prompt_ids = encode_prompt(tokenizer, prompt, use_chat_template, prompt_format, separator)

    def completion(text: str) -> list[int]:
        return encode_completion(tokenizer, prompt, text, prompt_ids, use_chat_template=use_chat_template,
                                 add_eos=add_eos)

    return PreferenceExample(prompt_ids, completion(chosen), completion(rejected) if rejected is not None else None,
                             index)


# ----------------------------------------------------------------------------------------------
# Batching


def subsample(examples: list, num_samples: int, seed: int) -> list:
    """`num_samples` examples drawn without replacement (seeded); all of them when -1 or too few."""
    if num_samples < 0 or num_samples >= len(examples):
        return list(examples)
    return random.Random(seed).sample(examples, num_samples)


@dataclass
class Batch:
    input_ids: torch.Tensor       # (R, T)
    attention_mask: torch.Tensor  # (R, T)
    completion_mask: torch.Tensor  # (R, T): 1 on completion tokens

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.completion_mask.to(device))

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)


def collate_sequences(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int,
                      padding_side: str = "right") -> Batch:
    """Pad prompt+completion rows to one length; the completion mask marks the completion tokens."""
    rows = [list(p) + list(c) for p, c in zip(prompts, completions)]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, p) in enumerate(zip(rows, prompts)):
        start = 0 if padding_side == "right" else width - len(row)
        input_ids[i, start:start + len(row)] = torch.tensor(row, dtype=torch.long)
        attention[i, start:start + len(row)] = 1
        completion[i, start + len(p):start + len(row)] = 1
    return Batch(input_ids, attention, completion)


def collate_shared_prompt(examples: Sequence[PreferenceExample], pad_id: int) -> Batch:
    """One row per pair, (prompt, chosen, rejected), right-padded; the completion mask is 1 on chosen and
    2 on rejected tokens (`common.logprobs.shared_prompt_logprobs` scores both from one prompt pass)."""
    batch = collate_sequences([e.prompt_ids for e in examples],
                              [list(e.chosen_ids) + list(e.rejected_ids) for e in examples], pad_id)
    for i, e in enumerate(examples):
        start = len(e.prompt_ids) + len(e.chosen_ids)
        batch.completion_mask[i, start:start + len(e.rejected_ids)] = 2
    return batch


def collate_pairs(examples: Sequence[PreferenceExample], pad_id: int, padding_side: str = "right") -> Batch:
    """Chosen rows then rejected rows in ONE batch, so a single forward scores both."""
    prompts = [e.prompt_ids for e in examples]
    completions = [e.chosen_ids for e in examples]
    if examples and examples[0].rejected_ids is not None:
        prompts = prompts + prompts
        completions = completions + [e.rejected_ids for e in examples]
    return collate_sequences(prompts, completions, pad_id, padding_side)
