"""A small sequence classifier trained on a labelled dataset: the offline stand-in for the paper's
sentiment model (IMDb) and cost model (BeaverTails).

The backbone is `model` (a causal LM checkpoint such as tiny-base, loaded into
AutoModelForSequenceClassification with a fresh 2-way head); it is trained with cross-entropy on the
texts a rebound run will score (IMDb: the review; BeaverTails: the response), saved with
save_pretrained, and used through `SCORERS.make({"type": "hf_classifier", "model": <run_dir>/model,
"label": "POSITIVE"})` (or "SAFE").
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from common.config import to_dict
from common.distributed import process_state
from common.models import check_model_source, load_tokenizer, save_model
from common.tracking import Tracker, logger
from common.trainer import make_optimizer
from elasticity.datasets import DATASETS, load_splits, with_label


@torch.no_grad()
def accuracy(model, tokenizer, texts: list[str], labels: list[int], batch_size: int, max_length: int) -> float:
    correct = 0
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        predicted = model(**enc).logits.argmax(-1)
        correct += (predicted == torch.tensor(labels[start:start + batch_size])).sum().item()
    return correct / len(texts)


def run_classifier(config, run_dir: Path) -> dict:
    from transformers import AutoModelForSequenceClassification

    state = process_state()
    if not state.is_main_process:  # a few CPU minutes at most: one process trains, the others wait
        state.wait_for_everyone()
        return {}
    splits = load_splits(config)
    train = with_label(splits.train, config.dataset_polarity)
    kind = DATASETS[config.dataset]
    names = kind.label
    check_model_source(config.model)
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        config.model, num_labels=2, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        pad_token_id=tokenizer.pad_token_id, trust_remote_code=config.trust_remote_code)
    texts, labels = [kind.classifier_text(e) for e in train], [e.label for e in train]
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.weight_decay)
    tracker = Tracker(run_dir, config=to_dict(config), use_wandb=config.use_wandb, wandb_project=config.wandb_project)
    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total = config.max_steps if config.max_steps > 0 else math.ceil(config.num_epochs * steps_per_epoch)
    model.train()
    for step in tqdm(range(total), desc="classifier"):
        epoch, k = divmod(step, steps_per_epoch)
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(config.seed * 7919 + epoch))
        batch = order[k * config.batch_size:(k + 1) * config.batch_size].tolist()
        enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=config.max_length,
                        return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([labels[i] for i in batch])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tracker.log({"kind": "train", "step": step + 1, "loss": loss.item()})
    model.eval()
    heldout = splits.heldout
    acc = accuracy(model, tokenizer, [kind.classifier_text(e) for e in heldout], [e.label for e in heldout],
                   config.eval_batch_size, config.max_length)
    tracker.log({"kind": "eval", "split": "heldout", "step": total, "accuracy": acc})
    tracker.finish()
    logger.info(f"classifier held-out accuracy {acc:.3f} on {len(heldout)} rows")
    save_model(model, tokenizer, run_dir / "model")
    state.wait_for_everyone()
    return {"experiment": "classifier", "dataset": config.dataset, "labels": list(names), "steps": total,
            "heldout_accuracy": acc, "num_heldout": len(heldout), "num_train": len(texts)}
