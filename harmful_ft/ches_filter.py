"""A cross-study defense: filter the user's data by a preference-similarity measure before fine-tuning.

Each user sample (x, y) is paired with the refusal r = `ches_refusal` as the preference pair
(x, y+ = y, y- = r), and the aligned model (the finetune stage's `model`) gives the measure
`ches_measure` of the shared similarity file (ches/: ln_ches by default; LN-CHES =
<S_y, S_r> / (|y| |r|) - ||S_y||^2 / |y|^2, S the summed hidden states predicting each response).
The round(`ches_drop_share` * |D|) samples with the highest value (or lowest, `ches_drop_side`) are
dropped, ties broken by position in the user data. The values are written to the run directory as the
shared similarity file (`preference_similarities.jsonl`, keyed by the sample's position) and read back
through ches.similarity_file, so a resumed run reuses the rows already computed. Cost: one forward pass
of the aligned model per sample and per response (2 |D| sequences), no backward.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ches.measures import response_end_ids, similarity_rows
from ches.similarity_file import FILE_NAME, append_rows, drop_partial_last_line, measure_values, read_similarities
from common.data import tokenize_preference
from common.models import free_memory, load_for_inference
from harmful_ft.data import Sample, format_prompt


def ches_values(config, run_dir: Path, samples: Sequence[Sample]) -> dict[int, float]:
    """Position in `samples` -> the measure, computing only the rows the run directory lacks."""
    path = run_dir / FILE_NAME
    drop_partial_last_line(path)
    done = read_similarities(path) if path.is_file() else {}
    missing = [i for i in range(len(samples)) if i not in done]
    if missing:
        model, tokenizer = load_for_inference(config.model, dtype=config.dtype)
        examples = [tokenize_preference(tokenizer, format_prompt(samples[i], config.prompt_format), samples[i].output,
                                        config.ches_refusal, index=i, use_chat_template=config.use_chat_template)
                    for i in missing]
        end_ids = response_end_ids(tokenizer, config.use_chat_template)
        append_rows(path, similarity_rows(model, examples, end_ids=end_ids, batch_size=config.eval_batch_size))
        del model
        free_memory()
    rows = {i: r for i, r in read_similarities(path).items() if i < len(samples)}
    return measure_values(rows, config.ches_measure, str(path))


def dropped_positions(values: dict[int, float], share: float, side: str) -> list[int]:
    """The round(share * len) positions with the highest (side "highest") or lowest values."""
    sign = -1.0 if side == "highest" else 1.0
    order = sorted(values, key=lambda i: (sign * values[i], i))
    return sorted(order[:round(share * len(values))])


def ches_filter(config, run_dir: Path, samples: Sequence[Sample], harmful: Sequence[bool]
                ) -> tuple[list[bool], list[dict], dict]:
    """Which samples the filter drops, one record per sample (its measure), and the report."""
    values = ches_values(config, run_dir, samples)
    dropped = set(dropped_positions(values, config.ches_drop_share, config.ches_drop_side))
    num_harmful = sum(harmful)
    report = {"ches_measure": config.ches_measure, "ches_drop_share": config.ches_drop_share,
              "ches_drop_side": config.ches_drop_side, "num_ches_dropped": len(dropped),
              "num_harmful_ches_dropped": sum(1 for i in dropped if harmful[i]),
              "harmful_share_after_ches": (num_harmful - sum(1 for i in dropped if harmful[i]))
              / max(1, len(samples) - len(dropped))}
    return ([i in dropped for i in range(len(samples))],
            [{config.ches_measure: values[i], "ches_dropped": i in dropped} for i in range(len(samples))], report)
