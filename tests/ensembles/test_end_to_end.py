"""A pool of 4 tiny models end to end: a hub-style path, a run directory of another study (its model/),
and two seeded weight-noise variants; collection, resume per member, pruning, fusion, the printer."""
import json
import shutil

import numpy as np
import pytest

from common.plans import run_plan
from common.tracking import read_json
from ensembles import results
from ensembles.config import EnsembleConfig
from ensembles.fixtures import OUTPUT_DIR
from ensembles.run import run

NUM_SAMPLES = 60


@pytest.fixture(scope="module")
def finished(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("ensembles")
    other_run = root / "other_study_run"  # what a finished run of another study with save_model looks like
    shutil.copytree(tiny_models["chat"], other_run / "model")
    (other_run / "config.json").write_text(json.dumps({"study": "harmful_ft"}))
    (other_run / "summary.json").write_text(json.dumps({"status": "finished"}))
    plan = {"name": "tiny_pool", "configurations": [{"base_config": {
        "pool": [tiny_models["base"], str(other_run),
                 {"model": tiny_models["chat"], "perturb_std": 0.6, "perturb_seed": 1},
                 {"model": tiny_models["chat"], "perturb_std": 0.8, "perturb_seed": 3, "name": "noisy"}],
        "dataset_path": str(OUTPUT_DIR / "facts_mc.jsonl"), "max_samples": NUM_SAMPLES, "device": "cpu",
        "batch_size": 64, "top_k": 3, "fusion_epochs": 10, "marl_epochs": 10, "outputs_dir": str(root / "runs"),
        "experiment_name": "pool"}}]}
    (root / "plan.json").write_text(json.dumps(plan))
    run_plan(root / "plan.json", EnsembleConfig, run)
    return root, root / "runs" / "pool"


def test_collection_is_columnar_and_consistent(finished):
    _, run_dir = finished
    summary = read_json(run_dir / "summary.json")
    assert [m["name"] for m in summary["members"]] == ["tiny-base", "other_study_run", "tiny-chat~s1", "noisy"]
    assert json.loads((run_dir / "members" / "01_other_study_run.json").read_text())["model_path"].endswith(
        "other_study_run/model")
    logprobs = np.stack([np.load(run_dir / "members" / f"{stem}.npy") for stem in
                         ("00_tiny-base", "01_other_study_run", "02_tiny-chat~s1", "03_noisy")])
    assert logprobs.shape == (4, NUM_SAMPLES, 3)
    np.testing.assert_allclose(np.exp(logprobs).sum(-1), 1.0, atol=1e-5)  # a distribution over the choices
    labels, correct = np.load(run_dir / "labels.npy"), np.load(run_dir / "correct.npy")
    assert correct.shape == (NUM_SAMPLES, 4) and correct.dtype == bool
    assert np.array_equal(correct, (logprobs.argmax(-1) == labels).T)
    test_accuracy = [m["test_accuracy"] for m in summary["members"]]
    sizes = summary["split_sizes"]
    assert sum(sizes.values()) == NUM_SAMPLES and sizes["test"] == NUM_SAMPLES - 24 - 12
    assert test_accuracy[0] > 0.9 and test_accuracy[3] < test_accuracy[0]  # noise makes errors
    assert len(summary["teams"]) == 3 and summary["pool"]["members"] == [0, 1, 2, 3]
    assert all(0 <= t["fused_accuracy"] <= 1 and t["size"] >= 2 for t in summary["teams"])
    marl = summary["marl_focal"]
    assert 0 <= marl["test_accuracy"] <= 1 and 1 <= marl["mean_team_size"] <= 4 and "no test labels" in marl["protocol"]
    focal = [t["validation_focal_diversity"] for t in summary["teams"]]
    assert focal == sorted(focal, reverse=True)


def test_a_resumed_run_rescores_only_the_missing_member(finished):
    root, run_dir = finished
    stored = {p.name: p.stat().st_mtime_ns for p in (run_dir / "members").glob("*.npy")}
    before = np.load(run_dir / "members" / "02_tiny-chat~s1.npy")
    (run_dir / "summary.json").unlink()
    (run_dir / "members" / "02_tiny-chat~s1.npy").unlink()
    run_plan(root / "plan.json", EnsembleConfig, run)
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "members").glob("*.npy")}
    assert {k: v for k, v in after.items() if k != "02_tiny-chat~s1.npy"} == \
        {k: v for k, v in stored.items() if k != "02_tiny-chat~s1.npy"}
    np.testing.assert_allclose(np.load(run_dir / "members" / "02_tiny-chat~s1.npy"), before, atol=1e-6)
    assert (run_dir / "summary.json").is_file()


def test_results_printer(finished, capsys):
    root, run_dir = finished
    results.main(["--experiments_dir", str(root / "runs")])
    out = capsys.readouterr().out
    assert "other_study_run" in out and "fused acc" in out and "pool  0+1+2+3" in out and "MARL-Focal (frozen" in out
    assert (root / "runs" / "diversity_vs_accuracy.png").stat().st_size > 1000
