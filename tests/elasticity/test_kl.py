"""Per-token KL to the base model against a hand-worked example and a naive loop; Table 3 crossing."""
import math

import pytest
import torch

from elasticity.kl import kl_sums, token_kl
from elasticity.rebound import rebound_fraction, threshold_crossing
from tests.conftest import random_llama


def test_token_kl_hand_worked():
    # p = (1/2, 1/4, 1/4), q = (1/4, 1/4, 1/2): KL = 1/2 ln 2 + 1/4 ln 1 + 1/4 ln(1/2) = 1/4 ln 2 = 0.17329
    p = torch.tensor([[0.5, 0.25, 0.25]]).log() + 3.0  # logits: any shift gives the same distribution
    q = torch.tensor([[0.25, 0.25, 0.5]]).log()
    assert token_kl(p, q).item() == pytest.approx(0.25 * math.log(2), abs=1e-6)
    assert token_kl(q, q).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_sums_match_naive_loop():
    model, base = random_llama(0), random_llama(1)
    contexts, tokens = [[5, 6, 7], [8], [9, 10]], [[11, 12], [13, 14, 15, 16], [17]]
    expected, count = 0.0, 0
    with torch.no_grad():
        for c, t in zip(contexts, tokens):
            ids = torch.tensor([c + t])
            logp = torch.log_softmax(model(ids).logits[0].double(), -1)
            logq = torch.log_softmax(base(ids).logits[0].double(), -1)
            for j in range(len(t)):  # position len(c) + j - 1 predicts t[j]
                pos = len(c) + j - 1
                expected += (logp[pos].exp() * (logp[pos] - logq[pos])).sum().item()
                count += 1
    for batch_size in (1, 3):
        total, n = kl_sums(model, base, contexts, tokens, batch_size=batch_size)
        assert n == count == 7
        assert total == pytest.approx(expected, rel=1e-4)
    assert kl_sums(model, model, contexts, tokens)[0] == pytest.approx(0.0, abs=1e-6)


def test_threshold_crossing_interpolates_the_first_crossing():
    # KL 0.05 at 0 negatives, 0.03 at 100, 0.005 at 200: crosses 0.01 at 100 + (0.03-0.01)/(0.03-0.005)*100 = 180
    assert threshold_crossing([0, 100, 200, 500], [0.05, 0.03, 0.005, 0.02], 0.01) == pytest.approx(180.0)
    assert threshold_crossing([0, 100], [0.001, 0.5], 0.01) == 0
    assert threshold_crossing([0, 100, 200], [0.05, 0.04, 0.03], 0.01) is None


def test_rebound_fraction():
    # base 0.5, after positive SFT 0.9, after negatives 0.6: (0.9 - 0.6) / (0.9 - 0.5) = 0.75
    assert rebound_fraction(0.5, 0.9, 0.6) == pytest.approx(0.75)
    assert rebound_fraction(0.5, 0.9, 0.3) == pytest.approx(1.5)  # past the pre-trained score
    assert rebound_fraction(0.5, 0.4, 0.3) is None  # positive SFT did not raise the score
    assert rebound_fraction(None, 0.9, 0.3) is None
