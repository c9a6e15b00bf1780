"""Results statistics against naive loops and hand-worked runs: largest drop, first fall, top risers."""
import json
import random

import pytest

from persona_experiments.analysis import (
    Drop,
    find_runs,
    first_decrease_step,
    group_runs,
    loss_increased,
    max_drop,
    summarize,
    top_risers,
)
from tests.persona_experiments.conftest import TOKENS, write_run


def naive_max_drop(values):
    """max over i <= j of v_i - v_j by brute force, ties to the smallest j then the smallest i."""
    best = (0.0, 0, 0)
    for j in range(len(values)):
        for i in range(j + 1):
            if values[i] - values[j] > best[0]:
                best = (values[i] - values[j], i, j)
    return best


def test_max_drop_hand_worked():
    # 0.5 -> 0.7 (peak at step 1) -> 0.2 at step 3: drop 0.5 from step 1 to 3; the later 0.9 -> 0.6 is smaller.
    d = max_drop([0.5, 0.7, 0.4, 0.2, 0.9, 0.6])
    assert (d.amount, d.start_step, d.end_step, d.start_value, d.end_value) == pytest.approx((0.5, 1, 3, 0.7, 0.2))
    assert max_drop([0.1, 0.2, 0.3]) == Drop(0.0, 0, 0, 0.1, 0.1)  # never falls
    assert max_drop([0.3, 0.1, 0.3, 0.1]) == Drop(pytest.approx(0.2), 0, 1, 0.3, 0.1)  # ties: first j, first i


def test_max_drop_matches_the_naive_double_loop():
    rng = random.Random(0)
    for _ in range(200):
        values = [rng.choice([0.1, 0.2, 0.3, 0.5]) if rng.random() < 0.5 else rng.random()
                  for _ in range(rng.randint(1, 12))]
        d = max_drop(values)
        assert (d.amount, d.start_step, d.end_step) == pytest.approx(naive_max_drop(values))


def test_first_decrease_and_loss_increase():
    assert first_decrease_step([0.5, 0.6, 0.6, 0.55, 0.4]) == 3
    assert first_decrease_step([0.5, 0.5, 0.7]) is None
    assert loss_increased([0.69, 0.6, 0.6, 0.5]) is False
    assert loss_increased([0.69, 0.6, 0.61, 0.5]) is True


@pytest.fixture
def run_set(runs_dir):
    runs, unfinished, untracked = find_runs(runs_dir)
    assert [r.name for r in runs] == ["a", "b", "c", "d"]
    assert [p.name for p in unfinished] == ["unfinished"] and [p.name for p in untracked] == ["tiny_sft"]
    sets = group_runs(runs)
    assert [(s.directory.name, [r.name for r in s.runs]) for s in sets] == [("no_vs_never", ["a", "b", "c"]),
                                                                             ("nested", ["d"])]
    return sets[0]


def test_summary_matches_hand_computation(run_set):
    s = summarize(run_set, steps=(1, 2, 5), top_k=(1, 2))
    assert s.total_runs == 3 and s.excluded_loss_increase == ["c"] and s.runs == ["a", "b"]
    assert s.fell == 2 and s.below_initial_at_end == 2
    assert s.first_fall_steps == [1, 2]
    assert [(d.amount, d.start_step, d.end_step) for d in s.prob_drops] == [pytest.approx((0.2, 0, 2)),
                                                                             pytest.approx((0.2, 1, 2))]
    # log-prob drop of a: log 0.6 - log 0.4 = log 1.5
    assert s.logprob_drops[0].amount == pytest.approx(0.4054651, abs=1e-6)
    assert set(s.top_risers) == {(1, 1), (1, 2), (2, 1), (2, 2)}  # step 5 > last step 2: not shown
    # step 1, top-2: a has {Yes .05, No .01}, b has {No .1, Yes .05}: both tokens in 2 runs, then ordered by
    # mean increase: No (.01 + .1) / 2 = .055 before Yes .05.
    assert [(t.token, t.count, t.mean_increase) for t in s.top_risers[(1, 2)]] == [
        (" No", 2, pytest.approx(0.055)), (" Yes", 2, pytest.approx(0.05))]
    assert [(t.token, t.count, t.mean_increase) for t in s.top_risers[(2, 1)]] == [(" Yes", 2, pytest.approx(0.15))]
    assert s.geometry_initial["hidden_norm"] == 1.0 and s.geometry_final["hidden_norm"] == 2.0
    assert [r.token for r in s.risen_tokens] == [" Yes", " Yes"]
    assert s.risen_tokens[1].probs == [0.05, 0.1, 0.2]


def test_keep_loss_increase_and_counts_over_all_runs(run_set):
    s = summarize(run_set, exclude_loss_increase=False, steps=(2,), top_k=(3,))
    assert s.runs == ["a", "b", "c"] and s.fell == 2 and s.geometry_final["hidden_norm"] == pytest.approx(8 / 3)
    counts = {t.token: t.count for t in s.top_risers[(2, 3)]}
    assert counts == {" Yes": 2, " Maybe": 3, " Sure": 3, " No": 1}
    # c's top risers are y+ and tokens 4, 5: the most risen other token is ' Sure' (id 4).
    assert s.risen_tokens[2].token == " Sure"


def test_top_risers_counts_each_run_once_per_token(run_set):
    counts = top_risers(run_set.runs, 1, 3)
    assert sum(c.count for c in counts) == 9 and all(c.count <= 3 for c in counts)


def test_top_risers_keeps_tokens_with_the_same_text_apart(tmp_path):
    """Byte pieces (ids 6 and 7 here) decode to the same replacement character: counted by text, one run
    with both in its top-2 made that 'token' appear in 2 of 1 runs."""
    write_run(tmp_path / "a", [0.6, 0.5], [0.69, 0.6], [[6, 7]], [[0.2, 0.1]])
    metrics_path = tmp_path / "a" / "token_metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["token_strings"] = {**TOKENS, "6": "\ufffd", "7": "\ufffd"}
    metrics_path.write_text(json.dumps(metrics))
    runs, _, _ = find_runs(tmp_path)
    assert [(t.token, t.count, t.mean_increase) for t in top_risers(runs, 1, 2)] == [
        ("\ufffd", 1, pytest.approx(0.2)), ("\ufffd", 1, pytest.approx(0.1))]


def write_mechanism(run_dir, ranks, logprob_dir, prob_dir, top, bottom, overlaps, logprob_top):
    """Adds the tracker's mechanism fields (steps 0..2; step 0 empty) to a hand-written run."""
    path = run_dir / "token_metrics.json"
    m = json.loads(path.read_text())
    m.update(preferred_prob_rank=[5] + ranks, preferred_prob_increase_rank=[None] + ranks,
             preferred_logprob_increase_rank=[None] + [r + 1 for r in ranks],
             step_top_logprob_increase_direction=[[]] + logprob_dir, step_top_increase_direction=[[]] + prob_dir,
             top_direction_ids=[[], [1, 4], [1, 4]], top_direction_values=[[]] + top,
             bottom_direction_ids=[[], [3, 5], [3, 5]], bottom_direction_values=[[]] + bottom,
             direction_overlap_logprob=[None] + overlaps, direction_overlap_prob=[None] + [o - 1 for o in overlaps],
             top_logprob_increase_ids=[[]] + logprob_top, top_logprob_increase_values=[[], [2.0, 1.0], [3.0, 0.5]])
    path.write_text(json.dumps(m))


def test_mechanism_summary_matches_hand_computation(tmp_path):
    write_run(tmp_path / "a", [0.6, 0.5, 0.4], [0.69, 0.6, 0.5], [[1, 2], [1, 5]], [[0.05, 0.01], [0.1, 0.02]])
    write_run(tmp_path / "b", [0.6, 0.7, 0.5], [0.69, 0.5, 0.4], [[2, 1], [1, 4]], [[0.1, 0.05], [0.2, 0.03]])
    write_mechanism(tmp_path / "a", [0, 2], [[1.0, 3.0], [2.0, 2.0]], [[0.0, 1.0], [1.0, 1.0]],
                    [[4.0, 2.0], [4.0, 2.0]],
                    [[-3.0, -1.0], [-3.0, -1.0]], [2, 1], [[1, 4], [1, 4]])
    write_mechanism(tmp_path / "b", [4, 6], [[5.0, 7.0], [0.0, 0.0]], [[2.0, 2.0], [3.0, 3.0]],
                    [[4.0, 2.0], [4.0, 2.0]],
                    [[-3.0, -1.0], [-3.0, -1.0]], [1, 1], [[4, 1], [4, 5]])
    runs, _, _ = find_runs(tmp_path)
    s = summarize(group_runs(runs)[0], steps=(1, 2), top_k=(1, 2))
    one, two = s.mechanism
    # step 1: ranks 0 and 4 -> median 2; log-P rise ranks 1, 5 -> 3; D of log-P risers: a mean 2, b mean 6 -> 4.
    assert (one.step, one.preferred_prob_rank, one.preferred_prob_increase_rank,
            one.preferred_logprob_increase_rank) == (1, 2, 2, 3)
    assert (one.logprob_risers_direction, one.prob_risers_direction) == pytest.approx((4.0, 1.25))
    assert (one.top_direction, one.bottom_direction, one.overlap_logprob, one.overlap_prob, one.k) == pytest.approx(
        (3.0, -2.0, 1.5, 0.5, 2))
    assert (two.preferred_prob_rank, two.logprob_risers_direction, two.overlap_logprob) == pytest.approx((4, 1.0, 1.0))
    # by log-prob increase at step 2, top-2: a has Yes 3.0, Sure 0.5; b has Sure 3.0, Maybe 0.5: ' Sure' in both
    # runs (mean 1.75), then ' Yes' (3.0) before ' Maybe' (0.5).
    assert [(t.token, t.count, t.mean_increase) for t in s.top_logprob_risers[(2, 2)]] == [
        (" Sure", 2, pytest.approx(1.75)), (" Yes", 1, pytest.approx(3.0)), (" Maybe", 1, pytest.approx(0.5))]
    assert [(t.token, t.count, t.mean_increase) for t in s.top_direction] == [(" Yes", 2, 4.0), (" Sure", 2, 2.0)]
    assert [(t.token, t.count, t.mean_increase) for t in s.bottom_direction] == [(" Never", 2, -3.0),
                                                                                 (" Maybe", 2, -1.0)]


def test_runs_tracked_without_the_mechanism_table_leave_it_out(run_set):
    s = summarize(run_set, steps=(1,), top_k=(1,))
    assert s.mechanism == [] and s.top_logprob_risers == {} and s.top_direction == []
