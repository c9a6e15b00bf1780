"""Short factual Q&A with wrong answers (TruthfulQA-like)."""
from __future__ import annotations

import random

from tiny.corpus.facts import ANIMALS, CAPITALS, COLORS, MISCONCEPTIONS, capitalize, domain_rng, with_article


def fact_qa(rng: random.Random) -> tuple[str, str, list[str]]:
    """A factual question, its best answer and wrong answers made from other entries of the table."""
    kind = rng.randrange(5)
    if kind == 0:
        q, best, wrong = rng.choice(MISCONCEPTIONS)
        return q, best, [wrong]
    if kind == 1:
        country = rng.choice(sorted(CAPITALS))
        others = rng.sample([c for c in sorted(set(CAPITALS.values())) if c != CAPITALS[country]], 2)
        return (f"What is the capital of {country}?", f"The capital of {country} is {CAPITALS[country]}.",
                [f"The capital of {country} is {c}." for c in others])
    if kind == 2:
        animal = rng.choice(sorted(ANIMALS))
        food = ANIMALS[animal][0]
        others = rng.sample(sorted({f[0] for f in ANIMALS.values()} - {food}), 2)
        return (f"What does {with_article(animal)} eat?", f"{capitalize(with_article(animal))} eats {food}.",
                [f"{capitalize(with_article(animal))} eats {f}." for f in others])
    if kind == 3:
        animal = rng.choice(sorted(ANIMALS))
        legs = ANIMALS[animal][2]
        others = rng.sample([n for n in (0, 2, 4, 6, 8) if n != legs], 2)
        return (f"How many legs does {with_article(animal)} have?",
                f"{capitalize(with_article(animal))} has {legs} legs.",
                [f"{capitalize(with_article(animal))} has {n} legs." for n in others])
    thing = rng.choice(sorted(COLORS))
    others = rng.sample(sorted(set(COLORS.values()) - {COLORS[thing]}), 2)
    return (f"What color is {thing}?", f"{capitalize(thing)} is {COLORS[thing]}.",
            [f"{capitalize(thing)} is {c}." for c in others])


def qa_records(n: int = 500, seed: int = 0) -> list[dict]:
    """TruthfulQA-like rows: question, best_answer, correct_answers, incorrect_answers."""
    rng = domain_rng("qa", seed)
    rows = []
    for _ in range(n):
        question, best, wrong = fact_qa(rng)
        rows.append({"question": question, "best_answer": best, "correct_answers": [best],
                     "incorrect_answers": wrong})
    return rows
