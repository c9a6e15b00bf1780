"""Telemetry records against direct computations on the trained model (losses, gradient cosine, drift)."""
import copy
import types

import pytest
import torch

from common.config import TrainConfig
from common.data import PreferenceExample, collate_pairs
from common.logprobs import sequence_logprobs
from common.tracking import read_jsonl
from common.trainer import Trainer
from harmful_ft.telemetry import Telemetry, plot_telemetry
from tests.conftest import random_llama
from tests.harmful_ft.test_defenses import sft_examples

TOKENIZER = types.SimpleNamespace(pad_token_id=0)


def nll(model, examples):
    batch = collate_pairs(examples, 0)
    return -sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask)


def flat_grad(model, examples):
    model.zero_grad()
    nll(model, examples).mean().backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def layer_outputs(model, example):
    ids = torch.tensor([example.prompt_ids + example.chosen_ids])
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True).hidden_states[1:]


@pytest.fixture
def run(tmp_path):
    harmful, benign, alignment = sft_examples(1, 5), sft_examples(2, 6), sft_examples(3, 3)
    refusals = [PreferenceExample(e.prompt_ids, [5, 6, 7], None, e.index) for e in harmful]
    model = random_llama()
    initial = copy.deepcopy(model)
    telemetry = Telemetry(harmful, benign, refusals=refusals, alignment=alignment, every=1, gradient_every=2,
                          gradient_examples=4)
    cfg = TrainConfig(model="random", objective="cross_entropy", optimizer="sgd", lr=0.5, batch_size=4, max_steps=2,
                      shuffle=False, eval_batch_size=2)
    Trainer(cfg, model, TOKENIZER, sft_examples(0, 8), tmp_path, callbacks=[telemetry]).train()
    records = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "telemetry"]
    return types.SimpleNamespace(model=model, initial=initial, records=records, harmful=harmful, benign=benign,
                                 refusals=refusals, alignment=alignment, telemetry=telemetry)


def test_records_match_direct_computation(run):
    assert [r["step"] for r in run.records] == [0, 1, 2]
    assert "grad_cosine" in run.records[0] and "grad_cosine" not in run.records[1]
    assert run.records[0]["embedding_drift"] == 0.0 and run.records[0]["embedding_drift_per_layer"] == [0.0, 0.0]
    last, model = run.records[-1], run.model
    with torch.no_grad():
        assert last["harmful_loss"] == pytest.approx(nll(model, run.harmful).mean().item(), rel=1e-5)
        assert last["benign_loss"] == pytest.approx(nll(model, run.benign).mean().item(), rel=1e-5)
        assert last["refusal_logprob"] == pytest.approx(-nll(model, run.refusals).mean().item(), rel=1e-5)
    h, b = flat_grad(model, run.harmful[:4]), flat_grad(model, run.benign[:4])
    assert last["grad_cosine"] == pytest.approx((h @ b / (h.norm() * b.norm())).item(), abs=1e-5)
    distances = torch.tensor([[(now - then).pow(2).sum().sqrt().item()
                               for now, then in zip(layer_outputs(model, e), layer_outputs(run.initial, e))]
                              for e in run.alignment])  # (examples, layers)
    assert last["embedding_drift_per_layer"] == pytest.approx(distances.mean(0).tolist(), rel=1e-4)
    assert last["embedding_drift"] == pytest.approx((distances ** 2).sum(1).mean().item(), rel=1e-4)
    assert last["embedding_drift"] > 0


def test_plot_is_a_png(run, tmp_path):
    path = plot_telemetry(run.records, tmp_path / "plots" / "telemetry.png", harmful_scores={0: 10.0, 2: 35.0},
                          title="sft")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_telemetry(run.records, tmp_path / "no_hs.png").stat().st_size > 0
