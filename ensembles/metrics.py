"""Ensemble metrics as pure functions of a pool's answers (EnsembleBench / LLM-TOPLA definitions).

`correct` is a (samples, members) boolean matrix: member m answered sample n correctly. `predictions`
is a (samples, members) integer matrix of the answer each member picked on the shared answer space.

Generalized diversity: with p_i the share of samples on which exactly i of the M members are wrong
(i counted per sample, so a sample with no error is p_0 and weighs nothing below),
    p(1) = sum_i i/M p_i,  p(2) = sum_i i(i-1)/(M(M-1)) p_i,  GD = 1 - p(2)/p(1):
0 when the members fail together (identical members), 1 when no two fail on the same sample.
Focal diversity of a team: the mean, over its members F, of GD on the samples F got wrong (the
"focal" model's failures), so it asks whether the others fail where F fails. MARL-Focal's code
indexes p_i by position in a sorted list instead of by the error count, which is wrong whenever
samples with no error are present; the definition above does not depend on them.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def _matrix(correct) -> np.ndarray:
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2:
        raise ValueError(f"expected a (samples, members) matrix, got shape {correct.shape}")
    return correct


def generalized_diversity(correct) -> float:
    """GD of the members (columns) over the samples (rows); NaN when no member is ever wrong
    (p(1) = 0: no failures to compare) or with fewer than two members."""
    correct = _matrix(correct)
    num_samples, m = correct.shape
    if m < 2 or num_samples == 0:
        return math.nan
    wrong = m - correct.sum(axis=1)  # errors per sample
    p = np.bincount(wrong, minlength=m + 1) / num_samples  # p[i]: share of samples with exactly i errors
    i = np.arange(m + 1)
    p1 = float((i / m * p).sum())
    p2 = float((i * (i - 1) / (m * (m - 1)) * p).sum())
    return math.nan if p1 == 0 else 1.0 - p2 / p1


def focal_diversity(correct, team: Optional[Sequence[int]] = None) -> float:
    """Mean over the team's members F of GD(team's columns, rows where F is wrong); a member that is
    never wrong has no focal set and is left out of the mean (NaN when none is ever wrong)."""
    correct = _matrix(correct)
    team = list(range(correct.shape[1])) if team is None else list(team)
    sub = correct[:, team]
    values = [generalized_diversity(sub[~sub[:, f]]) for f in range(len(team)) if (~sub[:, f]).any()]
    return float(np.mean(values)) if values else math.nan


def fleiss_kappa(predictions, num_classes: int) -> float:
    """Fleiss' kappa of the members' answers (members as raters, samples as subjects): 1 when they
    always agree, 0 at the agreement expected by chance from the answers' overall shares."""
    predictions = np.asarray(predictions, dtype=int)
    num_samples, m = predictions.shape
    if m < 2 or num_samples == 0:
        return math.nan
    counts = np.stack([(predictions == c).sum(axis=1) for c in range(num_classes)], axis=1)  # (samples, classes)
    agreement = ((counts * (counts - 1)).sum(axis=1) / (m * (m - 1))).mean()
    shares = counts.sum(axis=0) / (num_samples * m)
    chance = float((shares ** 2).sum())
    return math.nan if chance == 1 else float((agreement - chance) / (1 - chance))


def plurality_vote(predictions, num_classes: int, probabilities=None) -> np.ndarray:
    """The most voted answer per sample. Ties go to the tied answer with the highest mean probability
    when `probabilities` (samples, members, classes) is given, else to the lowest answer index."""
    predictions = np.asarray(predictions, dtype=int)
    votes = np.stack([(predictions == c).sum(axis=1) for c in range(num_classes)], axis=1).astype(float)
    if probabilities is not None:  # mean probabilities lie in [0, 1]: they only order answers with equal votes
        votes += 0.5 * np.asarray(probabilities, dtype=float).mean(axis=1)
    return votes.argmax(axis=1)


def accuracy(predicted, labels) -> float:
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    return float((predicted == labels).mean()) if len(labels) else math.nan


def mc1_accuracy(scores: Sequence[Sequence[float]], answers: Sequence[int]) -> float:
    """TruthfulQA MC1: 100 x share of questions whose right choice scores strictly above every other choice
    (a tie with a wrong choice counts as wrong); questions may have different numbers of choices."""
    if not scores or len(scores) != len(answers):
        raise ValueError(f"mc1_accuracy: {len(scores)} questions scored, {len(answers)} answers")
    right = [all(s[a] > x for i, x in enumerate(s) if i != a) for s, a in zip(scores, answers)]
    return 100.0 * sum(right) / len(right)
