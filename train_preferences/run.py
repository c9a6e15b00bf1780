"""One run of the generic runner: load and normalise the rows, tokenize (truncating), subsample, train."""
from __future__ import annotations

from pathlib import Path

from common.data import subsample
from common.errors import DataError
from common.preference_data import Tokenization, load_preference_rows, tokenize_pairs
from common.tracking import logger
from common.trainer import train_examples
from train_preferences.config import PreferenceRunConfig


def run(config: PreferenceRunConfig, run_dir: Path) -> dict:
    from common.models import load_for_training

    fields = {"prompt": config.prompt_field, "chosen": config.chosen_field, "rejected": config.rejected_field}
    rows, resolved = load_preference_rows(config.dataset, format=config.dataset_format, split=config.split,
                                          config_name=config.dataset_config, fields=fields)
    model, tokenizer = load_for_training(config)
    examples, counts = tokenize_pairs(rows, tokenizer, Tokenization.of(config), source=config.dataset)
    examples = subsample(examples, config.num_samples, config.samples_seed)
    if not examples:
        raise DataError(f"{config.dataset}: every example has an empty response after truncation to "
                        f"max_length={config.max_length}")
    logger.info(f"{len(examples)} training examples ({resolved} format)")
    summary = train_examples(config, run_dir, model, tokenizer, examples,
                             eval_sets={"train": examples} if config.eval_on_train else None)
    return {**summary, "num_examples": len(examples), "dataset_format": resolved, "truncation": counts.as_dict()}
