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
    # TRL's token-mean SFT: -logp(y+) / |y+| = 2 / 2 = 1; with DPO: 0.31326 + 0.5 * 1
    ("cross_entropy", 0.5, {"sft_loss_type": "token_mean"}, 1.0),
    ("dpo", 0.5, {"sft_coeff": 0.5, "sft_loss_type": "token_mean"}, 0.813261687518222),
    # EXO e=0.1, beta D = 1: s(1) (log s(1) - log 0.9) + s(-1) (log s(-1) - log 0.1)
    ("exo_pair", 0.5, {"label_smoothing": 0.1},
     sig(1) * (logsig(1) - math.log(0.9)) + sig(-1) * (logsig(-1) - math.log(0.1))),
    # APO-down: s(0.5 * z+) + 1 - s(0.5 * D) = s(0.5) + 1 - s(1) = 0.622459 + 0.268941
    ("apo_down", 0.5, {}, 0.8914007526),
    # DiscoPOP tau 1: m = s(1); (1 - m) * -log s(1) + m * e^-1 = 0.268941 * 0.313262 + 0.731059 * 0.367879
    ("discopop", 0.5, {"discopop_tau": 1.0}, (1 - sig(1)) * -logsig(1) + sig(1) * math.exp(-1)),
    # tau 0.05 (default): m = s(20) ~ 1, so nearly e^-1
    ("discopop", 0.5, {}, (1 - sig(20)) * -logsig(1) + sig(20) * math.exp(-1)),
    # sigmoid_norm: z+/|y+| = 1/2, z-/|y-| = -1/4: -log s(0.5 * 0.75)
    ("sigmoid_norm", 0.5, {}, -logsig(0.375)),
    # one example, nothing to sort: AOT is DPO on (logp_pi(y+) - logp_pi(y-)) - (ref margin) = 2 - 0 = D
    ("aot", 0.5, {}, 0.313261687518222),
    ("aot_unpaired", 0.5, {"label_smoothing": 0.1}, 0.413261687518222),
])
def test_loss_values(loss_type, beta, kw, expected):
    value, _, _ = loss(loss_type, beta, **kw)
    assert value == pytest.approx(expected, abs=1e-9)


def test_hand_numbers_match_the_closed_forms():
    # The constants above, recomputed from the formulas in the docstrings with math only.
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
                           "simpo", "cross_entropy", "exo_pair", "aot", "aot_unpaired", "apo_down", "discopop",
                           "sigmoid_norm"}


def test_aot_pairs_the_sorted_values_of_the_batch():
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    # paired: policy margins (3, -1), reference margins (0, 2); sorted (-1, 3) and (0, 2): d = (-1, 1)
    losses, _, _ = bound("aot", 1.0)(t(3, -1), t(0, 0), t(0, 2), t(0, 0))
    assert sorted(losses.tolist()) == pytest.approx([-logsig(1), -logsig(-1)])
    # (unsorted it would be (-logsig(3) - logsig(-3)) / 2)
    assert losses.mean().item() == pytest.approx((-logsig(1) - logsig(-1)) / 2)
    # unpaired: z+ = (2, -1), z- = (0, 1); sorted (-1, 2) and (0, 1): d = (-1, 1)
    losses, _, _ = bound("aot_unpaired", 1.0)(t(2, -1), t(0, 1), t(0, 0), t(0, 0))
    assert losses.mean().item() == pytest.approx((-logsig(1) - logsig(-1)) / 2)


def test_token_mean_sft_is_the_mean_over_all_tokens_of_the_batch():
    # logp(y+) = (-2, -6) over 2 and 4 tokens: 8 / 6 for every example (the per-example means would be 1 and 1.5)
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    losses, _, _ = bound("cross_entropy", sft_loss_type="token_mean")(t(-2, -6), chosen_lengths=t(2, 4))
    assert losses.tolist() == pytest.approx([8 / 6, 8 / 6])
    with pytest.raises(ValueError, match="token_mean needs chosen_lengths"):
        bound("cross_entropy", sft_loss_type="token_mean")(t(-2))


def test_exo_pair_without_label_smoothing_is_an_error():
    with pytest.raises(ConfigError, match="exo_pair needs label_smoothing > 0"):
        from_dict(TrainConfig, {"model": "m", "objective": "exo_pair"})


def test_batched_losses_equal_per_example_losses():
    torch.manual_seed(0)
    pc, pr, rc, rr = (torch.randn(5, dtype=torch.float64) * 3 for _ in range(4))
    lengths = torch.tensor([1.0, 2, 3, 4, 5], dtype=torch.float64)
    for loss_type in sorted(set(LOSSES) - {"aot", "aot_unpaired"}):  # those two sort over the batch
        kw = {"label_smoothing": 0.1} if loss_type == "exo_pair" else {}
        batched, _, _ = bound(loss_type, **kw)(pc, pr, rc, rr, lengths, lengths)
        for i in range(5):
            one = slice(i, i + 1)
            single, _, _ = bound(loss_type, **kw)(pc[one], pr[one], rc[one], rr[one], lengths[one], lengths[one])
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


def trl_mean_loss(loss_type, beta, label_smoothing, discopop_tau, pc, pr, rc, rr, len_c, len_r):
    """TRL 1.16's DPOTrainer._compute_loss on given summed log-probs: a stub trainer and a stub model whose
    per-token log-probs spread each sum evenly over its completion tokens (the prompt is one token)."""
    from collections import defaultdict

    from trl import DPOTrainer

    lengths = torch.cat([len_c, len_r]).long()
    totals = torch.cat([pc, pr])
    width = int(lengths.max()) + 1
    completion_mask = (torch.arange(width)[None, :] >= 1) & (torch.arange(width)[None, :] <= lengths[:, None])
    shifted = completion_mask[:, 1:].to(totals.dtype)
    per_token = shifted * (totals / lengths)[:, None]

    def model(**kwargs):
        zeros = torch.zeros_like(per_token)
        return types.SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros,
                                     is_top1=torch.zeros_like(per_token, dtype=torch.bool))

    identity = lambda x: x  # noqa: E731
    trainer = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True), aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0],
        beta=beta, label_smoothing=label_smoothing, args=types.SimpleNamespace(discopop_tau=discopop_tau),
        use_weighting=False, _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1,
        accelerator=types.SimpleNamespace(device="cpu", gather_for_metrics=identity, gather=identity))
    inputs = {"input_ids": torch.zeros(len(lengths), width, dtype=torch.long),
              "attention_mask": torch.ones(len(lengths), width, dtype=torch.long),
              "completion_mask": completion_mask.long(), "ref_chosen_logps": rc, "ref_rejected_logps": rr}
    return DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False).item()


@pytest.mark.parametrize("ours,trl_name,kw", [
    ("dpo", "sigmoid", {}), ("hinge", "hinge", {}), ("ipo", "ipo", {"ipo_length_normalize": True}),
    ("exo_pair", "exo_pair", {"label_smoothing": 0.1}), ("nca_pair", "nca_pair", {}),
    ("robust", "robust", {"label_smoothing": 0.2}), ("bco_pair", "bco_pair", {}), ("sppo_hard", "sppo_hard", {}),
    ("aot", "aot", {"label_smoothing": 0.1}), ("aot_unpaired", "aot_unpaired", {}), ("apo_zero", "apo_zero", {}),
    ("apo_down", "apo_down", {}), ("discopop", "discopop", {"discopop_tau": 0.3}),
    ("sigmoid_norm", "sigmoid_norm", {}), ("cross_entropy", "sft", {"sft_loss_type": "token_mean"}),
])
def test_batch_mean_equals_trls_loss(ours, trl_name, kw):
    torch.manual_seed(1)
    pc, pr, rc, rr = (-torch.rand(6, dtype=torch.float64) * 8 for _ in range(4))
    len_c = torch.tensor([1.0, 2, 3, 4, 5, 6], dtype=torch.float64)
    len_r = torch.tensor([6.0, 3, 2, 5, 1, 4], dtype=torch.float64)
    losses, _, _ = bound(ours, 0.7, **kw)(pc, pr, rc, rr, len_c, len_r)
    expected = trl_mean_loss(trl_name, 0.7, kw.get("label_smoothing", 0.0), kw.get("discopop_tau", 0.05),
                             pc, pr, rc, rr, len_c, len_r)
    # TRL holds exo_pair's epsilon as a float32 tensor: agreement to float32 rounding there
    assert losses.mean().item() == pytest.approx(expected, rel=1e-7 if ours == "exo_pair" else 1e-12)
