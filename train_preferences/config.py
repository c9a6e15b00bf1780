"""The generic runner's run config: the shared trainer's fields plus where the preference data is."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from common.config import FieldError, TrainConfig, option
from common.preference_data import FORMATS


@dataclass
class PreferenceRunConfig(TrainConfig):
    dataset: str = option("", data_path=True, help="jsonl/json/parquet/csv file, a directory with <split>.jsonl, "
                                                   "a save_to_disk directory, or a hub dataset id")
    dataset_format: str = option("auto", choices=list(FORMATS), help="auto: from the first row's fields "
                                 "(docs/train_preferences.md lists the formats)")
    split: str = option("train")
    dataset_config: str = option("", help="hub dataset config name")
    prompt_field: str = option("prompt", help="the column holding what the format calls prompt")
    chosen_field: str = option("chosen")
    rejected_field: str = option("rejected", help="empty string for SFT data without rejected responses")
    num_samples: int = option(-1, help="train on this many examples drawn with samples_seed; -1 = all")
    samples_seed: int = option(0)
    use_chat_template: Optional[bool] = option(None, help="null = use it when the tokenizer has one")
    eval_on_train: bool = option(True, help="evaluate log-prob changes on the training set before/after")
    eval_dataset: str = option("", help="held-out preference set evaluated like the training set (eval "
                                        "split \"eval\"); empty = the training dataset when eval_split is set")
    eval_split: str = option("", help="split of eval_dataset (or of dataset); empty = split, when eval_dataset "
                                      "is set; both empty = no held-out evaluation")
    eval_num_samples: int = option(-1, help="evaluate on this many held-out examples drawn with samples_seed; "
                                            "-1 = all")

    def validate(self) -> None:
        super().validate()
        if not self.model:
            raise FieldError("model", "required: a hub id or a local path")
        if not self.dataset:
            raise FieldError("dataset", "required: a jsonl file, a directory or a hub dataset id")
        if self.eval_source() == (self.dataset, self.split):
            raise FieldError("eval_split", f"the held-out set is the training set ({self.dataset}, split "
                                           f"{self.split!r}); eval_on_train evaluates that already")

    def eval_source(self) -> Optional[tuple[str, str]]:
        """(dataset, split) of the held-out evaluation set, or None when there is none."""
        if not self.eval_dataset and not self.eval_split:
            return None
        return self.eval_dataset or self.dataset, self.eval_split or self.split


