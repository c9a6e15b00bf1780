"""Write the study's tiny data sets from the tiny corpus (so the tiny models know the words): mild, synthetic,
in the schemas of the public sets.

    python -m ensembles.fixtures [--output_dir data_files/ensembles]

- facts_mc.jsonl {"question", "choices" (the best answer and two wrong ones, in a seeded order),
  "answer" (index of the best one)}: the ensemble runs' multiple-choice set (factual Q&A: capitals, what
  animals eat, how many legs they have, colors);
- H3Fusion's three alignment sets and their evaluation rows (ensembles/h3fusion_data.py reads them):
  - helpful/train.jsonl (Alpaca: instruction, input, output): tiny-corpus instructions (some repeat);
  - harmless/30k_train.jsonl, 30k_test.jsonl (BeaverTails: prompt, response, category: 14 flags,
    is_safe): each mild harmful request twice, with a refusal (safe, the training target) and with a
    compliant answer (unsafe); the two splits' prompts are disjoint, and 30k_test's are the pinned HS prompts;
  - honest/validation.jsonl (TruthfulQA generation: question, best_answer, correct_answers,
    incorrect_answers) and honest_mc/validation.jsonl (TruthfulQA multiple_choice: question,
    mc1_targets {choices: the best answer first, then the wrong ones; labels: 1 then 0s}), the same
    distinct questions in the same order (two or three choices each).
Deterministic: the files in the repository are what this writes (a test checks it).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from common.cli import parse_options
from common.config import option
from common.tracking import write_jsonl
from tiny.corpus.instructions import instruction_records
from tiny.corpus.qa import qa_records
from tiny.corpus.refusals import beavertails_rows, distinct_harmful_records

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "data_files" / "ensembles"
NUM_QUESTIONS = 240
SEED = 17
NUM_HELPFUL = 300
NUM_HARMFUL_TEST = 40  # distinct requests in 30k_test; the others are 30k_train's


def facts_mc(num_questions: int = NUM_QUESTIONS, seed: int = SEED) -> list[dict]:
    """Distinct (question, choices) items with three choices; the misconception rows (one wrong answer) are left out."""
    rng, rows, seen = random.Random(seed), [], set()
    for record in qa_records(20 * num_questions, seed):
        choices = [record["best_answer"], *record["incorrect_answers"]]
        key = (record["question"], frozenset(choices))
        if len(choices) != 3 or key in seen:
            continue
        seen.add(key)
        rng.shuffle(choices)
        answer = choices.index(record["best_answer"])
        rows.append({"question": record["question"], "choices": choices, "answer": answer})
        if len(rows) == num_questions:
            return rows
    raise ValueError(f"the corpus has only {len(rows)} distinct three-choice questions")


def truthfulqa_rows(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """(generation rows, multiple_choice rows) of the corpus's distinct questions, in order of first appearance."""
    by_question: dict[str, dict] = {}
    for record in qa_records(2000, seed):
        by_question.setdefault(record["question"], record)
    generation = list(by_question.values())
    multiple_choice = [{"question": r["question"],
                        "mc1_targets": {"choices": [r["best_answer"], *r["incorrect_answers"]],
                                        "labels": [1] + [0] * len(r["incorrect_answers"])}} for r in generation]
    return generation, multiple_choice


def write_fixtures(output_dir: Path = OUTPUT_DIR) -> None:
    write_jsonl(output_dir / "facts_mc.jsonl", facts_mc())
    write_jsonl(output_dir / "helpful" / "train.jsonl", instruction_records(NUM_HELPFUL, SEED))
    requests = distinct_harmful_records(3000, SEED)
    write_jsonl(output_dir / "harmless" / "30k_test.jsonl", beavertails_rows(requests[:NUM_HARMFUL_TEST]))
    write_jsonl(output_dir / "harmless" / "30k_train.jsonl", beavertails_rows(requests[NUM_HARMFUL_TEST:]))
    generation, multiple_choice = truthfulqa_rows()
    write_jsonl(output_dir / "honest" / "validation.jsonl", generation)
    write_jsonl(output_dir / "honest_mc" / "validation.jsonl", multiple_choice)


@dataclass
class FixtureOptions:
    output_dir: str = option(str(OUTPUT_DIR))


def main(argv=None) -> None:
    write_fixtures(Path(parse_options("python -m ensembles.fixtures", __doc__.splitlines()[0], FixtureOptions,
                                      argv).output_dir))


if __name__ == "__main__":
    main()
