"""The shipped tiny H3Fusion plan end to end on tiny-chat: three experts (adapters saved), the fusion run
(routers trained away from their init and saved, six models evaluated), the results table, a re-run that
skips every finished run, and bad expert runs as one `error:` line."""
import copy
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from common.models import load_model
from ensembles import results
from ensembles.__main__ import main
from ensembles.h3fusion import build_h3fusion, router_state
from ensembles.h3fusion_run import MODELS, ROUTERS_FILE

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "ensembles" / "experiments_plans" / "h3fusion_tiny.json"
FUSION = "fusion_source_top2_s0"


def run_plan(outputs, *extra):
    main(["--plan_config_path", str(PLAN), "--set", f"outputs_dir={outputs}", *extra])


@pytest.fixture(scope="module")
def finished(tiny_models, tmp_path_factory):
    outputs = tmp_path_factory.mktemp("h3fusion")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)  # the plan names the tiny models and the fixtures relative to the repository
        run_plan(outputs)
    return outputs


def test_experts_save_adapters_of_the_mlp(finished):
    for name in ("helpful", "harmless", "honest"):
        run_dir = finished / f"expert_{name}_s0"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["stage"] == "expert" and summary["expert"] == name and summary["steps"] == 3
        adapter = json.loads((run_dir / "model" / "adapter_config.json").read_text())
        assert sorted(adapter["target_modules"]) == ["down_proj", "gate_proj", "up_proj"]


def test_fusion_trains_its_routers_and_evaluates_six_models(finished):
    run_dir = finished / FUSION
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [m["model"] for m in summary["models"]] == list(MODELS)
    for row in summary["models"]:
        assert 0 <= row["hs"] <= 100 and 0 <= row["helpfulness"] <= 1 and 0 <= row["honesty_mc1"] <= 100
    assert summary["protocol"] == {"num_harmful_prompts": 8, "num_helpful_prompts": 8, "num_mc1_questions": 16,
                                   "max_new_tokens": 16, "decoding": "greedy", "mc_option_score": "sum"}
    assert summary["judge_offline_stand_in"] and summary["router_training"]["steps"] == 6
    trained = load_file(run_dir / ROUTERS_FILE)
    initial = router_state(build_h3fusion(copy.deepcopy(load_model(str(REPO / "outputs/tiny_models/tiny-chat"))),
                                          [{}] * 3, top_k=2, seed=0))  # the same seeded router init
    assert sorted(trained) == sorted(initial) == ["0.router.weight", "1.router.weight"]
    assert all((trained[k] - initial[k]).abs().max() > 1e-4 for k in trained)
    assert summary["router_training"]["router_max_change"] == pytest.approx(
        max((trained[k] - initial[k]).abs().max().item() for k in trained))
    scored = [json.loads(line) for line in (run_dir / "eval" / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == len(MODELS) * 16
    harmful = [r for r in scored if r["model"] == "h3fusion" and r["set"] == "harmful"]
    assert summary["models"][-1]["hs"] == 100.0 * sum(r["flagged"] for r in harmful) / len(harmful)


def test_the_printer_shows_the_table(finished, capsys):
    results.main(["--experiments_dir", str(finished)])
    out = capsys.readouterr().out
    assert "(H3Fusion)" in out and "HS %" in out and "MC1 %" in out
    assert all(f"\n{name} " in out for name in MODELS)
    assert "keyword_refusal (offline stand-in)" in out


def test_a_rerun_skips_every_finished_run(finished, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in finished.glob("*/summary.json")}
    assert len(stamps) == 4
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        run_plan(finished)
    assert {p: p.stat().st_mtime_ns for p in finished.glob("*/summary.json")} == stamps
    assert capsys.readouterr().err.count("skip (finished)") == 4


def test_a_resumed_fusion_keeps_its_routers_and_stored_answers(finished):
    run_dir = finished / FUSION
    routers = (run_dir / ROUTERS_FILE).stat().st_mtime_ns
    before = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").unlink()
    (run_dir / "eval" / "merge.json").unlink()  # as if it crashed while evaluating the merge
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        run_plan(finished, "--only", "3")
    assert (run_dir / ROUTERS_FILE).stat().st_mtime_ns == routers
    after = json.loads((run_dir / "summary.json").read_text())
    assert after["models"] == before["models"]


@pytest.mark.parametrize("change, message", [
    ({"helpful_expert": "{outputs_dir}/missing"}, "helpful_expert"),
    ({"harmless_expert": "{outputs_dir}/expert_honest_s0", "honest_expert": "{outputs_dir}/expert_harmless_s0"},
     "trained the honest expert, not the harmless one"),
    ({"model": "outputs/tiny_models/tiny-base"}, "the experts must adapt the same base model"),
])
def test_bad_expert_runs_are_one_error_line(finished, tmp_path, capsys, monkeypatch, change, message):
    monkeypatch.chdir(REPO)
    plan = json.loads(PLAN.read_text())
    fusion = {**plan["configurations"][1]["base_config"], **change, "experiment_name": "other_fusion"}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"configurations": [{"base_config": fusion}]}))
    with pytest.raises(SystemExit) as exit_info:
        main(["--plan_config_path", str(path), "--set", f"outputs_dir={finished}"])
    lines = capsys.readouterr().err.strip().splitlines()  # the runner's log lines, then the error
    err = [line for line in lines if line.startswith("error: ")]
    assert exit_info.value.code == 2 and len(err) == 1 and not any("Traceback" in x for x in lines), lines
    assert message in err[0]
    assert not (finished / "other_fusion" / "summary.json").exists()
