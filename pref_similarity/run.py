"""One run of the Figure 2 experiment: train on the examples around a quantile of a similarity measure.

The run reads the similarity file written by `python -m pref_similarity.compute` for the same model
and dataset, tokenizes and truncates the examples as the computation did (`max_length`,
`max_prompt_length`, `truncation_mode`, `prompt_format`), takes the `preference_num_samples` around
`quantile` of `similarity_measure` (`selection.quantile_window`), trains on them with the shared
Trainer (any core loss, `sft_coeff`) and evaluates on that training subset before and after:
`metrics.jsonl` eval records of split "train" carry `preferred_logprobs_change_mean` (policy minus
reference summed log-prob of y+, averaged), its dispreferred twin, the means, probabilities and
accuracies, and the public runner's extras (`pref_similarity.eval_extras`: eval loss,
`pi_logratios_mean`, reference probabilities and their changes, a generation eval on a training batch).
`selected_examples.jsonl` lists the chosen indices with their measure values.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from ches.similarity_file import FILE_NAME
from common.errors import DataError
from common.tracking import logger, read_json, write_jsonl
from pref_similarity.config import QuantileRunConfig
from pref_similarity.preference_sets import HUB_DEFAULTS, PreferenceSet, dataset_identity


def similarity_file_path(config: QuantileRunConfig) -> Path:
    path = Path(config.similarity_path)
    return path / FILE_NAME if path.is_dir() else path


def check_similarity_source(config: QuantileRunConfig, path: Path, preference_set: PreferenceSet) -> None:
    """The file's indices must name rows of this dataset: same dataset, split and a finished computation."""
    info_path = path.parent / "info.json"
    if not info_path.exists():
        return  # a bare similarity file: the index range and token-length checks still apply
    info = read_json(info_path)
    settings = info.get("settings", {})
    if not info.get("complete", False):
        raise DataError(f"{path}: the computation did not finish; re-run python -m pref_similarity.compute "
                        f"with the same arguments to complete it")
    if settings.get("dataset") != dataset_identity(config.dataset):
        raise DataError(f"{path}: computed on dataset {settings.get('dataset')!r}, not {config.dataset!r}; "
                        f"point similarity_path at the similarities of this dataset")
    if info.get("resolved_split") != preference_set.split:
        raise DataError(f"{path}: computed on split {info.get('resolved_split')!r}, not {preference_set.split!r}")
    # The hub config and the format decide which rows an index names and what y+ / y- are.
    stored_config = settings.get("dataset_config") or HUB_DEFAULTS.get(config.dataset, {}).get("config_name", "")
    if stored_config != preference_set.config_name:
        raise DataError(f"{path}: computed on dataset config {stored_config!r}, not {preference_set.config_name!r}")
    if info.get("resolved_format", preference_set.format) != preference_set.format:
        raise DataError(f"{path}: computed with format {info.get('resolved_format')!r}, not "
                        f"{preference_set.format!r}; set dataset_format to match")
    for field in ("max_prompt_length", "truncation_mode", "prompt_format", "prompt_separator"):  # the prompt's
        if field in settings and settings[field] != getattr(config, field):  # tokens (check_token_lengths: y's)
            raise DataError(f"{path}: computed with --{field} {settings[field]!r}, but {field} is "
                            f"{getattr(config, field)!r}; set {field} to match")
    if settings.get("model") != config.model:
        logger.warning(f"similarities were computed with {settings.get('model')!r}, training {config.model!r}")


def check_token_lengths(examples, rows: dict[int, dict], path: Path) -> None:
    """Response lengths must match the file's, or the similarities describe other token sequences."""
    for e in examples:
        stored = rows[e.index].get("preferred_len"), rows[e.index].get("dispreferred_len")
        if stored != (None, None) and stored != (len(e.chosen_ids), len(e.rejected_ids)):
            raise DataError(f"{path}: example {e.index}: responses have {len(e.chosen_ids)}/{len(e.rejected_ids)} "
                            f"tokens here but {stored[0]}/{stored[1]} in the similarity file; compute the "
                            f"similarities with this model's tokenizer and chat-template setting")


def run(config: QuantileRunConfig, run_dir: Path) -> dict:
    from ches.similarity_file import measure_values, read_similarities
    from common.distributed import process_state
    from common.models import load_for_training
    from common.preference_data import Tokenization, tokenize_pairs
    from common.trainer import train_examples
    from pref_similarity.eval_extras import SPLIT, EvalExtras
    from pref_similarity.preference_sets import load_preference_set
    from pref_similarity.selection import quantile_window

    preference_set = load_preference_set(config.dataset, format=config.dataset_format, split=config.split,
                                         config_name=config.dataset_config)
    path = similarity_file_path(config)
    if not path.exists():
        raise DataError(f"{path}: no similarity file; first run python -m pref_similarity.compute --model "
                        f"{config.model} --dataset {config.dataset} --output_dir <dir> and point similarity_path "
                        f"at the directory it prints")
    check_similarity_source(config, path, preference_set)
    rows = read_similarities(path)
    values = measure_values(rows, config.similarity_measure, source=str(path))
    outside = [i for i in values if not 0 <= i < len(preference_set.rows)]
    if outside:
        raise DataError(f"{path}: example index {outside[0]} is not a row of {config.dataset} "
                        f"({len(preference_set.rows)} rows)")

    model, tokenizer = load_for_training(config)
    examples, counts = tokenize_pairs(preference_set.rows, tokenizer, Tokenization.of(config), source=config.dataset,
                                      indices=sorted(values))
    if not examples:
        raise DataError(f"{config.dataset}: every example of the similarity file has an empty response after "
                        f"truncation to max_length={config.max_length}")
    check_token_lengths(examples, rows, path)
    by_index = {e.index: e for e in examples}
    selected = quantile_window({i: values[i] for i in by_index}, config.quantile, config.preference_num_samples)
    train_set = [by_index[i] for i in selected]
    window = [values[i] for i in selected]
    logger.info(f"{len(train_set)} of {len(examples)} examples around quantile {config.quantile} of "
                f"{config.similarity_measure} (values {min(window):.4g} .. {max(window):.4g})")
    if process_state().is_main_process:
        write_jsonl(run_dir / "selected_examples.jsonl",
                    [{"index": i, config.similarity_measure: values[i]} for i in selected])

    summary = train_examples(config, run_dir, model, tokenizer, train_set, eval_sets={SPLIT: train_set},
                             callbacks=[EvalExtras(config)])
    return {**summary, "num_examples": len(train_set), "candidates": len(examples), "truncation": counts.as_dict(),
            "measure_min": min(window), "measure_mean": statistics.fmean(window), "measure_max": max(window)}
