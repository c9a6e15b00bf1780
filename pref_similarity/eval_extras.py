"""The public runner's extra eval figures (`similarity_measures_experiment_runner.py`), added to every
eval record of split "train" (the training subset) by `EvalExtras`.

From the summed log-probs the eval computed anyway (free), with N the examples of the set:
- `loss`: the training loss (objective, beta, sft_coeff, ...) over the set, mean over the N examples;
- `pi_logratios_mean`: mean of log pi(y+|x) - log pi(y-|x);
- `ref_preferred_probs_mean`: mean of pi_ref(y+|x) = exp(summed reference log-prob); and
  `preferred_probs_change_mean` = mean of pi(y+|x) minus that mean; the same for y- (`dispreferred_`).
  Sequence probabilities of long responses underflow to 0 (as in the public code; float64 here).

Generation eval (`generation_eval`, on by default as in the public runner): the policy samples one
response (temperature 1, no top-k / top-p, at most `generation_eval_max_new_tokens`) to each of the
first `generation_eval_prompts` prompts of the first training batch (the same prompts at every eval).
A response is the sampled tokens up to and including the first stop token. With l_t = log pi(o_t) -
log pi_ref(o_t) on the scored tokens o_t (the response, or prompt and response with
`generation_eval_kl_tokens prompt_and_response`), pooled over all of them:
- `generation_policykl` = mean l_t, `generation_approxkl` = mean l_t^2 / 2 (token-level estimates of
  KL(pi || pi_ref), the samples being drawn from pi), `generation_sequence_policykl` and
  `generation_sequence_approxkl` = the same summed per sequence, mean over sequences;
- `generation_logprobs_mean`, `generation_ref_logprobs_mean`: mean log pi(o_t), log pi_ref(o_t);
- `generation_token_lengths_{mean,std,min,max}`: sampled tokens per response;
  `generation_word_lengths_{mean,std,min,max}`: `[a-zA-Z_]+` words in the decoded response (std over
  the responses, population).
The responses (text and token ids) go to metrics.jsonl as a record of kind "generation". The
reference is a frozen copy of the initial model (loaded from `model`), or with `lora` the policy with
its adapters disabled.
"""
from __future__ import annotations

import contextlib
import re
import statistics
from typing import Optional, Sequence

import torch
from torch import Tensor

from common.data import PreferenceExample, collate_sequences
from common.generation import sample_ids
from common.logprobs import base_model_of, decoder_hidden_states, token_logits
from common.models import add_prompt_format_tokens, disable_dropout, load_model, model_context
from common.trainer import TrainerCallback

SPLIT = "train"  # the eval set the public runner evaluates: the training subset
WORD = re.compile("[a-zA-Z_]+")


def set_metrics(loss, examples: Sequence[PreferenceExample], chosen: Tensor, rejected: Optional[Tensor],
                ref_chosen: Tensor, ref_rejected: Optional[Tensor]) -> dict:
    """The public runner's eval figures that the shared `preference_metrics` does not give."""
    def probs(logps: Tensor) -> float:
        return logps.double().exp().mean().item()

    chosen_lengths = torch.tensor([float(len(e.chosen_ids)) for e in examples])
    rejected_lengths = torch.tensor([float(len(e.rejected_ids)) for e in examples]) if rejected is not None else None
    losses, _, _ = loss(chosen, rejected, ref_chosen, ref_rejected, chosen_lengths, rejected_lengths)
    m = {"loss": losses.mean().item(), "ref_preferred_probs_mean": probs(ref_chosen),
         "preferred_probs_change_mean": probs(chosen) - probs(ref_chosen)}
    if rejected is not None:
        m.update({"pi_logratios_mean": (chosen - rejected).mean().item(),
                  "ref_dispreferred_probs_mean": probs(ref_rejected),
                  "dispreferred_probs_change_mean": probs(rejected) - probs(ref_rejected)})
    return m


def stop_token_ids(model, tokenizer) -> set[int]:
    """The ids `generate` stops at: the generation config's EOS id(s), else the tokenizer's."""
    eos = base_model_of(model).generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos]) - {None}


def up_to_stop(ids: Sequence[int], stops: set[int]) -> list[int]:
    """The sampled tokens up to and including the first stop token (all of them when none is sampled)."""
    for k, token in enumerate(ids):
        if token in stops:
            return list(ids[:k + 1])
    return list(ids)


@torch.no_grad()
def scored_token_logprobs(model, contexts: Sequence[Sequence[int]], scored: Sequence[Sequence[int]], pad_id: int,
                          batch_size: int = 16, autocast=contextlib.nullcontext) -> list[Tensor]:
    """Per sequence, log p(token) of each `scored` token after its context (float32, on the CPU)."""
    out = []
    for start in range(0, len(scored), batch_size):
        batch = collate_sequences(contexts[start:start + batch_size], scored[start:start + batch_size], pad_id)
        batch = batch.to(next(model.parameters()).device)
        with autocast():
            hidden = decoder_hidden_states(model, batch.input_ids, batch.attention_mask)
            target = (batch.completion_mask[:, 1:].bool() & batch.attention_mask[:, 1:].bool()).to(hidden.device)
            logits = token_logits(model, hidden[:, :-1][target])
        targets = batch.input_ids[:, 1:].to(logits.device)[target.to(logits.device)]
        logps = (logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)).cpu()
        out += list(logps.split(target.sum(-1).tolist()))  # the mask is row-major: rows in order
    return out


def kl_estimates(policy: Sequence[Tensor], reference: Sequence[Tensor]) -> dict:
    """The public runner's KL figures from per-token log-probs of sampled tokens under both models."""
    ratios = [(p - r).double() for p, r in zip(policy, reference)]
    pooled = torch.cat(ratios)
    return {"generation_policykl": pooled.mean().item(),
            "generation_approxkl": (0.5 * pooled ** 2).mean().item(),
            "generation_sequence_policykl": statistics.fmean(r.sum().item() for r in ratios),
            "generation_sequence_approxkl": statistics.fmean((0.5 * r ** 2).sum().item() for r in ratios),
            "generation_logprobs_mean": torch.cat(policy).double().mean().item(),
            "generation_ref_logprobs_mean": torch.cat(reference).double().mean().item()}


def spread(name: str, values: Sequence[float]) -> dict:
    return {f"{name}_mean": statistics.fmean(values), f"{name}_std": statistics.pstdev(values),
            f"{name}_min": min(values), f"{name}_max": max(values)}


class EvalExtras(TrainerCallback):
    """Adds the set metrics (and, with `config.generation_eval`, the generation eval) to the eval
    records of split "train"; the generation eval runs on the main process only."""

    def __init__(self, config):
        self.config = config
        self.reference = None  # the frozen initial model (None: the policy with its adapters disabled)

    def on_train_begin(self, trainer) -> None:
        cfg = self.config
        if cfg.generation_eval and trainer.is_main and not cfg.lora and self.reference is None:
            self.reference = load_model(cfg.model, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code,
                                        device_map=cfg.device_map)
            add_prompt_format_tokens(self.reference, trainer.tokenizer, cfg.prompt_format, cfg.use_chat_template)
            if not cfg.device_map:
                self.reference.to(trainer.device)
            disable_dropout(self.reference)
            self.reference.eval().requires_grad_(False)

    def eval_metrics(self, trainer, name: str, chosen: Tensor, rejected: Optional[Tensor]) -> Optional[dict]:
        if name != SPLIT:
            return None
        ref_chosen, ref_rejected = trainer.reference[name]
        m = set_metrics(trainer.loss, trainer.eval_sets[name], chosen, rejected, ref_chosen, ref_rejected)
        if self.config.generation_eval and trainer.is_main:
            m.update(self.generation_eval(trainer))
        return m

    def reference_context(self, trainer):
        """The reference model, and a context in which it computes."""
        if self.reference is not None:
            return self.reference, contextlib.nullcontext()
        return trainer.model, trainer.model.disable_adapter()  # peft: the initial weights

    def generation_eval(self, trainer) -> dict:
        cfg, tokenizer, model = self.config, trainer.tokenizer, trainer.model
        indices = trainer.batch_indices(0)[:cfg.generation_eval_prompts]
        prompts = [trainer.train_set[i].prompt_ids for i in indices]
        if cfg.generation_eval_max_prompt_length:
            prompts = [p[:cfg.generation_eval_max_prompt_length] for p in prompts]
        context = model_context(base_model_of(model))
        max_new = cfg.generation_eval_max_new_tokens
        if context:  # a model with few positions (the tiny ones): sample what fits
            max_new = max(1, min(max_new, context - max(len(p) for p in prompts)))
        stops = stop_token_ids(model, tokenizer)
        with trainer.autocast():
            sampled = sample_ids(model, tokenizer, prompts, max_new_tokens=max_new, temperature=1.0, top_p=1.0,
                                 top_k=0, seed=cfg.seed, batch_size=cfg.eval_batch_size, progress=False)
        responses = [up_to_stop(ids, stops) for ids in sampled]
        if cfg.generation_eval_kl_tokens == "response":
            contexts, scored = prompts, responses
        else:  # every position after the first, as the public runner (it also counts padding)
            contexts, scored = [p[:1] for p in prompts], [p[1:] + r for p, r in zip(prompts, responses)]
        policy = scored_token_logprobs(model, contexts, scored, trainer.pad_id, cfg.eval_batch_size, trainer.autocast)
        reference, active = self.reference_context(trainer)
        with active:
            ref = scored_token_logprobs(reference, contexts, scored, trainer.pad_id, cfg.eval_batch_size,
                                        trainer.autocast)
        texts = [tokenizer.decode(r, skip_special_tokens=True) for r in responses]
        trainer.log({"kind": "generation", "split": SPLIT, "step": trainer.step,
                     "responses": [{"index": trainer.train_set[i].index, "response": t, "response_ids": r}
                                   for i, t, r in zip(indices, texts, responses)]})
        return {**kl_estimates(policy, ref), **spread("generation_token_lengths", [len(r) for r in responses]),
                **spread("generation_word_lengths", [len(WORD.findall(t)) for t in texts])}
