"""SORRY-Bench DPO runs (Section 6.2): the plan runner behind `python -m sorrybench`.

One run trains a chat model on a preference set from `sorrybench.create_dataset` in one setting:
- generated preferences (`dpo`), optionally with an SFT term (`sft_coeff` > 0: `dpo+sft`);
- gold preferences (`use_gold_preferences`: gold_train.jsonl, human-judged refusal over compliance);
- the `num_samples` examples with the LOWEST `similarity_measure` (LN-CHES by default) read from a
  preference-similarity file (python -m pref_similarity.compute over train.jsonl; keyed by row).
Before and after training it measures the refusal rate on the train and test prompts
(`RefusalEvaluation`) and the preferred / dispreferred log-prob changes on the train and test pairs
(the trainer's eval records).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from ches.similarity_file import MEASURES, measure_values, read_similarities
from common.config import FieldError, TrainConfig, option
from common.data import PreferenceExample, subsample, tokenize_rows
from common.distributed import process_state
from common.errors import ConfigError, DataError
from common.registry import SCORERS
from common.tracking import logger, write_json
from common.trainer import train_examples
from sorrybench.data import read_preference_split, split_prompts
from sorrybench.refusal import RefusalEvaluation, SamplingSettings


@dataclass
class SorryBenchConfig(TrainConfig):
    lr: float = option(5e-6, min=0.0, help="learning rate (paper: 5e-6; 1e-6 for gold preferences)")
    max_length: int = option(2048, min=2, help="prompt+response tokens; longer pairs are dropped (logged)")
    dataset_path: str = option("", help="directory from sorrybench.create_dataset (train.jsonl, test.jsonl, gold_*)")
    use_gold_preferences: bool = option(False, help="train on gold_train.jsonl (human judgments)")
    similarity_path: str = option("", help="preference-similarity file (or its directory) of train.jsonl; "
                                           "with it, train on the num_samples examples with the lowest measure")
    similarity_measure: str = option("ln_ches", choices=list(MEASURES))
    num_samples: int = option(-1, help="lowest-similarity k with similarity_path, else a seeded random subset; "
                                       "-1 = all")
    samples_seed: int = option(0, help="seed of the random subset (without similarity_path)")
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
        if self.similarity_path and self.use_gold_preferences:
            raise FieldError("similarity_path", "the similarity file indexes train.jsonl, not gold_train.jsonl")
        try:
            SCORERS.check(self.judge)
        except ConfigError as e:  # name the field in the message
            raise FieldError("judge", str(e)) from None


def setting_name(config: SorryBenchConfig) -> str:
    """The Figure 3 label of a run: dpo, dpo+sft, gold or <measure>_lowest_<k>."""
    if config.use_gold_preferences:
        name = "gold"
    elif config.similarity_path:
        name = f"{config.similarity_measure}_lowest_{config.num_samples}"
    else:
        name = "dpo"
    return name + ("+sft" if config.sft_coeff > 0 else "")


def lowest_by_measure(examples: Sequence[PreferenceExample], values: dict[int, float], k: int,
                      source: str = "similarity file") -> list[PreferenceExample]:
    """The k examples with the lowest value (ties by index), in ascending order of the value."""
    missing = [e.index for e in examples if e.index not in values]
    if missing:
        raise DataError(f"{source}: no value for train.jsonl row {missing[0]} ({len(missing)} rows missing); "
                        f"finish computing the similarities for this preference set")
    return sorted(examples, key=lambda e: (values[e.index], e.index))[:k]


def load_pairs(config: SorryBenchConfig, tokenizer, split: str) -> tuple[list[PreferenceExample], int, int]:
    """Tokenized pairs of a split, the number of rows and the number dropped for max_length."""
    rows, path = read_preference_split(config.dataset_path, split, gold=config.use_gold_preferences)
    examples, dropped = tokenize_rows(rows, tokenizer, source=path, prompt_field="prompt", chosen_field="chosen",
                                      rejected_field="rejected", max_length=config.max_length,
                                      use_chat_template=config.use_chat_template)
    if not examples:
        raise DataError(f"{path}: no pair fits max_length={config.max_length} ({dropped} dropped)")
    return examples, len(rows), dropped


def select_train(config: SorryBenchConfig, examples: list[PreferenceExample], num_rows: int) -> list[PreferenceExample]:
    if not config.similarity_path:
        return subsample(examples, config.num_samples, config.samples_seed)
    rows = read_similarities(config.similarity_path)
    source = str(config.similarity_path)
    beyond = [i for i in rows if not 0 <= i < num_rows]
    if beyond:
        raise DataError(f"{source}: index {beyond[0]} is not a row of train.jsonl ({num_rows} rows); the file "
                        f"belongs to another preference set")
    return lowest_by_measure(examples, measure_values(rows, config.similarity_measure, source),
                             config.num_samples, source)


def run(config: SorryBenchConfig, run_dir: Path) -> dict:
    from common.models import load_for_training

    prompts = split_prompts(config.dataset_path, config.refusal_max_prompts) if config.refusal_eval else None
    model, tokenizer = load_for_training(config)
    train_all, num_rows, dropped = load_pairs(config, tokenizer, "train")
    test_set, _, dropped_test = load_pairs(config, tokenizer, "test")
    train_set = select_train(config, train_all, num_rows)
    logger.info(f"{setting_name(config)}: {len(train_set)} training pairs of {num_rows} "
                f"({dropped} train / {dropped_test} test pairs longer than max_length dropped)")
    if process_state().is_main_process:
        write_json(run_dir / "train_indices.json", [e.index for e in train_set])
    callbacks = []
    if config.refusal_eval:
        settings = SamplingSettings(temperature=config.refusal_temperature, top_p=config.refusal_top_p,
                                    max_new_tokens=config.refusal_max_new_tokens,
                                    batch_size=config.refusal_batch_size, seed=config.seed,
                                    use_chat_template=config.use_chat_template)
        callbacks.append(RefusalEvaluation(prompts, config.judge, settings))
    summary = train_examples(config, run_dir, model, tokenizer, train_set,
                             eval_sets={"train": train_set, "test": test_set}, callbacks=callbacks)
    return {**summary, "setting": setting_name(config), "num_examples": len(train_set),
            "dropped_too_long": {"train": dropped, "test": dropped_test}}
