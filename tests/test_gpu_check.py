"""scripts/gpu_check.sh --dry: the GPU check's code runs on CPU (tiny sizes) and writes its JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_writes_its_figures(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHON": sys.executable}
    result = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry", "--out", str(out)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    for name in ("ours", "ours_tracker", "trl_default", "trl_precompute_ref", "ours_fsdp_1gpu"):
        assert figures[name]["seconds"] > 0 and figures[name]["peak_cuda_gib"] is None
    assert figures["dry"] and "tracker_overhead_seconds_per_step" in figures
