"""Write the study's tiny labelled multiple-choice set from the tiny corpus's factual Q&A (capitals, what
animals eat, how many legs they have, colors): mild, synthetic, three choices per question.

    python -m ensembles.fixtures [--output_dir data_files/ensembles]

facts_mc.jsonl rows: {"question", "choices" (the best answer and two wrong ones, in a seeded order),
"answer" (index of the best one)}. Deterministic: the file in the repository is what this writes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from common.cli import parse_options
from common.config import option
from common.tracking import write_jsonl
from tiny.corpus.qa import qa_records

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "data_files" / "ensembles"
NUM_QUESTIONS = 240
SEED = 17


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


@dataclass
class FixtureOptions:
    output_dir: str = option(str(OUTPUT_DIR))


def main(argv=None) -> None:
    options = parse_options("python -m ensembles.fixtures", __doc__.splitlines()[0], FixtureOptions, argv)
    write_jsonl(Path(options.output_dir) / "facts_mc.jsonl", facts_mc())


if __name__ == "__main__":
    main()
