"""Small preference sets in the three supported schemas, written from the tiny models' corpus.

    python -m pref_similarity.fixtures [--out_dir data_files/pref_similarity]

The tiny models know this text (`tiny.corpus`), and the pairs span the similarity range the
study is about: near-duplicates (a fact and the same sentence with a wrong value, an answer with and
without a closing line) through related answers (a positive and a negative review) to unrelated ones
(an answer against a refusal, a refusal against compliance, answers to other questions). Each row
keeps its `kind`, so one can see which kinds land in which quantile.

Files: `ultrafeedback_tiny.jsonl` (UltraFeedback binarized schema, chat-styled answers),
`alpaca_farm_tiny.jsonl` (AlpacaFarm human-preference schema, plain answers) and `plain_tiny.jsonl`
(prompt / chosen / rejected).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from common.cli import parse_options
from common.config import option
from common.tracking import write_jsonl
from tiny.corpus.instructions import instruction_records
from tiny.corpus.mixtures import ASSISTANT_CLOSERS, ASSISTANT_OPENERS
from tiny.corpus.qa import qa_records
from tiny.corpus.refusals import harmful_records
from tiny.corpus.reviews import review_records

OUT_DIR = Path(__file__).resolve().parent.parent / "data_files" / "pref_similarity"
SORRY = "I'm sorry, but I can't help with that."


@dataclass
class Pair:
    instruction: str
    input: str
    chosen: str
    rejected: str
    kind: str

    @property
    def prompt(self) -> str:
        return self.instruction + (f"\n{self.input}" if self.input else "")


def _pairs(schema: str, n: int, seed: int) -> Iterator[tuple[random.Random, int, Pair]]:
    """n pairs of kinds drawn at random, with the generator (for schema-specific draws) and a counter."""
    rng = random.Random(f"{schema}-{seed}")
    instructions = instruction_records(2000, seed=rng.randrange(10**6))
    qa = qa_records(500, seed=rng.randrange(10**6))
    harmful = harmful_records(500, seed=rng.randrange(10**6))
    reviews = review_records(500, seed=rng.randrange(10**6))
    positive_reviews = [r["text"] for r in reviews if r["label"]]
    negative_reviews = [r["text"] for r in reviews if not r["label"]]

    def wrong_fact():
        row = rng.choice(qa)
        return Pair(row["question"], "", row["best_answer"], rng.choice(row["incorrect_answers"]), "wrong_fact")

    def with_closer():
        row = rng.choice(instructions)
        closer = rng.choice(ASSISTANT_CLOSERS)
        return Pair(row["instruction"], row["input"], row["output"], row["output"] + closer, "with_closer")

    def opposite_review():
        positive = rng.random() < 0.5
        good, bad = (positive_reviews, negative_reviews) if positive else (negative_reviews, positive_reviews)
        return Pair(f"Write a {'positive' if positive else 'negative'} movie review.", "", rng.choice(good),
                    rng.choice(bad), "opposite_review")

    def unrelated_answer():
        row, other = rng.sample(instructions, 2)
        return Pair(row["instruction"], row["input"], row["output"], other["output"], "unrelated_answer")

    def needless_refusal():
        row = rng.choice(instructions)
        return Pair(row["instruction"], row["input"], row["output"], SORRY, "needless_refusal")

    def harmful_request():
        row = rng.choice(harmful)
        return Pair(row["prompt"], "", row["refusal"], row["compliance"], "harmful_request")

    makers = [wrong_fact, with_closer, opposite_review, unrelated_answer, needless_refusal, harmful_request]
    i = 0
    while i < n:
        pair = rng.choice(makers)()
        if pair.chosen != pair.rejected:  # two instructions can share an answer: a pair needs two responses
            yield rng, i, pair
            i += 1


def ultrafeedback_rows(n: int = 400, seed: int = 0) -> list[dict]:
    """UltraFeedback binarized rows: answers in the chat model's style (same opener for both)."""
    rows = []
    for rng, i, pair in _pairs("ultrafeedback", n, seed):
        chosen, rejected = pair.chosen, pair.rejected
        if pair.kind != "harmful_request":
            opener = rng.choice(ASSISTANT_OPENERS)
            chosen = opener + chosen
            rejected = rejected if rejected == SORRY else opener + rejected
        user = {"role": "user", "content": pair.prompt}
        rows.append({"prompt": pair.prompt, "prompt_id": f"tiny-{seed}-{i}",
                     "chosen": [user, {"role": "assistant", "content": chosen}],
                     "rejected": [user, {"role": "assistant", "content": rejected}],
                     "messages": [user, {"role": "assistant", "content": chosen}],
                     "score_chosen": 8.0, "score_rejected": 4.0, "kind": pair.kind})
    return rows


def alpaca_farm_rows(n: int = 200, seed: int = 0) -> list[dict]:
    """AlpacaFarm human-preference rows: the preferred output is output_1 or output_2 at random."""
    rows = []
    for rng, _, pair in _pairs("alpaca_farm", n, seed):
        first = rng.random() < 0.5
        rows.append({"instruction": pair.instruction, "input": pair.input,
                     "output_1": pair.chosen if first else pair.rejected,
                     "output_2": pair.rejected if first else pair.chosen,
                     "preference": 1 if first else 2, "kind": pair.kind})
    return rows


def plain_rows(n: int = 40, seed: int = 0) -> list[dict]:
    return [{"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected, "kind": pair.kind}
            for _, _, pair in _pairs("plain", n, seed)]


def write_fixtures(out_dir: str | Path = OUT_DIR) -> dict[str, Path]:
    out_dir = Path(out_dir)
    files = {"ultrafeedback_tiny.jsonl": ultrafeedback_rows(), "alpaca_farm_tiny.jsonl": alpaca_farm_rows(),
             "plain_tiny.jsonl": plain_rows()}
    for name, rows in files.items():
        write_jsonl(out_dir / name, rows)
    return {name: out_dir / name for name in files}


@dataclass
class FixtureOptions:
    out_dir: str = option(str(OUT_DIR))


def main(argv=None) -> None:
    args = parse_options("python -m pref_similarity.fixtures", __doc__.splitlines()[0], FixtureOptions, argv)
    for path in write_fixtures(args.out_dir).values():
        print(path)


if __name__ == "__main__":
    main()
