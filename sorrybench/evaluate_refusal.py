"""Refusal rates of one or more models on the train and test prompts of a preference set.

    python -m sorrybench.evaluate_refusal --models google/gemma-2b-it meta-llama/Meta-Llama-3-8B-Instruct \\
        --dataset_path outputs/sorrybench/datasets/google__gemma-2b-it --output_dir outputs/sorrybench/refusal_rates

One response per prompt is sampled (temperature 0.7) from every model in turn; the judge is loaded
once, after the last model is freed, and scores them all. Per model, `output_dir/<model name>/` gets
refusal_rates.json and responses_{train,test}.jsonl; a model measured before is skipped (--force
measures it again).
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from common.cli import exit_on_user_error, parse_options
from common.config import option
from common.models import free_memory, load_for_inference
from common.registry import SCORERS, parse_spec
from common.tracking import logger, setup_console_logging
from sorrybench.data import model_dir_name, split_prompts
from sorrybench.refusal import (
    SamplingOptions,
    SamplingSettings,
    flatten,
    format_rate,
    judge_responses,
    read_rates,
    sample_responses,
    write_refusal_results,
)


@dataclass(kw_only=True)
class EvaluateRefusalOptions(SamplingOptions):
    models: list[str] = option(help="hub ids or paths of the models to evaluate")
    dataset_path: str = option(help="directory with train.jsonl and test.jsonl")
    output_dir: str = option("outputs/sorrybench/refusal_rates")
    judge: str = option("sorrybench_judge", help="scorer name or JSON spec (keyword_refusal offline)")
    force: bool = option(False, help="measure models that already have results again")


def sample_model(name: str, prompts: list[str], settings: SamplingSettings, args) -> list[str]:
    model, tokenizer = load_for_inference(name, dtype=args.dtype, device=args.device,
                                          trust_remote_code=args.trust_remote_code)
    logger.info(f"{name}: sampling {len(prompts)} responses")
    responses = [r for _, r in sample_responses(model, tokenizer, prompts, settings)]
    del model
    free_memory()
    return responses


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_options("python -m sorrybench.evaluate_refusal", __doc__.splitlines()[0], EvaluateRefusalOptions,
                         argv)
    setup_console_logging()
    judge_spec = parse_spec(args.judge)
    SCORERS.check(judge_spec)
    prompts_by_split = split_prompts(args.dataset_path, args.max_prompts)
    prompts = [row["prompt"] for _, row in flatten(prompts_by_split)]
    settings = SamplingSettings(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                                batch_size=args.batch_size, seed=args.seed)
    out_dirs = {name: Path(args.output_dir) / model_dir_name(name) for name in args.models}
    pending = {name: sample_model(name, prompts, settings, args) for name in args.models
               if args.force or read_rates(out_dirs[name]) is None}
    if pending:
        judge = SCORERS.make(judge_spec)
        try:
            for name, responses in pending.items():
                rates, rows = judge_responses(judge, prompts_by_split, responses)
                write_refusal_results(out_dirs[name], rates, rows, model=name, dataset_path=args.dataset_path,
                                      judge=judge_spec, settings=asdict(settings))
        finally:
            judge.close()
    print(f"{'model':50s} {'train':>8s} {'test':>8s}  unparseable  (judge: {judge_spec})")
    for name in args.models:
        rates = read_rates(out_dirs[name])
        unparseable = sum(r["num_unparseable"] for r in rates.values())
        print(f"{name:50s} {format_rate(rates['train']['refusal_rate']):>8s} "
              f"{format_rate(rates['test']['refusal_rate']):>8s}  {unparseable:>11d}"
              + ("" if name in pending else "  (earlier result)"))


if __name__ == "__main__":
    main(sys.argv[1:])
