"""Launch checks and main-process logging: a one-process `accelerate launch --num_processes 2` is refused."""
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from common.config import TrainConfig
from common.data import PreferenceExample
from common.distributed import check_launch
from common.errors import UserError
from common.tracking import _WarningsOnly, log_from_main_only, logger
from common.trainer import Trainer
from tests.conftest import random_llama

REPO = Path(__file__).resolve().parents[2]


def test_simple_launcher_environment_is_refused(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    with pytest.raises(UserError, match="started ONE .* `torchrun --nproc_per_node N"):
        check_launch()
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun (or accelerate's multi-process launchers) set it
    check_launch()


def test_accelerate_launch_two_processes_on_cpu_stops_with_one_line(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text("from common.cli import exit_on_user_error\nfrom common.distributed import process_state\n"
                      "exit_on_user_error(process_state)()\n")
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "MASTER_ADDR")}
    result = subprocess.run([str(accelerate), "launch", "--num_processes", "2", str(script)], cwd=REPO, timeout=120,
                            capture_output=True, text=True,
                            env={**env, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode != 0
    assert "error: accelerate launch asked for several processes but started ONE" in result.stderr
    # (accelerate's launcher then adds its own traceback of the child's exit status 2)


def test_info_lines_come_from_the_main_process_only(caplog):
    try:
        log_from_main_only(False)
        log_from_main_only(False)
        assert sum(isinstance(f, _WarningsOnly) for f in logger.filters) == 1
        with caplog.at_level(logging.INFO, logger="alignlab"):
            logger.info("from rank 1")
            logger.warning("rank 1 warns")
        assert [r.getMessage() for r in caplog.records] == ["rank 1 warns"]
    finally:
        for f in [f for f in logger.filters if isinstance(f, _WarningsOnly)]:
            logger.removeFilter(f)


def test_run_setup_is_logged_once(tmp_path, caplog):
    pairs = [PreferenceExample([5, 6, 7], [8, 9], [10], i) for i in range(4)]
    config = TrainConfig(model="random", batch_size=4, micro_batch_size=2, max_steps=1)
    with caplog.at_level(logging.INFO, logger="alignlab"):
        Trainer(config, random_llama(), types.SimpleNamespace(pad_token_id=0), pairs, tmp_path).train()
    setup = [r.getMessage() for r in caplog.records if "process(es)" in r.getMessage()]
    assert len(setup) == 1 and setup[0].startswith("1 process(es), NO (backend none), device cpu")
    assert "micro-batch 2, 2 accumulation step(s) per optimizer step of 4 examples" in setup[0]
