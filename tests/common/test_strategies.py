"""Step strategies over the one trainer: a sequence classifier trained by ClassificationStrategy."""
import json
import types

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForSequenceClassification

from common.config import TrainConfig
from common.data import PreferenceExample
from common.errors import TrainingError
from common.strategies import ClassificationExample, ClassificationStrategy
from common.tracking import read_jsonl
from common.trainer import Trainer

TOKENIZER = types.SimpleNamespace(pad_token_id=0, save_pretrained=lambda path: None)


def random_classifier(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         num_labels=2, pad_token_id=0)
    return LlamaForSequenceClassification(config)


@pytest.fixture
def labelled():
    g = torch.Generator().manual_seed(3)
    return [ClassificationExample(torch.randint(3, 97, (3 + i % 5,), generator=g).tolist(), i % 2, i) for i in range(8)]


def direct_loss(model, examples):
    """Mean cross-entropy, one unpadded row at a time (the classifier pools the last token)."""
    losses = [F.cross_entropy(model(input_ids=torch.tensor([e.input_ids])).logits, torch.tensor([e.label]))
              for e in examples]
    return torch.stack(losses).mean()


def test_first_step_loss_and_update_match_a_direct_computation(labelled, tmp_path):
    model = random_classifier()
    expected = random_classifier()
    lr = 0.1
    loss = direct_loss(expected, labelled[:4])  # shuffle off: step 1 is examples 0..3
    loss.backward()
    with torch.no_grad():
        for p in expected.parameters():
            p -= lr * p.grad
    config = TrainConfig(model="random", optimizer="sgd", lr=lr, batch_size=4, micro_batch_size=2, max_steps=1,
                         shuffle=False, save_model=True)
    summary = Trainer(config, model, TOKENIZER, labelled, tmp_path, strategy=ClassificationStrategy()).train()
    record = read_jsonl(tmp_path / "metrics.jsonl")[0]
    assert record["kind"] == "train" and record["loss"] == pytest.approx(loss.item(), abs=1e-6)
    assert summary["train"]["accuracy"] in (0.0, 0.25, 0.5, 0.75, 1.0) and "chosen_rewards" not in record
    for (name, got), want in zip(model.named_parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=name)
    # The saved model is the classifier itself, not its backbone.
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["architectures"] == ["LlamaForSequenceClassification"]


def test_classification_refuses_preference_eval_sets(labelled, tmp_path):
    pairs = [PreferenceExample([5, 6], [7], [8], 0)]
    with pytest.raises(TrainingError, match="eval_sets are scored by sequence log-probs"):
        Trainer(TrainConfig(model="random"), random_classifier(), TOKENIZER, labelled, tmp_path,
                eval_sets={"x": pairs}, strategy=ClassificationStrategy())
