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
from typing import Callable, TypeVar

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


def mlp(inputs: int, outputs: int, hidden: int) -> nn.Sequential:
    """inputs -> hidden -> hidden -> outputs with ReLUs between: TOPLA's fusion MLP and MARL-Focal's agents."""
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, outputs))


def topla_mlp(num_members: int, num_classes: int, hidden: int = 100) -> nn.Module:
    return nn.Sequential(nn.Flatten(), *mlp(num_members * num_classes, num_classes, hidden))


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
    x, y = torch.as_tensor(train_probs, dtype=torch.float32), torch.as_tensor(train_labels, dtype=torch.long)
    loss_fn = nn.CrossEntropyLoss()  # on logits: no softmax before it
    return fit_best_epoch(lambda: topla_mlp(x.shape[1], x.shape[2], settings.hidden), FittedFusion, settings,
                          len(x), lambda model, rows, generator: loss_fn(model(x[rows]), y[rows]),
                          lambda fitted: fitted.predict(val_probs), val_labels)


Fitted = TypeVar("Fitted")  # FittedFusion, FittedAgents: (module, best_epoch, validation_accuracy)


def fit_best_epoch(build: Callable[[], nn.Module], fitted_type: type[Fitted], settings, num_rows: int,
                   batch_loss: Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor],
                   answers: Callable[[Fitted], np.ndarray], val_labels: np.ndarray) -> Fitted:
    """The training both ensemble learners share: Adam (settings.lr) on the module `build()` makes, for
    settings.epochs epochs of shuffled batches (settings.batch_size) of the `num_rows` training rows;
    `batch_loss(module, rows, generator)` is one batch's loss. The init, the shuffles and any draws
    `batch_loss` makes from `generator` are seeded by settings.seed. Returns
    `fitted_type(module copy, epoch, validation accuracy)` of the epoch whose `answers(fitted)` best match
    `val_labels` (the first one on ties)."""
    with one_thread():
        generator = torch.Generator().manual_seed(settings.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            module = build()
        optimizer = torch.optim.Adam(module.parameters(), lr=settings.lr)
        best = fitted_type(copy.deepcopy(module), 0, -1.0)
        for epoch in range(1, settings.epochs + 1):
            module.train()
            for rows in torch.randperm(num_rows, generator=generator).split(settings.batch_size):
                optimizer.zero_grad()
                batch_loss(module, rows, generator).backward()
                optimizer.step()
            accuracy = float((answers(fitted_type(module, epoch, 0.0)) == val_labels).mean())
            if accuracy > best.validation_accuracy:
                best = fitted_type(copy.deepcopy(module), epoch, accuracy)
        return best
