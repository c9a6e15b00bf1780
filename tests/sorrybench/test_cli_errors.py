"""Bad input ends in one line `error: ...` and exit status 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sorrybench import create_dataset, evaluate_refusal, results

REPO = Path(__file__).resolve().parents[2]


def test_plan_with_a_missing_dataset_exits_2(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"configurations": [{"base_config": {
        "model": "outputs/tiny_models/tiny-chat", "judge": "keyword_refusal",
        "dataset_path": str(tmp_path / "nowhere"), "outputs_dir": str(tmp_path / "runs")}}]}))
    proc = subprocess.run([sys.executable, "-m", "sorrybench", "--plan_config_path", str(plan)], cwd=REPO,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "WANDB_MODE": "offline"})
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'nowhere' / 'train.jsonl'}: file not found; build the preference set "
                      f"with python -m sorrybench.create_dataset"]
    assert "Traceback" not in proc.stderr


def run_main(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_create_dataset_errors(tmp_path, capsys):
    assert "give --model" in run_main(create_dataset.main, ["--output_dir", str(tmp_path)], capsys)
    assert "invalid JSON" in run_main(create_dataset.main, ["--model", "m", "--judge", "{oops"], capsys)
    assert "unknown scorer 'keywords'; did you mean 'keyword_refusal'" in run_main(
        create_dataset.main, ["--model", "m", "--judge", "keywords"], capsys)
    assert "reward model 'pair_rm' is not a tie breaker (pairrm, random) and not a registered scorer" in run_main(
        create_dataset.main, ["--model", "m", "--judge", "keyword_refusal", "--use_rm", "--reward_model", "pair_rm"],
        capsys)
    (tmp_path / "train.jsonl").write_text("")
    assert "already holds a preference set; pass --force" in run_main(
        create_dataset.main, ["--model", "m", "--judge", "keyword_refusal", "--output_dir", str(tmp_path)], capsys)
    assert "test.jsonl: file not found" in run_main(
        create_dataset.main, ["--output_dir", str(tmp_path), "--human_judgments", "h.jsonl"], capsys)


def test_evaluate_refusal_errors(tmp_path, capsys):
    assert "train.jsonl: file not found" in run_main(
        evaluate_refusal.main, ["--models", "m", "--dataset_path", str(tmp_path), "--judge", "keyword_refusal"], capsys)
    (tmp_path / "train.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    (tmp_path / "test.jsonl").write_text('{"chosen": "a", "rejected": "b"}\n')
    assert "test.jsonl: row 0: missing field 'prompt'" in run_main(
        evaluate_refusal.main, ["--models", "m", "--dataset_path", str(tmp_path), "--judge", "keyword_refusal"], capsys)


def test_results_errors(tmp_path, capsys):
    assert "no such directory" in run_main(results.main, ["--experiments_dir", str(tmp_path / "x")], capsys)
    assert "no finished sorrybench runs" in run_main(results.main, ["--experiments_dir", str(tmp_path)], capsys)


@pytest.mark.parametrize("flags, message", [
    (["--batch_size", "0"], "--batch_size: expected a value >= 1, got 0"),
    (["--max_new_tokens", "0"], "--max_new_tokens: expected a value >= 1, got 0"),
    (["--top_p", "1.5"], "--top_p: expected a value <= 1, got 1.5"),
    (["--top_p", "0"], "--top_p: expected a value > 0, got 0.0"),
    (["--temperature", "-1"], "--temperature: expected a value >= 0, got -1.0"),
    (["--max_prompts", "0"], "--max_prompts: expected -1 (all) or a positive count, got 0"),
])
def test_bad_sampling_flags_stop_before_any_model_loads(tmp_path, capsys, flags, message):
    """These used to reach generate() (after the model loaded) and end in a traceback, or pass silently."""
    (tmp_path / "train.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    (tmp_path / "test.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    assert run_main(evaluate_refusal.main, ["--models", "m", "--dataset_path", str(tmp_path), "--judge",
                                            "keyword_refusal", *flags], capsys) == f"error: {message}"
    assert run_main(create_dataset.main, ["--model", "m", "--judge", "keyword_refusal", "--output_dir",
                                          str(tmp_path / "new"), *flags], capsys) == f"error: {message}"


def test_bad_human_judgments_stop_before_sampling(tmp_path, capsys, monkeypatch):
    """The judgments used to be read after sampling and judging: a wrong path cost the whole (GPU) run and
    left train.jsonl without gold files or summary.json."""
    def sample_pairs(args, prompts):
        raise AssertionError("sampled before the human judgments were checked")

    monkeypatch.setattr(create_dataset, "sample_pairs", sample_pairs)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"question_id": 1, "turns": ["p"]}\n{"question_id": 2, "turns": ["q"]}\n')
    judgments = tmp_path / "judgments.jsonl"
    judgments.write_text('{"question_id": 1, "choices": [{"turns": ["r"]}]}\n')
    args = ["--model", "m", "--judge", "keyword_refusal", "--prompts", str(prompts), "--test_fraction", "0.5",
            "--output_dir", str(tmp_path / "set")]
    assert "nowhere.jsonl: file not found" in run_main(
        create_dataset.main, args + ["--human_judgments", str(tmp_path / "nowhere.jsonl")], capsys)
    assert "row 0: missing field 'human_score'" in run_main(
        create_dataset.main, args + ["--human_judgments", str(judgments)], capsys)
    assert not (tmp_path / "set").exists()


def test_a_split_left_empty_stops_before_sampling(tmp_path, capsys, monkeypatch):
    """2 prompts x 0.15 rounds to 0 test pairs: the set was written and every run then failed on test.jsonl."""
    monkeypatch.setattr(create_dataset, "sample_pairs", lambda args, prompts: pytest.fail("sampled"))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"question_id": 1, "turns": ["p"]}\n{"question_id": 2, "turns": ["q"]}\n')
    args = ["--model", "m", "--judge", "keyword_refusal", "--prompts", str(prompts),
            "--output_dir", str(tmp_path / "s")]
    assert run_main(create_dataset.main, args, capsys) == (
        "error: --test_fraction 0.15 of 2 prompts leaves the test split empty; use more prompts or change it")
    # int(0.9 * 2) = 1 test prompt with the public randperm split; the rounded shuffle split takes both.
    assert "leaves the train split empty" in run_main(
        create_dataset.main, args + ["--test_fraction", "0.9", "--split_method", "shuffle"], capsys)
