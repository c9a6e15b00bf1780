"""SORRY-Bench refusal evaluation throughput: batched sampling and judging against one prompt at a time.

The public scripts sample and judge one prompt at a time; the study batches both (left padding,
length-sorted batches). This times, on the tiny chat model, one sampled response per prompt
(temperature 0.7, as the refusal evaluation) and the causal-LM judge (greedy, 8 new tokens; the tiny
chat model stands in for the 7B judge, so only the speed means something), at several batch sizes.

    python scripts/bench_sorrybench.py [--model outputs/tiny_models/tiny-chat] [--prompts 64]

Not a test: CI does not time anything. Record the printed table in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from common.generation import generate
from common.judges import CausalLMJudge
from common.models import load_model_and_tokenizer
from sorrybench.data import load_prompts

REPO = Path(__file__).resolve().parents[1]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "outputs/tiny_models/tiny-chat"))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest for tiny models on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts = [p["prompt"] for p in load_prompts(str(REPO / "data_files/sorrybench/prompts_sample.jsonl"),
                                                 max_prompts=args.prompts)]
    model, tokenizer = load_model_and_tokenizer(args.model)
    judge = CausalLMJudge(model=args.model, device="cpu")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"{len(prompts)} prompts, {args.max_new_tokens} new tokens")
    print("| stage | batch size | seconds | prompts/s | new tokens/s |\n|---|---|---|---|---|")
    responses = None
    for batch_size in args.batch_sizes:
        responses, seconds = timed(lambda: generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens,
                                                    temperature=0.7, batch_size=batch_size, progress=False))
        tokens = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses)
        print(f"| sample (T=0.7) | {batch_size} | {seconds:.2f} | {len(prompts) / seconds:.1f} "
              f"| {tokens / seconds:.0f} |")
    for batch_size in args.batch_sizes:
        judge.batch_size = batch_size
        _, seconds = timed(lambda: judge.score(prompts, responses))
        print(f"| causal-LM judge (greedy) | {batch_size} | {seconds:.2f} | {len(prompts) / seconds:.1f} | - |")


if __name__ == "__main__":
    main()
