"""DPO training throughput, peak memory and MFU: our Trainer against TRL's DPOTrainer at its strongest.

Three sides train the same model on the same preference pairs (each seen once), batch size, optimizer
(AdamW), learning rate and number of steps, each in a fresh subprocess (so its peak RSS is its own):
- ours: common.trainer.Trainer (reference log-probs computed once, in `train()`);
- trl: TRL's DPOTrainer with its defaults (a reference forward every step), fp32;
- trl_precompute: the same with `precompute_ref_log_probs=True` (one reference pass before training).
Each side is timed from building its trainer (TRL tokenizes and precomputes there) to the end of
`train()`. Reported per side: real (non-padding) tokens per second, peak resident memory (VmHWM, reset
once the model is loaded) and model FLOPs utilisation (MFU):
    useful FLOPs = 6 x non-embedding params x tokens + 6 x LM-head params x scored completion tokens,
    MFU = useful FLOPs / seconds / the fp32 matmul FLOP/s measured in this run (best of a timed
    2048^3 matmul with the same threads).
Then the ratios against TRL's strongest (faster) side; with `--share_prompt`, ours is the faster of our two sides.

    python scripts/bench_dpo.py [--vocab 32000 | --model PATH] [--steps 10] [--batch_size 8] [--threads 2]
    python scripts/bench_dpo.py --prompt_words 300 --share_prompt   # long prompts; a 4th side: share_prompt
    python scripts/bench_dpo.py --fsdp [--vocab 32000] [--steps 6]

The default model is a random 4-layer, 512-wide Llama (scripts/_random_models.py) with a --vocab-token
LM head and the tiny tokenizer. `--fsdp` instead runs our trainer under 2 CPU processes (torchrun,
gloo, 1 thread each) twice, as DDP and with `fsdp: true`, and reports each process's peak RSS (with
glibc's mmap threshold at 64 KiB, so that freed tensors leave the resident set).

Not a test: CI does not time anything. Record the printed figures in docs/BENCHMARKS.md.
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
from pathlib import Path

from _random_models import random_llama  # scripts/, this file's directory

REPO = Path(__file__).resolve().parents[1]
SIDES = ("ours", "trl", "trl_precompute")


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Writing 5 to clear_refs resets VmHWM (Linux), so the peak is that of training alone."""
    Path("/proc/self/clear_refs").write_text("5")


def bench_pairs(n: int, prompt_words: int = 0) -> list[dict]:
    """n preference pairs; with prompt_words, each prompt starts with the same context of that many words of
    tiny-corpus text (long prompts against short completions, as in multi-turn or RAG preference data)."""
    from pref_similarity.fixtures import plain_rows
    from tiny.corpus.mixtures import base_corpus_texts

    rows = plain_rows(n, seed=0)
    if prompt_words:
        context = " ".join(" ".join(base_corpus_texts(200, seed=3)).split()[:prompt_words])
        rows = [{**r, "prompt": f"{context}\n\n{r['prompt']}"} for r in rows]
    return rows


def our_examples(tokenizer, n: int, prompt_words: int = 0):
    from common.data import tokenize_preference

    return [tokenize_preference(tokenizer, r["prompt"], r["chosen"], r["rejected"], index=i)
            for i, r in enumerate(bench_pairs(n, prompt_words))]


def measured(build, before_kib: int) -> dict:
    """Seconds from build() (which returns the trainer) to the end of its train(); the peak RSS of train()
    (VmHWM reset after the build: loading and sharding copies are not training's) and the RSS before it."""
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer = build()
    built_kib = rss_kib("VmRSS")
    reset_peak_rss()
    trainer.train()
    return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
            "rss_before_kib": before_kib, "rss_built_kib": built_kib,
            "peak_rss_kib": rss_kib("VmHWM")}


def run_ours(args, share_prompt: bool = False) -> dict:
    import torch

    from common.models import load_model_and_tokenizer
    from common.trainer import Trainer
    from train_preferences.config import PreferenceRunConfig

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(args.model)
    config = PreferenceRunConfig(model=args.model, dataset="-", objective="dpo", beta=0.1, optimizer="adamw",
                                 lr=1e-5, batch_size=args.batch_size, max_steps=args.steps, shuffle=False,
                                 fsdp=args.fsdp_side == "fsdp", pack_sequences=True, share_prompt=share_prompt,
                                 max_length=1024)
    run_dir = Path(args.workdir) / f"ours_{args.fsdp_side or 'single'}{'_shared' if share_prompt else ''}"
    examples = our_examples(tokenizer, args.pairs, args.prompt_words)
    return measured(lambda: Trainer(config, model, tokenizer, examples, run_dir), rss_kib("VmRSS"))


def run_trl(args, precompute: bool) -> dict:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from common.models import load_model_and_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(args.model)
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")}
                                 for r in bench_pairs(args.pairs, args.prompt_words)])
    config = DPOConfig(output_dir=str(Path(args.workdir) / "trl"), per_device_train_batch_size=args.batch_size,
                       gradient_accumulation_steps=1, learning_rate=1e-5, lr_scheduler_type="constant",
                       max_steps=args.steps, beta=0.1, loss_type=["sigmoid"], report_to=[], save_strategy="no",
                       logging_steps=args.steps, use_cpu=True, dataloader_num_workers=0, max_length=1024,
                       seed=0, disable_tqdm=True, precompute_ref_log_probs=precompute,
                       bf16=False)  # TRL defaults to bf16 autocast; every side trains in fp32 here
    return measured(lambda: DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer),
                    rss_kib("VmRSS"))


def matmul_flops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """fp32 FLOP/s of an n^3 matmul with `threads` torch threads, best of `repeats` (the machine's limit)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = min(timed_once(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best


def timed_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def model_counts(model_path: str, n_pairs: int, prompt_words: int) -> dict:
    """Non-embedding and LM-head parameter counts, and the pairs' tokens (our tokenization, both sequences)."""
    from common.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_path)
    head = model.get_output_embeddings().weight.numel()
    embedding = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in model.parameters())
    examples = our_examples(tokenizer, n_pairs, prompt_words)
    return {"non_embedding_params": total - embedding - head, "head_params": head,
            "tokens": sum(2 * len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in examples),
            "completion_tokens": sum(len(e.chosen_ids) + len(e.rejected_ids) for e in examples)}


def run_side(args, side: str, launcher: tuple = ()) -> dict:
    """One side in a fresh process (or 2 under torchrun); its JSON (one per process) from --result."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*launcher, str(Path(__file__)), "--side", side, "--model", args.model, "--steps", str(args.steps),
               "--batch_size", str(args.batch_size), "--prompt_words", str(args.prompt_words), "--workdir",
               args.workdir, "--result", tmp]
        if not launcher:
            cmd.insert(0, sys.executable)
        env = {**os.environ, "WANDB_MODE": "disabled", "HF_DATASETS_CACHE": tmp,  # no cached TRL precompute
               "BENCH_THREADS": str(1 if launcher else args.threads), "PYTHONPATH": str(REPO)}
        if launcher:  # allocations over 64 KiB mmap'd, so freed ones leave RSS: the peak is live memory, not
            env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # heap fragmentation (it hid FSDP's saving; BENCHMARKS.md)
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
        if out.returncode != 0:
            sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
        return {p.stem: json.loads(p.read_text()) for p in sorted(Path(tmp).glob("rank*.json"))}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def header(args, extra: str) -> str:
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | {cpu_model()}, "
            f"{os.cpu_count()} CPUs, load average {load} | model {args.model} | {args.steps} steps x batch "
            f"{args.batch_size} | {extra}")


def single_process(args, counts: dict) -> None:
    flops = matmul_flops(args.threads)
    sides = ("ours", "ours_shared", *SIDES[1:]) if args.share_prompt else SIDES
    results = {side: run_side(args, side)["rank0"] for side in sides}
    c = counts
    useful = 6 * c["non_embedding_params"] * c["tokens"] + 6 * c["head_params"] * c["completion_tokens"]
    print(header(args, f"torch threads {args.threads}, fp32 matmul {flops / 1e9:.1f} GFLOP/s"))
    print(f"{c['tokens']} tokens ({c['completion_tokens']} completion), {c['non_embedding_params'] / 1e6:.1f}M "
          f"non-embedding + {c['head_params'] / 1e6:.1f}M LM-head params, useful {useful / 1e12:.2f} TFLOP")
    print("| side | tokens/s | peak RSS MiB | RSS growth MiB | seconds | CPU seconds | MFU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for side, r in results.items():
        print(f"| {side} | {counts['tokens'] / r['seconds']:.0f} | {r['peak_rss_kib'] / 1024:.0f} | "
              f"{(r['peak_rss_kib'] - r['rss_before_kib']) / 1024:.0f} | {r['seconds']:.1f} | "
              f"{r['cpu_seconds']:.1f} | {useful / r['seconds'] / flops:.1%} |")
    ours = results["ours"]
    if args.share_prompt:
        shared = results["ours_shared"]
        print(f"share_prompt / ours: {ours['seconds'] / shared['seconds']:.2f}x tokens/s, "
              f"{ours['cpu_seconds'] / shared['cpu_seconds']:.2f}x per CPU second, peak RSS "
              f"{shared['peak_rss_kib'] / ours['peak_rss_kib']:.2f}x")
        ours = min(ours, shared, key=lambda r: r["seconds"])
    strongest = min(("trl", "trl_precompute"), key=lambda s: results[s]["seconds"])
    best_memory = min(results[s]["peak_rss_kib"] for s in ("trl", "trl_precompute"))
    print(f"ours / TRL's strongest ({strongest}): {results[strongest]['seconds'] / ours['seconds']:.2f}x tokens/s "
          f"(target >= 2.5x), {results[strongest]['cpu_seconds'] / ours['cpu_seconds']:.2f}x per CPU second; "
          f"peak RSS {ours['peak_rss_kib'] / results[strongest]['peak_rss_kib']:.2f}x of it, "
          f"{ours['peak_rss_kib'] / best_memory:.2f}x of TRL's lowest (target <= 0.6x)")


def two_processes(args, counts: dict) -> None:
    port = 29600 + os.getpid() % 300
    launcher = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port))
    results = {side: run_side(args, side, launcher) for side in ("ddp", "fsdp")}
    print(header(args, "2 processes (torchrun, gloo), 1 torch thread each, fp32"))
    print("| mode | tokens/s (both processes) | RSS after build MiB rank 0 / 1 | peak RSS in train() MiB rank 0 / 1 "
          "| seconds |")
    print("|---|---:|---:|---:|---:|")
    for side, ranks in results.items():
        seconds = max(r["seconds"] for r in ranks.values())
        built = " / ".join(f"{ranks[k]['rss_built_kib'] / 1024:.0f}" for k in ("rank0", "rank1"))
        peaks = " / ".join(f"{ranks[k]['peak_rss_kib'] / 1024:.0f}" for k in ("rank0", "rank1"))
        print(f"| {side} | {counts['tokens'] / seconds:.0f} | {built} | {peaks} | {seconds:.1f} |")
    peak = {side: max(r["peak_rss_kib"] for r in ranks.values()) for side, ranks in results.items()}
    print(f"FSDP / DDP per-process peak RSS: {peak['fsdp'] / peak['ddp']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a local model instead of the random Llama")
    parser.add_argument("--vocab", type=int, default=32000, help="vocabulary of the random Llama (default 32000)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each single-process side")
    parser.add_argument("--fsdp", action="store_true", help="DDP vs fsdp: true under 2 CPU processes")
    parser.add_argument("--prompt_words", type=int, default=0, help="start every prompt with this many words of "
                                                                     "shared context (long prompts)")
    parser.add_argument("--share_prompt", action="store_true", help="a fourth side: ours with share_prompt: true")
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "bench_dpo"))
    parser.add_argument("--side", choices=[*SIDES, "ours_shared", "ddp", "fsdp"],
                        help=argparse.SUPPRESS)  # subprocess mode
    parser.add_argument("--result", help=argparse.SUPPRESS)  # subprocess mode: where to write rank<r>.json
    args = parser.parse_args()
    if args.model is None:
        args.model = random_llama(REPO / "outputs" / "bench_models" / f"llama-4x512-v{args.vocab}",
                                  vocab_size=args.vocab, hidden_size=512, intermediate_size=1536,
                                  num_hidden_layers=4, num_attention_heads=8)
    args.pairs = args.steps * args.batch_size  # every pair is seen once, so all sides process the same tokens

    if args.side:
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
        args.fsdp_side = args.side if args.side in ("ddp", "fsdp") else None
        if args.side.startswith("trl"):
            result = run_trl(args, args.side == "trl_precompute")
        else:
            result = run_ours(args, share_prompt=args.side == "ours_shared")
        Path(args.result, f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(result))
        return
    counts = model_counts(args.model, args.pairs, args.prompt_words)
    (two_processes if args.fsdp else single_process)(args, counts)


if __name__ == "__main__":
    main()
