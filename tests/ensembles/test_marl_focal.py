"""MARL-Focal with frozen agents: beats the best member on a complementary pool, answers without labels,
and learns to leave out a member that only adds noise."""
import inspect

import numpy as np

from ensembles.marl_focal import FittedAgents, MarlSettings, fit_agents
from tests.ensembles.test_fusion import complementary_pool


def pool_with_a_noise_member(num_samples, seed):
    probs, labels = complementary_pool(num_samples, seed)
    noise = np.random.default_rng(seed + 100).dirichlet(np.ones(4), size=num_samples)
    return np.concatenate([probs, noise[:, None]], axis=1), labels


def test_frozen_agents_beat_the_best_member_and_drop_the_noise():
    train, train_labels = pool_with_a_noise_member(300, 0)
    val, val_labels = pool_with_a_noise_member(90, 1)
    test, test_labels = pool_with_a_noise_member(150, 2)
    fitted = fit_agents(train, train_labels, val, val_labels, MarlSettings(epochs=30, size_penalty=0.5))
    answers, teams = fitted.predict(test)
    best_member = max(float((test[:, m].argmax(-1) == test_labels).mean()) for m in range(4))
    assert float((answers == test_labels).mean()) > best_member + 0.15
    assert teams.shape == (150, 4) and teams.any(axis=1).all()  # every sample gets a team
    assert teams[:, 3].mean() < teams[:, :3].mean()  # the noise member is chosen less often


def test_evaluation_takes_no_labels():
    assert list(inspect.signature(FittedAgents.predict).parameters) == ["self", "probabilities"]
