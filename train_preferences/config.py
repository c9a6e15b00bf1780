"""The generic runner's run config: the shared trainer's fields plus where the preference data is."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from common.config import FieldError, TrainConfig, option


@dataclass
class PreferenceRunConfig(TrainConfig):
    dataset: str = option("", data_path=True,
                          help="jsonl/json file, a directory with <split>.jsonl, or a hub dataset id")
    split: str = option("train")
    prompt_field: str = option("prompt")
    chosen_field: str = option("chosen")
    rejected_field: str = option("rejected", help="empty string for SFT data without rejected responses")
    num_samples: int = option(-1, help="train on this many examples drawn with samples_seed; -1 = all")
    samples_seed: int = option(0)
    use_chat_template: Optional[bool] = option(None, help="null = use it when the tokenizer has one")
    eval_on_train: bool = option(True, help="evaluate log-prob changes on the training set before/after")

    def validate(self) -> None:
        super().validate()
        if not self.model:
            raise FieldError("model", "required: a hub id or a local path")
        if not self.dataset:
            raise FieldError("dataset", "required: a jsonl file, a directory or a hub dataset id")


