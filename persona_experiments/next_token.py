"""Per-step metrics of the next-token distribution at the answer position of the training prompt.

With one prompt x and single-token responses, everything the Persona study looks at is a function of
h = h(x), the final (normed) hidden state at the last prompt position, and of the unembedding rows
W+ = W[y+], W- = W[y-]: logit(y) = <h, W[y]> (plus the model's output transforms, if any), and
log p(y) = logit(y) - logsumexp(logits). `NextTokenTracker` measures them with ONE forward on the
prompt before training (step 0) and after every optimizer step, logs a record
`{"kind": "tokens", "step": s, ...}` to metrics.jsonl and writes all steps, column by column, to
`token_metrics.json` at the end of the run. See docs/persona_experiments.md for every field.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from common.data import PreferenceExample
from common.errors import TrainingError
from common.logprobs import base_model_of, decoder_hidden_states, token_logits
from common.tracking import write_json
from common.trainer import Trainer, TrainerCallback

TOKEN_METRICS_FILE = "token_metrics.json"


@torch.no_grad()
def next_token_state(model, prompt_ids: Sequence[int], device) -> tuple[Tensor, Tensor]:
    """(h, logits): the final hidden state at the last prompt position (float32, (H,)) and the
    next-token logits computed from it (float32, (V,)), with one forward on the prompt."""
    ids = torch.tensor([list(prompt_ids)], device=device)
    hidden = decoder_hidden_states(model, ids, torch.ones_like(ids))[:, -1]
    return hidden[0].float(), token_logits(model, hidden)[0]


def unembedding_geometry(w_pos: Tensor, w_neg: Tensor, hidden: Tensor, hidden_init: Tensor) -> dict[str, float]:
    """The paper's unembedding and hidden-state quantities for one step, in float64.

        preferred_norm               ||W+||
        dispreferred_norm            ||W-||
        inner_product                <W+, W->
        dispreferred_projection      <W+, W-> / ||W+||      (signed length of W- along W+)
        dispreferred_orthogonal_norm ||W- - (<W+, W-> / ||W+||^2) W+||
        hidden_margin                <h, W+ - W->           (logit(y+) - logit(y-) without output transforms)
        hidden_norm                  ||h||
        hidden_change_norm           ||h - h_init||
    """
    w_pos, w_neg, hidden, hidden_init = (t.double() for t in (w_pos, w_neg, hidden, hidden_init))
    pos_norm = w_pos.norm()
    inner = w_pos @ w_neg
    return {"preferred_norm": pos_norm.item(),
            "dispreferred_norm": w_neg.norm().item(),
            "inner_product": inner.item(),
            "dispreferred_projection": (inner / pos_norm).item(),
            "dispreferred_orthogonal_norm": (w_neg - inner / pos_norm ** 2 * w_pos).norm().item(),
            "hidden_margin": (hidden @ (w_pos - w_neg)).item(),
            "hidden_norm": hidden.norm().item(),
            "hidden_change_norm": (hidden - hidden_init).norm().item()}


def top_increases(values: Tensor, baseline: Tensor, k: int) -> tuple[list[int], list[float]]:
    """The k tokens whose value (probability or log-prob) rose most from `baseline`, and by how much."""
    rise, ids = (values - baseline).topk(min(k, values.numel()))
    return ids.tolist(), rise.tolist()


def rank_of(values: Tensor, token: int) -> int:
    """0-based rank of `token` among all tokens by `values`, largest first: how many tokens are above it
    (ties rank together at their best place)."""
    return int((values > values[token]).sum())


def direction_scores(weight: Tensor, pos: int, neg: int) -> Tensor:
    """<W_z, W+ - W-> for every token z (float32, (V,)): to first order, a gradient step on the
    preferred-minus-dispreferred logit margin moves h along W+ - W-, which raises the logit of every z
    by an amount proportional to this score; the tokens scoring highest rise with y+ (the paper's
    mechanism for probability mass going to a third token)."""
    weight = weight.detach().float()
    return weight @ (weight[pos] - weight[neg])


def mechanism(scores: Tensor, step_logprob_ids: list[int], step_prob_ids: list[int], k: int) -> dict:
    """The mechanism table of one step: the direction scores (computed with the unembedding BEFORE the
    step, the weights the step's gradient was taken at, as the paper's tracker does) of the step's top
    log-prob and probability risers, the k tokens with the largest and smallest score, and how many of
    the top-k scorers are among the step's top-k risers."""
    top_values, top_ids = scores.topk(min(k, scores.numel()))
    bottom_values, bottom_ids = scores.topk(min(k, scores.numel()), largest=False)
    top = set(top_ids.tolist())
    return {"step_top_logprob_increase_direction": scores[step_logprob_ids].tolist(),
            "step_top_increase_direction": scores[step_prob_ids].tolist(),
            "top_direction_ids": top_ids.tolist(), "top_direction_values": top_values.tolist(),
            "bottom_direction_ids": bottom_ids.tolist(), "bottom_direction_values": bottom_values.tolist(),
            "direction_overlap_logprob": len(top & set(step_logprob_ids)),
            "direction_overlap_prob": len(top & set(step_prob_ids))}


MECHANISM_KEYS = ("step_top_logprob_increase_direction", "step_top_increase_direction", "top_direction_ids",
                  "top_direction_values", "bottom_direction_ids", "bottom_direction_values")


class NextTokenTracker(TrainerCallback):
    """Tracks y+ / y- and the whole next-token distribution of one training example, every step.

    Step s is measured after s optimizer steps (step 0 = the initial model), so a run of N steps has
    N + 1 records. Per record: the loss at those weights, logit / log-prob / prob of y+ and y- and their
    change from step 0, `unembedding_geometry`, and the top-k tokens by probability increase since step
    0 (`top_increase_*`, with their probabilities) and since the previous step (`step_top_increase_*`),
    the same by log-prob increase (`top_logprob_increase_*`, `step_top_logprob_increase_*`), the rank of
    y+ among all tokens by probability and by probability / log-prob increase since step 0, and the
    `mechanism` table of <W_z, W+ - W-> (direction scores).
    The full next-token distribution of every step is kept in CPU memory (N+1 x vocab floats, about
    100 MB for a 256k vocabulary) so that the file can hold the whole probability curve of the tokens
    that rose most by the end (`final_top_increase_prob_series`). Runs are short: an interrupted run
    restarts from step 0 rather than resuming (the config forbids checkpoints with tracking).
    """

    def __init__(self, example: PreferenceExample, tokenizer, top_k: int = 10):
        if example.rejected_ids is None or len(example.chosen_ids) != 1 or len(example.rejected_ids) != 1:
            raise ValueError("NextTokenTracker needs a pair of single-token responses")
        self.example = example
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.pos, self.neg = example.chosen_ids[0], example.rejected_ids[0]
        self.history: list[dict] = []
        self.probs_history: list[Tensor] = []

    def loss(self, trainer: Trainer, logprobs: Tensor) -> float:
        """The run's loss at the current weights; the reference is the initial model (step 0)."""
        ref = self.initial_logprobs
        one = torch.ones(1, device=logprobs.device)
        losses, _, _ = trainer.loss(logprobs[self.pos].view(1), logprobs[self.neg].view(1), ref[self.pos].view(1),
                                    ref[self.neg].view(1), one, one)
        return losses.item()

    def record(self, trainer: Trainer, step: int) -> None:
        """Measure the current model (one forward on the prompt) and log the step's record."""
        hidden, logits = next_token_state(trainer.model, self.example.prompt_ids, trainer.device)
        logprobs = logits.log_softmax(-1)
        if step == 0:
            self.initial_hidden, self.initial_logprobs, self.initial_logits = hidden, logprobs, logits
        probs = logprobs.exp()
        rec = {"kind": "tokens", "step": step, "loss": self.loss(trainer, logprobs)}
        for name, token in (("preferred", self.pos), ("dispreferred", self.neg)):
            rec[f"{name}_logit"] = logits[token].item()
            rec[f"{name}_logprob"] = logprobs[token].item()
            rec[f"{name}_prob"] = probs[token].item()
            rec[f"{name}_logit_change"] = (logits[token] - self.initial_logits[token]).item()
            rec[f"{name}_logprob_change"] = (logprobs[token] - self.initial_logprobs[token]).item()
            rec[f"{name}_prob_change"] = (probs[token] - self.initial_logprobs[token].exp()).item()
        w = base_model_of(trainer.model).get_output_embeddings().weight
        rec.update(unembedding_geometry(w[self.pos].detach(), w[self.neg].detach(), hidden, self.initial_hidden))
        scores = direction_scores(w, self.pos, self.neg)
        rec["preferred_prob_rank"] = rank_of(probs, self.pos)
        if step:
            previous = self.previous_logprobs
            ids, values = top_increases(probs, self.initial_logprobs.exp(), self.top_k)
            rec.update(top_increase_ids=ids, top_increase_values=values, top_increase_probs=probs[ids].tolist())
            rec["step_top_increase_ids"], rec["step_top_increase_values"] = top_increases(
                probs, previous.exp(), self.top_k)
            rec["top_logprob_increase_ids"], rec["top_logprob_increase_values"] = top_increases(
                logprobs, self.initial_logprobs, self.top_k)
            rec["step_top_logprob_increase_ids"], rec["step_top_logprob_increase_values"] = top_increases(
                logprobs, previous, self.top_k)
            rec["preferred_prob_increase_rank"] = rank_of(probs - self.initial_logprobs.exp(), self.pos)
            rec["preferred_logprob_increase_rank"] = rank_of(logprobs - self.initial_logprobs, self.pos)
            rec.update(mechanism(self.previous_scores, rec["step_top_logprob_increase_ids"],
                                 rec["step_top_increase_ids"], self.top_k))
        else:  # nothing has changed yet
            rec.update({key: [] for key in ("top_increase_ids", "top_increase_values", "top_increase_probs",
                                            "step_top_increase_ids", "step_top_increase_values",
                                            "top_logprob_increase_ids", "top_logprob_increase_values",
                                            "step_top_logprob_increase_ids", "step_top_logprob_increase_values",
                                            *MECHANISM_KEYS)})
            rec.update(preferred_prob_increase_rank=None, preferred_logprob_increase_rank=None,
                       direction_overlap_logprob=None, direction_overlap_prob=None)
        self.previous_scores, self.previous_logprobs = scores, logprobs
        self.probs_history.append(probs.cpu())
        self.history.append(rec)
        trainer.log(rec)

    def on_train_begin(self, trainer: Trainer) -> None:
        if trainer.step != 0:
            raise TrainingError(f"{trainer.run_dir}: token tracking cannot resume at step {trainer.step}; "
                                f"delete {trainer.run_dir} to restart the run")
        self.history, self.probs_history = [], []
        self.record(trainer, 0)

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        self.record(trainer, step)

    def on_train_end(self, trainer: Trainer) -> dict:
        last = self.history[-1]
        final_top = last["top_increase_ids"]
        ids = {self.pos, self.neg}
        for rec in self.history:
            for key in ("top_increase_ids", "step_top_increase_ids", "top_logprob_increase_ids",
                        "step_top_logprob_increase_ids", "top_direction_ids", "bottom_direction_ids"):
                ids.update(rec[key])
        if trainer.is_main:
            columns = {key: [rec[key] for rec in self.history] for key in self.history[0] if key != "kind"}
            write_json(trainer.run_dir / TOKEN_METRICS_FILE, {
                "prompt_ids": self.example.prompt_ids, "row_index": self.example.index,
                "preferred_id": self.pos, "dispreferred_id": self.neg,
                "token_strings": {str(i): self.tokenizer.decode([i]) for i in sorted(ids)},
                **columns,
                "final_top_increase_prob_series": torch.stack(self.probs_history)[:, final_top].T.tolist()})
        first = self.history[0]
        return {"next_token": {"initial_preferred_prob": first["preferred_prob"],
                               "final_preferred_prob": last["preferred_prob"],
                               "initial_dispreferred_prob": first["dispreferred_prob"],
                               "final_dispreferred_prob": last["dispreferred_prob"],
                               "top_increase_token": self.tokenizer.decode(final_top[:1])}}
