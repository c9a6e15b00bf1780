"""SFT step time and peak memory: AdamW (backward + optimizer state) against MeZO, TeZO and TeZO-Adam (two
forwards, no backward; TeZO-Adam keeps Adam moments on its rank-r coefficients only).

All train the same randomly initialised Llama (seeded) on the same batch of random token ids with
the shared trainer (objective cross_entropy, full parameters, fp32), each in a fresh subprocess.
Reported per optimizer: seconds per step over `train()` and the peak resident memory during it
(VmHWM, reset once the model and data are loaded), with its growth over the memory before training; on a
GPU (the trainer picks it) also torch.cuda.max_memory_allocated over train().

    python scripts/bench_zo.py [--steps 20] [--batch_size 8] [--length 128] [--hidden 512] [--layers 4] [--rank 8]
        [--optimizers adamw mezo tezo tezo_adam]

Not a test: CI does not time anything. Record the printed table in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# lr: MeZO's full-parameter grid (STUDIES.md) for the ZO-SGDs; TeZO-Adam's steps are Adam-normalised, as AdamW's
OPTIMIZERS = {"adamw": 1e-5, "mezo": 1e-6, "tezo": 1e-6, "tezo_adam": 1e-5}


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(args) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from common.config import TrainConfig
    from common.data import PreferenceExample
    from common.trainer import Trainer

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=4096, hidden_size=args.hidden, intermediate_size=3 * args.hidden,
                                         num_hidden_layers=args.layers, num_attention_heads=8,
                                         max_position_embeddings=2 * args.length, tie_word_embeddings=False))
    g = torch.Generator().manual_seed(1)
    half = args.length // 2
    examples = [PreferenceExample(torch.randint(1, 4096, (half,), generator=g).tolist(),
                                  torch.randint(1, 4096, (half,), generator=g).tolist(), None, i)
                for i in range(args.batch_size)]
    config = TrainConfig(model="random", objective="cross_entropy", optimizer=args.worker, lr=OPTIMIZERS[args.worker],
                         batch_size=args.batch_size, max_steps=args.steps, shuffle=False, max_length=args.length,
                         tezo_rank=args.rank)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, model, types.SimpleNamespace(pad_token_id=0), examples, run_dir)
        before = rss_mib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak of training alone
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        summary = trainer.train()
        seconds = time.perf_counter() - t0
    return {"optimizer": args.worker, "parameters": trainer.trainable_parameters,
            "seconds_per_step": seconds / args.steps, "peak_rss_mib": rss_mib("VmHWM"),
            "rss_growth_mib": rss_mib("VmHWM") - before,
            "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "final_loss": summary["train"]["loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--length", type=int, default=128, help="tokens per example (half prompt, half response)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8, help="tezo_rank of TeZO and TeZO-Adam")
    parser.add_argument("--optimizers", nargs="+", choices=list(OPTIMIZERS), default=list(OPTIMIZERS))
    parser.add_argument("--worker", choices=list(OPTIMIZERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    load = os.getloadavg()[0]
    print("| optimizer | s/step | peak RSS MiB | RSS growth in train() MiB | CUDA peak MiB | final loss |\n"
          "|---|---:|---:|---:|---:|---:|", flush=True)
    for name in args.optimizers:  # each row as soon as its worker ends: a slow machine still leaves figures
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--worker", name], env=env, check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        cuda = "-" if r["cuda_peak_mib"] is None else f"{r['cuda_peak_mib']:.0f}"
        print(f"| {r['optimizer']} | {r['seconds_per_step']:.3f} | {r['peak_rss_mib']:.0f} "
              f"| {r['rss_growth_mib']:.0f} | {cuda} | {r['final_loss']:.4f} |", flush=True)
    print(f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; {r['parameters']:,} "
          f"parameters, batch {args.batch_size} x {args.length} tokens, {args.steps} steps, TeZO rank {args.rank}")

if __name__ == "__main__":
    main()
