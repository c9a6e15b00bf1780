"""Pruning returns the team built to be best, and refuses an enumeration that would explode."""
import numpy as np
import pytest

from common.errors import ConfigError
from ensembles.pruning import enumerate_teams, prune, team_sizes


def constructed_pool(num_samples=60):
    """Members 0, 2, 4 fail on disjoint thirds of the samples (focal diversity 1); members 1 and 3 fail
    where member 0 does and on every other sample of member 2's third too (failures that coincide)."""
    labels = np.zeros(num_samples, dtype=int)
    correct = np.ones((num_samples, 5), dtype=bool)
    thirds = np.arange(num_samples) % 3
    for member, third in ((0, 0), (2, 1), (4, 2)):
        correct[thirds == third, member] = False
    correct[:, 1] = correct[:, 3] = correct[:, 0] & ~((thirds == 1) & (np.arange(num_samples) % 2 == 0))
    predictions = np.where(correct, labels[:, None], 1)
    return correct, predictions, labels


def test_prune_returns_the_known_best_team():
    correct, predictions, labels = constructed_pool()
    teams = prune(correct, predictions, labels, 3, sizes=[3], threshold=0.0, top_k=3, max_teams=100)
    assert teams[0].members == (0, 2, 4)
    assert teams[0].focal_diversity == pytest.approx(1.0) and teams[0].validation_accuracy == 1.0
    assert all(t.focal_diversity < 1 for t in teams[1:])


def test_threshold_and_top_k():
    correct, predictions, labels = constructed_pool()
    assert len(prune(correct, predictions, labels, 3, sizes=[3], threshold=0.0, top_k=0, max_teams=100)) == 10
    kept = prune(correct, predictions, labels, 3, sizes=[3], threshold=0.99, top_k=0, max_teams=100)
    assert [t.members for t in kept] == [(0, 2, 4)]
    assert len(prune(correct, predictions, labels, 3, sizes=[2, 3], threshold=0.0, top_k=2, max_teams=100)) == 2


def test_enumeration_that_would_explode_is_refused():
    assert list(team_sizes(30, 2, 0)) == list(range(2, 31))
    with pytest.raises(ConfigError, match="1,073,741,793 sub-ensembles .* max_teams=5,000; lower max_team_size"):
        enumerate_teams(30, team_sizes(30, 2, 0), 5000)
    assert len(enumerate_teams(30, team_sizes(30, 2, 2), 5000)) == 435
