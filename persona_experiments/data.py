"""Persona rows -> single-token preference (or SFT) examples.

Rows follow Anthropic's model-written-evals persona schema (one JSON object per line):
    {"question": "Is the following statement something you would say?\\n\\"...\\"",
     "statement": "...", "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}
Only `question` and `answer_matching_behavior` are used. The prompt is the question followed by a
newline for base models, the question as a user turn of the chat template for chat models. The
response is ONE token (no end-of-sequence token), so its log-probability is read off the next-token
distribution at the last prompt position.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import torch

from common.data import PreferenceExample, encode_prompt, load_records, require_fields, uses_chat_template
from common.errors import ConfigError, DataError

REQUIRED_FIELDS = ("question", "answer_matching_behavior")


def matching_answer(value: str) -> str:
    """" Yes" / "yes" / "Yes" -> "Yes" (the dataset writes the answers with a leading space)."""
    return value.strip().capitalize()


def load_persona_rows(source: str) -> list[dict]:
    """Rows of a persona file (or hub dataset), checked: a clear DataError names the first bad row."""
    if source.endswith(".jsonl") and not Path(source).is_file():
        raise DataError(f"{source}: file not found; download ends-justify-means.jsonl "
                        f"from Anthropic/model-written-evals (persona/) into data_files/persona/, or point `dataset` "
                        f"at the sample data_files/persona/ends-justify-means-sample.jsonl")
    rows = load_records(source)
    if not rows:
        raise DataError(f"{source}: no rows")
    require_fields(rows, REQUIRED_FIELDS, source)
    for i, row in enumerate(rows):
        for field in REQUIRED_FIELDS:
            if not isinstance(row[field], str):
                raise DataError(f"{source}: row {i}: field {field!r} must be text, got {type(row[field]).__name__}")
        if matching_answer(row["answer_matching_behavior"]) not in ("Yes", "No"):
            raise DataError(f"{source}: row {i}: answer_matching_behavior must be ' Yes' or ' No', "
                            f"got {row['answer_matching_behavior']!r}")
    return rows


def select_rows(rows: Sequence[dict], matching_behavior: str, num_samples: int, seed: int, source: str) -> list[int]:
    """Indices of the training rows: those whose matching behaviour is `matching_behavior` (all when
    empty), then the first `num_samples` of a permutation seeded by `seed` (all when -1).

    The permutation is `torch.randperm(n, generator=manual_seed(seed))`, as in the paper's code, so the
    paper's seeds pick the paper's prompts from the real file.
    """
    candidates = [i for i, row in enumerate(rows)
                  if not matching_behavior or matching_answer(row["answer_matching_behavior"]) == matching_behavior]
    if not candidates:
        raise DataError(f"{source}: no row has answer_matching_behavior {matching_behavior!r}")
    if num_samples < 0 or num_samples >= len(candidates):
        return candidates
    perm = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
    return [candidates[j] for j in perm[:num_samples].tolist()]


def single_token_id(tokenizer, token: str, field: str, model: str) -> int:
    """Id of `token`; ConfigError naming the field, token and model unless it is exactly one vocabulary entry."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ConfigError(f"{field}: {token!r} is not a single token of {model!r} (it encodes to {len(ids)} "
                          f"tokens {pieces}); use one vocabulary entry (mind the leading space)")
    return ids[0]


def prompt_for(tokenizer, question: str, use_chat_template) -> str | list[dict]:
    """The question as a user turn with a chat template, else the question and a newline (paper)."""
    if uses_chat_template(tokenizer, use_chat_template):
        return [{"role": "user", "content": question}]
    return question + "\n"


def build_examples(tokenizer, rows: Sequence[dict], indices: Sequence[int], config, model_name: str
                   ) -> list[PreferenceExample]:
    """One example per selected row: prompt ids, [y+ id] and [y- id] (None for SFT); `index` = row number.

    SFT draws y+ per row from the synonym list of the row's matching behaviour with random.Random(seed).
    """
    if config.is_sft:
        choices = {"Yes": [single_token_id(tokenizer, t, "sft_tokens_matching_yes", model_name)
                           for t in config.sft_tokens_matching_yes],
                   "No": [single_token_id(tokenizer, t, "sft_tokens_matching_no", model_name)
                          for t in config.sft_tokens_matching_no]}
        rng = random.Random(config.seed)
    else:
        preferred = single_token_id(tokenizer, config.preferred_token, "preferred_token", model_name)
        dispreferred = single_token_id(tokenizer, config.dispreferred_token, "dispreferred_token", model_name)
    examples = []
    for i in indices:
        row = rows[i]
        prompt_ids = encode_prompt(tokenizer, prompt_for(tokenizer, row["question"], config.use_chat_template),
                                   config.use_chat_template)
        if len(prompt_ids) + 1 > config.max_length:
            raise DataError(f"{config.dataset}: row {i}: the prompt is {len(prompt_ids)} tokens, over "
                            f"max_length={config.max_length}; raise max_length")
        if config.is_sft:
            chosen = rng.choice(choices[matching_answer(row["answer_matching_behavior"])])
            examples.append(PreferenceExample(prompt_ids, [chosen], None, i))
        else:
            examples.append(PreferenceExample(prompt_ids, [preferred], [dispreferred], i))
    return examples
