"""A small sequence classifier trained on a labelled dataset: the offline stand-in for the paper's
sentiment model (IMDb) and cost model (BeaverTails).

The backbone is `model` (a causal LM checkpoint such as tiny-base, loaded into
AutoModelForSequenceClassification with a fresh 2-way head); the shared trainer trains it with
per-example cross-entropy (common.strategies.ClassificationStrategy) on the texts a rebound run will
score (IMDb: the review; BeaverTails: the response) and saves it to <run_dir>/model; rebound runs
use it through `SCORERS.make({"type": "hf_classifier", "model": <run_dir>/model, "label": "POSITIVE"})`
(or "SAFE"). Its held-out accuracy is computed after training.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from common.models import check_model_source, load_tokenizer
from common.strategies import ClassificationExample, ClassificationStrategy
from common.tracking import logger
from common.trainer import Trainer, TrainerCallback
from elasticity.datasets import DATASETS, load_splits, with_label


@torch.no_grad()
def accuracy(model, tokenizer, texts: list[str], labels: list[int], batch_size: int, max_length: int) -> float:
    correct = 0
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(model.device)
        predicted = model(**enc).logits.argmax(-1).cpu()
        correct += (predicted == torch.tensor(labels[start:start + batch_size])).sum().item()
    return correct / len(texts)


class HeldoutAccuracy(TrainerCallback):
    """After training (main process): accuracy on the held-out rows, logged and added to the summary."""

    def __init__(self, texts: list[str], labels: list[int]):
        self.texts, self.labels = texts, labels

    def on_train_end(self, trainer) -> dict:
        if not trainer.is_main:
            return {}
        cfg = trainer.config
        trainer.model.eval()
        acc = accuracy(trainer.model, trainer.tokenizer, self.texts, self.labels, cfg.eval_batch_size, cfg.max_length)
        trainer.log({"kind": "eval", "split": "heldout", "step": trainer.step, "accuracy": acc})
        logger.info(f"classifier held-out accuracy {acc:.3f} on {len(self.texts)} rows")
        return {"heldout_accuracy": acc}


def run_classifier(config, run_dir: Path) -> dict:
    """Train the classifier with the shared trainer (ClassificationStrategy) and save it to run_dir/model."""
    from transformers import AutoModelForSequenceClassification

    splits = load_splits(config)
    train = with_label(splits.train, config.dataset_polarity)
    kind = DATASETS[config.dataset]
    names = kind.label
    check_model_source(config.model)
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        config.model, num_labels=2, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        pad_token_id=tokenizer.pad_token_id, trust_remote_code=config.trust_remote_code)
    encoded = tokenizer([kind.classifier_text(e) for e in train], truncation=True, max_length=config.max_length)
    examples = [ClassificationExample(ids, e.label, i) for i, (ids, e) in enumerate(zip(encoded["input_ids"], train))]
    heldout = splits.heldout
    callback = HeldoutAccuracy([kind.classifier_text(e) for e in heldout], [e.label for e in heldout])
    trainer = Trainer(dataclasses.replace(config, save_model=True), model, tokenizer, examples, run_dir,
                      callbacks=[callback], strategy=ClassificationStrategy())
    summary = trainer.train()
    summary.pop("eval", None)  # no preference eval sets: the held-out accuracy is the eval
    return {**summary, "experiment": "classifier", "dataset": config.dataset, "labels": list(names),
            "num_heldout": len(heldout), "num_train": len(examples)}
