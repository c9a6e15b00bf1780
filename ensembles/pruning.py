"""Ensemble pruning (LLM-TOPLA): score every sub-ensemble of the wanted sizes by its focal diversity on
a labelled validation split, keep those at or above a threshold, return the top k.

Enumeration is exhaustive, so its cost is sum_k C(M, k) teams; a pool whose count passes `max_teams`
is refused with one error that says how to narrow the search (fewer sizes or a larger limit), rather
than running for hours. The ranking is focal diversity, then the team's plurality-vote accuracy on the
same validation split (diverse teams of weak members are common), then the member indices.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from common.errors import ConfigError
from ensembles.metrics import accuracy, focal_diversity, plurality_vote


@dataclass(frozen=True)
class Team:
    members: tuple[int, ...]
    focal_diversity: float
    validation_accuracy: float  # plurality vote on the validation split


def team_sizes(num_members: int, min_size: int, max_size: int) -> range:
    """Sizes min_size..max_size, max_size <= 0 meaning the whole pool."""
    top = num_members if max_size <= 0 else min(max_size, num_members)
    return range(max(min_size, 2), top + 1)


def count_teams(num_members: int, sizes: Sequence[int]) -> int:
    return sum(math.comb(num_members, k) for k in sizes)


def enumerate_teams(num_members: int, sizes: Sequence[int], max_teams: int) -> list[tuple[int, ...]]:
    total = count_teams(num_members, sizes)
    if total > max_teams:
        raise ConfigError(f"pruning: a pool of {num_members} members has {total:,} sub-ensembles of sizes "
                          f"{min(sizes)}..{max(sizes)}, more than max_teams={max_teams:,}; lower max_team_size "
                          f"or raise max_teams")
    return [team for k in sizes for team in itertools.combinations(range(num_members), k)]


def prune(correct: np.ndarray, predictions: np.ndarray, labels: np.ndarray, num_classes: int, *,
          sizes: Sequence[int], threshold: float, top_k: int, max_teams: int,
          probabilities: np.ndarray | None = None) -> list[Team]:
    """The top_k teams (all kept ones when top_k <= 0) with focal diversity >= threshold on the given
    (validation) samples, best first. `correct`, `predictions`: (samples, members)."""
    teams = []
    for members in enumerate_teams(correct.shape[1], sizes, max_teams):
        diversity = focal_diversity(correct, members)
        if math.isnan(diversity) or diversity < threshold:
            continue
        team_probabilities = None if probabilities is None else probabilities[:, list(members)]
        vote = plurality_vote(predictions[:, list(members)], num_classes, team_probabilities)
        teams.append(Team(members, diversity, accuracy(vote, labels)))
    teams.sort(key=lambda t: (-t.focal_diversity, -t.validation_accuracy, t.members))
    return teams if top_k <= 0 else teams[:top_k]
