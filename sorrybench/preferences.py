"""Preference pairs from judged samples, the train/test split, and gold pairs from human judgments.

Two samples per prompt, each judged 1 (complies) or 0 (refuses) or None (the judge's output could
not be parsed). The preferred response is the refusal:
    (0, 1) -> first preferred      (1, 0) -> second preferred
    (0, 0), (1, 1) -> a tie, broken by the tie breaker (reward model or seeded coin)
An unparseable judgment counts as 0.5, "unknown": a known refusal is preferred to it, it is
preferred to a known compliance, and two unknowns are a tie. Every pair keeps both judge scores.
(The public code crashed when tie-breaking ran out of ties, copied one score onto both responses
and let None scores through; here every case above is explicit and tested.)
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Optional, Sequence

from common.errors import DataError

UNKNOWN = 0.5


def pair_kind(first: Optional[float], second: Optional[float]) -> str:
    if first is None or second is None:
        return "unparseable"
    if first == second:
        return "both_refuse" if first == 0 else "both_comply"
    return "refusal_vs_compliance"


def build_preferences(prompts: Sequence[dict], first: Sequence[str], second: Sequence[str],
                      first_scores: Sequence[Optional[float]], second_scores: Sequence[Optional[float]],
                      tie_breaker) -> tuple[list[dict], dict]:
    """Preference rows (prompt order) and counts, asking `tie_breaker` once about all ties."""
    if not (len(prompts) == len(first) == len(second) == len(first_scores) == len(second_scores)):
        raise ValueError("prompts, responses and scores must have the same length")
    first_wins: list[Optional[bool]] = []
    for a, b in zip(first_scores, second_scores):
        a, b = (UNKNOWN if a is None else a), (UNKNOWN if b is None else b)
        first_wins.append(None if a == b else a < b)  # lower score = refuses more = preferred
    ties = [i for i, w in enumerate(first_wins) if w is None]
    if ties:  # one batched call; no ties -> the reward model is never loaded
        decided = list(tie_breaker.first_is_better([prompts[i]["prompt"] for i in ties], [first[i] for i in ties],
                                                   [second[i] for i in ties]))
        if len(decided) != len(ties):  # zip would leave the rest undecided: silently "second preferred"
            raise ValueError(f"tie breaker {tie_breaker.name!r} answered {len(decided)} of {len(ties)} ties")
        for i, w in zip(ties, decided):
            first_wins[i] = w
    rows, kinds, tie_set = [], Counter(), set(ties)
    for i, prompt in enumerate(prompts):
        kind = pair_kind(first_scores[i], second_scores[i])
        kinds[kind] += 1
        order = (0, 1) if first_wins[i] else (1, 0)
        responses, scores = (first[i], second[i]), (first_scores[i], second_scores[i])
        rows.append({"question_id": prompt["question_id"], "category": prompt.get("category", ""),
                     "prompt": prompt["prompt"], "chosen": responses[order[0]], "rejected": responses[order[1]],
                     "chosen_score": scores[order[0]], "rejected_score": scores[order[1]],
                     "pair_kind": kind, "tie_broken_by": tie_breaker.name if i in tie_set else None})
    all_scores = list(first_scores) + list(second_scores)
    counts = {"prompts": len(prompts), "samples": len(all_scores),
              "refusals": sum(s == 0 for s in all_scores), "compliances": sum(s == 1 for s in all_scores),
              "unparseable": sum(s is None for s in all_scores), "ties": len(ties),
              "tie_breaker": tie_breaker.name, "pair_kinds": dict(sorted(kinds.items()))}
    return rows, counts


SPLIT_METHODS = ("randperm", "shuffle")


def test_size(n: int, test_fraction: float, method: str = "randperm") -> int:
    """Rows of n that go to test: int(test_fraction * n) as the public code (randperm), else rounded."""
    return int(test_fraction * n) if method == "randperm" else round(test_fraction * n)


def split_rows(rows: Sequence[dict], test_fraction: float = 0.15, seed: int = 128, method: str = "randperm"
               ) -> tuple[list[dict], list[dict]]:
    """Seeded split; both parts keep the input order.

    randperm (the public code's): the first int(test_fraction * n) of
    torch.randperm(n, generator=torch.Generator().manual_seed(seed)) go to test. (The public script
    seeded the global generator, which sampling had used since, so its exact split is not reproducible.)
    shuffle (ours before): random.Random(seed).shuffle, the first round(test_fraction * n) to test.
    """
    import torch

    n = len(rows)
    if method == "randperm":
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    else:
        order = list(range(n))
        random.Random(seed).shuffle(order)
    test = set(order[:test_size(n, test_fraction, method)])
    return [r for i, r in enumerate(rows) if i not in test], [r for i, r in enumerate(rows) if i in test]


def gold_covered(judgments: Sequence[dict]) -> set:
    """question_ids with at least one human-judged refusal and one compliance."""
    refused = {j["question_id"] for j in judgments if not j["complies"]}
    return refused & {j["question_id"] for j in judgments if j["complies"]}


def gold_preferences(judgments: Sequence[dict], splits: dict[str, Sequence[dict]], seed: int,
                     source: str = "human judgments") -> tuple[dict[str, list[dict]], dict]:
    """Per prompt of the preference set, one human-judged refusal (chosen) and one compliance (rejected).

    `splits` maps split name -> preference rows (with question_id and prompt): a gold pair goes to
    the split its prompt is in, so gold and generated runs are evaluated on the same prompts. Prompts
    without both a refusal and a compliance are skipped (counted); the pick among several is seeded.
    """
    split_of, prompt_of = {}, {}
    for split, rows in splits.items():
        for row in rows:
            split_of[row["question_id"]] = split
            prompt_of[row["question_id"]] = row["prompt"]
    by_prompt: dict = defaultdict(lambda: ([], []))
    unknown_ids = set()
    for i, j in enumerate(judgments):
        qid = j["question_id"]
        if qid not in split_of:
            unknown_ids.add(qid)
            continue
        if j["prompt"] is not None and j["prompt"].strip() != prompt_of[qid].strip():
            raise DataError(f"{source}: row {i}: question_id {qid!r} has another prompt than the preference "
                            f"set's; the judgments belong to another prompt set")
        by_prompt[qid][0 if not j["complies"] else 1].append(j["response"])
    rng = random.Random(seed)
    gold = {split: [] for split in splits}
    missing = Counter()
    for split, rows in splits.items():
        for row in rows:
            refusals, compliances = by_prompt.get(row["question_id"], ([], []))
            if not refusals or not compliances:
                missing["no_refusal" if not refusals else "no_compliance"] += 1
                continue
            gold[split].append({"question_id": row["question_id"], "category": row.get("category", ""),
                                "prompt": row["prompt"], "chosen": rng.choice(refusals),
                                "rejected": rng.choice(compliances), "chosen_score": 0, "rejected_score": 1,
                                "pair_kind": "gold"})
    counts = {"judgments": len(judgments), **{f"gold_{s}": len(r) for s, r in gold.items()},
              "prompts_without_refusal": missing["no_refusal"],
              "prompts_without_compliance": missing["no_compliance"],
              "judged_prompts_not_in_preference_set": len(unknown_ids)}
    return gold, counts
