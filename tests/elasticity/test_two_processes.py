"""The same rebound plan under torchrun with 2 CPU processes: sharded compression/KL sums, main-only files."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.models import load_model_and_tokenizer
from common.tracking import read_json
from elasticity.compression import compression_rate
from elasticity.config import ReboundConfig
from elasticity.datasets import evaluation_rows
from tests.elasticity.conftest import SOURCES, write_plan

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_rebound_under_torchrun_matches_one_process_numbers(tiny_base, tmp_path):
    config = {"experiment": "rebound", "model": tiny_base, "outputs_dir": str(tmp_path), "experiment_name": "reb",
              "dataset": "imdb", "data_sources": SOURCES, "scorer": {"type": "keyword_refusal"},
              "compression_datasets": ["text"], "lr": 1e-3, "batch_size": 4, "num_epochs": 1, "max_length": 256,
              "num_heldout": 20, "positive_sizes": [8], "negative_sizes": [4], "num_test_prompts": 6,
              "num_kl_examples": 7, "max_new_tokens": 8, "num_compression_examples": 7}  # 7 rows: uneven shards
    plan = write_plan(tmp_path / "plan.json", config)
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "elasticity", "--plan_config_path", plan],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    positive = read_json(tmp_path / "reb" / "positive_8" / "summary.json")
    # The step-0 compression of the pre-training text, summed over two shards, equals one process's number.
    model, tokenizer = load_model_and_tokenizer(tiny_base)
    rows = evaluation_rows(ReboundConfig(**config), "text")
    expected = compression_rate(model, tokenizer, [r.response for r in rows])
    assert positive["compression"]["text"]["initial"]["bits_per_token"] == pytest.approx(expected.bits_per_token,
                                                                                           rel=1e-5)
    assert positive["kl"]["initial"] == pytest.approx(0.0, abs=1e-6)
    summary = read_json(tmp_path / "reb" / "summary.json")
    assert summary["curves"][0]["points"][0]["negative"] == 4 and "token_loss_mean" in positive
    assert len((tmp_path / "reb" / "base" / "generations.jsonl").read_text().splitlines()) == 6
