"""The config of one quantile run (`python -m pref_similarity`): the shared training fields and the quantile."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ches.similarity_file import MEASURES
from common.config import FieldError, TrainConfig, option
from pref_similarity.preference_sets import FORMATS


@dataclass
class QuantileRunConfig(TrainConfig):
    dataset: str = option("", data_path=True, help="hub id, .jsonl/.json file or directory of the preference set")
    dataset_format: str = option("auto", choices=list(FORMATS), help="auto: from the first row's fields")
    split: str = option("", help="empty: the paper's split for its hub datasets, else train")
    dataset_config: str = option("", help="hub dataset config name (empty: the paper's, for AlpacaFarm)")
    use_chat_template: Optional[bool] = option(None, help="null = use it when the tokenizer has one")
    similarity_path: str = option("", data_path=True,
                                  help="directory (or jsonl file) written by python -m pref_similarity.compute")
    similarity_measure: str = option("ches", choices=list(MEASURES),
                                     help="the measure whose quantile picks the examples")
    quantile: float = option(0.5, min=0.0, max=1.0, help="0 = least similar examples, 1 = most similar")
    preference_num_samples: int = option(512, min=1, help="training examples taken around the quantile")

    def validate(self) -> None:
        super().validate()
        for field in ("model", "dataset", "similarity_path"):
            if not getattr(self, field):
                raise FieldError(field, "required")
