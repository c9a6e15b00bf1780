"""Refusal rates: one sampled response per prompt, judged; refusal rate = 1 - mean judge score.

Used by `python -m sorrybench.evaluate_refusal` and, through `RefusalEvaluation`, before and after
every training run. A split's rate averages the parseable judgments; unparseable ones are counted
(`num_unparseable`) and left out of the mean. Sampling is seeded, and before/after use the same
seed so the two measurements share their random numbers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from common.config import FieldError, option
from common.generation import generate
from common.models import free_memory
from common.registry import SCORERS
from common.tracking import logger, read_json, write_json, write_jsonl
from common.trainer import TrainerCallback

RATES_FILE = "refusal_rates.json"


@dataclass
class SamplingSettings:
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 512
    batch_size: int = 16
    seed: int = 0
    use_chat_template: Optional[bool] = None


@dataclass
class SamplingOptions:
    """The sampling flags of create_dataset and evaluate_refusal, checked before any model loads."""

    temperature: float = option(0.7, min=0)
    top_p: float = option(1.0, min=0, min_exclusive=True, max=1)
    max_new_tokens: int = option(512, min=1)
    batch_size: int = option(16, min=1, help="prompts per generation batch")
    seed: int = option(0)
    max_prompts: int = option(-1, help="use the first N prompts (of each split); -1 = all")
    dtype: str = option("bfloat16" if torch.cuda.is_available() else "float32",
                        choices=["float32", "bfloat16", "float16"])
    device: Optional[str] = option(None, help="device of the sampled model(s) (default: cuda if available)")
    trust_remote_code: bool = option(False)

    def validate(self) -> None:
        if self.max_prompts == 0 or self.max_prompts < -1:
            raise FieldError("max_prompts", f"expected -1 (all) or a positive count, got {self.max_prompts}")


def flatten(prompts_by_split: dict[str, Sequence[dict]]) -> list[tuple[str, dict]]:
    return [(split, row) for split, rows in prompts_by_split.items() for row in rows]


def sample_responses(model, tokenizer, prompts: Sequence[str], settings: SamplingSettings, *, rank: int = 0,
                     world: int = 1) -> list[tuple[int, str]]:
    """(index, response) for this process's share of `prompts` (indices rank, rank + world, ...)."""
    mine = list(range(rank, len(prompts), world))
    responses = generate(model, tokenizer, [prompts[i] for i in mine], max_new_tokens=settings.max_new_tokens,
                         temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed + rank,
                         batch_size=settings.batch_size, use_chat_template=settings.use_chat_template)
    return list(zip(mine, responses))


def refusal_rate(scores: Sequence[Optional[float]]) -> Optional[float]:
    judged = [s for s in scores if s is not None]
    return 1.0 - sum(judged) / len(judged) if judged else None


def judge_responses(judge, prompts_by_split: dict[str, Sequence[dict]], responses: Sequence[str]
                    ) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Rates per split and the judged rows; `responses` follows `flatten(prompts_by_split)`."""
    items = flatten(prompts_by_split)
    scores = judge.score([row["prompt"] for _, row in items], list(responses)) if items else []
    rows: dict[str, list[dict]] = {split: [] for split in prompts_by_split}
    for (split, row), response, score in zip(items, responses, scores):
        rows[split].append({"question_id": row["question_id"], "prompt": row["prompt"], "response": response,
                            "score": score})
    rates = {}
    for split, judged in rows.items():
        split_scores = [r["score"] for r in judged]
        rates[split] = {"refusal_rate": refusal_rate(split_scores), "num_prompts": len(judged),
                        "num_unparseable": sum(s is None for s in split_scores)}
    return rates, rows


def write_refusal_results(out_dir: Union[str, Path], rates: dict, rows: dict, **info) -> None:
    out_dir = Path(out_dir)
    for split, judged in rows.items():
        write_jsonl(out_dir / f"responses_{split}.jsonl", judged)
    write_json(out_dir / RATES_FILE, {**info, "rates": rates})  # last: its presence marks a finished measurement


def read_rates(out_dir: Union[str, Path]) -> Optional[dict]:
    path = Path(out_dir) / RATES_FILE
    return read_json(path)["rates"] if path.exists() else None


def format_rate(rate: Optional[float]) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


def release_training_memory(trainer) -> None:
    """After the last step the optimizer state and gradients are dead weight: free them before the judge loads."""
    trainer.optimizer.zero_grad(set_to_none=True)
    getattr(trainer.optimizer, "optimizer", trainer.optimizer).state.clear()
    free_memory()


class RefusalEvaluation(TrainerCallback):
    """Refusal rates of the policy before and after training, in run_dir/refusal_{before,after}/.

    Every process samples its share of the prompts; the main process gathers the responses, loads the
    judge (only now, after sampling and after the optimizer state is freed), scores, closes it and
    logs `{"kind": "refusal", "split", "step", "phase", "refusal_rate", ...}` records. A resumed run
    keeps the "before" measurement it already has.
    """

    def __init__(self, prompts_by_split: dict[str, Sequence[dict]], judge: Union[str, dict],
                 settings: SamplingSettings):
        self.prompts_by_split, self.judge, self.settings = prompts_by_split, judge, settings
        self.before: Optional[dict] = None

    def on_train_begin(self, trainer) -> None:
        self.before = self.measure(trainer, "before", 0)

    def on_train_end(self, trainer) -> dict:
        release_training_memory(trainer)
        after = self.measure(trainer, "after", trainer.step)
        return {"refusal_before": self.before, "refusal_after": after} if trainer.is_main else {}

    def measure(self, trainer, phase: str, step: int) -> Optional[dict]:
        out_dir = trainer.run_dir / f"refusal_{phase}"
        done = read_rates(out_dir)
        if done is not None:
            return done
        from accelerate.utils import gather_object

        items = flatten(self.prompts_by_split)
        logger.info(f"refusal rate {phase} training: sampling {len(items)} responses")
        shard = sample_responses(trainer.model, trainer.tokenizer, [row["prompt"] for _, row in items],
                                 self.settings, rank=trainer.rank, world=trainer.world)
        gathered = dict(gather_object(shard)) if trainer.world > 1 else dict(shard)
        rates = None
        if trainer.is_main:
            judge = SCORERS.make(self.judge)
            try:
                rates, rows = judge_responses(judge, self.prompts_by_split, [gathered[i] for i in range(len(items))])
            finally:
                judge.close()
            write_refusal_results(out_dir, rates, rows, judge=self.judge, settings=asdict(self.settings), step=step)
            for split, rate in rates.items():
                trainer.log({"kind": "refusal", "split": split, "step": step, "phase": phase, **rate})
                logger.info(f"refusal rate {phase} ({split}): {format_rate(rate['refusal_rate'])} "
                            f"of {rate['num_prompts']} prompts ({rate['num_unparseable']} unparseable)")
        trainer.accelerator.wait_for_everyone()
        return rates
