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

from pathlib import Path
from typing import Sequence

from ches.similarity_file import measure_values, read_similarities
from common.data import PreferenceExample, subsample
from common.distributed import process_state
from common.errors import DataError
from common.preference_data import Tokenization, normalize_rows, tokenize_pairs
from common.tracking import logger, write_json
from common.trainer import train_examples
from sorrybench.config import PAIR_KIND_FILTERS, SorryBenchConfig
from sorrybench.data import read_preference_split, split_prompts
from sorrybench.refusal import RefusalEvaluation, SamplingSettings


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


def load_pairs(config: SorryBenchConfig, tokenizer, split: str) -> tuple[list[PreferenceExample], list[dict], dict]:
    """Tokenized (truncated) pairs of a split, its rows (with the judge's scores) and the truncation counts."""
    rows, path = read_preference_split(config.dataset_path, split, gold=config.use_gold_preferences)
    normalized, _ = normalize_rows(rows, path, format="plain")
    examples, counts = tokenize_pairs(normalized, tokenizer, Tokenization.of(config), source=path)
    if not examples:
        raise DataError(f"{path}: every pair has an empty response after truncation to max_length={config.max_length}")
    return examples, rows, counts.as_dict()


def of_pair_kind(config: SorryBenchConfig, examples: list[PreferenceExample], rows: list[dict]
                 ) -> list[PreferenceExample]:
    """The examples whose (chosen_score, rejected_score) the config's pair-kind filter keeps (all without one)."""
    for name, scores in PAIR_KIND_FILTERS.items():
        if getattr(config, name):
            return [e for e in examples if (rows[e.index].get("chosen_score"), rows[e.index].get("rejected_score"))
                    == scores]
    return examples


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
    train_all, rows, truncation = load_pairs(config, tokenizer, "train")
    test_set, _, truncation_test = load_pairs(config, tokenizer, "test")
    train_set = select_train(config, of_pair_kind(config, train_all, rows), len(rows))
    logger.info(f"{setting_name(config)}: {len(train_set)} training pairs of {len(rows)}")
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
            "truncation": {"train": truncation, "test": truncation_test}}
