"""The config of one SORRY-Bench DPO run (`python -m sorrybench`): the shared training fields, the
preference set, the selection and the refusal evaluation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ches.similarity_file import MEASURES
from common.config import FieldError, TrainConfig, option
from common.errors import ConfigError
from common.registry import SCORERS

# Pair-kind filter field -> the (chosen_score, rejected_score) it keeps (the public runner's flags).
PAIR_KIND_FILTERS = {"use_only_two_refusal_samples": (0, 0), "use_only_two_non_refusal_samples": (1, 1),
                     "use_only_one_of_each_samples": (0, 1)}


@dataclass
class SorryBenchConfig(TrainConfig):
    lr: float = option(5e-6, min=0.0, help="learning rate (paper: 5e-6; 1e-6 for gold preferences)")
    max_length: int = option(2048, min=2, help="prompt+response tokens; longer pairs are truncated (truncation_mode)")
    dataset_path: str = option("", data_path=True,
                               help="directory from sorrybench.create_dataset (train.jsonl, test.jsonl, gold_*)")
    use_gold_preferences: bool = option(False, help="train on gold_train.jsonl (human judgments)")
    similarity_path: str = option("", data_path=True,
                                  help="preference-similarity file (or its directory) of train.jsonl; "
                                       "with it, train on the num_samples examples with the lowest measure")
    similarity_measure: str = option("ln_ches", choices=list(MEASURES))
    num_samples: int = option(-1, help="lowest-similarity k with similarity_path, else a seeded random subset; "
                                       "-1 = all")
    samples_seed: int = option(0, help="seed of the random subset (without similarity_path)")
    # The public runner's pair-kind filters (without similarity_path), applied before num_samples are drawn.
    use_only_two_refusal_samples: bool = option(False, help="train only on pairs whose two samples both refuse "
                                                            "(chosen_score 0, rejected_score 0)")
    use_only_two_non_refusal_samples: bool = option(False, help="train only on pairs whose two samples both "
                                                                "comply (chosen_score 1, rejected_score 1)")
    use_only_one_of_each_samples: bool = option(False, help="train only on refusal-over-compliance pairs "
                                                            "(chosen_score 0, rejected_score 1)")
    use_chat_template: Optional[bool] = option(None, help="null = use it when the tokenizer has one")
    judge: Union[str, dict] = option("sorrybench_judge", help="refusal judge: scorer name or {\"type\": ..., ...}; "
                                                              "keyword_refusal is the offline stand-in")
    refusal_eval: bool = option(True, help="measure refusal rates before and after training")
    refusal_temperature: float = option(0.7, min=0.0)
    refusal_top_p: float = option(1.0, min=0.0, max=1.0, min_exclusive=True)
    refusal_max_new_tokens: int = option(512, min=1)
    refusal_batch_size: int = option(16, min=1)
    refusal_max_prompts: int = option(-1, help="first N prompts per split for refusal rates; -1 = all")

    def validate(self) -> None:
        super().validate()
        if not self.model:
            raise FieldError("model", "required: a hub id or a local path")
        if not self.dataset_path:
            raise FieldError("dataset_path", "required: the directory written by python -m sorrybench.create_dataset")
        if self.similarity_path and self.num_samples <= 0:
            raise FieldError("num_samples", "with similarity_path, give how many lowest-similarity examples to keep "
                                            "(the paper keeps 5%: 19 of 382)")
        pair_kinds = [name for name in PAIR_KIND_FILTERS if getattr(self, name)]
        if len(pair_kinds) > 1:
            raise FieldError(pair_kinds[1], f"{pair_kinds[0]} is set already; choose one pair-kind filter")
        if pair_kinds and (self.similarity_path or self.use_gold_preferences):
            raise FieldError(pair_kinds[0], "filters the judged pairs of train.jsonl; leave it out with "
                                            "similarity_path or use_gold_preferences")
        if self.similarity_path and self.use_gold_preferences:
            raise FieldError("similarity_path", "the similarity file indexes train.jsonl, not gold_train.jsonl")
        try:
            SCORERS.check(self.judge)
        except ConfigError as e:  # name the field in the message
            raise FieldError("judge", str(e)) from None
