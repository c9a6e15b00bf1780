"""The shared trainer on a random tiny Llama: direction of a DPO step, accumulation, resume, NaN, wandb, bf16."""
import glob
import json
import math
import types

import pytest
import torch

from common.config import TrainConfig
from common.data import PreferenceExample, collate_pairs
from common.errors import TrainingError
from common.logprobs import sequence_logprobs
from common.tracking import read_jsonl
from common.trainer import Trainer, TrainerCallback
from tests.conftest import random_llama

TOKENIZER = types.SimpleNamespace(pad_token_id=0)


@pytest.fixture
def pairs():
    g = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, 97, (n,), generator=g).tolist()

    return [PreferenceExample(ids(4 + i % 3), ids(2 + i % 4), ids(3 + i % 2), i) for i in range(8)]


def config(**kw):
    base = dict(model="random", lr=1e-2, batch_size=4, num_epochs=1, optimizer="sgd")
    return TrainConfig(**{**base, **kw})


def logps(model, examples):
    batch = collate_pairs(examples, 0)
    with torch.no_grad():
        out = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
    return out[:len(examples)], out[len(examples):]


def params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_dpo_step_moves_log_probs_the_way_the_loss_says(pairs, tmp_path):
    model = random_llama()
    chosen0, rejected0 = logps(model, pairs[:4])
    Trainer(config(batch_size=4, max_steps=1, shuffle=False), model, TOKENIZER, pairs[:4], tmp_path).train()
    chosen1, rejected1 = logps(model, pairs[:4])
    # DPO's gradient raises logp(y+) - logp(y-) on the batch it was computed on.
    assert ((chosen1 - rejected1) - (chosen0 - rejected0)).mean() > 0


def test_metrics_file_and_summary(pairs, tmp_path):
    model = random_llama()
    summary = Trainer(config(num_epochs=2, eval_every_steps=2), model, TOKENIZER, pairs, tmp_path,
                      eval_sets={"train": pairs}).train()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert train[0]["loss"] == pytest.approx(0.693147, abs=1e-5)  # log 2: policy == reference at step 1
    assert evals[0]["preferred_logprobs_change_mean"] == 0.0
    # The eval numbers are the mean over the set of policy minus reference log-probs.
    chosen, rejected = logps(model, pairs)
    assert evals[-1]["preferred_logprobs_mean"] == pytest.approx(chosen.mean().item(), abs=1e-4)
    assert evals[-1]["preferred_logprobs_change_mean"] == pytest.approx(
        chosen.mean().item() - evals[0]["preferred_logprobs_mean"], abs=1e-4)
    assert summary["steps"] == 4 and summary["eval"]["train"] == {k: v for k, v in evals[-1].items()
                                                                    if k not in ("kind", "split", "step")}
    assert (tmp_path / "reference_logps.safetensors").exists()
    assert not (tmp_path / "checkpoint").exists()


def test_micro_batches_give_the_same_update_as_one_batch(pairs, tmp_path):
    full, micro = random_llama(), random_llama()
    Trainer(config(batch_size=8), full, TOKENIZER, pairs, tmp_path / "a").train()
    Trainer(config(batch_size=8, micro_batch_size=2), micro, TOKENIZER, pairs, tmp_path / "b").train()
    a, b = params(full), params(micro)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.allclose(a[k], params(random_llama())[k]) for k in a)  # it did train


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.stop = step

    def on_step_end(self, trainer, step):
        if step == self.stop:
            raise KeyboardInterrupt


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_interrupted_run_resumes_to_the_same_parameters(pairs, tmp_path, optimizer):
    cfg = config(num_epochs=3, save_every_steps=2, optimizer=optimizer, lr=1e-3, eval_every_steps=3)
    straight = random_llama()
    Trainer(cfg, straight, TOKENIZER, pairs, tmp_path / "straight", eval_sets={"train": pairs}).train()

    run_dir = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, random_llama(), TOKENIZER, pairs, run_dir, eval_sets={"train": pairs},
                callbacks=[StopAt(5)]).train()
    assert json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text()) == {"step": 4}
    resumed = random_llama()
    Trainer(cfg, resumed, TOKENIZER, pairs, run_dir, eval_sets={"train": pairs}).train()

    a, b = params(straight), params(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)
    steps = [(r["kind"], r["step"]) for r in read_jsonl(run_dir / "metrics.jsonl")]
    assert steps == [(kind, step) for kind, step in (("eval", 0), ("train", 1), ("train", 2), ("train", 3),
                                                      ("eval", 3), ("train", 4), ("train", 5), ("train", 6),
                                                      ("eval", 6))]
    assert [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "train"] == pytest.approx(
        [r["loss"] for r in read_jsonl(tmp_path / "straight" / "metrics.jsonl") if r["kind"] == "train"], abs=1e-6)


class Poison(TrainerCallback):
    def on_step_end(self, trainer, step):
        if step == 1:
            with torch.no_grad():
                trainer.model.lm_head.weight[0, 0] = float("nan")


def test_non_finite_loss_stops_with_a_clear_error(pairs, tmp_path):
    with pytest.raises(TrainingError, match="non-finite loss at step 2 .*try a lower lr"):
        Trainer(config(num_epochs=2), random_llama(), TOKENIZER, pairs, tmp_path, callbacks=[Poison()]).train()
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "train"] == [1]


def wandb_records(path):
    """The protobuf records (wandb's own schema) of a `.wandb` file, read as wandb writes it: a 7-byte
    header (":W&B", magic, version), then a LevelDB-style log of 32 KiB blocks in which a record is split
    into FIRST/MIDDLE/LAST fragments at block ends, each behind a 7-byte header (crc32, length, type), so
    grepping the bytes also breaks when a key or value straddles a block end."""

    import struct

    from wandb.proto.wandb_internal_pb2 import Record

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    block, pos, fragments = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's last bytes too few for a header: zero padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        fragments += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            yield Record.FromString(fragments)
            fragments = b""


def test_wandb_offline_records_the_metrics(pairs, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    Trainer(config(use_wandb=True, wandb_project="tests"), random_llama(), TOKENIZER, pairs, tmp_path,
            eval_sets={"train": pairs}).train()
    # run.finish() (the trainer's last call) does not wait for wandb's service to write the file out: its
    # writer buffers and closes the file when the service shuts its stream down, so the file may still be
    # short here. teardown() stops the service, which closes the file (as at the end of a process).
    import wandb

    wandb.teardown()
    files = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    records = list(wandb_records(files[0]))
    assert records[-1].WhichOneof("record_type") == "exit"  # the whole run is in the file
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row = {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
            history[row["_step"]] = {**history.get(row["_step"], {}), **row}
    train = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    evals = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "eval"]
    assert sorted(history) == sorted({r["step"] for r in train + evals})
    for r in train:
        assert history[r["step"]]["train/loss"] == r["loss"]
    for r in evals:
        assert history[r["step"]]["eval/train/preferred_logprobs_change_mean"] == r["preferred_logprobs_change_mean"]


def test_bf16_autocast_keeps_fp32_master_weights(pairs, tmp_path):
    model = random_llama()
    summary = Trainer(config(precision="bf16", lr=1e-1), model, TOKENIZER, pairs, tmp_path).train()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert summary["train"]["loss"] == pytest.approx(0.6931, abs=0.05)


@pytest.mark.parametrize("objective", ["ipo", "hinge", "robust", "nca_pair", "sppo_hard", "apo_zero", "bco_pair",
                                       "simpo", "cross_entropy"])
def test_every_objective_trains(pairs, tmp_path, objective):
    extra = {"label_smoothing": 0.1} if objective == "robust" else {}
    summary = Trainer(config(objective=objective, max_steps=2, **extra), random_llama(), TOKENIZER, pairs,
                      tmp_path).train()
    assert summary["steps"] == 2 and summary["train"]["grad_norm"] > 0


def test_restart_without_checkpoint_starts_records_afresh(pairs, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        Trainer(config(num_epochs=2), random_llama(), TOKENIZER, pairs, tmp_path, callbacks=[StopAt(2)]).train()
    Trainer(config(num_epochs=2), random_llama(), TOKENIZER, pairs, tmp_path).train()
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "train"] == [1, 2, 3, 4]


def test_lr_schedules_by_hand():
    from common.trainer import lr_factor

    # 10 steps, 20% warm-up = 2 steps: factors 1/2, 2/2, then the decay over the remaining 8 steps.
    assert [lr_factor(s, 10, "constant", 0.2) for s in range(10)] == [0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert [lr_factor(s, 10, "linear", 0.2) for s in range(2, 10)] == pytest.approx(
        [1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    # cosine: 0.5 (1 + cos(pi * k / 8)) for k = 0..7
    assert lr_factor(2, 10, "cosine", 0.2) == pytest.approx(1.0)
    assert lr_factor(6, 10, "cosine", 0.2) == pytest.approx(0.5)
    assert lr_factor(9, 10, "cosine", 0.2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_logged_lr_follows_the_schedule(pairs, tmp_path):
    Trainer(config(num_epochs=2, lr_scheduler="linear", warmup_ratio=0.25), random_llama(), TOKENIZER, pairs,
            tmp_path).train()
    lrs = [r["lr"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert lrs == pytest.approx([1e-2, 1e-2, 2 / 3 * 1e-2, 1 / 3 * 1e-2])  # 4 steps: 1 warm-up, then 3 decaying
