"""The ensemble metrics against hand-worked values and direct loops over the definitions."""
import itertools
import math

import numpy as np
import pytest

from ensembles.metrics import accuracy, fleiss_kappa, focal_diversity, generalized_diversity, plurality_vote

# 4 samples x 3 members (1 = correct): 0, 1, 2 and 3 members wrong, so p_0 = p_1 = p_2 = p_3 = 1/4.
HAND = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=bool)


def test_generalized_diversity_of_the_hand_worked_matrix():
    # p(1) = (1/3 + 2/3 + 1) / 4 = 1/2; p(2) = (2*1/6 + 3*2/6) / 4 = 1/3; GD = 1 - (1/3)/(1/2) = 1/3
    assert generalized_diversity(HAND) == pytest.approx(1 / 3)


def test_generalized_diversity_is_zero_for_identical_members():
    column = np.array([1, 0, 0, 1, 0, 1], dtype=bool)
    assert generalized_diversity(np.stack([column] * 4, axis=1)) == pytest.approx(0.0)


def test_generalized_diversity_is_one_when_failures_never_coincide():
    correct = np.ones((8, 4), dtype=bool)
    for n in range(6):  # each of the first 6 samples has exactly one wrong member; the last 2 none
        correct[n, n % 4] = False
    assert generalized_diversity(correct) == pytest.approx(1.0)


def test_samples_without_errors_do_not_change_gd():
    """MARL-Focal's position-indexed p_i moves with them; the definition does not."""
    extra = np.vstack([HAND, np.ones((5, 3), dtype=bool)])
    assert generalized_diversity(extra) == pytest.approx(generalized_diversity(HAND))


def test_no_error_gives_nan():
    assert math.isnan(generalized_diversity(np.ones((3, 3), dtype=bool)))


def test_focal_diversity_of_the_hand_worked_matrix():
    # focal member 0 (wrong on rows 2-4): GD 1/3; member 1 (rows 3-4): 1 - (2/3)/(5/6) = 1/5; member 2 (row 4): 0
    assert focal_diversity(HAND) == pytest.approx((1 / 3 + 1 / 5 + 0) / 3)


def direct_focal(correct, team):
    values = []
    for focal in team:
        rows = [n for n in range(len(correct)) if not correct[n][focal]]
        if not rows:
            continue
        m = len(team)
        p1 = p2 = 0.0
        for n in rows:
            k = sum(1 for j in team if not correct[n][j])
            p1 += k / m / len(rows)
            p2 += k * (k - 1) / (m * (m - 1)) / len(rows)
        values.append(1 - p2 / p1)
    return sum(values) / len(values)


def test_focal_diversity_against_a_direct_loop():
    rng = np.random.default_rng(0)
    correct = rng.random((60, 5)) < np.array([0.5, 0.6, 0.7, 0.8, 0.55])
    for size in (2, 3, 5):
        for team in itertools.combinations(range(5), size):
            assert focal_diversity(correct, team) == pytest.approx(direct_focal(correct.tolist(), team))


def test_fleiss_kappa_of_the_textbook_example():
    """Fleiss (1971) as tabulated on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa = 0.210."""
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    predictions = np.array([[c for c, n in enumerate(row) for _ in range(n)] for row in table])
    assert fleiss_kappa(predictions, 5) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_kappa_is_one_when_members_agree():
    predictions = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [1, 1, 1]])
    assert fleiss_kappa(predictions, 3) == pytest.approx(1.0)


def test_plurality_vote_and_its_ties():
    predictions = np.array([[0, 0, 1], [2, 1, 2], [0, 1, 2], [1, 2, 2]])
    assert plurality_vote(predictions, 3).tolist() == [0, 2, 0, 2]  # the three-way tie: lowest index
    probabilities = np.zeros((4, 3, 3))
    probabilities[2, :, 2] = 0.9  # the team leans to answer 2 on the tied sample
    assert plurality_vote(predictions, 3, probabilities).tolist() == [0, 2, 2, 2]
    assert accuracy(plurality_vote(predictions, 3), [0, 2, 1, 1]) == 0.5
