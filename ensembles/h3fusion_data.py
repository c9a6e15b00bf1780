"""H3Fusion's data: the three alignment sets and the evaluation sets, selected the same way in every stage.

Sources (hub defaults; `data_sources` points any of them at a local file or directory, e.g. the fixtures
of `python -m ensembles.fixtures`), in the public sets' schemas:
- helpful: Alpaca rows {instruction, input, output}; of the distinct (instruction, input) pairs, the
  first `num_helpful_eval` are the helpfulness prompts, the next `num_train` (outside the evaluation
  prompts) the helpful expert's training rows;
- harmless: BeaverTails {prompt, response, category, is_safe}; training: the first `num_train` distinct
  prompts of 30k_train with a safe answer (`is_safe`), that answer the target; HS prompts: the first
  `num_harmful_eval` distinct prompts of 30k_test with an unsafe answer, never a training prompt;
- honest: TruthfulQA's generation rows {question, best_answer, ...}; training: the first `num_train`
  questions (outside the other evaluation prompts) with their best answer;
- honest_mc: TruthfulQA's multiple_choice rows {question, mc1_targets: {choices, labels}} (or
  {question, choices, answer}); MC1 questions: those not trained on, the first `num_honest_eval`.
No training prompt of any set is an evaluation prompt of any set (the fixtures share questions between
the sets; the public ones may too). A set too small for the counts is a DataError naming it.
"""
from __future__ import annotations

from dataclasses import dataclass

from common.data import instruction_prompt, load_records
from common.errors import DataError

# name -> (hub id, hub config name, split(s))
SOURCES = {
    "helpful": ("tatsu-lab/alpaca", None, "train"),
    "harmless": ("PKU-Alignment/BeaverTails", None, ("30k_train", "30k_test")),
    "honest": ("truthfulqa/truthful_qa", "generation", "validation"),
    "honest_mc": ("truthfulqa/truthful_qa", "multiple_choice", "validation"),
}


@dataclass(frozen=True)
class Pair:
    """A training row: the prompt text the model sees and its target response."""

    prompt: str
    response: str


@dataclass(frozen=True)
class EvalPrompt:
    """An evaluation prompt: what the model sees, and the raw prompt the judge or scorer reads."""

    text: str
    raw: str


@dataclass(frozen=True)
class H3Data:
    train: dict[str, list[Pair]]  # expert name -> its training rows
    harmful: list[EvalPrompt]  # the HS prompts
    helpful: list[EvalPrompt]  # the helpfulness prompts (raw: instruction and input)
    mc_questions: list[str]  # what the model sees
    mc_choices: list[list[str]]
    mc_answers: list[int]


def load(config, name: str, split: str) -> list[dict]:
    hub_id, hub_name, _ = SOURCES[name]
    source = config.data_sources.get(name, hub_id)
    return load_records(source, split=split, name=hub_name if source == hub_id else None)


def text(row: dict, key: str, name: str, i: int) -> str:
    value = row.get(key)
    if not isinstance(value, str) or (not value and key != "input"):
        raise DataError(f"{name} data: row {i}: field {key!r} is {'missing' if key not in row else repr(value)[:60]} "
                        f"(fields present: {', '.join(sorted(row)) or 'none'})")
    return value


def first(items: list, count: int, name: str, what: str) -> list:
    if len(items) < count:
        raise DataError(f"{name} data: {len(items)} {what}, {count} needed; lower the count or give a larger set")
    return items[:count]


def distinct_prompts(rows: list[dict], name: str, safe: bool) -> list[tuple[str, str]]:
    """(prompt, response) of the first row of each distinct prompt with is_safe == `safe`, in order."""
    seen, out = set(), []
    for i, row in enumerate(rows):
        if not isinstance(row.get("is_safe"), bool):
            raise DataError(f"{name} data: row {i}: field 'is_safe' must be true or false, got {row.get('is_safe')!r}")
        prompt = text(row, "prompt", name, i)
        if row["is_safe"] == safe and prompt not in seen:
            seen.add(prompt)
            out.append((prompt, text(row, "response", name, i)))
    return out


def mc_row(row: dict, i: int) -> tuple[str, list[str], int]:
    """(question, choices, index of the right one) of a TruthfulQA MC1 row or a {choices, answer} row."""
    question = text(row, "question", "honest_mc", i)
    targets = row.get("mc1_targets")
    if isinstance(targets, dict):
        choices, labels = targets.get("choices"), targets.get("labels")
        if not isinstance(choices, list) or not isinstance(labels, list) or len(choices) != len(labels) \
                or labels.count(1) != 1:
            raise DataError(f"honest_mc data: row {i}: mc1_targets needs choices and labels of one length, "
                            f"exactly one label 1")
        return question, [str(c) for c in choices], labels.index(1)
    choices, answer = row.get("choices"), row.get("answer")
    if not isinstance(choices, list) or len(choices) < 2 or not isinstance(answer, int) or isinstance(answer, bool) \
            or not 0 <= answer < len(choices):
        raise DataError(f"honest_mc data: row {i}: expected mc1_targets {{choices, labels}} (TruthfulQA) or "
                        f"choices (>= 2) with answer (the right choice's index)")
    return question, [str(c) for c in choices], answer


def select(config) -> H3Data:
    """The evaluation prompts first (helpful, harmful, then the MC1 questions not among the honest training
    questions), then each set's training rows, none of whose prompts is an evaluation prompt of any set."""
    template = config.instruction_template
    distinct = {}  # (instruction, input) -> the output of its first row
    for i, r in enumerate(load(config, "helpful", SOURCES["helpful"][2])):
        key = (text(r, "instruction", "helpful", i), r.get("input") or "")
        distinct.setdefault(key, text(r, "output", "helpful", i))
    helpful = [(instruction_prompt(q, x, "plain"), q, x, o) for (q, x), o in distinct.items()]
    evaluated = first(helpful, config.num_helpful_eval, "helpful", "distinct instructions")
    train_split, test_split = SOURCES["harmless"][2]
    harmful = first(distinct_prompts(load(config, "harmless", test_split), "harmless", safe=False),
                    config.num_harmful_eval, "harmless", "distinct unsafe 30k_test prompts")
    held_out = {h[0] for h in evaluated} | {p for p, _ in harmful}

    honest = [(text(r, "question", "honest", i), text(r, "best_answer", "honest", i))
              for i, r in enumerate(load(config, "honest", SOURCES["honest"][2]))]
    honest = first([(q, a) for q, a in honest if q not in held_out], config.num_train, "honest",
                   "questions outside the evaluation prompts")
    trained_questions = {q for q, _ in honest}
    mc = [mc_row(r, i) for i, r in enumerate(load(config, "honest_mc", SOURCES["honest_mc"][2]))]
    mc = [m for m in mc if m[0] not in trained_questions and m[0] not in held_out]
    if not mc:
        raise DataError("honest_mc data: every MC1 question is a training question; lower num_train")
    mc = first(mc, config.num_honest_eval or len(mc), "honest_mc", "MC1 questions outside the training questions")
    held_out |= {m[0] for m in mc}

    trained = first([h for h in helpful[config.num_helpful_eval:] if h[0] not in held_out], config.num_train,
                    "helpful", "distinct instructions outside the evaluation prompts")
    safe = [(p, r) for p, r in distinct_prompts(load(config, "harmless", train_split), "harmless", safe=True)
            if p not in held_out]
    safe = first(safe, config.num_train, "harmless", "distinct safe 30k_train prompts outside the evaluation prompts")
    return H3Data(
        train={"helpful": [Pair(instruction_prompt(q, x, template), o) for _, q, x, o in trained],
               "harmless": [Pair(instruction_prompt(p, "", template), r) for p, r in safe],
               "honest": [Pair(instruction_prompt(q, "", template), a) for q, a in honest]},
        harmful=[EvalPrompt(instruction_prompt(p, "", template), p) for p, _ in harmful],
        helpful=[EvalPrompt(instruction_prompt(q, x, template), raw) for raw, q, x, _ in evaluated],
        mc_questions=[instruction_prompt(m[0], "", template) for m in mc], mc_choices=[m[1] for m in mc],
        mc_answers=[m[2] for m in mc])
