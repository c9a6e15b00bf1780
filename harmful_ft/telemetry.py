"""Per-step telemetry of a (harmful) fine-tuning run: a trainer callback cheap enough to leave on, and
its plot.

Every `every` steps (and at step 0) one record of kind "telemetry" goes to metrics.jsonl:
- `harmful_loss`, `benign_loss`: mean over a held-out set of the summed response-token negative
  log-likelihood (nats per example; the training loss of SFT), sharded over processes;
- `refusal_logprob`: mean summed log-prob of the refusal answers to harmful prompts;
- `grad_cosine` (every `gradient_every` steps): cos(grad h, grad benign), the gradients of the mean
  loss of the first `gradient_examples` harmful / benign examples over all trainable parameters (fp32);
- `embedding_drift_per_layer[l]`: mean over alignment examples of ||h_l(x) - h_l^0(x)||_2, the L2
  distance (over real tokens and hidden units) of layer l's output hidden states (`hidden_states[l + 1]`
  of transformers; the last one after the final norm, as transformers returns it) from those at the
  start of the run; `embedding_drift`: the mean over examples of
  the sum over layers of the squared distances (Vaccine's metric).
The gradient and drift are computed on the unwrapped model by every process (small sets; no
collective), the losses by the trainer's sharded `score_all`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from common.data import PreferenceExample, collate_pairs
from common.logprobs import base_model_of, sequence_logprobs
from common.results import pyplot, save_figure
from common.trainer import TrainerCallback

KIND = "telemetry"


def sft_rows(examples: Sequence[PreferenceExample]) -> list[PreferenceExample]:
    return [PreferenceExample(e.prompt_ids, e.chosen_ids, None, e.index) for e in examples]


def chunks(items: Sequence, size: int):
    return [items[i:i + size] for i in range(0, len(items), size)]


class Telemetry(TrainerCallback):
    def __init__(self, harmful: Sequence[PreferenceExample], benign: Sequence[PreferenceExample], *,
                 refusals: Sequence[PreferenceExample] = (), alignment: Sequence[PreferenceExample] = (),
                 every: int = 1, gradient_every: int = 10, gradient_examples: int = 8):
        self.harmful, self.benign = sft_rows(harmful), sft_rows(benign)
        self.refusals, self.alignment = sft_rows(refusals), sft_rows(alignment)
        self.every, self.gradient_every, self.gradient_examples = every, gradient_every, gradient_examples
        self.initial_hidden: list[list[torch.Tensor]] = []  # per example: (L, tokens, H) at step 0
        self.records: list[dict] = []

    # -- the quantities ---------------------------------------------------------------------------

    def mean_logprob(self, trainer, examples) -> Optional[float]:
        return trainer.score_all(examples)[0].mean().item() if examples else None

    def gradient(self, trainer, examples) -> torch.Tensor:
        batch = collate_pairs(examples, trainer.pad_id).to(trainer.device)
        with trainer.autocast():
            loss = -sequence_logprobs(trainer.model, batch.input_ids, batch.attention_mask,
                                      batch.completion_mask).mean()
        grads = torch.autograd.grad(loss, trainer.params, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).float().reshape(-1)
                          for p, g in zip(trainer.params, grads)])

    def grad_cosine(self, trainer) -> float:
        h = self.gradient(trainer, self.harmful[:self.gradient_examples])
        b = self.gradient(trainer, self.benign[:self.gradient_examples])
        return torch.nn.functional.cosine_similarity(h, b, dim=0).item()

    @torch.no_grad()
    def hidden_states(self, trainer) -> list[torch.Tensor]:
        """Per alignment example: its layers' output hidden states on its real tokens, (L, tokens, H)."""
        base = base_model_of(trainer.model)
        out = []
        for part in chunks(self.alignment, trainer.config.eval_batch_size):
            batch = collate_pairs(part, trainer.pad_id).to(trainer.device)
            with trainer.autocast():
                states = base(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              output_hidden_states=True, use_cache=False).hidden_states[1:]
            stacked = torch.stack(states).float()  # (L, B, T, H)
            for row, length in enumerate(batch.attention_mask.sum(-1).tolist()):
                out.append(stacked[:, row, :length].cpu())
        return out

    def drift(self, trainer) -> tuple[list[float], float]:
        distances = torch.stack([torch.linalg.vector_norm(now - then, dim=(1, 2))  # (L,) per example
                                 for now, then in zip(self.hidden_states(trainer), self.initial_hidden)])
        return distances.mean(0).tolist(), (distances ** 2).sum(1).mean().item()

    def record(self, trainer, step: int) -> dict:
        record = {"kind": KIND, "step": step}
        for name, examples in (("harmful_loss", self.harmful), ("benign_loss", self.benign)):
            if examples:
                record[name] = -self.mean_logprob(trainer, examples)
        if self.refusals:
            record["refusal_logprob"] = self.mean_logprob(trainer, self.refusals)
        if self.harmful and self.benign and step % self.gradient_every == 0:
            record["grad_cosine"] = self.grad_cosine(trainer)
        if self.alignment:
            record["embedding_drift_per_layer"], record["embedding_drift"] = self.drift(trainer)
        return record

    # -- the callback -----------------------------------------------------------------------------

    def log(self, trainer, step: int) -> None:
        record = self.record(trainer, step)
        self.records.append(record)
        trainer.log(record)

    def on_train_begin(self, trainer) -> None:
        if self.alignment:
            self.initial_hidden = self.hidden_states(trainer)
        if trainer.step == 0:
            self.log(trainer, 0)

    def on_step_end(self, trainer, step: int) -> None:
        if step % self.every == 0 or step == trainer.total_steps:
            self.log(trainer, step)


def plot_telemetry(records: Sequence[dict], path: str | Path, harmful_scores: Optional[dict[int, float]] = None,
                   title: str = "") -> Path:
    """PNG of harmful / benign loss vs step (left) and the harmful score HS vs step (right; the refusal
    log-prob when no HS is given), from the run's telemetry records."""
    plt = pyplot()
    rows = sorted((r for r in records if r.get("kind") == KIND), key=lambda r: r["step"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("harmful_loss", "harmful (held out)"), ("benign_loss", "benign (held out)")):
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            left.plot(*zip(*points), marker=".", label=label)
    left.set_xlabel("optimizer step")
    left.set_ylabel("loss (nats per example, summed over response tokens)")
    left.legend()
    if harmful_scores:
        steps = sorted(harmful_scores)
        right.plot(steps, [harmful_scores[s] for s in steps], marker="o", color="tab:red")
        right.set_ylabel("harmful score HS (% of answers flagged)")
    else:
        points = [(r["step"], r["refusal_logprob"]) for r in rows if "refusal_logprob" in r]
        if points:
            right.plot(*zip(*points), marker=".", color="tab:green")
        right.set_ylabel("refusal log-prob (nats per example)")
    right.set_xlabel("optimizer step")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
