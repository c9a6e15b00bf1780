"""TOPLA-Weighted fusion: an MLP [M x C -> 100 -> 100 -> C] over the team members' probability vectors on
the shared answer space, trained with Adam on the training split.

Two fixes against the public code: the epoch kept is chosen on a validation split DISJOINT from the
training split (the public code's validation rows were drawn from inside the training set), and the
cross-entropy takes the MLP's logits (the public code applied a softmax first, so CrossEntropyLoss
softmaxed twice and its gradients vanished as the outputs saturated).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@contextlib.contextmanager
def one_thread():
    """MLPs this small gain nothing from threads and lose much to their hand-offs on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def topla_mlp(num_members: int, num_classes: int, hidden: int = 100) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(num_members * num_classes, hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


@dataclass
class FusionSettings:
    epochs: int = 200
    lr: float = 1e-3
    batch_size: int = 32
    hidden: int = 100
    seed: int = 0


@dataclass
class FittedFusion:
    model: nn.Module
    best_epoch: int
    validation_accuracy: float

    @torch.no_grad()
    def predict(self, probabilities: np.ndarray) -> np.ndarray:
        """Answers for (samples, members, classes) probability vectors."""
        self.model.eval()
        return self.model(torch.as_tensor(probabilities, dtype=torch.float32)).argmax(-1).numpy()


def fit_fusion(train_probs: np.ndarray, train_labels: np.ndarray, val_probs: np.ndarray, val_labels: np.ndarray,
               settings: FusionSettings = FusionSettings()) -> FittedFusion:
    """Train on (train_probs, train_labels); keep the epoch with the best validation accuracy (the first
    one on ties). Probabilities are (samples, members, classes)."""
    with one_thread():
        return _fit(train_probs, train_labels, val_probs, val_labels, settings)


def _fit(train_probs, train_labels, val_probs, val_labels, settings: FusionSettings) -> FittedFusion:
    generator = torch.Generator().manual_seed(settings.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = topla_mlp(train_probs.shape[1], train_probs.shape[2], settings.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loss_fn = nn.CrossEntropyLoss()  # on logits: no softmax before it
    x, y = torch.as_tensor(train_probs, dtype=torch.float32), torch.as_tensor(train_labels, dtype=torch.long)
    fitted = FittedFusion(copy.deepcopy(model), 0, -1.0)
    for epoch in range(1, settings.epochs + 1):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(settings.batch_size):
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
        candidate = FittedFusion(model, epoch, 0.0)
        val_accuracy = float((candidate.predict(val_probs) == val_labels).mean())
        if val_accuracy > fitted.validation_accuracy:
            fitted = FittedFusion(copy.deepcopy(model), epoch, val_accuracy)
    return fitted
