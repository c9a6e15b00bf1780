"""One run of the generic runner: load and normalise the rows (training and held-out), load the model,
tokenize (truncating), subsample, train."""
from __future__ import annotations

from pathlib import Path

from common.data import subsample
from common.errors import DataError
from common.preference_data import Tokenization, load_preference_rows, tokenize_pairs
from common.tracking import logger
from common.trainer import train_examples
from train_preferences.config import PreferenceRunConfig


def load_rows(config: PreferenceRunConfig, dataset: str, split: str) -> tuple[list[dict], str]:
    """The normalised rows of one split and the format they were read in."""
    fields = {"prompt": config.prompt_field, "chosen": config.chosen_field, "rejected": config.rejected_field}
    return load_preference_rows(dataset, format=config.dataset_format, split=split,
                                config_name=config.dataset_config, fields=fields)


def tokenize(config: PreferenceRunConfig, tokenizer, rows: list[dict], dataset: str, num_samples: int,
             role: str) -> tuple[list, dict]:
    """The tokenized (truncated), subsampled examples of one split and its truncation counts; `role`
    names it in messages ("training", "held-out")."""
    examples, counts = tokenize_pairs(rows, tokenizer, Tokenization.of(config), source=dataset)
    examples = subsample(examples, num_samples, config.samples_seed)
    if not examples:
        raise DataError(f"{dataset}: every {role} example has an empty response after truncation to "
                        f"max_length={config.max_length}")
    logger.info(f"{len(examples)} {role} examples")
    return examples, counts.as_dict()


def run(config: PreferenceRunConfig, run_dir: Path) -> dict:
    from common.models import load_for_training

    rows, resolved = load_rows(config, config.dataset, config.split)  # data errors before the model loads
    eval_source = config.eval_source()
    eval_rows = load_rows(config, *eval_source)[0] if eval_source else None
    model, tokenizer = load_for_training(config)
    examples, truncation = tokenize(config, tokenizer, rows, config.dataset, config.num_samples, "training")
    eval_sets = {"train": examples} if config.eval_on_train else {}
    extra = {}
    if eval_rows is not None:
        eval_sets["eval"], eval_truncation = tokenize(config, tokenizer, eval_rows, eval_source[0],
                                                      config.eval_num_samples, "held-out")
        extra = {"num_eval_examples": len(eval_sets["eval"]), "eval_truncation": eval_truncation}
    summary = train_examples(config, run_dir, model, tokenizer, examples, eval_sets=eval_sets or None)
    return {**summary, "num_examples": len(examples), "dataset_format": resolved, "truncation": truncation, **extra}
