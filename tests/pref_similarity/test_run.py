"""python -m pref_similarity end to end on the tiny chat model: selection, training, eval metrics, errors."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

import pref_similarity.compute as compute
from common.config import from_dict
from common.errors import DataError
from common.models import load_model
from common.preference_data import Tokenization, tokenize_pairs
from common.tracking import read_json, read_jsonl
from pref_similarity.__main__ import main as plan_main
from pref_similarity.config import QuantileRunConfig
from pref_similarity.preference_sets import load_preference_set
from pref_similarity.results import main as results_main
from pref_similarity.run import run
from tests.pref_similarity.conftest import ALPACA_FARM, PLAIN, REPO

K = 8


@torch.no_grad()
def naive_logps(model, examples):
    """Summed log-probs of y+ and y-, one unpadded sequence at a time, full log-softmax."""
    out = []
    for e in examples:
        pair = []
        for response in (e.chosen_ids, e.rejected_ids):
            ids = torch.tensor([e.prompt_ids + response])
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            targets = ids[0, len(e.prompt_ids):]
            pair.append(logp[torch.arange(len(e.prompt_ids) - 1, ids.shape[1] - 1), targets].sum().item())
        out.append(pair)
    return torch.tensor(out, dtype=torch.float64)


@pytest.fixture(scope="module")
def similarities(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("similarities")
    return compute.main(["--model", tiny_models["chat"], "--dataset", str(PLAIN), "--output_dir", str(out),
                         "--max_input_length", "256"])


def write_plan(path, base, options):
    path.write_text(json.dumps({"name": "test", "configurations": [{"base_config": base, "options": options}]}))
    return str(path)


def test_quantile_runs_end_to_end(tiny_models, tiny_chat, similarities, tmp_path, capsys):
    base = {"model": tiny_models["chat"], "dataset": str(PLAIN), "similarity_path": str(similarities),
            "similarity_measure": "ches", "preference_num_samples": K, "batch_size": 4, "lr": 1e-4,
            "max_length": 256, "save_model": True, "outputs_dir": str(tmp_path / "runs"),
            "experiment_name": "{similarity_measure}_q{quantile}"}
    plan_main(["--plan_config_path", write_plan(tmp_path / "plan.json", base, {"quantile": [0, 1]})])

    ches = {json.loads(line)["index"]: json.loads(line)["ches"]
            for line in (similarities / "preference_similarities.jsonl").read_text().splitlines()}
    ascending = sorted(ches, key=lambda i: (ches[i], i))
    model, tokenizer = tiny_chat
    examples, _ = tokenize_pairs(load_preference_set(str(PLAIN)).rows, tokenizer, Tokenization(max_length=256),
                                 source="fixture")
    examples = {e.index: e for e in examples}
    changes = {}
    for quantile, expected in ((0, ascending[:K]), (1, ascending[-K:])):
        run_dir = tmp_path / "runs" / f"ches_q{quantile}"
        assert [r["index"] for r in read_jsonl(run_dir / "selected_examples.jsonl")] == expected
        evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "eval"]
        assert [(r["split"], r["step"]) for r in evals] == [("train", 0), ("train", 2)]  # 8 examples, 4 per step
        subset = [examples[i] for i in expected]
        before = naive_logps(model, subset)
        after = naive_logps(load_model(str(run_dir / "model")), subset)
        start, end = evals
        assert start["preferred_logprobs_change_mean"] == 0
        assert start["preferred_logprobs_mean"] == pytest.approx(before[:, 0].mean().item(), abs=1e-3)
        assert end["ref_preferred_logprobs_mean"] == pytest.approx(before[:, 0].mean().item(), abs=1e-3)
        assert end["preferred_logprobs_change_mean"] == pytest.approx((after - before)[:, 0].mean().item(), abs=1e-3)
        assert end["dispreferred_logprobs_change_mean"] == pytest.approx((after - before)[:, 1].mean().item(), abs=1e-3)
        assert end["reward_accuracy"] == ((after - before)[:, 0] > (after - before)[:, 1]).double().mean().item()
        assert (after - before)[:, 0].mean() > (after - before)[:, 1].mean()  # DPO widened the margin
        summary = read_json(run_dir / "summary.json")
        assert (summary["num_examples"], summary["measure_min"], summary["measure_max"]) == (
            K, pytest.approx(ches[expected[0]]), pytest.approx(ches[expected[-1]]))
        changes[quantile] = end["preferred_logprobs_change_mean"]

    capsys.readouterr()
    results_main(["--experiments_dir", str(tmp_path / "runs")])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("ches"))
    assert row.split()[1:3] == [f"{changes[0]:.4g}", f"{changes[1]:.4g}"]


def config(tiny_models, similarities, **kw):
    values = {"model": tiny_models["chat"], "dataset": str(PLAIN), "similarity_path": str(similarities),
              "max_length": 256, **kw}
    return from_dict(QuantileRunConfig, values)


def test_similarities_of_another_dataset_are_an_error(tiny_models, similarities, tmp_path):
    with pytest.raises(DataError, match="computed on dataset .*plain_tiny.jsonl'?, not .*alpaca_farm_tiny"):
        run(config(tiny_models, similarities, dataset=str(ALPACA_FARM)), tmp_path)


@pytest.mark.parametrize("info_change, message", [
    ({"resolved_format": "ultrafeedback"}, "computed with format 'ultrafeedback', not 'plain'"),
    ({"settings": {"dataset_config": "alpaca_gpt4_preference"}}, "computed on dataset config 'alpaca_gpt4_preference'"),
])
def test_similarities_of_another_format_or_hub_config_are_an_error(tiny_models, similarities, tmp_path,
                                                                   info_change, message):
    """Same file and split, other rows or other responses: the indices would name other pairs."""
    copy = tmp_path / similarities.name
    shutil.copytree(similarities, copy)
    info = read_json(copy / "info.json")
    for key, value in info_change.items():
        info[key] = {**info[key], **value} if isinstance(value, dict) else value
    (copy / "info.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match=message):
        run(config(tiny_models, copy), tmp_path / "run")


def test_similarities_of_other_token_sequences_are_an_error(tiny_models, tmp_path):
    """The base model's tokenizer has no chat template: its responses are other token sequences."""
    base_similarities = compute.main(["--model", tiny_models["base"], "--dataset", str(PLAIN), "--output_dir",
                                      str(tmp_path), "--num_train_samples", "4"])
    with pytest.raises(DataError, match="tokens here but .* in the similarity file"):
        run(config(tiny_models, base_similarities), tmp_path / "run")


def test_cli_missing_similarities_is_one_line_and_exit_2(tiny_models, tmp_path):
    base = {"model": tiny_models["chat"], "dataset": str(PLAIN), "similarity_path": str(tmp_path / "none"),
            "outputs_dir": str(tmp_path / "runs")}
    plan = write_plan(tmp_path / "plan.json", base, {})
    result = subprocess.run([sys.executable, "-m", "pref_similarity", "--plan_config_path", plan], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "no similarity file; first run python -m pref_similarity.compute" in lines[0]
