"""Each loss against numbers worked out by hand (TRL/torchtune style: the arithmetic is in the comments).

Shared example: policy logp(y+) = -2, ref logp(y+) = -3, policy logp(y-) = -4, ref logp(y-) = -3,
so z+ = 1, z- = -1, D = 2; |y+| = 2 tokens, |y-| = 4 tokens.
"""
import dataclasses
import math
import types

import pytest
import torch

import common.losses
from common.config import TrainConfig, from_dict, option
from common.data import PreferenceExample
from common.errors import ConfigError
from common.losses import LOSSES, make_loss, register_loss
from common.trainer import Trainer
from tests.conftest import random_llama


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


PC, RC, PR, RR = -2.0, -3.0, -4.0, -3.0
LEN_C, LEN_R = 2.0, 4.0


def bound(loss_type, beta=0.1, **kw):
    return make_loss(TrainConfig(objective=loss_type, beta=beta, **kw))


def loss(loss_type, beta, **kw):
    def t(v):
        return torch.tensor([v], dtype=torch.float64)

    losses, cr, rr = bound(loss_type, beta, **kw)(t(PC), t(PR), t(RC), t(RR), t(LEN_C), t(LEN_R))
    return losses.item(), cr.item(), rr.item()


@pytest.mark.parametrize("loss_type,beta,kw,expected", [
    # -log s(0.5 * 2) = log(1 + e^-1) = 0.31326
    ("dpo", 0.5, {}, 0.313261687518222),
    # cDPO e=0.1: 0.9 * 0.31326 + 0.1 * (-log s(-1) = 1.31326) = 0.41326
    ("dpo", 0.5, {"label_smoothing": 0.1}, 0.413261687518222),
    # IPO tau=0.5: (D - 1/(2*0.5))^2 = (2 - 1)^2 = 1
    ("ipo", 0.5, {}, 1.0),
    # IPO on length-normalised log-probs: z+ = -2/2 + 3/2 = 0.5, z- = -4/4 + 3/4 = -0.25, (0.75 - 1)^2 = 0.0625
    ("ipo", 0.5, {"ipo_length_normalize": True}, 0.0625),
    # hinge: relu(1 - 0.25 * 2) = 0.5 ; with beta 0.5 the margin is met: relu(1 - 1) = 0
    ("hinge", 0.25, {}, 0.5),
    ("hinge", 0.5, {}, 0.0),
    # robust e=0.1: (0.9 * 0.31326 - 0.1 * 1.31326) / 0.8 = 0.18826
    ("robust", 0.5, {"label_smoothing": 0.1}, (0.9 * 0.313261687518222 - 0.1 * 1.313261687518222) / 0.8),
    # NCA: -log s(0.5) - 0.5 log s(-0.5) - 0.5 log s(0.5) = 0.474077 + 0.487038 + 0.237038
    ("nca_pair", 0.5, {}, 1.1981539683602133),
    # SPPO hard, beta 0.25 (1/(2 beta) = 2): (1 - 2)^2 + (-1 + 2)^2 = 2
    ("sppo_hard", 0.25, {}, 2.0),
    # APO-zero: (1 - s(0.5)) + s(-0.5) = 2 * 0.377541
    ("apo_zero", 0.5, {}, 0.7550813375962908),
    # BCO pair: -log s(0.5) - log s(0.5) = 2 * 0.474077
    ("bco_pair", 0.5, {}, 0.9481539683602133),
    # SimPO: avg logps -2/2 = -1 and -4/4 = -1: -log s(0.5 * 0 - 0.5) = 0.974077
    ("simpo", 0.5, {"simpo_gamma": 0.5}, 0.9740769841801067),
    # cross-entropy: -logp(y+) = 2
    ("cross_entropy", 0.5, {}, 2.0),
    # DPO + 0.5 * SFT: 0.31326 + 0.5 * 2
    ("dpo", 0.5, {"sft_coeff": 0.5}, 1.313261687518222),
])
def test_loss_values(loss_type, beta, kw, expected):
    value, _, _ = loss(loss_type, beta, **kw)
    assert value == pytest.approx(expected, abs=1e-9)


def test_hand_numbers_match_the_closed_forms():
    # The constants above, recomputed from the STUDIES.md formulas with math only.
    assert -logsig(1.0) == pytest.approx(0.313261687518222)
    assert -logsig(0.5) - 0.5 * logsig(-0.5) - 0.5 * logsig(0.5) == pytest.approx(1.1981539683602133)
    assert (1 - sig(0.5)) + sig(-0.5) == pytest.approx(0.7550813375962908)


def test_rewards_are_beta_times_log_ratios():
    _, chosen_reward, rejected_reward = loss("dpo", 0.5)
    assert chosen_reward == pytest.approx(0.5)   # 0.5 * z+ = 0.5 * 1
    assert rejected_reward == pytest.approx(-0.5)  # 0.5 * z- = 0.5 * -1
    _, chosen_reward, rejected_reward = loss("simpo", 0.5)
    assert chosen_reward == pytest.approx(-0.5)  # reference-free: beta * avg logp = 0.5 * -1


def test_every_study_loss_is_covered():
    assert set(LOSSES) == {"dpo", "ipo", "hinge", "robust", "nca_pair", "sppo_hard", "apo_zero", "bco_pair",
                      "simpo", "cross_entropy"}


def test_batched_losses_equal_per_example_losses():
    torch.manual_seed(0)
    pc, pr, rc, rr = (torch.randn(5, dtype=torch.float64) * 3 for _ in range(4))
    lengths = torch.tensor([1.0, 2, 3, 4, 5], dtype=torch.float64)
    for loss_type in sorted(LOSSES):
        batched, _, _ = bound(loss_type)(pc, pr, rc, rr, lengths, lengths)
        for i in range(5):
            one = slice(i, i + 1)
            single, _, _ = bound(loss_type)(pc[one], pr[one], rc[one], rr[one], lengths[one], lengths[one])
            assert batched[i].item() == pytest.approx(single.item(), rel=1e-12)


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    pc = torch.tensor([-2.0], requires_grad=True)
    pr = torch.tensor([-4.0], requires_grad=True)
    losses, _, _ = bound("dpo", 0.5)(pc, pr, torch.tensor([-3.0]), torch.tensor([-3.0]))
    losses.sum().backward()
    # dL/dlogp+ = -beta * s(-beta D) = -0.5 * s(-1) ; dL/dlogp- = +0.5 * s(-1)
    assert pc.grad.item() == pytest.approx(-0.5 * sig(-1.0), abs=1e-6)
    assert pr.grad.item() == pytest.approx(0.5 * sig(-1.0), abs=1e-6)


def test_unknown_loss_and_missing_inputs():
    t = torch.zeros(1)
    with pytest.raises(ConfigError, match="unknown loss 'dpoo'"):
        bound("dpoo")
    with pytest.raises(ValueError, match="reference"):
        bound("dpo")(t, t, None, None)
    with pytest.raises(ValueError, match="lengths"):
        bound("simpo")(t, t, None, None)
    with pytest.raises(ValueError, match="lengths"):
        bound("ipo", ipo_length_normalize=True)(t, t, t, t)


def test_which_inputs_each_loss_needs():
    # the trainer scores y- and the reference only when the bound loss reads them
    assert not bound("cross_entropy").needs_rejected and not bound("cross_entropy").needs_reference
    assert bound("simpo").needs_rejected and not bound("simpo").needs_reference
    assert bound("dpo").needs_rejected and bound("dpo").needs_reference


def test_a_new_loss_with_its_own_hyper_parameter_needs_no_trainer_change(monkeypatch, tmp_path):
    """A test-local loss, scaled DPO margin: tau * relu(-D); its hyper-parameter is a config field."""
    def margin_loss(z_chosen: torch.Tensor, z_rejected: torch.Tensor, margin_tau: float) -> torch.Tensor:
        return margin_tau * torch.relu(-(z_chosen - z_rejected))

    monkeypatch.setattr(common.losses, "LOSSES", dict(LOSSES))  # the registration ends with the test
    register_loss("margin", margin_loss)

    @dataclasses.dataclass
    class MarginConfig(TrainConfig):
        margin_tau: float = option(3.0)

    config = MarginConfig(objective="margin", beta=0.5)
    def t(v):
        return torch.tensor([v], dtype=torch.float64)

    # z+ = 1, z- = -1 above: D = 2, relu(-2) = 0; swapped (D = -2): 3 * 2 = 6
    assert make_loss(config)(t(PC), t(PR), t(RC), t(RR))[0].item() == 0.0
    assert make_loss(config)(t(PR), t(PC), t(RR), t(RC))[0].item() == pytest.approx(6.0)
    with pytest.raises(ConfigError, match="needs the config field 'margin_tau'"):
        make_loss(TrainConfig(objective="margin"))
    # and the one trainer trains with it as it is
    pairs = [PreferenceExample([5, 6, 7], [8, 9], [10, 11], i) for i in range(4)]
    trainer = Trainer(dataclasses.replace(config, model="random", max_steps=1, batch_size=4, lr=1e-3),
                      random_llama(), types.SimpleNamespace(pad_token_id=0), pairs, tmp_path)
    trainer.compute_reference()
    losses, *_ = trainer.loss_terms([0, 1, 2, 3])
    assert torch.equal(losses, torch.zeros(4))  # policy == reference: D = 0, relu(0) = 0
    assert trainer.train()["steps"] == 1


def test_register_loss_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="'dpo' is registered twice: common.losses.dpo and"):
        register_loss("dpo", lambda z_chosen, z_rejected: z_chosen)


def test_sft_coeff_with_the_cross_entropy_objective_is_an_error():
    # It would add the cross-entropy a second time.
    with pytest.raises(ConfigError, match="sft_coeff: objective cross_entropy is the SFT loss already"):
        from_dict(TrainConfig, {"model": "m", "objective": "cross_entropy", "sft_coeff": 0.5})
