"""Seconds and peak memory per optimizer step of the harmful fine-tuning defenses: SFT, Vaccine, Booster,
T-Vaccine, RepNoise, Lisa, Panacea.

Each defense trains the same model on the same random-token SFT batches (Booster's harmful batch is
the same size) for `--steps` steps in a fresh subprocess; the step time is the median over the steps
after the first (warm-up), the peak memory that of training alone: `torch.cuda.max_memory_allocated`
on a GPU, else VmHWM after resetting it once the model and data are loaded. Expected ratios: Vaccine
about 2x SFT (two forward/backward passes; the first one stops at the hidden states), Booster about 3x
(three passes, plus two fp32 copies of the trainable gradients and one of the weights). T-Vaccine
draws a quarter of the layers (the paper's 8 of 32) and freezes the rest, so below Vaccine (its
re-scoring, every 200 steps, falls in the warm-up step here); RepNoise about 2.3-3x (f, a harmful forward
without gradient, a harmful forward+backward with the logit lens at every layer, plus the MLP outputs,
noise and MMD gradient of every layer); Lisa about 1x (one pass on alignment or user data, plus one copy
of the trainable weights, its proximal anchor); Panacea about 3x, like Booster (the passes at w and
w + eps, plus its eps in fp32).

    python scripts/bench_harmful_ft.py [--model PATH | --small] [--steps 6] [--batch_size 8] [--length 128]

Not a test: CI does not time anything. Record the printed table in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _random_models import random_llama  # noqa: E402
from bench_dpo import REPO, reset_peak_rss, rss_kib  # noqa: E402

DEFENSES = ("sft", "vaccine", "booster", "tvaccine", "repnoise", "lisa", "panacea")
FINETUNE_STAGE = ("lisa", "panacea")  # harmful_ft/lisa.py, harmful_ft/post_training.py: the finetune stage's


def make_any_strategy(name: str, config, harmful):
    """The alignment-stage defense `name`, or a finetune-stage one with the papers' strengths (FinetuneConfig's
    defaults); Lisa's alignment set is the harmful batch set (same sizes: only the cost is measured)."""
    if name not in FINETUNE_STAGE:
        from harmful_ft.defenses import make_strategy

        return make_strategy(name, config, harmful)
    import dataclasses

    from harmful_ft.config import FinetuneDefenseConfig
    from harmful_ft.lisa import LisaStrategy
    from harmful_ft.post_training import PanaceaStrategy

    for f in dataclasses.fields(FinetuneDefenseConfig):
        setattr(config, f.name, f.default)
    return (LisaStrategy if name == "lisa" else PanaceaStrategy)(config, harmful)


def examples(count: int, length: int, vocab: int, seed: int):
    import torch

    from common.data import PreferenceExample

    g = torch.Generator().manual_seed(seed)
    half = length // 2
    return [PreferenceExample(torch.randint(3, vocab, (half,), generator=g).tolist(),
                              torch.randint(3, vocab, (length - half,), generator=g).tolist(), None, i)
            for i in range(count)]


def run_defense(args) -> dict:
    import torch

    from common.models import load_model_and_tokenizer
    from common.trainer import Trainer, TrainerCallback
    from harmful_ft.config import AlignConfig
    model, tokenizer = load_model_and_tokenizer(args.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    vocab = model.config.vocab_size
    aligned = examples(args.steps * args.batch_size, args.length, vocab, 0)
    harmful = examples(args.steps * args.batch_size, args.length, vocab, 1)
    config = AlignConfig(model=args.model, objective="cross_entropy", optimizer="adamw", lr=1e-5,
                         batch_size=args.batch_size, max_steps=args.steps, shuffle=False, save_model=False,
                         precision="bf16" if device == "cuda" else "fp32",
                         tvaccine_layers=max(1, model.config.num_hidden_layers // 4))
    stamps = []

    class Clock(TrainerCallback):
        def on_train_begin(self, trainer):
            stamps.append(time.perf_counter())

        def on_step_end(self, trainer, step):
            if device == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, model, tokenizer, aligned, run_dir, callbacks=[Clock()],
                          strategy=make_any_strategy(args.defense, config, harmful))
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        before = rss_kib("VmRSS")
        reset_peak_rss()
        trainer.train()
    steps = [b - a for a, b in zip(stamps, stamps[1:])][1:]
    peak = torch.cuda.max_memory_allocated() / 1024 if device == "cuda" else rss_kib("VmHWM")
    return {"seconds_per_step": statistics.median(steps), "peak_kib": peak, "rss_before_kib": before,
            "device": device, "parameters": trainer.total_parameters}


def main() -> None:
    from tiny.build import tiny_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the tiny-base model")
    parser.add_argument("--small", action="store_true", help="a ~15M-parameter random Llama instead of tiny-base")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--length", type=int, default=128, help="tokens per example (half prompt, half response)")
    parser.add_argument("--defense", choices=DEFENSES, help=argparse.SUPPRESS)  # subprocess mode
    args = parser.parse_args()
    if args.small and not args.defense:
        args.model = random_llama(REPO / "outputs" / "bench_models" / "llama-15m", vocab_size=2293, hidden_size=512,
                                  intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8)
    args.model = args.model or tiny_model_path("tiny-base")

    if args.defense:
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
        print(json.dumps(run_defense(args)))
        return

    results = {}
    for defense in DEFENSES:
        out = subprocess.run([sys.executable, __file__, "--defense", defense, "--model", args.model, "--steps",
                              str(args.steps), "--batch_size", str(args.batch_size), "--length", str(args.length)],
                             capture_output=True, text=True, cwd=REPO, env={**os.environ, "WANDB_MODE": "disabled"})
        if out.returncode != 0:
            sys.exit(f"{defense} failed:\n{out.stderr[-3000:]}")
        results[defense] = json.loads(out.stdout.strip().splitlines()[-1])

    first = results["sft"]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; load average {os.getloadavg()[0]:.1f}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, device {first['device']}")
    print(f"model {args.model} ({first['parameters']:,} parameters), batch {args.batch_size} x {args.length} tokens, "
          f"{args.steps} steps (median of the last {args.steps - 1})")
    memory = "peak CUDA MiB" if first["device"] == "cuda" else "peak RSS MiB"
    print(f"| defense | s/step | x SFT | {memory} | x SFT |\n|---|---:|---:|---:|---:|")
    for defense, r in results.items():
        print(f"| {defense} | {r['seconds_per_step']:.3f} | {r['seconds_per_step'] / first['seconds_per_step']:.2f} | "
              f"{r['peak_kib'] / 1024:.0f} | {r['peak_kib'] / first['peak_kib']:.2f} |")


if __name__ == "__main__":
    main()
