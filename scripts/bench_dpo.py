"""DPO training throughput and peak memory: our Trainer against TRL's DPOTrainer, side by side.

Both train the same model on the same preference pairs (each seen once), batch size, optimizer
(AdamW), learning rate and number of steps, in fresh subprocesses on this machine. Reported per side: real (non-padding)
tokens per second over the whole `train()` call (our reference pass included), the peak resident
memory during training (VmHWM after resetting it once the model and data are loaded) and its growth
over the resident memory before training.

    python scripts/bench_dpo.py [--model PATH | --small] [--steps 60] [--batch_size 8]

`--small` uses a randomly initialised 4-layer, 512-wide Llama (~15M parameters) with the tiny
tokenizer, where compute rather than Python overhead dominates.

Not a test: CI does not time anything. Record the printed table in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Writing 5 to clear_refs resets VmHWM (Linux), so the peak is that of training alone."""
    Path("/proc/self/clear_refs").write_text("5")


def small_model(out_dir: Path) -> str:
    """A ~15M-parameter random Llama with the tiny tokenizer, saved once (seeded)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tiny.build import tiny_model_path

    if not (out_dir / "model.safetensors").exists():
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path("tiny-base"))
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
                             num_attention_heads=8, max_position_embeddings=512, tie_word_embeddings=False,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        LlamaForCausalLM(config).save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return str(out_dir)


def bench_pairs(n: int) -> list[dict]:
    from pref_similarity.fixtures import plain_rows

    return plain_rows(n, seed=0)


def run_ours(args) -> dict:
    import torch

    from common.data import tokenize_preference
    from common.models import load_model_and_tokenizer
    from common.trainer import Trainer
    from train_preferences.config import PreferenceRunConfig

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(args.model)
    examples = [tokenize_preference(tokenizer, r["prompt"], r["chosen"], r["rejected"], index=i)
                for i, r in enumerate(bench_pairs(args.pairs))]
    config = PreferenceRunConfig(model=args.model, dataset="-", objective="dpo", beta=0.1, optimizer="adamw",
                                 lr=1e-5, batch_size=args.batch_size, max_steps=args.steps, shuffle=False)
    trainer = Trainer(config, model, tokenizer, examples, Path(args.workdir) / "ours")
    before = rss_kib("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_before_kib": before, "peak_rss_kib": rss_kib("VmHWM"),
            "tokens": sum(2 * len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in examples)}


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from common.models import load_model_and_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(args.model)
    rows = bench_pairs(args.pairs)
    dataset = Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                                 for r in rows])
    config = DPOConfig(output_dir=str(Path(args.workdir) / "trl"), per_device_train_batch_size=args.batch_size,
                       gradient_accumulation_steps=1, learning_rate=1e-5, lr_scheduler_type="constant",
                       max_steps=args.steps, beta=0.1, loss_type=["sigmoid"], report_to=[], save_strategy="no",
                       logging_steps=args.steps, use_cpu=True, dataloader_num_workers=0, max_length=1024,
                       seed=0, disable_tqdm=True,
                       bf16=False)  # TRL defaults to bf16 autocast; both sides train in fp32 here
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    before = rss_kib("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_before_kib": before, "peak_rss_kib": rss_kib("VmHWM")}


def main() -> None:
    from tiny.build import tiny_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the tiny-base model")
    parser.add_argument("--small", action="store_true", help="a ~15M-parameter random Llama instead of tiny-base")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "bench_dpo"))
    parser.add_argument("--side", choices=["ours", "trl"], help=argparse.SUPPRESS)  # subprocess mode
    args = parser.parse_args()
    if args.small and not args.side:
        args.model = small_model(REPO / "outputs" / "bench_models" / "llama-15m")
    args.model = args.model or tiny_model_path("tiny-base")
    args.pairs = args.steps * args.batch_size  # every pair is seen once, so both sides process the same tokens

    if args.side:
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
        print(json.dumps((run_ours if args.side == "ours" else run_trl)(args)))
        return

    results = {}
    for side in ("ours", "trl"):
        out = subprocess.run([sys.executable, __file__, "--side", side, "--model", args.model, "--steps",
                              str(args.steps), "--batch_size", str(args.batch_size),
                              "--workdir", args.workdir], capture_output=True, text=True, cwd=REPO,
                             env={**os.environ, "WANDB_MODE": "disabled"})
        if out.returncode != 0:
            sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
        results[side] = json.loads(out.stdout.strip().splitlines()[-1])

    # Both sides process the same pairs once; tokens are counted with our tokenization (prompt + response + EOS).
    results["trl"]["tokens"] = results["ours"]["tokens"]
    print(f"DPO, {args.steps} steps x batch {args.batch_size}, model {args.model}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads 2")
    print(f"{'':10s} {'tokens/s':>10s} {'peak RSS MiB':>13s} {'growth MiB':>11s} {'seconds':>8s}")
    for side, r in results.items():
        print(f"{side:10s} {r['tokens'] / r['seconds']:10.0f} {r['peak_rss_kib'] / 1024:13.1f} "
              f"{(r['peak_rss_kib'] - r['rss_before_kib']) / 1024:11.1f} {r['seconds']:8.2f}")
    ours, trl = results["ours"], results["trl"]
    print(f"throughput ratio ours/TRL: {(ours['tokens'] / ours['seconds']) / (trl['tokens'] / trl['seconds']):.2f}x; "
          f"peak memory ratio ours/TRL: {ours['peak_rss_kib'] / trl['peak_rss_kib']:.2f}")


if __name__ == "__main__":
    main()
