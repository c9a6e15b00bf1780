"""MARL-Focal's two agents over a pool's probability vectors, evaluated with the agents FROZEN.

- The decider reads every member's probability vector of a sample and gives each member an inclusion
  probability; a team is drawn from them (Bernoulli per member) during training, and taken greedily
  (probability > 1/2; the single most likely member when none passes) when frozen. It learns by
  REINFORCE from the reward +1 when the aggregated answer is right, -1 when wrong, minus
  `size_penalty` x (team size / M), with the batch's mean reward as baseline.
- The aggregator reads the chosen members' probability vectors (the others zeroed, plus the team mask)
  and answers; it learns by cross-entropy on the teams the decider draws.

Both learn on the train split only; the epoch kept is the one with the best frozen accuracy on the
validation split; the test split is answered by the frozen agents from the probability vectors alone.
The public protocol instead keeps updating the agents online from the TEST labels while it reports
accuracy on them, which measures how fast they adapt to the answers, not how well they generalize.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ensembles.fusion import fit_best_epoch, mlp


@dataclass
class MarlSettings:
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 32
    hidden: int = 100
    size_penalty: float = 0.2
    seed: int = 0


class Agents(nn.Module):
    def __init__(self, num_members: int, num_classes: int, hidden: int):
        super().__init__()
        self.decider = mlp(num_members * num_classes, num_members, hidden)
        self.aggregator = mlp(num_members * num_classes + num_members, num_classes, hidden)

    def inclusion_logits(self, probs: torch.Tensor) -> torch.Tensor:
        return self.decider(probs.flatten(1))

    def answer_logits(self, probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.aggregator(torch.cat([(probs * mask[..., None]).flatten(1), mask], dim=1))

    @torch.no_grad()
    def frozen_teams(self, probs: torch.Tensor) -> torch.Tensor:
        logits = self.inclusion_logits(probs)
        mask = (logits > 0).float()
        empty = mask.sum(1) == 0
        mask[empty, logits[empty].argmax(1)] = 1.0
        return mask


@dataclass
class FittedAgents:
    agents: Agents
    best_epoch: int
    validation_accuracy: float

    @torch.no_grad()
    def predict(self, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(answers, team masks) of the frozen agents for (samples, members, classes); no labels involved."""
        self.agents.eval()
        probs = torch.as_tensor(probabilities, dtype=torch.float32)
        mask = self.agents.frozen_teams(probs)
        return self.agents.answer_logits(probs, mask).argmax(-1).numpy(), mask.bool().numpy()


def fit_agents(train_probs: np.ndarray, train_labels: np.ndarray, val_probs: np.ndarray, val_labels: np.ndarray,
               settings: MarlSettings = MarlSettings()) -> FittedAgents:
    x, y = torch.as_tensor(train_probs, dtype=torch.float32), torch.as_tensor(train_labels, dtype=torch.long)
    num_members = x.shape[1]

    def batch_loss(agents: Agents, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        inclusion = torch.sigmoid(agents.inclusion_logits(x[rows]))
        mask = torch.bernoulli(inclusion.detach(), generator=generator)
        answer_logits = agents.answer_logits(x[rows], mask)
        right = (answer_logits.argmax(-1) == y[rows]).float()
        reward = 2 * right - 1 - settings.size_penalty * mask.sum(1) / num_members
        log_prob = (mask * torch.log(inclusion + 1e-8) + (1 - mask) * torch.log(1 - inclusion + 1e-8)).sum(1)
        decider_loss = -((reward - reward.mean()) * log_prob).mean()
        aggregator_loss = nn.functional.cross_entropy(answer_logits, y[rows])
        return decider_loss + aggregator_loss

    return fit_best_epoch(lambda: Agents(num_members, x.shape[2], settings.hidden), FittedAgents, settings, len(x),
                          batch_loss, lambda fitted: fitted.predict(val_probs)[0], val_labels)
