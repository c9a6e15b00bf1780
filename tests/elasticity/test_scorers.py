"""The study's scorers: the tiny classifier trained on fixture data, and hf_reward on a one-output model."""
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from common.errors import ConfigError
from common.models import load_tokenizer
from common.plans import run_plan
from common.registry import SCORERS
from common.tracking import read_json
from elasticity.config import ReboundConfig
from elasticity.run import PlanConfig, run
from tests.elasticity.conftest import SOURCES, write_plan

POSITIVE_REVIEW = "What a wonderful film! The acting was brilliant. I loved this movie."
NEGATIVE_REVIEW = "What a boring film! The acting was awful. I hated this movie."


def test_tiny_classifier_plugs_in_as_hf_classifier(tiny_base, tmp_path):
    config = {"experiment": "classifier", "model": tiny_base, "outputs_dir": str(tmp_path), "experiment_name": "clf",
              "dataset": "imdb", "data_sources": SOURCES, "lr": 1e-3, "batch_size": 16, "max_steps": 15,
              "max_length": 256, "num_heldout": 40}
    run_plan(write_plan(tmp_path / "plan.json", config), PlanConfig, run)
    summary = read_json(tmp_path / "clf" / "summary.json")
    assert summary["labels"] == ["NEGATIVE", "POSITIVE"] and summary["num_heldout"] == 40
    assert summary["heldout_accuracy"] >= 0.9
    scorer = SCORERS.make({"type": "hf_classifier", "model": str(tmp_path / "clf" / "model"), "label": "POSITIVE"})
    positive, negative = scorer.score(["", ""], [POSITIVE_REVIEW, NEGATIVE_REVIEW])
    assert positive > 0.5 > negative


@pytest.fixture
def reward_model(tiny_base, tmp_path):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=1)
    torch.nn.init.normal_(model.score.weight)
    model.save_pretrained(tmp_path / "rm")
    load_tokenizer(tiny_base).save_pretrained(tmp_path / "rm")
    return model.eval(), tmp_path / "rm"


def test_hf_reward_returns_the_signed_output(reward_model):
    model, path = reward_model
    scorer = SCORERS.make({"type": "hf_reward", "model": str(path), "sign": -1, "template": "{prompt} {response}"})
    tokenizer = load_tokenizer(str(path))
    got = scorer.score(["Hi.", "Question:"], ["Hello there.", "An answer"])
    with torch.no_grad():  # one text at a time, no padding
        expected = [-model(**tokenizer(t, return_tensors="pt")).logits[0, 0].item()
                    for t in ("Hi. Hello there.", "Question: An answer")]
    assert got == pytest.approx(expected, abs=1e-4)


def test_hf_reward_refuses_a_head_it_would_initialise_randomly(reward_model):
    model, path = reward_model
    weights = load_file(path / "model.safetensors")
    weights["score_head.weight"] = weights.pop("score.weight")  # safe-rlhf's name for the head
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="missing from the checkpoint"):
        SCORERS.make({"type": "hf_reward", "model": str(path)})
    scorer = SCORERS.make({"type": "hf_reward", "model": str(path), "key_mapping": {"^score_head": "score"}})
    assert scorer.score([""], ["Hello."]) == pytest.approx(
        [model(**load_tokenizer(str(path))("Hello.", return_tensors="pt")).logits[0, 0].item()], abs=1e-4)


def test_scorer_spec_fills_config_fields_and_keeps_the_scorers_own_placeholders():
    from elasticity.stages import scorer_spec

    config = ReboundConfig(model="m", outputs_dir="out", experiment="rebound", dataset="imdb",
                          scorer={"type": "hf_reward", "model": "{outputs_dir}/classifier_{dataset}/model",
                                  "template": "{prompt} ASSISTANT:{response}", "num_labels": 1})
    assert scorer_spec(config) == {"type": "hf_reward", "model": "out/classifier_imdb/model",
                                   "template": "{prompt} ASSISTANT:{response}", "num_labels": 1}
