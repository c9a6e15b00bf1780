"""One run of the generic runner: load the model and the rows, tokenize, subsample, train."""
from __future__ import annotations

from pathlib import Path

from common.data import load_records, subsample, tokenize_rows
from common.errors import DataError
from common.tracking import logger
from common.trainer import train_examples
from train_preferences.config import PreferenceRunConfig


def run(config: PreferenceRunConfig, run_dir: Path) -> dict:
    from common.models import load_for_training

    model, tokenizer = load_for_training(config)
    rows = load_records(config.dataset, split=config.split)
    examples, dropped = tokenize_rows(rows, tokenizer, source=config.dataset, prompt_field=config.prompt_field,
                                      chosen_field=config.chosen_field, rejected_field=config.rejected_field,
                                      max_length=config.max_length, use_chat_template=config.use_chat_template)
    examples = subsample(examples, config.num_samples, config.samples_seed)
    if not examples:
        raise DataError(f"{config.dataset}: no example fits max_length={config.max_length} ({dropped} dropped)")
    logger.info(f"{len(examples)} training examples ({dropped} longer than max_length dropped)")
    summary = train_examples(config, run_dir, model, tokenizer, examples,
                             eval_sets={"train": examples} if config.eval_on_train else None)
    return {**summary, "num_examples": len(examples), "dropped_too_long": dropped}
