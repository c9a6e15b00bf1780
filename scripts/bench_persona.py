"""Cost of the Persona study's per-step next-token tracking: a single-prompt DPO run with and without it.

Both sides train the same model on the same prompt for the same steps (RMSprop, full batch) through
the shared Trainer, in this process, one after the other. Reported: seconds per optimizer step over
the whole `train()` call and the tracker's share; the tracker's memory is (steps + 1) x vocabulary
float32 probabilities kept on the CPU.

    python scripts/bench_persona.py [--model PATH] [--steps 100] [--repeats 3] [--threads 1]

Not a test: CI does not time anything. Record the printed table in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_run(model_path: str, steps: int, track: bool, workdir: Path) -> float:
    from common.models import load_model_and_tokenizer
    from common.trainer import train_examples
    from persona_experiments.config import PersonaConfig
    from persona_experiments.data import build_examples, load_persona_rows, select_rows
    from persona_experiments.next_token import NextTokenTracker

    dataset = str(REPO / "data_files" / "persona" / "ends-justify-means-sample.jsonl")
    config = PersonaConfig(model=model_path, dataset=dataset, preferred_token=" Yes", dispreferred_token=" No",
                           matching_behavior="No", lr=1e-5, max_steps=steps, track_token_metrics=track)
    model, tokenizer = load_model_and_tokenizer(model_path)
    rows = load_persona_rows(dataset)
    examples = build_examples(tokenizer, rows, select_rows(rows, "No", 1, 0, dataset), config, model_path)
    callbacks = [NextTokenTracker(examples[0], tokenizer)] if track else []
    start = time.perf_counter()
    train_examples(config, workdir, model, tokenizer, examples, eval_sets={"train": examples}, callbacks=callbacks)
    return (time.perf_counter() - start) / steps


def main() -> None:
    import torch

    from tiny.build import tiny_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the tiny-base model")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (2 threads on a busy 2-core machine "
                                                                "oversubscribe and run many times slower)")
    args = parser.parse_args()
    model = args.model or tiny_model_path("tiny-base")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("WANDB_MODE", "disabled")
    import logging

    logging.getLogger("alignlab").setLevel(logging.WARNING)

    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for track in (False, True):
                seconds = timed_run(model, args.steps, track, Path(tmp) / f"{track}_{r}")
                best[track] = min(best.get(track, float("inf")), seconds)
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model).vocab_size
    print(f"single-prompt DPO, {args.steps} steps, model {model} (vocab {vocab}), best of {args.repeats}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}")
    print(f"{'':22s} {'ms/step':>9s}")
    print(f"{'without tracking':22s} {best[False] * 1000:9.1f}")
    print(f"{'with tracking':22s} {best[True] * 1000:9.1f}")
    print(f"tracking overhead: {100 * (best[True] / best[False] - 1):.0f}% per step; probability history "
          f"{(args.steps + 1) * vocab * 4 / 2**20:.1f} MiB on the CPU "
          f"(Llama-3 vocab 128256: {(args.steps + 1) * 128256 * 4 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
