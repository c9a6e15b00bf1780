"""One Persona run: load the model (or the SFT checkpoint), pick the prompts, train, track.

    python -m persona_experiments --plan_config_path PLAN.json [--dry_run] [--force] [--only I]
    accelerate launch -m persona_experiments --plan_config_path PLAN.json

Reads top to bottom: model and tokenizer, persona rows, the selected prompts as single-token
examples, then the shared Trainer (reference log-probs cached, RMSprop, full batch) with the
next-token tracker on single-prompt preference runs.
"""
from __future__ import annotations

from pathlib import Path

from common.errors import DataError
from common.models import load_for_training
from common.tracking import logger
from common.trainer import train_examples
from persona_experiments.config import PersonaConfig
from persona_experiments.data import build_examples, load_persona_rows, select_rows
from persona_experiments.next_token import NextTokenTracker


def run(config: PersonaConfig, run_dir: Path) -> dict:
    source = config.load_model_checkpoint or config.model
    if config.load_model_checkpoint and not Path(config.load_model_checkpoint).exists():
        raise DataError(f"load_model_checkpoint {config.load_model_checkpoint!r} does not exist: run the SFT "
                        f"plan that writes it first (or fix the path)")
    rows = load_persona_rows(config.dataset)  # before the model: a missing file should not wait for a download
    indices = select_rows(rows, config.matching_behavior, config.num_train_samples,
                          config.train_samples_random_seed, config.dataset)
    model, tokenizer = load_for_training(config, source)
    examples = build_examples(tokenizer, rows, indices, config, source)
    logger.info(f"{len(examples)} prompt(s) from {config.dataset}"
                + ("" if config.is_sft else f"; y+ {config.preferred_token!r} vs y- {config.dispreferred_token!r}"))

    callbacks = ([NextTokenTracker(examples[0], tokenizer, config.top_tokens_to_track)]
                 if config.track_token_metrics else [])
    summary = train_examples(config, run_dir, model, tokenizer, examples, eval_sets={"train": examples},
                             callbacks=callbacks)
    rows_used = [{"row_index": e.index, "question": rows[e.index]["question"],
                  "answer_matching_behavior": rows[e.index]["answer_matching_behavior"]} for e in examples[:5]]
    return {**summary, "num_train_samples": len(examples), "first_prompts": rows_used}
