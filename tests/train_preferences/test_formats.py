"""The generic runner trains from every accepted format and file type (tiny chat model, 2 steps each)."""
import json
from pathlib import Path

import pytest

from common.config import from_dict
from common.tracking import read_jsonl
from train_preferences.config import PreferenceRunConfig
from train_preferences.run import run

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "data_files" / "pref_similarity"


def fixture_rows(name, n=8):
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()[:n]]


def plain_rows():
    return [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in fixture_rows("plain_tiny.jsonl")]


def as_format(name):
    """Rows of each format, built from the fixtures."""
    uf = fixture_rows("ultrafeedback_tiny.jsonl")
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    bot = lambda text: {"role": "assistant", "content": text}  # noqa: E731
    if name == "plain":
        return plain_rows(), "dpo"
    if name == "plain_implicit":  # TRL standard, implicit prompt: the prompt is the common prefix
        return [{"chosen": r["prompt"] + " " + r["chosen"], "rejected": r["prompt"] + " " + r["rejected"]}
                for r in plain_rows()], "dpo"
    if name == "conversational_explicit":  # TRL conversational with a prompt field
        return [{"prompt": [user(r["prompt"])], "chosen": [bot(r["chosen"][-1]["content"])],
                 "rejected": [bot(r["rejected"][-1]["content"])]} for r in uf], "dpo"
    if name == "ultrafeedback":
        return uf, "dpo"
    if name == "alpaca_farm":
        return fixture_rows("alpaca_farm_tiny.jsonl"), "dpo"
    if name == "prompt_completion":
        return [{"prompt": r["prompt"], "completion": r["chosen"]} for r in plain_rows()], "cross_entropy"
    if name == "messages":
        return [{"messages": r["messages"]} for r in uf], "cross_entropy"
    raise ValueError(name)


def write(rows, path: Path) -> str:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix in (".parquet", ".csv"):
        import pyarrow as pa
        import pyarrow.csv
        import pyarrow.parquet

        table = pa.Table.from_pylist(rows)
        (pyarrow.parquet.write_table if path.suffix == ".parquet" else pyarrow.csv.write_csv)(table, path)
    else:  # a save_to_disk directory
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return str(path)


def train(tmp_path, tiny_models, dataset, objective="dpo", **overrides):
    config = from_dict(PreferenceRunConfig, {
        "model": tiny_models["chat"], "dataset": dataset, "objective": objective, "optimizer": "adam",
        "lr": 1e-3, "batch_size": 4, "max_steps": 2, "outputs_dir": str(tmp_path), **overrides})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return run(config, run_dir), run_dir


@pytest.mark.parametrize("name", ["plain", "plain_implicit", "conversational_explicit", "ultrafeedback",
                                  "alpaca_farm", "prompt_completion", "messages"])
def test_trains_from_each_format(tmp_path, tiny_models, name):
    rows, objective = as_format(name)
    summary, run_dir = train(tmp_path, tiny_models, write(rows, tmp_path / "set.jsonl"), objective)
    assert summary["steps"] == 2 and summary["num_examples"] == len(rows)
    expected = {"plain_implicit": "plain", "conversational_explicit": "conversational",
                "ultrafeedback": "conversational"}.get(name, name)
    assert summary["dataset_format"] == expected
    assert summary["truncation"] == {"examples": len(rows), "truncated": 0, "dropped_empty_response": 0}
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "train"] == [1, 2]


@pytest.mark.parametrize("file_name", ["set.jsonl", "set.json", "set.parquet", "set.csv", "saved"])
def test_trains_from_each_file_type(tmp_path, tiny_models, file_name):
    summary, _ = train(tmp_path, tiny_models, write(plain_rows(), tmp_path / file_name))
    assert summary["steps"] == 2 and summary["num_examples"] == 8 and summary["dataset_format"] == "plain"


def test_message_lists_in_parquet(tmp_path, tiny_models):
    rows, _ = as_format("ultrafeedback")
    summary, _ = train(tmp_path, tiny_models, write(rows, tmp_path / "uf.parquet"))
    assert summary["dataset_format"] == "conversational" and summary["num_examples"] == 8


def test_long_pairs_are_truncated_and_counted(tmp_path, tiny_models, caplog):
    from common.data import tokenize_preference
    from common.models import load_tokenizer

    rows, limit = plain_rows(), 40
    tokenizer = load_tokenizer(tiny_models["chat"])
    full = [tokenize_preference(tokenizer, r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    dropped = sum(len(e.prompt_ids) >= limit for e in full)
    truncated = sum(e.length > limit for e in full) - dropped
    assert truncated >= 4 and dropped  # rows 2 and 3 have prompts of over 40 tokens
    summary, _ = train(tmp_path, tiny_models, write(rows, tmp_path / "set.jsonl"), max_length=limit)
    assert summary["num_examples"] == 8 - dropped
    assert summary["truncation"] == {"examples": 8, "truncated": truncated, "dropped_empty_response": dropped}
    assert f"{truncated} of 8 examples truncated to max_length {limit}" in caplog.text


def test_format_mismatch_names_the_field_to_set(tmp_path, tiny_models):
    from common.errors import DataError

    rows, _ = as_format("ultrafeedback")
    with pytest.raises(DataError, match=r"row 0: field 'chosen' is a list of messages \(TRL conversational "
                                        r"format\), which the plain format does not accept; set dataset_format "
                                        r"to conversational"):
        train(tmp_path, tiny_models, write(rows, tmp_path / "set.jsonl"), dataset_format="plain")
