"""Rebound (Ji et al., Section 5.2, Table 3): after positive SFT, how fast does negative SFT pull back?

For each positive size P: th_P = SFT(th_0, first P positive rows); for each negative size N:
th_P,N = SFT(th_P, first N negative rows). Sizes are nested prefixes of one seeded shuffle, so a larger
set contains the smaller ones. After every stage the model answers held-out prompts, a scorer rates the
answers (sentiment, safety) and the per-token KL to th_0 is measured on held-out rows (elasticity.kl).
The paper's claims: the score falls fast towards the pre-trained model's score, faster after more
positive data, and fewer negatives bring the KL under epsilon after more positive data (Table 3).
Run directory:
    base/                          th_0's generations and score
    positive_{P}/                  positive SFT (metrics.jsonl with compression and KL records, model/)
    positive_{P}/negative_{N}/     negative SFT from th_P
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from common.distributed import process_state
from common.errors import DataError
from common.models import free_memory, load_inference_model, load_tokenizer
from elasticity.compression import encode_texts
from elasticity.datasets import encode_examples, format_prompt, load_splits, source_of, with_label
from elasticity.kl import KLCallback
from elasticity.stages import (
    MODEL_DIR,
    LazyScorer,
    as_texts,
    compression_sets,
    generate_rows,
    load,
    remove_model,
    run_stage,
    starting_model,
    train_sft,
    write_generations,
)


def threshold_crossing(sizes: Sequence[float], values: Sequence[float], epsilon: float) -> Optional[float]:
    """First x where the piecewise-linear curve through (sizes, values) falls below `epsilon`.

    Between the last point at or above epsilon, (x0, v0), and the next point, (x1, v1) with v1 < epsilon:
        x = x0 + (v0 - epsilon) / (v0 - v1) * (x1 - x0).
    sizes[0] when the curve starts below epsilon; None when it never gets there."""
    if values[0] < epsilon:
        return sizes[0]
    for (x0, v0), (x1, v1) in zip(zip(sizes, values), zip(sizes[1:], values[1:])):
        if v1 < epsilon:
            return x0 + (v0 - epsilon) / (v0 - v1) * (x1 - x0)
    return None


def rebound_fraction(base: Optional[float], positive: Optional[float], after: Optional[float]) -> Optional[float]:
    """How far negative SFT took the score back from th_P towards th_0: (S_P - S_PN) / (S_P - S_0).

    1 = back at the pre-trained score, > 1 = past it; None if positive SFT did not raise the score."""
    if None in (base, positive, after) or positive - base <= 0:
        return None
    return (positive - after) / (positive - base)


def rebound_table(config, base_score: Optional[float], stages: dict[int, dict]) -> list[dict]:
    """One row per positive size: the score and KL curves over negative sizes, Table 3's crossing and
    the rebound fraction after the smallest negative set."""
    negatives = sorted(config.negative_sizes)
    rows = []
    for size in sorted(config.positive_sizes):
        positive = stages[size]
        points = [{"negative": n, "score": positive["negative"][n].get("score"),
                   "kl": positive["negative"][n]["kl"]["final"]} for n in negatives]
        kl_curve = [positive["kl"]["final"]] + [p["kl"] for p in points]
        rows.append({"positive": size, "score_after_positive": positive.get("score"),
                     "kl_after_positive": positive["kl"]["final"], "points": points,
                     "negatives_to_kl_epsilon": threshold_crossing([0, *negatives], kl_curve, config.kl_epsilon),
                     "rebound_fraction": rebound_fraction(base_score, positive.get("score"), points[0]["score"])})
    return rows


def check_sizes(sizes: Sequence[int], available: int, what: str, source: str) -> None:
    if max(sizes) > available:
        raise DataError(f"{source}: {what}_sizes asks for {max(sizes)} {what} rows, the training pool has "
                        f"{available}: lower the sizes or num_heldout")


def run_rebound(config, run_dir: Path) -> dict:
    base_path, facts = starting_model(config, run_dir)
    source = source_of(config.dataset, config.data_sources)
    splits = load_splits(config)
    positives, negatives = with_label(splits.train, "positive"), with_label(splits.train, "negative")
    check_sizes(config.positive_sizes, len(positives), "positive", source)
    check_sizes(config.negative_sizes, len(negatives), "negative", source)
    questions = [e.prompt for e in splits.heldout[:config.num_test_prompts]]  # what the scorer reads as the prompt
    prompts = [format_prompt(config, q) for q in questions]  # what the model answers

    tokenizer = load_tokenizer(base_path, trust_remote_code=config.trust_remote_code)
    sets = compression_sets(config, tokenizer)
    kl_set = encode_texts(tokenizer, as_texts(config, splits.heldout[:config.num_kl_examples]),
                          use_chat_template=config.use_chat_template)
    base = load_inference_model(base_path, dtype=config.dtype, device=process_state().device,
                                trust_remote_code=config.trust_remote_code)
    num_parameters = base.num_parameters()
    scorer = LazyScorer(config)

    def kl_callback():
        return KLCallback(base, kl_set.contexts, kl_set.tokens, batch_size=config.eval_batch_size)

    def score(stage_dir: Path, model, tok) -> dict:
        rows = generate_rows(config, model, tok, prompts)
        mean = scorer.score(rows, questions)
        write_generations(stage_dir / "generations.jsonl", rows)
        return {"score": mean}

    def sft_stage(start: str, examples, save: bool):
        def stage(stage_dir: Path) -> dict:
            model, tok = load(config, start)
            summary = train_sft(config, stage_dir, model, tok, encode_examples(tok, examples, config),
                                compression=sets, callbacks=[kl_callback()], save=save)
            summary.update(score(stage_dir, model, tok))
            del model
            free_memory()
            return summary

        return stage

    base_score = run_stage(run_dir / "base", lambda stage_dir: score(stage_dir, base, tokenizer))["score"]
    stages: dict[int, dict] = {}
    for size in config.positive_sizes:
        positive_dir = run_dir / f"positive_{size}"
        stages[size] = run_stage(positive_dir, sft_stage(base_path, positives[:size], save=True))
        stages[size]["negative"] = {
            n: run_stage(positive_dir / f"negative_{n}", sft_stage(str(positive_dir / MODEL_DIR), negatives[:n], False))
            for n in config.negative_sizes}
        if not config.keep_models:
            remove_model(positive_dir)
    scorer.close()
    base = None  # the KL callbacks' closures share this variable: emptying it lets the model be freed
    free_memory()
    if not process_state().is_main_process:  # scores exist on the main process only
        return {}

    return {"experiment": "rebound", "dataset": config.dataset, "model": config.model, "base_model": base_path,
            "num_parameters": num_parameters,
            **facts, "base_score": base_score, "kl_epsilon": config.kl_epsilon,
            "curves": rebound_table(config, base_score, stages)}
