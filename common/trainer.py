"""One training loop for preference losses and SFT, on accelerate: 1 CPU, 1 GPU or N processes.

Read top to bottom: `train()` computes (or loads) the reference log-probs once, evaluates, then runs
optimizer steps. Each step takes the next global batch of `batch_size` examples from a seeded
per-epoch permutation; each process scores its share (`batch[rank::world]`) in micro-batches, with
chosen and rejected rows in one forward. Per-example losses are summed and scaled by
world / batch_size, so after DDP averages gradients over processes every step applies the gradient of
the global-batch mean, whatever the number of processes or micro-batches.

How a micro-batch becomes per-example losses is the trainer's `strategy` (common/strategies.py); the
default is the preference / SFT log-prob path (`SequenceLogProbs` + `make_loss`).

Dropout is off throughout, as in TRL's DPOTrainer (`disable_dropout`): reference and policy log-probs
then agree at step 0, and runs are deterministic. The model stays in train mode (every dropout
probability set to 0), so features that look at `model.training` work, e.g. `gradient_checkpointing`.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm.auto import tqdm

from common import fsdp, zeroth_order
from common.config import TrainConfig, to_dict
from common.data import PreferenceExample, collate_pairs, collate_shared_prompt
from common.distributed import make_accelerator
from common.errors import DataError, TrainingError
from common.logprobs import prompt_sharing_applies
from common.losses import LOSSES
from common.models import count_parameters, disable_dropout, enable_gradient_checkpointing, save_model
from common.rundir import CHECKPOINT_DIR, checkpoint_candidates, install_checkpoint
from common.strategies import PreferenceStrategy, StepStrategy, StepTerms
from common.tracking import Tracker, logger, read_json, write_json

REFERENCE_FILE = "reference_logps.safetensors"
SHARDED_DIR = "sharded"  # in a checkpoint under FSDP: torch.distributed.checkpoint's files
TRAIN = "__train__"  # key of the training set's reference log-probs


class TrainerCallback:
    """Study hooks. Every process calls them (they may run collective ops); log via `trainer.log`."""

    def on_train_begin(self, trainer: "Trainer") -> None:
        pass

    def on_step_end(self, trainer: "Trainer", step: int) -> Optional[dict]:
        """Return extra metrics to add to the step's train record."""

    def on_evaluate(self, trainer: "Trainer", step: int) -> None:
        pass

    def eval_metrics(self, trainer: "Trainer", name: str, chosen: torch.Tensor,
                     rejected: Optional[torch.Tensor]) -> Optional[dict]:
        """Return extra metrics for eval set `name`'s record (reference log-probs: trainer.reference)."""

    def on_train_end(self, trainer: "Trainer") -> Optional[dict]:
        """Return entries to add to the run's summary."""


def fused_kernel_applies(params: list) -> bool:
    """Whether torch's fused Adam(W) kernel takes these parameters: plain (not sharded DTensor) floating
    tensors on CPU or CUDA. It updates every tensor in one pass instead of ~10 elementwise ops each; the
    profile of scripts/bench_dpo.py put the unfused AdamW at a fifth of a CPU step (HF's Trainer defaults
    to the fused kernel too)."""
    from torch.distributed.tensor import DTensor

    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                and not isinstance(p, DTensor) for p in params)


def make_optimizer(name: str, params: list, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused_kernel_applies(params))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused_kernel_applies(params))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def lr_factor(step: int, total_steps: int, schedule: str, warmup_ratio: float) -> float:
    """Multiplier of the base lr for 0-based optimizer step `step` of `total_steps`.

    Linear warm-up over the first ceil(warmup_ratio * total) steps, factor (step + 1) / warmup; then
    constant 1, or a linear / cosine decay that reaches 0 after the last step. A function of the step
    alone, so a resumed run continues the same schedule.
    """
    warmup = math.ceil(warmup_ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


def fingerprint(examples: Sequence[PreferenceExample]) -> str:
    """Hash of the token ids, so a cached reference never silently belongs to other data."""
    h = hashlib.sha1()
    for e in examples:
        h.update(repr((e.prompt_ids, e.chosen_ids, e.rejected_ids)).encode())
    return h.hexdigest()


def preference_metrics(chosen: torch.Tensor, rejected: Optional[torch.Tensor], ref_chosen: torch.Tensor,
                       ref_rejected: Optional[torch.Tensor]) -> dict:
    """Evaluation metrics over a set, from summed log-probs of policy and reference (all shape (N,))."""
    m = {"count": len(chosen),
         "preferred_logprobs_mean": chosen.mean().item(),
         "ref_preferred_logprobs_mean": ref_chosen.mean().item(),
         "preferred_logprobs_change_mean": (chosen - ref_chosen).mean().item(),
         "preferred_probs_mean": chosen.exp().mean().item(),
         "preferred_logprobs_decreased_fraction": (chosen < ref_chosen).float().mean().item()}
    if rejected is not None:
        m.update({"dispreferred_logprobs_mean": rejected.mean().item(),
                  "ref_dispreferred_logprobs_mean": ref_rejected.mean().item(),
                  "dispreferred_logprobs_change_mean": (rejected - ref_rejected).mean().item(),
                  "dispreferred_probs_mean": rejected.exp().mean().item(),
                  "logprob_accuracy": (chosen > rejected).float().mean().item(),
                  "reward_accuracy": ((chosen - ref_chosen) > (rejected - ref_rejected)).float().mean().item()})
    return m


class Trainer:
    def __init__(self, config: TrainConfig, model, tokenizer, train_set: Sequence[PreferenceExample],
                 run_dir: str | os.PathLike, *, eval_sets: Optional[dict[str, Sequence[PreferenceExample]]] = None,
                 callbacks: Sequence[TrainerCallback] = (), accelerator=None, strategy: Optional[StepStrategy] = None):
        if not train_set:
            raise TrainingError("the training set is empty")
        self.config = config
        self.strategy = strategy or PreferenceStrategy(config)
        if eval_sets and not self.strategy.scores_sequences:
            raise TrainingError(f"eval_sets are scored by sequence log-probs; {type(self.strategy).__name__} "
                                f"does not compute them (evaluate in a callback instead)")
        self.tokenizer = tokenizer
        self.train_set = list(train_set)
        self.eval_sets = dict(eval_sets or {})
        self.callbacks = list(callbacks)
        self.run_dir = Path(run_dir)
        self.accelerator = accelerator or make_accelerator()
        self.device = self.accelerator.device
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        self.padding = 0  # zero-weight micro-batches of the current step (FSDP, see fsdp_padding)

        if getattr(config, "device_map", None) and (self.world > 1 or config.fsdp):
            raise TrainingError("device_map splits one model over the GPUs of ONE process; launch a single "
                                "process (python -m ...), or drop device_map for data parallelism or fsdp")
        multi_pass = type(self.strategy).step_gradients is not StepStrategy.step_gradients
        if config.fsdp and multi_pass:
            raise TrainingError(f"fsdp with the multi-pass strategy {type(self.strategy).__name__} is not "
                                "supported yet (its extra passes do not pad FSDP's collectives); drop fsdp")
        if config.optimizer in zeroth_order.OPTIMIZERS and multi_pass:
            raise TrainingError(f"optimizer {config.optimizer} forms its update from forwards of the strategy's "
                                f"losses; the multi-pass strategy {type(self.strategy).__name__} would be ignored")
        if config.fsdp and config.merge_lora:
            raise TrainingError("merge_lora with fsdp: the sharded model cannot be merged in place; save the "
                                "adapter (merge_lora false) and merge it afterwards with peft's merge_and_unload")
        disable_dropout(model)  # see the module docstring
        model.train()
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        self.model = model  # what is trained and saved; `module` is the strategy's wrapper, prepared
        self.trainable_parameters, self.total_parameters = count_parameters(model)
        module = self.strategy.wrap(model)
        if config.fsdp:  # we shard (common/fsdp.py); accelerate only knows the processes
            fsdp.shard(module, model, self.device, bf16=config.precision == "bf16")
        params = [p for p in model.parameters() if p.requires_grad]  # after sharding: the shards
        if config.optimizer in zeroth_order.OPTIMIZERS:  # owns the update: forwards only (common/zeroth_order.py)
            optimizer = zeroth_order.make(config, params)
        else:
            optimizer = make_optimizer(config.optimizer, params, config.lr, config.weight_decay)
        if config.fsdp:
            self.module, self.optimizer = module, optimizer
        elif getattr(optimizer, "owns_update", False):
            self.module, self.optimizer = zeroth_order.place(module, self.accelerator), optimizer
        else:
            self.module, self.optimizer = self.accelerator.prepare(module, optimizer)
        self.params = params
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        self.steps_per_epoch = math.ceil(len(self.train_set) / config.batch_size)
        epochs_steps = math.ceil(config.num_epochs * self.steps_per_epoch)
        self.total_steps = config.max_steps if config.max_steps > 0 else epochs_steps
        self.step = 0
        self.reference: dict[str, tuple[torch.Tensor, Optional[torch.Tensor]]] = {}
        self.tracker = Tracker(self.run_dir, config=to_dict(config), use_wandb=config.use_wandb,
                               wandb_project=config.wandb_project, enabled=self.is_main)

    @property
    def loss(self):
        """The default strategy's bound loss (`make_loss(config)`), for callbacks that evaluate it."""
        return self.strategy.loss

    # ------------------------------------------------------------------------------------------
    # Scoring

    def autocast(self):
        enabled = self.config.precision == "bf16"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def policy_logps(self, examples: Sequence[PreferenceExample], with_rejected: bool = True):
        """Summed completion log-probs (chosen, rejected or None, batch) from one forward."""
        if not with_rejected:
            examples = [PreferenceExample(e.prompt_ids, e.chosen_ids, None, e.index) for e in examples]
        batch = collate_pairs(examples, self.pad_id).to(self.device)
        share = with_rejected and getattr(self.config, "share_prompt", False) and examples[0].rejected_ids is not None
        shared = collate_shared_prompt(examples, self.pad_id).to(self.device) if share else None
        scored, extra = batch, {}
        if shared is not None and prompt_sharing_applies(self.model, shared.input_ids.shape[1]):
            scored, extra = shared, {"shared": True}  # the metrics still read `batch`: the pairs' rows
        with self.autocast():
            logps = self.module(scored.input_ids, scored.attention_mask, scored.completion_mask, **extra)
        n = len(examples)
        return logps[:n], (logps[n:] if len(logps) > n else None), batch

    @torch.no_grad()
    def score_all(self, examples: Sequence[PreferenceExample]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Policy log-probs of every example, sharded over processes and gathered, in input order."""
        n = len(examples)
        per_process = math.ceil(n / self.world)
        mine = [min(self.rank + j * self.world, n - 1) for j in range(per_process)]
        order = sorted(range(per_process), key=lambda j: examples[mine[j]].length)  # length bucketing
        has_rejected = examples[0].rejected_ids is not None
        out = torch.zeros(per_process, 2, device=self.device)
        size = self.config.eval_batch_size
        for start in range(0, per_process, size):
            chunk = order[start:start + size]
            chosen, rejected, _ = self.policy_logps([examples[mine[j]] for j in chunk])
            out[chunk, 0] = chosen.float()
            if has_rejected:
                out[chunk, 1] = rejected.float()
        gathered = self.accelerator.gather(out).cpu()  # (world * per_process, 2), process-major
        result = torch.zeros(n, 2)
        for p in range(self.world):
            for j in range(per_process):
                index = p + j * self.world
                if index < n:
                    result[index] = gathered[p * per_process + j]
        return result[:, 0].clone(), (result[:, 1].clone() if has_rejected else None)

    # ------------------------------------------------------------------------------------------
    # Reference log-probs: computed once with the initial policy, cached in the run directory

    def compute_reference(self) -> None:
        """Reference log-probs of the training set (when the loss needs them) and of every eval set."""
        from safetensors.torch import load_file, save_file

        sets = dict(self.eval_sets)
        if self.strategy.needs_reference:
            sets[TRAIN] = self.train_set
        path = self.run_dir / REFERENCE_FILE
        cached = load_file(path) if path.exists() else {}
        for name, examples in sets.items():
            key = fingerprint(examples)  # an eval set equal to the training set is scored once
            if f"{key}.chosen" not in cached:
                logger.info(f"reference log-probs of {len(examples)} examples ({name})")
                chosen, rejected = self.score_all(examples)
                cached[f"{key}.chosen"] = chosen
                if rejected is not None:
                    cached[f"{key}.rejected"] = rejected
                if self.is_main:
                    tmp = path.with_name(f".{path.name}.tmp")
                    save_file(cached, tmp)
                    os.replace(tmp, path)
            self.reference[name] = (cached[f"{key}.chosen"], cached.get(f"{key}.rejected"))
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------------------------------
    # Evaluation

    def evaluate(self, step: int) -> dict[str, dict]:
        results = {}
        for name, examples in self.eval_sets.items():
            ref_chosen, ref_rejected = self.reference[name]
            if step == 0:  # the policy is the reference: no need to score again
                chosen, rejected = ref_chosen, ref_rejected
            else:
                chosen, rejected = self.score_all(examples)
            results[name] = preference_metrics(chosen, rejected, ref_chosen, ref_rejected)
            for extra in self.run_callbacks("eval_metrics", name, chosen, rejected):
                results[name].update(extra or {})
            self.log({"kind": "eval", "split": name, "step": step, **results[name]})
        self.run_callbacks("on_evaluate", step)
        return results

    # ------------------------------------------------------------------------------------------
    # Training

    def log(self, record: dict) -> None:
        self.tracker.log(record)

    def run_callbacks(self, hook: str, *args) -> list:
        """Every callback's `hook`; under FSDP with the full parameters gathered, as callbacks call
        `self.model` (or its parts) directly."""
        gathered = self.config.fsdp and self.callbacks
        with fsdp.full_parameters(self.module) if gathered else contextlib.nullcontext():
            return [getattr(callback, hook)(self, *args) for callback in self.callbacks]

    def log_setup(self) -> None:
        """One line (main process) on how the run is spread, and the parameter counts."""
        per_process = math.ceil(self.config.batch_size / self.world)
        micro = min(self.config.micro_batch_size or per_process, per_process)
        backend = getattr(self.accelerator.state, "backend", None) or "none"
        if self.is_main:
            logger.info(f"{self.world} process(es), {self.accelerator.distributed_type.value} (backend {backend}), "
                        f"device {self.device}; per process: micro-batch {micro}, "
                        f"{math.ceil(per_process / micro)} accumulation step(s) per optimizer step of "
                        f"{self.config.batch_size} examples; parameters {self.trainable_parameters:,} trainable "
                        f"of {self.total_parameters:,}")

    def batch_indices(self, step: int) -> list[int]:
        """Example indices of the global batch of optimizer step `step` (0-based)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        n = len(self.train_set)
        if self.config.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed * 7919 + epoch)).tolist()
        else:
            order = list(range(n))
        return order[k * self.config.batch_size:(k + 1) * self.config.batch_size]

    def micro_batches(self, indices: list[int]) -> list[list[int]]:
        """This process's micro-batches of the global batch `indices`, longest examples first."""
        mine = sorted(indices[self.rank::self.world], key=lambda i: self.train_set[i].length, reverse=True)
        size = self.config.micro_batch_size or max(len(mine), 1)
        return [mine[i:i + size] for i in range(0, len(mine), size)]

    def fsdp_padding(self, indices: list[int], micro: list[list[int]]) -> int:
        """Under FSDP every forward is a collective: how many zero-weight micro-batches this process adds
        to run as many as the process with the largest share (0 without FSDP)."""
        if not self.config.fsdp:
            return 0
        share = math.ceil(len(indices) / self.world)
        return math.ceil(share / (self.config.micro_batch_size or share)) - len(micro)

    def loss_terms(self, indices: list[int]) -> StepTerms:
        """Per-example losses and metrics of training examples `indices`, and the real tokens scored."""
        return self.strategy.losses(self, indices)

    def backward_micro_batches(self, micro: list[list[int]], scale: float, weight: float = 1.0) -> torch.Tensor:
        """Backpropagate the strategy's losses of each micro-batch times `scale` into the gradients
        (DDP syncs on the last one; FSDP on each, after the step's zero-weight padding micro-batches);
        this process's sums of the loss, each metric and the tokens, times `weight`."""
        names = self.strategy.metrics
        stats = torch.zeros(2 + len(names), device=self.device)
        chunks = [(chunk, 1.0) for chunk in micro] + [(micro[0][:1], 0.0)] * self.padding
        for j, (chunk, w) in enumerate(chunks):
            sync = j == len(chunks) - 1
            with contextlib.nullcontext() if sync else self.accelerator.no_sync(self.module):
                terms = self.loss_terms(chunk)
                self.accelerator.backward(terms.losses.sum() * (scale * w))
            stats += weight * w * torch.stack([terms.losses.detach().sum(), *(terms.metrics[k].sum() for k in names),
                                               terms.tokens.float()])
        return stats

    def train_step(self, step: int) -> dict:
        """One optimizer step on global batch `step`; returns the step's train record."""
        indices = self.batch_indices(step)
        micro = self.micro_batches(indices)
        weight = 1.0
        if not micro:  # fewer examples than processes: join the collective with a zero-weight example
            micro, weight = [indices[:1]], 0.0
        self.padding = self.fsdp_padding(indices, micro)  # read by backward_micro_batches
        scale = weight * self.world / len(indices)
        lr = self.config.lr * lr_factor(step, self.total_steps, self.config.lr_scheduler, self.config.warmup_ratio)
        if getattr(self.optimizer, "owns_update", False):  # zeroth order: perturbs and updates in place, no backward
            stats, extra = self.optimizer.update(self, micro, weight, len(indices), lr, step)
            return self.train_record(step, indices, stats, lr, extra)
        stats = self.strategy.step_gradients(self, micro, scale, weight)
        stats = self.accelerator.reduce(stats, reduction="sum")
        max_norm = self.config.max_grad_norm or float("inf")
        grad_norm = float(self.accelerator.clip_grad_norm_(self.params, max_norm))
        record = self.train_record(step, indices, stats, lr, {"grad_norm": grad_norm})  # raises if non-finite
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return record

    def train_record(self, step: int, indices: list[int], stats: torch.Tensor, lr: float, extra: dict) -> dict:
        """The train record of step `step` from the all-reduced sums `stats` (loss, metrics, tokens) and the
        update's own figures `extra` (grad_norm; a zeroth-order step's); a non-finite value stops the run."""
        loss = (stats[0] / len(indices)).item()
        bad = {k: v for k, v in {"loss": loss, **extra}.items() if not math.isfinite(v)}
        if bad:
            what = "loss" if "loss" in bad else "gradient"
            raise TrainingError(f"{self.run_dir}: non-finite {what} at step {step + 1} "
                                f"({', '.join(f'{k}={v}' for k, v in {'loss': loss, **extra}.items())}); earlier "
                                f"steps are in metrics.jsonl; try a lower lr, precision fp32 or max_grad_norm")
        means = {k: (stats[1 + i] / len(indices)).item() for i, k in enumerate(self.strategy.metrics)}
        return {"kind": "train", "step": step + 1, "epoch": (step + 1) / self.steps_per_epoch, "loss": loss,
                **means, **extra, "lr": lr, "tokens": int(stats[-1].item())}

    def train(self) -> dict:
        cfg = self.config
        started = time.time()
        self.log_setup()
        self.compute_reference()  # before loading a checkpoint: an uncached reference must be the initial policy
        resumed = self.load_checkpoint()
        if not resumed:
            self.tracker.truncate_after(-1)  # a restart without a checkpoint starts its records afresh
        self.run_callbacks("on_train_begin")
        if not resumed:
            self.evaluate(0)
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.is_main, desc=self.run_dir.name,
                   dynamic_ncols=True)
        train_time, tokens, record, last_eval, final_eval = 0.0, 0, {}, None, {}
        while self.step < self.total_steps:
            torch.manual_seed(cfg.seed * 1_000_003 + self.step)  # anything random in a step is reproducible on resume
            t0 = time.perf_counter()
            record = self.train_step(self.step)
            train_time += time.perf_counter() - t0
            tokens += record["tokens"]
            self.step += 1
            for extra in self.run_callbacks("on_step_end", self.step):
                record.update(extra or {})
            self.log(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4g}")
            if cfg.eval_every_steps and self.step % cfg.eval_every_steps == 0:
                last_eval = self.step
                final_eval = self.evaluate(self.step)
            if cfg.save_every_steps and self.step % cfg.save_every_steps == 0 and self.step < self.total_steps:
                self.save_checkpoint()
        bar.close()
        if last_eval != self.step:
            final_eval = self.evaluate(self.step)
        summary = {"steps": self.step, "train": record, "eval": final_eval,
                   "train_tokens_per_second": tokens / train_time if train_time else None,
                   "wall_time_seconds": time.time() - started,
                   "trainable_parameters": self.trainable_parameters, "total_parameters": self.total_parameters}
        for extra in self.run_callbacks("on_train_end"):
            summary.update(extra or {})
        if cfg.save_model:
            self.accelerator.wait_for_everyone()
            state = fsdp.full_state_dict(self.model) if cfg.fsdp else None  # a collective: every rank
            if self.is_main:
                save_model(self.model, self.tokenizer, self.run_dir / "model", merge_lora=cfg.merge_lora,
                           state_dict=state)
        self.accelerator.wait_for_everyone()  # the checkpoint stays until summary.json is on disk (write_summary)
        self.tracker.finish()
        return summary

    # ------------------------------------------------------------------------------------------
    # Checkpoints for resume: trainable weights (safetensors), optimizer state, step;
    # under FSDP both sharded (torch.distributed.checkpoint, common/fsdp.py), the same rotation

    def save_checkpoint(self) -> None:
        from safetensors.torch import save_file

        tmp = self.run_dir / f".{CHECKPOINT_DIR}.tmp"
        self.accelerator.wait_for_everyone()
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if self.config.fsdp:
            self.accelerator.wait_for_everyone()
            fsdp.save_sharded(self.model, self.optimizer, tmp / SHARDED_DIR)
        if self.is_main:
            if not self.config.fsdp:
                trainable = {n: p.detach().contiguous().cpu() for n, p in self.model.named_parameters()
                             if p.requires_grad}
                save_file(trainable, tmp / "trainable.safetensors")
                torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            write_json(tmp / "trainer_state.json", {"step": self.step})
            install_checkpoint(tmp, self.run_dir)
        self.accelerator.wait_for_everyone()

    def load_checkpoint(self) -> bool:
        """Resume from the newest checkpoint whose files all load; restart (False) when none does."""
        from safetensors.torch import load_file

        candidates = checkpoint_candidates(self.run_dir)
        for path in candidates:
            try:
                step = read_json(path / "trainer_state.json")["step"]
                if self.config.fsdp:  # loads in place; missing or mismatched shards raise here
                    fsdp.load_sharded(self.model, self.optimizer, path / SHARDED_DIR)
                    state, optimizer_state = {}, None
                else:
                    state = load_file(path / "trainable.safetensors")
                    optimizer_state = torch.load(path / "optimizer.pt", weights_only=True)
            except Exception as e:  # any missing or truncated file (each library raises its own type)
                logger.warning(f"{path}: incomplete checkpoint ({type(e).__name__}: {e}); trying an older one")
                continue
            unexpected = self.model.load_state_dict(state, strict=False).unexpected_keys if state else []
            if unexpected:
                raise TrainingError(f"{path}: checkpoint does not match the model (unexpected {unexpected[0]!r}); "
                                    f"delete it to restart the run")
            if optimizer_state is not None:
                self.optimizer.load_state_dict(optimizer_state)
            self.step = step
            self.tracker.truncate_after(self.step)
            logger.info(f"resumed from {path} at step {self.step}")
            return True
        if candidates:
            logger.warning(f"{self.run_dir}: no complete checkpoint; restarting the run from step 0")
        return False


def train_examples(config: TrainConfig, run_dir: Path, model, tokenizer, train_set: Sequence[PreferenceExample], *,
                   eval_sets: Optional[dict] = None, callbacks: Sequence = ()) -> dict:
    """Train `model` on `train_set` with the shared trainer; the run's summary (the studies' one call)."""
    check_pairs(config.objective, train_set)
    trainer = Trainer(config, model, tokenizer, train_set, run_dir, eval_sets=eval_sets, callbacks=callbacks)
    return trainer.train()


def check_pairs(objective: str, train_set: Sequence[PreferenceExample]) -> None:
    """A loss that compares y+ with y- needs a rejected response in every example (SFT data has none)."""
    loss = LOSSES.get(objective)
    missing = sum(e.rejected_ids is None for e in train_set)
    if loss is not None and loss.needs_rejected and missing:
        raise DataError(f"objective {objective} compares a chosen with a rejected response, but {missing} of the "
                        f"{len(train_set)} training examples have no rejected response (SFT data); use objective "
                        "cross_entropy, or point rejected_field at the rejected responses")
