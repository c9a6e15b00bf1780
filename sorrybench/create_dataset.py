"""Build a refusal preference set from the model's own samples on SORRY-Bench (Section 6.1).

    python -m sorrybench.create_dataset --model google/gemma-2b-it --use_rm --seed 128
    python -m sorrybench.create_dataset --model outputs/tiny_models/tiny-chat --judge keyword_refusal \\
        --prompts data_files/sorrybench/prompts_sample.jsonl --max_new_tokens 48 \\
        --human_judgments data_files/sorrybench/human_judgments_sample.jsonl
    python -m sorrybench.create_dataset --output_dir DIR --human_judgments FILE   # gold files of an existing set

The model samples two responses per prompt (temperature 1, top_p 1); the judge scores both; the
refusal is preferred, ties go to the reward model (--use_rm) or a seeded coin (see
sorrybench/preferences.py); a seeded 85/15 split gives train.jsonl / test.jsonl. With
--human_judgments, gold pairs (a human-judged refusal over a human-judged compliance) of the same
prompts go to gold_train.jsonl / gold_test.jsonl. Also written: samples.jsonl (every sample with
its judge score) and summary.json (counts of refusals, ties and unparseable judgments).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from common.cli import exit_on_user_error, parse_options
from common.config import FieldError, option
from common.errors import ConfigError
from common.generation import generate
from common.judges import DEFAULT_JUDGE
from common.models import free_memory, load_for_inference
from common.registry import SCORERS, parse_spec
from common.tie_breaking import make_tie_breaker
from common.tracking import logger, read_json, setup_console_logging, write_json, write_jsonl
from sorrybench.data import (
    GOLD_PREFIX,
    HUMAN_JUDGMENTS,
    SORRY_BENCH,
    SPLITS,
    load_human_judgments,
    load_prompts,
    model_dir_name,
    read_preference_split,
)
from sorrybench.preferences import (
    SPLIT_METHODS,
    build_preferences,
    gold_covered,
    gold_preferences,
    split_rows,
    test_size,
)
from sorrybench.refusal import SamplingOptions

DEFAULT_OUTPUT_ROOT = Path("outputs/sorrybench/datasets")


@dataclass(kw_only=True)
class CreateDatasetOptions(SamplingOptions):
    model: Optional[str] = option(None, help="hub id or path of the chat model that samples the responses "
                                             "(leave out to only build gold files for an existing --output_dir)")
    judge: str = option("sorrybench_judge", help=f"scorer name or JSON spec (default: sorrybench_judge = "
                                                 f"{DEFAULT_JUDGE}); keyword_refusal is the offline stand-in")
    use_rm: bool = option(False, help="break ties with --reward_model instead of a seeded coin")
    reward_model: str = option("pairrm", help='"pairrm" (llm-blender/PairRM) or a scorer JSON spec, e.g. '
                                              '\'{"type": "hf_reward_model", "model": "..."}\'')
    seed: int = option(128, help="seeds sampling, tie-breaking, the split and gold picks")
    prompts: str = option(SORRY_BENCH, help="SORRY-Bench hub id or a local jsonl in its schema")
    prompts_split: str = option("train")
    prompt_style: str = option("base", help='keep rows of this prompt_style ("" = all)')
    test_fraction: float = option(0.15, help="share of the prompts in test.jsonl (between 0 and 1)")
    human_judgments: Optional[str] = option(None, help=f"human-judgment jsonl or hub id (e.g. {HUMAN_JUDGMENTS}) "
                                                       "for gold pairs")
    human_judgments_splits: list[str] = option(["train", "test"], help="hub splits of the human judgments to "
                                                                       "pool (the paper pools both)")
    keep_prompts_without_gold: bool = option(False, help="with --human_judgments, keep the prompts that lack a "
                                                         "judged refusal or compliance (the public code drops "
                                                         "them before splitting, so every setting trains on "
                                                         "gold-covered prompts)")
    split_method: str = option("randperm", choices=list(SPLIT_METHODS),
                               help="randperm: torch.randperm and int(test_fraction n) test prompts (the public "
                                    "code); shuffle: random.Random shuffle, rounded")
    temperature: float = option(1.0, min=0)
    output_dir: Optional[str] = option(None, help=f"default: {DEFAULT_OUTPUT_ROOT}/<model name>")
    force: bool = option(False, help="overwrite an existing preference set")

    def validate(self) -> None:
        if not self.model and not (self.output_dir and self.human_judgments):
            raise FieldError("model", "give --model to build a preference set, or --output_dir and "
                                      "--human_judgments to add gold pairs to an existing one")
        super().validate()
        if not 0 < self.test_fraction < 1:
            raise FieldError("test_fraction", f"must be between 0 and 1, got {self.test_fraction}")


def check_args(args: CreateDatasetOptions) -> Path:
    out = Path(args.output_dir) if args.output_dir else DEFAULT_OUTPUT_ROOT / model_dir_name(args.model)
    if args.model:
        args.judge = parse_spec(args.judge)
        SCORERS.check(args.judge)
        args.reward_model = parse_spec(args.reward_model)
        make_tie_breaker(args.reward_model if args.use_rm else None, args.seed)  # validates the spec, loads nothing
        if (out / "train.jsonl").exists() and not args.force:
            raise ConfigError(f"{out}: already holds a preference set; pass --force to overwrite it "
                              f"or choose another --output_dir")
    return out


def sample_pairs(args, prompts: list[dict]) -> tuple[list[str], list[str]]:
    """Two samples per prompt, in one batched, seeded generate call."""
    model, tokenizer = load_for_inference(args.model, dtype=args.dtype, device=args.device,
                                          trust_remote_code=args.trust_remote_code)
    texts = [p["prompt"] for p in prompts]
    logger.info(f"sampling 2 x {len(texts)} responses from {args.model}")
    responses = generate(model, tokenizer, texts + texts, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_p=args.top_p, seed=args.seed, batch_size=args.batch_size)
    del model  # free the sampler before the judge loads
    free_memory()
    return responses[:len(texts)], responses[len(texts):]


def judge_pairs(judge_spec, prompts: list[dict], first: list[str], second: list[str]):
    judge = SCORERS.make(judge_spec)
    try:
        texts = [p["prompt"] for p in prompts]
        scores = judge.score(texts + texts, first + second)
    finally:
        judge.close()
    return scores[:len(texts)], scores[len(texts):]


def check_split_sizes(args, num_prompts: int, prompts_without_gold: int) -> None:
    """A run trains on train.jsonl and evaluates on test.jsonl: both must get prompts."""
    size = test_size(num_prompts, args.test_fraction, args.split_method)
    if not 0 < size < num_prompts:
        dropped = f" ({prompts_without_gold} without gold pairs dropped)" if prompts_without_gold else ""
        raise ConfigError(f"--test_fraction {args.test_fraction} of {num_prompts} prompts{dropped} leaves the "
                          f"{'test' if size == 0 else 'train'} split empty; use more prompts or change it")


def read_judgments(args) -> list[dict]:
    """The pooled judgments of --human_judgments_splits (a local file is one split: read once)."""
    local_file = Path(args.human_judgments).suffix in (".jsonl", ".json")
    splits = args.human_judgments_splits[:1] if local_file else args.human_judgments_splits
    return [j for split in splits for j in load_human_judgments(args.human_judgments, split=split)]


def build_gold(args, out: Path, splits: dict[str, list[dict]], judgments: list[dict]) -> dict:
    gold, counts = gold_preferences(judgments, splits, args.seed, source=args.human_judgments)
    for split, rows in gold.items():
        write_jsonl(out / f"{GOLD_PREFIX}{split}.jsonl", rows)
    return {"human_judgments": args.human_judgments, **counts}


def create(args, out: Path) -> dict:
    prompts = load_prompts(args.prompts, split=args.prompts_split, prompt_style=args.prompt_style,
                           max_prompts=args.max_prompts)
    # Read (and check) the judgments before sampling: a bad file must not cost the sampling and judging
    # and leave train.jsonl without its gold files.
    judgments = read_judgments(args) if args.human_judgments else None
    if judgments is not None and not args.keep_prompts_without_gold:
        covered = gold_covered(judgments)
        prompts_without_gold = sum(p["question_id"] not in covered for p in prompts)
        prompts = [p for p in prompts if p["question_id"] in covered]
    else:
        prompts_without_gold = 0
    check_split_sizes(args, len(prompts), prompts_without_gold)
    first, second = sample_pairs(args, prompts)
    first_scores, second_scores = judge_pairs(args.judge, prompts, first, second)
    write_jsonl(out / "samples.jsonl", [
        {"question_id": p["question_id"], "prompt": p["prompt"], "responses": [a, b], "scores": [sa, sb]}
        for p, a, b, sa, sb in zip(prompts, first, second, first_scores, second_scores)])
    tie_breaker = make_tie_breaker(args.reward_model if args.use_rm else None, args.seed)
    try:
        rows, counts = build_preferences(prompts, first, second, first_scores, second_scores, tie_breaker)
    finally:
        tie_breaker.close()
    train, test = split_rows(rows, args.test_fraction, args.seed, args.split_method)
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "test.jsonl", test)
    summary = {"model": args.model, "prompts": args.prompts, "prompt_style": args.prompt_style, "judge": args.judge,
               "reward_model": args.reward_model if args.use_rm else None, "seed": args.seed,
               "sampling": {"temperature": args.temperature, "top_p": args.top_p,
                            "max_new_tokens": args.max_new_tokens},
               "test_fraction": args.test_fraction, "split_method": args.split_method, "train": len(train),
               "test": len(test), "prompts_dropped_without_gold": prompts_without_gold, **counts}
    if args.human_judgments:
        summary["gold"] = build_gold(args, out, {"train": train, "test": test}, judgments)
    return summary


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_options("python -m sorrybench.create_dataset", __doc__.splitlines()[0], CreateDatasetOptions, argv)
    setup_console_logging()
    out = check_args(args)
    if args.model:
        summary = create(args, out)
    else:  # gold files for an existing preference set
        splits = {split: read_preference_split(out, split)[0] for split in SPLITS}
        summary = read_json(out / "summary.json") if (out / "summary.json").exists() else {}
        summary["gold"] = build_gold(args, out, splits, read_judgments(args))
    write_json(out / "summary.json", summary)
    print(describe(summary, out))


def describe(summary: dict, out: Path) -> str:
    lines = [f"preference set: {out}"]
    if "samples" in summary:
        lines += [f"  samples: {summary['samples']} ({summary['refusals']} refusals, {summary['compliances']} "
                  f"compliances, {summary['unparseable']} unparseable judgments)",
                  f"  pairs: {summary['prompts']} {summary['pair_kinds']}; ties: {summary['ties']} "
                  f"(broken by {summary['tie_breaker']})",
                  f"  split: {summary['train']} train / {summary['test']} test (seed {summary['seed']})"]
    if "gold" in summary:
        g = summary["gold"]
        lines.append(f"  gold: {g['gold_train']} train / {g['gold_test']} test; prompts without a refusal: "
                     f"{g['prompts_without_refusal']}, without a compliance: {g['prompts_without_compliance']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
