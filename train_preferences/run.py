"""One run of the generic runner: load the model and the rows, tokenize, subsample, train."""
from __future__ import annotations

from pathlib import Path

from common.data import load_records, subsample, tokenize_rows
from common.errors import DataError
from common.tracking import logger
from common.trainer import train_examples
from train_preferences.config import PreferenceRunConfig


def load_examples(config: PreferenceRunConfig, tokenizer, dataset: str, split: str, num_samples: int,
                  role: str) -> tuple[list, int]:
    """The tokenized, subsampled examples of one split and how many were too long; `role` names it in
    messages ("training", "held-out")."""
    rows = load_records(dataset, split=split)
    examples, dropped = tokenize_rows(rows, tokenizer, source=dataset, prompt_field=config.prompt_field,
                                      chosen_field=config.chosen_field, rejected_field=config.rejected_field,
                                      max_length=config.max_length, use_chat_template=config.use_chat_template)
    examples = subsample(examples, num_samples, config.samples_seed)
    if not examples:
        raise DataError(f"{dataset}: no {role} example fits max_length={config.max_length} ({dropped} dropped)")
    logger.info(f"{len(examples)} {role} examples ({dropped} longer than max_length dropped)")
    return examples, dropped


def run(config: PreferenceRunConfig, run_dir: Path) -> dict:
    from common.models import load_for_training

    model, tokenizer = load_for_training(config)
    examples, dropped = load_examples(config, tokenizer, config.dataset, config.split, config.num_samples, "training")
    eval_sets = {"train": examples} if config.eval_on_train else {}
    extra = {}
    if config.eval_source():
        eval_dataset, eval_split = config.eval_source()
        eval_sets["eval"], eval_dropped = load_examples(config, tokenizer, eval_dataset, eval_split,
                                                        config.eval_num_samples, "held-out")
        extra = {"num_eval_examples": len(eval_sets["eval"]), "eval_dropped_too_long": eval_dropped}
    summary = train_examples(config, run_dir, model, tokenizer, examples, eval_sets=eval_sets)
    return {**summary, "num_examples": len(examples), "dropped_too_long": dropped, **extra}
