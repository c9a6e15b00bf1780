"""SORRY-Bench prompt files, human-judgment files and the preference-set files this study writes.

Prompts (SORRY-Bench's `question.jsonl`, hub `sorry-bench/sorry-bench-202406`, or a local file in
the same schema, e.g. data_files/sorrybench/prompts_sample.jsonl), one object per line:
    {"question_id": 1, "category": "1", "turns": ["<first user turn>", ...], "prompt_style": "base"}
Only the first turn is used. Rows of another `prompt_style` (the benchmark's linguistic mutations)
are left out unless asked for.

Human judgments (close to SORRY-Bench's human-judgment release, FastChat answer format), one
judged response per line:
    {"question_id": 1, "category": "1", "turns": ["<prompt>"], "prompt_style": "base",
     "model_id": "gpt-3.5-turbo-0125", "choices": [{"index": 0, "turns": ["<response>"]}],
     "human_score": 0}
`human_score` is 1 when the response complies (fulfils the request) and 0 when it refuses, the
judge's convention; a fractional score (an average of annotators) counts as a refusal below 0.5,
as the public code thresholds it. `turns` may be left out: the prompt then comes from the preference set.

Preference sets (`<dir>/train.jsonl`, `test.jsonl`, gold: `gold_train.jsonl`, `gold_test.jsonl`),
one pair per line, trained on with the generic `prompt`/`chosen`/`rejected` fields:
    {"question_id", "category", "prompt", "chosen", "rejected", "chosen_score", "rejected_score", ...}
"""
from __future__ import annotations

from pathlib import Path

from common.data import load_records
from common.errors import DataError

SORRY_BENCH = "sorry-bench/sorry-bench-202406"
HUMAN_JUDGMENTS = "sorry-bench/sorry-bench-human-judgment-202406"
SPLITS = ("train", "test")
GOLD_PREFIX = "gold_"


def first_turn(row: dict, i: int, source: str) -> str:
    turns = row.get("turns")
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], str) or not turns[0].strip():
        raise DataError(f"{source}: row {i}: 'turns' must be a non-empty list of strings (the user turns)")
    return turns[0]


def load_prompts(source: str, *, split: str = "train", prompt_style: str = "base",
                 max_prompts: int = -1) -> list[dict]:
    """[{question_id, category, prompt}] from a SORRY-Bench file or hub id, in file order.

    `prompt_style` keeps the rows of that style ("" keeps all; rows without the field are kept).
    """
    rows = load_records(source, split=split)
    prompts, seen = [], {}
    for i, row in enumerate(rows):
        if prompt_style and row.get("prompt_style", prompt_style) != prompt_style:
            continue
        if "question_id" not in row:
            raise DataError(f"{source}: row {i}: missing field 'question_id'")
        qid = row["question_id"]
        if qid in seen:
            raise DataError(f"{source}: rows {seen[qid]} and {i} share question_id {qid!r}; "
                            f"pick one prompt_style (--prompt_style) or de-duplicate the file")
        seen[qid] = i
        prompts.append({"question_id": qid, "category": row.get("category", ""),
                        "prompt": first_turn(row, i, source)})
    if not prompts:
        raise DataError(f"{source}: no prompts" + (f" with prompt_style {prompt_style!r}" if prompt_style else ""))
    return prompts[:max_prompts] if max_prompts > 0 else prompts


def load_human_judgments(source: str, *, split: str = "train") -> list[dict]:
    """[{question_id, prompt (or None), response, complies}] from a human-judgment file or hub id."""
    judgments = []
    for i, row in enumerate(load_records(source, split=split)):
        for field in ("question_id", "choices", "human_score"):
            if field not in row:
                raise DataError(f"{source}: row {i}: missing field {field!r} (fields present: "
                                f"{', '.join(sorted(row)) or 'none'})")
        choices = row["choices"]
        try:
            response = choices[0]["turns"][0]
        except (TypeError, KeyError, IndexError):
            response = None
        if not isinstance(response, str):
            raise DataError(f"{source}: row {i}: 'choices' must look like [{{\"turns\": [\"<response>\"]}}]")
        score = row["human_score"]
        if not isinstance(score, (int, float)) or not 0 <= score <= 1:  # true / false are accepted too
            raise DataError(f"{source}: row {i}: human_score must be a number from 0 (refuses) to 1 (complies), "
                            f"got {score!r}")
        judgments.append({"question_id": row["question_id"],
                          "prompt": first_turn(row, i, source) if "turns" in row else None,
                          "response": response, "complies": score >= 0.5})
    return judgments


def read_preference_split(dataset_path: str | Path, split: str, *, gold: bool = False) -> tuple[list[dict], str]:
    """Rows of `<dataset_path>/[gold_]<split>.jsonl` and the file's path (for error messages)."""
    path = Path(dataset_path) / f"{GOLD_PREFIX if gold else ''}{split}.jsonl"
    if not path.is_file():
        hint = ("build it with python -m sorrybench.create_dataset --human_judgments ..." if gold
                else "build the preference set with python -m sorrybench.create_dataset")
        raise DataError(f"{path}: file not found; {hint}")
    return load_records(str(path)), str(path)


def split_prompts(dataset_path: str | Path, max_prompts: int = -1) -> dict[str, list[dict]]:
    """{split: [{question_id, prompt}]} of a preference set: the prompts refusal rates are measured on."""
    out = {}
    for split in SPLITS:
        rows, path = read_preference_split(dataset_path, split)
        for i, row in enumerate(rows):
            if not isinstance(row.get("prompt"), str) or not row["prompt"]:
                raise DataError(f"{path}: row {i}: missing field 'prompt'")
        rows = [{"question_id": r.get("question_id", i), "prompt": r["prompt"]} for i, r in enumerate(rows)]
        out[split] = rows[:max_prompts] if max_prompts > 0 else rows
    return out


def model_dir_name(name_or_path: str) -> str:
    """A directory name for a model: `google/gemma-2b-it` -> `google__gemma-2b-it`."""
    return name_or_path.strip().lstrip("./").rstrip("/").replace("/", "__") or "model"
