"""Next-token tracking: hand-worked geometry, and tracked values against plain HF forwards and the trainer's loss."""
import math
import types

import pytest
import torch

from common.data import PreferenceExample
from common.tracking import read_json, read_jsonl
from common.trainer import Trainer, TrainerCallback
from persona_experiments.config import PersonaConfig
from persona_experiments.next_token import NextTokenTracker, top_increases, unembedding_geometry
from tests.conftest import random_llama

TOKENIZER = types.SimpleNamespace(pad_token_id=0, decode=lambda ids: "".join(f"<{i}>" for i in ids))
PROMPT, POS, NEG = [5, 17, 42, 8, 63], 11, 29


def test_unembedding_geometry_hand_worked():
    # W+ = (3,4,0): norm 5. W- = (1,2,2): norm 3, <W+,W-> = 11, along W+: 11/5 = 2.2,
    # orthogonal part (1,2,2) - 11/25 (3,4,0) = (-0.32, 0.24, 2): norm sqrt(4.16) (and 2.2^2 + 4.16 = 9 = ||W-||^2).
    # h = (1,1,1): <h, W+ - W-> = <(1,1,1), (2,2,-2)> = 2, ||h|| = sqrt 3; h_init = (1,1,0): ||h - h_init|| = 1.
    g = unembedding_geometry(torch.tensor([3.0, 4, 0]), torch.tensor([1.0, 2, 2]), torch.tensor([1.0, 1, 1]),
                             torch.tensor([1.0, 1, 0]))
    assert g == pytest.approx({"preferred_norm": 5, "dispreferred_norm": 3, "inner_product": 11,
                               "dispreferred_projection": 2.2, "dispreferred_orthogonal_norm": math.sqrt(4.16),
                               "hidden_margin": 2, "hidden_norm": math.sqrt(3), "hidden_change_norm": 1})


def test_top_increases_hand_worked():
    ids, values = top_increases(torch.tensor([0.1, 0.5, 0.4]), torch.tensor([0.3, 0.3, 0.4]), 2)
    assert ids == [1, 2] and values == pytest.approx([0.2, 0.0])


def hf_next_token(model):
    """Log-probs and final hidden state at the last prompt position from a plain HF forward."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([PROMPT]), output_hidden_states=True)
    return out.logits[0, -1].float().log_softmax(-1), out.hidden_states[-1][0, -1]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tracked")
    config = PersonaConfig(model="random", lr=1e-2, optimizer="sgd", max_steps=3, top_tokens_to_track=5)
    model = random_llama()
    example = PreferenceExample(PROMPT, [POS], [NEG], index=7)
    summary = Trainer(config, model, TOKENIZER, [example], run_dir,
                      callbacks=[NextTokenTracker(example, TOKENIZER, top_k=5)]).train()
    return model, read_json(run_dir / "token_metrics.json"), read_jsonl(run_dir / "metrics.jsonl"), summary


def test_tracked_values_match_plain_forwards(tracked_run):
    trained, m, _, summary = tracked_run
    initial_logprobs, initial_hidden = hf_next_token(random_llama())
    final_logprobs, final_hidden = hf_next_token(trained)
    assert m["step"] == [0, 1, 2, 3] and m["row_index"] == 7 and m["prompt_ids"] == PROMPT
    for step, logprobs in ((0, initial_logprobs), (3, final_logprobs)):
        assert m["preferred_logprob"][step] == pytest.approx(logprobs[POS].item(), abs=1e-5)
        assert m["dispreferred_prob"][step] == pytest.approx(logprobs[NEG].exp().item(), abs=1e-6)
    assert m["preferred_logprob_change"][3] == pytest.approx((final_logprobs - initial_logprobs)[POS].item(), abs=1e-5)
    # Top risers at the end: the largest probability increases over the whole vocabulary.
    increase = final_logprobs.exp() - initial_logprobs.exp()
    assert m["top_increase_ids"][3] == increase.topk(5).indices.tolist()
    assert m["top_increase_values"][3] == pytest.approx(increase.topk(5).values.tolist(), abs=1e-6)
    assert [series[-1] for series in m["final_top_increase_prob_series"]] == pytest.approx(m["top_increase_probs"][3])
    assert [series[0] for series in m["final_top_increase_prob_series"]] == pytest.approx(
        initial_logprobs.exp()[m["top_increase_ids"][3]].tolist(), abs=1e-6)
    assert m["hidden_norm"][0] == pytest.approx(initial_hidden.norm().item(), rel=1e-5)
    assert m["hidden_change_norm"][3] == pytest.approx((final_hidden - initial_hidden).norm().item(), rel=1e-4)
    # Llama's unembedding has no bias: logit(y+) - logit(y-) = <h, W+ - W->.
    for step in range(4):
        assert m["hidden_margin"][step] == pytest.approx(m["preferred_logit"][step] - m["dispreferred_logit"][step],
                                                         abs=1e-4)
    w = random_llama().lm_head.weight.detach()
    assert m["preferred_norm"][0] == pytest.approx(w[POS].norm().item(), rel=1e-6)
    assert m["inner_product"][0] == pytest.approx((w[POS] @ w[NEG]).item(), rel=1e-5)
    assert summary["next_token"]["final_preferred_prob"] == m["preferred_prob"][3]


def test_tracked_loss_is_the_trainers_loss_one_step_later(tracked_run):
    _, m, records, _ = tracked_run
    train_losses = [r["loss"] for r in records if r["kind"] == "train"]
    # The trainer's loss at step s+1 is computed (via summed sequence log-probs) before update s+1, at
    # the weights the tracker measured as step s.
    assert m["loss"][:3] == pytest.approx(train_losses, abs=1e-5)
    assert m["loss"][0] == pytest.approx(math.log(2), abs=1e-6)
    assert [r["step"] for r in records if r["kind"] == "tokens"] == [0, 1, 2, 3]


def test_a_dpo_step_raises_the_margin(tracked_run):
    _, m, _, _ = tracked_run
    margins = [p - d for p, d in zip(m["preferred_logprob_change"], m["dispreferred_logprob_change"])]
    assert margins[0] == 0 and all(b > a for a, b in zip(margins, margins[1:]))
    assert m["loss"][3] < m["loss"][0]


def test_trajectory_matches_a_naive_training_loop(tmp_path):
    """RMSprop DPO on one prompt written out by hand (the paper's loop: one forward, last-position
    log-softmax, DPO loss) gives the y+/y- log-prob trajectory the trainer and tracker record."""
    steps, lr, beta = 4, 1e-3, 0.1
    config = PersonaConfig(model="random", lr=lr, beta=beta, max_steps=steps)
    example = PreferenceExample(PROMPT, [POS], [NEG])
    Trainer(config, random_llama(), TOKENIZER, [example], tmp_path,
            callbacks=[NextTokenTracker(example, TOKENIZER)]).train()
    m = read_json(tmp_path / "token_metrics.json")

    model = random_llama()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=lr)
    expected = []
    for step in range(steps + 1):
        logprobs = model(input_ids=torch.tensor([PROMPT])).logits[0, -1].log_softmax(-1)
        expected.append((logprobs[POS].item(), logprobs[NEG].item()))
        if step == steps:
            break
        ref_pos, ref_neg = expected[0]
        loss = -torch.nn.functional.logsigmoid(beta * ((logprobs[POS] - ref_pos) - (logprobs[NEG] - ref_neg)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert list(zip(m["preferred_logprob"], m["dispreferred_logprob"])) == [
        (pytest.approx(p, abs=1e-4), pytest.approx(n, abs=1e-4)) for p, n in expected]


class Snapshots(TrainerCallback):
    """The lm_head weights and a plain HF forward's log-probs at every tracked step, for the naive checks."""

    def __init__(self):
        self.weights, self.logprobs = [], []

    def take(self, trainer):
        self.weights.append(trainer.model.lm_head.weight.detach().clone())
        with torch.no_grad():
            self.logprobs.append(trainer.model(input_ids=torch.tensor([PROMPT])).logits[0, -1].double().log_softmax(-1))

    def on_train_begin(self, trainer):
        self.take(trainer)

    def on_step_end(self, trainer, step):
        self.take(trainer)


def naive_top(values, k, largest=True):
    order = sorted(range(len(values)), key=lambda z: values[z], reverse=largest)
    return order[:k]


def naive_rank(values, token):
    return sum(1 for z in range(len(values)) if values[z] > values[token])


def test_mechanism_tables_match_a_naive_loop_over_the_vocabulary(tmp_path):
    """<W_z, W+ - W-> summed coordinate by coordinate for every z, with the weights before each step;
    risers, ranks and overlaps by plain sorting and counting over the vocabulary."""
    k, steps = 6, 3
    config = PersonaConfig(model="random", lr=1e-2, optimizer="sgd", max_steps=steps, top_tokens_to_track=k)
    example = PreferenceExample(PROMPT, [POS], [NEG])
    snaps = Snapshots()
    Trainer(config, random_llama(), TOKENIZER, [example], tmp_path,
            callbacks=[snaps, NextTokenTracker(example, TOKENIZER, top_k=k)]).train()
    m = read_json(tmp_path / "token_metrics.json")
    vocab = len(snaps.weights[0])
    assert m["direction_overlap_prob"][0] is None and m["top_direction_ids"][0] == []
    for step in range(1, steps + 1):
        w = snaps.weights[step - 1].tolist()  # the unembedding the step's gradient was taken at
        scores = [sum(a * (b - c) for a, b, c in zip(w[z], w[POS], w[NEG])) for z in range(vocab)]
        now, before, initial = (snaps.logprobs[i].tolist() for i in (step, step - 1, 0))
        step_logprob_rise = [now[z] - before[z] for z in range(vocab)]
        step_prob_rise = [math.exp(now[z]) - math.exp(before[z]) for z in range(vocab)]
        logprob_rise = [now[z] - initial[z] for z in range(vocab)]
        prob_rise = [math.exp(now[z]) - math.exp(initial[z]) for z in range(vocab)]
        top_scores = naive_top(scores, k)
        assert m["top_direction_ids"][step] == top_scores
        assert m["bottom_direction_ids"][step] == naive_top(scores, k, largest=False)
        assert m["top_direction_values"][step] == pytest.approx([scores[z] for z in top_scores], rel=1e-4)
        logprob_risers = naive_top(step_logprob_rise, k)
        prob_risers = naive_top(step_prob_rise, k)
        assert m["step_top_logprob_increase_ids"][step] == logprob_risers
        assert m["step_top_logprob_increase_direction"][step] == pytest.approx([scores[z] for z in logprob_risers],
                                                                                rel=1e-4, abs=1e-6)
        assert m["step_top_increase_direction"][step] == pytest.approx([scores[z] for z in prob_risers],
                                                                        rel=1e-4, abs=1e-6)
        assert m["direction_overlap_logprob"][step] == sum(z in top_scores for z in logprob_risers)
        assert m["direction_overlap_prob"][step] == sum(z in top_scores for z in prob_risers)
        assert m["top_logprob_increase_ids"][step] == naive_top(logprob_rise, k)
        assert m["top_logprob_increase_values"][step] == pytest.approx(sorted(logprob_rise, reverse=True)[:k],
                                                                        abs=1e-5)
        assert m["preferred_logprob_increase_rank"][step] == naive_rank(logprob_rise, POS)
        assert m["preferred_prob_increase_rank"][step] == naive_rank(prob_rise, POS)
        assert m["preferred_prob_rank"][step] == naive_rank(now, POS)
    # a DPO step on the margin raises y+ most of all tokens by log-prob at lr 1e-2 here
    assert m["preferred_logprob_increase_rank"][1] == 0
