"""Building blocks of the resistance and rebound runs: resumable stages, SFT, generation, scoring.

A run is a sequence of stages, each in its own directory under the run directory; a stage that wrote
its `summary.json` is finished and is skipped when the run resumes (the trainer's own checkpoints
resume a stage that was cut off mid-training). Under N processes every process trains; generation,
scoring and file writes happen on the main process.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

from common.config import to_dict
from common.data import PreferenceExample
from common.distributed import process_state
from common.generation import generate
from common.models import load_for_training, save_model
from common.registry import SCORERS
from common.rundir import write_summary
from common.tracking import logger, read_json, read_jsonl, write_jsonl
from common.trainer import Trainer, TrainerCallback
from elasticity.compression import CompressionCallback, EncodedTexts, encode_texts
from elasticity.datasets import DATASETS, Example, evaluation_rows, format_prompt, with_label

SUMMARY = "summary.json"
MODEL_DIR = "model"


def run_stage(stage_dir: Path, fn: Callable[[Path], dict]) -> dict:
    """`fn(stage_dir)` unless the stage finished before; its summary (also written to summary.json)."""
    done = stage_dir / SUMMARY
    if done.exists():
        logger.info(f"stage finished before: {stage_dir}")
        return read_json(done)
    state = process_state()
    if state.is_main_process:
        stage_dir.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    logger.info(f"stage: {stage_dir}")
    summary = {"status": "finished", **fn(stage_dir)}
    if state.is_main_process:
        write_summary(stage_dir, summary)  # then drops the stage's trainer checkpoint
    state.wait_for_everyone()
    return summary


def remove_model(stage_dir: Path) -> None:
    """Delete a stage's saved model (keep_models=false) once no later stage loads it."""
    if process_state().is_main_process and (stage_dir / MODEL_DIR).exists():
        shutil.rmtree(stage_dir / MODEL_DIR)


def load(config, path: str):
    """The stage's model to train. Seeded first, so that its LoRA initialisation is the same whether the
    run went through the earlier stages or resumed after them."""
    from accelerate.utils import set_seed

    set_seed(config.seed)
    model, tokenizer = load_for_training(config, path)
    if not config.device_map:
        model.to(process_state().device)
    return model, tokenizer


# ----------------------------------------------------------------------------------------------
# Data for the stages


def as_texts(config, examples: Sequence[Example]) -> list:
    """Documents stay text; prompt/response examples become (formatted prompt, response) pairs."""
    return [e.response if e.prompt is None else (format_prompt(config, e.prompt), e.response) for e in examples]


def compression_sets(config, tokenizer) -> dict[str, EncodedTexts]:
    """Held-out rows (`evaluation_rows`) of the run's dataset and of every `compression_datasets` entry.

    A labelled dataset gives two sets, `<name>_positive` and `<name>_negative`, so that the compression
    of either behaviour can be followed through a stage."""
    sets = {}
    for name in dict.fromkeys([config.dataset, *config.compression_datasets]):
        rows = evaluation_rows(config, name)
        groups = {name: rows} if DATASETS[name].label is None else \
            {f"{name}_{p}": with_label(rows, p) for p in ("positive", "negative")}
        for set_name, group in groups.items():
            if group:
                sets[set_name] = encode_texts(tokenizer, as_texts(config, group),
                                              use_chat_template=config.use_chat_template)
    return sets


def generated_set(config, tokenizer, rows: Sequence[dict]) -> EncodedTexts:
    """Compression set of generated (prompt, response) rows; their prompts are already formatted."""
    return encode_texts(tokenizer, [(r["prompt"], r["response"]) for r in rows],
                        use_chat_template=config.use_chat_template)


# ----------------------------------------------------------------------------------------------
# Training


class TokenLossCallback(TrainerCallback):
    """Adds the step's response-token count to its train record, and the per-token training loss to the
    summary.

    The trainer's SFT loss is the summed response NLL averaged over examples; per token,
        token_loss = loss * examples / response_tokens   (nats per response token),
    the number a per-token SFT trainer (and the paper's Table 1) reports, comparable across data whose
    responses differ in length."""

    def on_step_end(self, trainer, step: int) -> dict:
        indices = trainer.batch_indices(step - 1)
        return {"examples": len(indices), "response_tokens": sum(len(trainer.train_set[i].chosen_ids) for i in indices)}

    def on_train_end(self, trainer) -> dict:
        if not trainer.is_main:
            return {}
        losses = [r["loss"] * r["examples"] / r["response_tokens"]
                  for r in read_jsonl(trainer.run_dir / "metrics.jsonl") if r.get("kind") == "train"]
        return {"token_loss_first": losses[0], "token_loss_final": losses[-1],
                "token_loss_mean": sum(losses) / len(losses)}


def train_sft(config, stage_dir: Path, model, tokenizer, examples: Sequence[PreferenceExample], *,
              compression: dict[str, EncodedTexts], callbacks: Sequence[TrainerCallback] = (),
              save: bool = False) -> dict:
    """SFT (cross-entropy on the responses) with the shared trainer; compression rates of every set
    before, during (eval_every_steps) and after training; the model saved to stage_dir/model if `save`."""
    stage_config = dataclasses.replace(config, save_model=save)
    trainer = Trainer(stage_config, model, tokenizer, examples, stage_dir,
                      callbacks=[CompressionCallback(compression, config.eval_batch_size), TokenLossCallback(),
                                 *callbacks])
    summary = trainer.train()
    summary.pop("eval", None)  # no preference eval sets here: compression and KL are the eval
    return {**summary, "num_examples": len(examples)}


# ----------------------------------------------------------------------------------------------
# Generation and scoring (main process)


def generate_rows(config, model, tokenizer, prompts: Sequence[str]) -> Optional[list[dict]]:
    """One response per (formatted) prompt, with the run's sampling settings (None off the main process)."""
    if not process_state().is_main_process:
        return None
    responses = generate(model, tokenizer, list(prompts), max_new_tokens=config.max_new_tokens,
                         temperature=config.temperature, top_p=config.top_p, seed=config.seed,
                         batch_size=config.generation_batch_size, use_chat_template=config.use_chat_template)
    return [{"prompt": p, "response": r} for p, r in zip(prompts, responses)]


def write_generations(path: Path, rows: Optional[list[dict]]) -> None:
    if process_state().is_main_process:
        write_jsonl(path, rows)
    process_state().wait_for_everyone()


_TEMPLATE = re.compile(r"\{(\w+)\}")


def scorer_spec(config) -> dict:
    """The scorer spec with `{field}` in its string values filled from the run's config (plans fill only
    top-level strings). Braces naming no config field are the scorer's own, e.g. hf_reward's {prompt}."""
    values = to_dict(config)

    def fill(value):
        if not isinstance(value, str):
            return value
        return _TEMPLATE.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), value)

    return {k: fill(v) for k, v in config.scorer.items()}


class LazyScorer:
    """The run's scorer, loaded on first use on the main process only (a classifier can be large)."""

    def __init__(self, config):
        self.config = config
        self.scorer = None

    def score(self, rows: Optional[list[dict]], prompts: Sequence[str]) -> Optional[float]:
        """Scores each row in place (`score` key); returns the mean over rows with a score (main process).

        `prompts` are the dataset's prompts, without prompt_prefix/prompt_suffix: the rows hold the
        formatted prompts the model answered, and a scorer that wraps the prompt in its own template (the
        cost model's "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{response}") would otherwise
        read the template twice."""
        if rows is None:
            return None
        if self.scorer is None:
            self.scorer = SCORERS.make(scorer_spec(self.config))
        scores = self.scorer.score(list(prompts), [r["response"] for r in rows])
        for row, score in zip(rows, scores):
            row["score"] = score
        valid = [s for s in scores if s is not None]
        return sum(valid) / len(valid) if valid else None

    def close(self) -> None:
        if self.scorer is not None:
            self.scorer.close()
            self.scorer = None


# ----------------------------------------------------------------------------------------------
# The starting model: as named, or pre-trained here (the factor sweeps)


def starting_model(config, run_dir: Path) -> tuple[str, dict]:
    """Path of the model the run starts from and its facts (parameters, pre-training tokens)."""
    if not config.pretrain_tokens:
        return config.model, {"pretraining_tokens": config.pretraining_tokens_label or None}

    def pretrain(stage_dir: Path) -> dict:
        from common.models import load_tokenizer
        from tiny.corpus.mixtures import base_corpus_texts
        from tiny.pretrain import TinyModelSpec, pretrain_tiny_model

        tokenizer = load_tokenizer(config.model)
        texts = base_corpus_texts(config.pretrain_documents, config.seed)
        model = pretrain_tiny_model(TinyModelSpec(**config.pretrain_spec), tokenizer, texts,
                                    num_tokens=config.pretrain_tokens, seed=config.seed, lr=config.pretrain_lr)
        if process_state().is_main_process:
            save_model(model, tokenizer, stage_dir / MODEL_DIR)
        return {"num_parameters": model.num_parameters(), "pretraining_tokens": config.pretrain_tokens}

    facts = run_stage(run_dir / "pretrained", pretrain)
    return str(run_dir / "pretrained" / MODEL_DIR), {"pretraining_tokens": facts["pretraining_tokens"]}
