"""A pinned tiny DPO run against its stored per-step trajectory (TRL's invariant tests).

Catches refactors that silently change numbers. The other tests check the formulas against
independent computations; this one checks that the whole loop (data order, loss scaling, optimizer,
reference cache, evaluation) still produces the same trajectory. After an intended change of numbers,
regenerate with `UPDATE_GOLDEN=1 pytest tests/common/test_golden_trajectory.py` and say why in the commit.
"""
import json
import os
import types
from pathlib import Path

import pytest
import torch

from common.config import TrainConfig
from common.data import PreferenceExample
from common.tracking import read_jsonl
from common.trainer import Trainer
from tests.conftest import random_llama

GOLDEN = Path(__file__).parent / "golden" / "dpo_trajectory.json"
FIELDS = ("loss", "chosen_rewards", "rejected_rewards", "reward_accuracy", "grad_norm")


def trajectory(run_dir: Path) -> dict:
    g = torch.Generator().manual_seed(11)

    def ids(n):
        return torch.randint(3, 97, (n,), generator=g).tolist()

    pairs = [PreferenceExample(ids(3 + i % 4), ids(2 + i % 3), ids(2 + (i + 1) % 3), i) for i in range(12)]
    config = TrainConfig(model="random", objective="dpo", beta=0.1, optimizer="rmsprop", lr=1e-3, batch_size=4,
                         micro_batch_size=2, num_epochs=2, max_grad_norm=1.0, eval_every_steps=3, seed=5)
    Trainer(config, random_llama(seed=2), types.SimpleNamespace(pad_token_id=0), pairs, run_dir,
            eval_sets={"train": pairs}).train()
    rows = read_jsonl(run_dir / "metrics.jsonl")
    return {"train": [{k: r[k] for k in ("step", *FIELDS)} for r in rows if r["kind"] == "train"],
            "eval": [{k: r[k] for k in ("step", "preferred_logprobs_change_mean", "dispreferred_logprobs_change_mean")}
                     for r in rows if r["kind"] == "eval"]}


def test_dpo_trajectory_matches_the_stored_one(tmp_path):
    got = trajectory(tmp_path)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert [r["step"] for r in got["train"]] == [r["step"] for r in expected["train"]] == list(range(1, 7))
    for name in ("train", "eval"):
        for mine, stored in zip(got[name], expected[name], strict=True):
            for key, value in stored.items():
                assert mine[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (name, mine["step"], key)
