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
    # The public runner's generation eval (pref_similarity/eval_extras.py): at each evaluation, sample
    # responses to prompts of the first training batch; their lengths and approximate KL to the reference.
    generation_eval: bool = option(True, help="sample responses at each evaluation (loads a frozen reference "
                                              "copy of the model unless lora is set)")
    generation_eval_prompts: int = option(4, min=1, help="prompts of the first training batch sampled (at most "
                                                         "the batch; the public runner: its 4-example batch)")
    generation_eval_max_new_tokens: int = option(256, min=1, help="at most this many sampled tokens")
    generation_eval_max_prompt_length: int = option(0, min=0, help="0: the prompt as trained; n: its first n "
                                                                   "tokens (the public runner: 128)")
    generation_eval_kl_tokens: str = option("response", choices=["response", "prompt_and_response"],
                                            help="tokens the KL estimates average over (the public runner: "
                                                 "every position, prompt included)")

    def validate(self) -> None:
        super().validate()
        for field in ("model", "dataset", "similarity_path"):
            if not getattr(self, field):
                raise FieldError(field, "required")
        if self.generation_eval and self.fsdp:
            raise FieldError("generation_eval", "sampling from an FSDP-sharded model is not supported; "
                                                "set generation_eval false with fsdp")
