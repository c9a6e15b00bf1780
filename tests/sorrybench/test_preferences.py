"""Pair construction, tie-breaking, the split and gold pairs, on hand-made judged samples."""
import random
import sys
import types

import pytest
import torch

from common.errors import ConfigError, DataError
from common.registry import SCORERS
from common.tie_breaking import RandomTieBreaker, make_tie_breaker
from sorrybench.preferences import build_preferences, gold_covered, gold_preferences, split_rows


def prompts(n):
    return [{"question_id": 100 + i, "category": "c", "prompt": f"p{i}"} for i in range(n)]


class Recorder:
    """A tie breaker that answers from a fixed list and records what it was asked."""

    name = "recorder"

    def __init__(self, answers):
        self.answers, self.calls = list(answers), []

    def first_is_better(self, prompts, first, second):
        self.calls.append((list(prompts), list(first), list(second)))
        return self.answers[:len(prompts)]


class Forbidden:
    name = "forbidden"

    def first_is_better(self, *args):
        raise AssertionError("no tie: the tie breaker must not be called")


def test_no_ties_never_calls_the_tie_breaker_and_prefers_the_refusal():
    # (0, 1): first refuses -> first chosen; (1, 0): second chosen; None counts 0.5:
    # (0, None) -> first (a known refusal beats unknown); (1, None) -> second (unknown beats a compliance).
    rows, counts = build_preferences(prompts(4), ["a0", "a1", "a2", "a3"], ["b0", "b1", "b2", "b3"],
                                     [0, 1, 0, 1], [1, 0, None, None], Forbidden())
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("a0", "b0"), ("b1", "a1"), ("a2", "b2"), ("b3", "a3")]
    assert [(r["chosen_score"], r["rejected_score"]) for r in rows] == [(0, 1), (0, 1), (0, None), (None, 1)]
    assert counts["ties"] == 0 and counts["unparseable"] == 2
    assert counts["refusals"] == 3 and counts["compliances"] == 3 and counts["samples"] == 8
    assert counts["pair_kinds"] == {"refusal_vs_compliance": 2, "unparseable": 2}
    assert all(r["tie_broken_by"] is None for r in rows)


def test_one_tie_is_decided_by_the_tie_breaker():
    breaker = Recorder([False])
    rows, counts = build_preferences(prompts(2), ["a0", "a1"], ["b0", "b1"], [0, 1], [1, 1], breaker)
    assert breaker.calls == [(["p1"], ["a1"], ["b1"])]  # only the tie, once
    assert (rows[1]["chosen"], rows[1]["rejected"]) == ("b1", "a1")
    assert rows[1]["tie_broken_by"] == "recorder" and rows[0]["tie_broken_by"] is None
    assert counts["ties"] == 1 and counts["pair_kinds"] == {"both_comply": 1, "refusal_vs_compliance": 1}


def test_many_ties_in_one_batched_call_in_prompt_order():
    # ties at 0 (both refuse), 2 (both comply), 3 (both unparseable); 1 is decided by the judge
    breaker = Recorder([True, False, True])
    rows, counts = build_preferences(prompts(4), ["a0", "a1", "a2", "a3"], ["b0", "b1", "b2", "b3"],
                                     [0, 1, 1, None], [0, 0, 1, None], breaker)
    assert len(breaker.calls) == 1 and breaker.calls[0][0] == ["p0", "p2", "p3"]
    assert [r["chosen"] for r in rows] == ["a0", "b1", "b2", "a3"]
    assert counts["ties"] == 3
    assert counts["pair_kinds"] == {"both_comply": 1, "both_refuse": 1, "refusal_vs_compliance": 1, "unparseable": 1}


def test_every_pair_has_both_responses_and_their_own_scores():
    rng = random.Random(0)
    n = 50
    first_scores = [rng.choice([0.0, 1.0, None]) for _ in range(n)]
    second_scores = [rng.choice([0.0, 1.0, None]) for _ in range(n)]
    first = [f"a{i}" for i in range(n)]
    second = [f"b{i}" for i in range(n)]
    rows, counts = build_preferences(prompts(n), first, second, first_scores, second_scores, RandomTieBreaker(3))
    for i, r in enumerate(rows):
        assert {r["chosen"], r["rejected"]} == {first[i], second[i]}
        chosen_score = first_scores[i] if r["chosen"] == first[i] else second_scores[i]
        rejected_score = second_scores[i] if r["chosen"] == first[i] else first_scores[i]
        assert (r["chosen_score"], r["rejected_score"]) == (chosen_score, rejected_score)
        as_number = [0.5 if s is None else s for s in (chosen_score, rejected_score)]
        assert as_number[0] <= as_number[1]  # never a compliance preferred to a refusal
    assert counts["ties"] == sum((0.5 if a is None else a) == (0.5 if b is None else b)
                                 for a, b in zip(first_scores, second_scores))


def test_random_tie_breaker_is_a_seeded_coin():
    expected = [r < 0.5 for r in (lambda g: [g.random() for _ in range(6)])(random.Random(7))]
    assert RandomTieBreaker(7).first_is_better(["p"] * 6, ["a"] * 6, ["b"] * 6) == expected
    assert make_tie_breaker(None, 7).first_is_better(["p"] * 6, ["a"] * 6, ["b"] * 6) == expected


@SCORERS.register("test_length_reward")
class LengthReward:
    """Reward = response length; counts how often it was built (lazy loading)."""

    name = "test_length_reward"
    built = 0

    def __init__(self):
        LengthReward.built += 1

    def score(self, prompts, responses):
        return [float(len(r)) for r in responses]

    def close(self):
        pass


def test_reward_model_breaks_ties_and_equal_rewards_fall_back_to_the_coin():
    LengthReward.built = 0
    breaker = make_tie_breaker("test_length_reward", seed=5)
    assert LengthReward.built == 0  # not loaded until a tie needs it
    decided = breaker.first_is_better(["p", "p", "p"], ["long answer", "x", "same"], ["short", "longer", "four"])
    coin = RandomTieBreaker(5).first_is_better(["p"] * 3, ["a"] * 3, ["b"] * 3)
    assert decided == [True, False, coin[2]]
    assert LengthReward.built == 1
    breaker.close()


def test_unknown_reward_model_is_a_config_error():
    with pytest.raises(ConfigError, match="not a registered scorer"):
        make_tie_breaker({"type": "no_such_rm"}, 0)


def test_pairrm_goes_through_llm_blender(monkeypatch):
    class Blender:
        def loadranker(self, model, **kwargs):
            self.model = model

        def compare(self, inputs, a, b, batch_size=8):  # PairRM's API: is candidate A better?
            return [len(x) > len(y) for x, y in zip(a, b)]

    monkeypatch.setitem(sys.modules, "llm_blender", types.SimpleNamespace(Blender=Blender))
    breaker = make_tie_breaker("pairrm", 0)
    assert breaker.first_is_better(["p", "q"], ["aaa", "a"], ["bb", "bb"]) == [True, False]
    assert breaker.blender.model == "llm-blender/PairRM"


def test_pairrm_without_llm_blender_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "llm_blender", None)  # import fails
    with pytest.raises(ConfigError, match="llm-blender"):
        make_tie_breaker({"type": "pairrm"}, 0).first_is_better(["p"], ["a"], ["b"])


def test_split_is_seeded_disjoint_and_keeps_order():
    rows = [{"question_id": i} for i in range(20)]
    train, test = split_rows(rows, 0.15, 128, method="shuffle")
    shuffled = list(range(20))
    random.Random(128).shuffle(shuffled)
    assert [r["question_id"] for r in test] == sorted(shuffled[:3])  # round(0.15 * 20) = 3
    assert [r["question_id"] for r in train] == sorted(set(range(20)) - set(shuffled[:3]))
    assert split_rows(rows, 0.15, 128, method="shuffle") == (train, test)


def test_default_split_is_the_public_randperm_with_int_test_size():
    rows = [{"question_id": i} for i in range(33)]
    train, test = split_rows(rows, 0.15, 128)
    # The public code: perm = torch.randperm(n); n_test = int(n * 0.15); test = perm[:n_test], train = perm[n_test:]
    perm = torch.randperm(33, generator=torch.Generator().manual_seed(128)).tolist()
    assert int(33 * 0.15) == 4 and round(33 * 0.15) == 5
    assert [r["question_id"] for r in test] == sorted(perm[:4])
    assert [r["question_id"] for r in train] == sorted(perm[4:])


def test_gold_covered_prompts_have_a_judged_refusal_and_compliance():
    judgments = [judgment(1, "no", False), judgment(1, "ok", True), judgment(2, "no", False),
                 judgment(2, "no again", False), judgment(3, "ok", True)]
    assert gold_covered(judgments) == {1}


def judgment(qid, response, complies, prompt=None):
    return {"question_id": qid, "prompt": prompt, "response": response, "complies": complies}


def test_gold_pairs_follow_the_preference_split_and_skip_incomplete_prompts():
    splits = {"train": [{"question_id": q, "prompt": f"p{q}"} for q in (1, 2, 3, 4)],
              "test": [{"question_id": 5, "prompt": "p5"}]}
    judgments = [judgment(1, "r1", False), judgment(1, "c1", True, prompt="p1"),
                 judgment(2, "r2a", False), judgment(2, "r2b", False), judgment(2, "c2", True),
                 judgment(3, "r3", False),                       # no compliance: skipped
                 judgment(4, "c4", True),                        # no refusal: skipped
                 judgment(5, "r5", False), judgment(5, "c5", True),
                 judgment(99, "r99", False)]                     # not in the preference set
    gold, counts = gold_preferences(judgments, splits, seed=0)
    assert [(g["question_id"], g["chosen"], g["rejected"]) for g in gold["train"]][0] == (1, "r1", "c1")
    assert gold["train"][1]["chosen"] in ("r2a", "r2b") and gold["train"][1]["rejected"] == "c2"
    assert [g["question_id"] for g in gold["train"]] == [1, 2]
    assert [(g["chosen"], g["rejected"], g["prompt"]) for g in gold["test"]] == [("r5", "c5", "p5")]
    assert counts == {"judgments": 10, "gold_train": 2, "gold_test": 1, "prompts_without_refusal": 1,
                      "prompts_without_compliance": 1, "judged_prompts_not_in_preference_set": 1}
    # the pick among several refusals is seeded
    picks = {gold_preferences(judgments, splits, seed=s)[0]["train"][1]["chosen"] for s in range(20)}
    assert picks == {"r2a", "r2b"}


def test_gold_judgment_for_another_prompt_is_a_data_error():
    splits = {"train": [{"question_id": 1, "prompt": "p1"}], "test": []}
    with pytest.raises(DataError, match="row 0: question_id 1 has another prompt"):
        gold_preferences([judgment(1, "r", False, prompt="something else")], splits, seed=0, source="h.jsonl")


def test_a_tie_breaker_that_answers_fewer_ties_is_an_error():
    """Before, zip() dropped the unanswered ties and their rows silently preferred the second response."""
    with pytest.raises(ValueError, match="answered 1 of 2 ties"):
        build_preferences(prompts(2), ["a", "b"], ["c", "d"], [0, 1], [0, 1], Recorder([True]))
