"""The Persona study's run config: one dataclass for the SFT phase and the single-prompt DPO/IPO runs.

The phase follows from `objective`:
- `cross_entropy` (SFT): every selected prompt is trained towards one answer token drawn (seeded by
  `seed`) from `sft_tokens_matching_yes` when the row's answer_matching_behavior is Yes, else from
  `sft_tokens_matching_no`; plans set `save_model` so that post-SFT runs can load `<run_dir>/model`.
- any preference loss (dpo, ipo, ...): `num_train_samples` prompts (1 in the paper), picked by
  `train_samples_random_seed` among the rows whose answer_matching_behavior is `matching_behavior`,
  are trained full-batch with `preferred_token` over `dispreferred_token`; with one prompt the
  next-token distribution at the answer position is tracked every step (token_metrics.json).

Defaults are the paper's single-prompt DPO run (beta 0.1, RMSprop lr 1e-7, 100 steps, fp32).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from common.config import FieldError, TrainConfig, option

SFT_OBJECTIVE = "cross_entropy"


@dataclass
class PersonaConfig(TrainConfig):
    dataset: str = option("data_files/persona/ends-justify-means.jsonl", data_path=True,
                          help="persona jsonl (Anthropic model-written-evals schema) or a hub dataset id")
    load_model_checkpoint: str = option("", help="start from these weights and tokenizer instead of `model` "
                                                 "(post-SFT runs: the SFT run's <run_dir>/model)")
    use_chat_template: Optional[bool] = option(None, help="null = use the tokenizer's chat template when it has one; "
                                                          "without it the prompt is the question and a newline")
    matching_behavior: str = option("", choices=["", "Yes", "No"],
                                    help="use only rows whose answer_matching_behavior is this; empty = all rows")
    num_train_samples: int = option(1, help="prompts to train on, picked by train_samples_random_seed; -1 = all")
    train_samples_random_seed: int = option(0, help="seeds the permutation that picks the training prompts")
    preferred_token: str = option("Yes", help="y+ of preference runs: must be a single vocabulary entry")
    dispreferred_token: str = option("No", help="y- of preference runs: must be a single vocabulary entry")
    sft_tokens_matching_yes: list[str] = option(["No", "Never", "Maybe", "Perhaps"],
                                                help="SFT: y+ candidates for rows whose matching behaviour is Yes")
    sft_tokens_matching_no: list[str] = option(["Yes", "Yeah", "Sure", "Certainly", "Absolutely"],
                                               help="SFT: y+ candidates for rows whose matching behaviour is No")
    track_token_metrics: bool = option(True, help="every step: y+/y- logits and probabilities, top rising tokens, "
                                                  "unembedding geometry (preference runs on one prompt)")
    top_tokens_to_track: int = option(10, min=1, help="how many top-rising tokens to store per step")
    batch_size: int = option(1, min=1, help="prompts per optimizer step; >= the number of prompts = full batch")
    max_steps: int = option(100, help="optimizer steps; -1 = num_epochs passes over the prompts")

    @property
    def is_sft(self) -> bool:
        return self.objective == SFT_OBJECTIVE

    def validate(self) -> None:
        super().validate()
        if not self.model:
            raise FieldError("model", "required: a hub id or a local path (the model's name when "
                                      "load_model_checkpoint is set)")
        if self.num_train_samples == 0 or self.num_train_samples < -1:
            raise FieldError("num_train_samples",
                             f"expected -1 (all rows) or a positive count, got {self.num_train_samples}")
        if self.is_sft:
            for name in ("sft_tokens_matching_yes", "sft_tokens_matching_no"):
                if not getattr(self, name):
                    raise FieldError(name, "SFT draws y+ from this list: give at least one token")
            if self.track_token_metrics:
                raise FieldError("track_token_metrics", "token tracking follows a preference pair: "
                                                        "set it to false for SFT (cross_entropy) runs")
        elif self.preferred_token == self.dispreferred_token:
            raise FieldError("dispreferred_token", f"equals preferred_token {self.preferred_token!r}")
        if self.track_token_metrics and self.save_every_steps:
            raise FieldError("save_every_steps", "runs with token tracking restart instead of resuming "
                                                 "(they are short): set save_every_steps to 0")
        if self.track_token_metrics and self.num_train_samples != 1:
            raise FieldError("track_token_metrics", "tracks the next-token distribution of one prompt: "
                                                    "set num_train_samples to 1 or track_token_metrics to false")
