"""Loading the paper's preference-set formats into prompt/chosen/rejected rows, and their errors."""
import json

import pytest

import common.preference_data as preference_data
from common.errors import DataError
from pref_similarity.preference_sets import load_preference_set
from tests.pref_similarity.conftest import ALPACA_FARM, PLAIN, ULTRAFEEDBACK


def raw(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(tmp_path, rows, name="set.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_ultrafeedback_takes_the_last_assistant_messages():
    """UltraFeedback binarized is TRL's conversational format: the prompt is the turns before the response."""
    loaded = load_preference_set(str(ULTRAFEEDBACK))
    source = raw(ULTRAFEEDBACK)
    assert loaded.format == "conversational" and len(loaded.rows) == len(source)
    for got, row in zip(loaded.rows[:20], source):
        assert got == {"prompt": [{"role": "user", "content": row["prompt"]}], "chosen": row["chosen"][1]["content"],
                       "rejected": row["rejected"][1]["content"]}


def test_alpaca_farm_follows_the_preference_and_joins_the_input():
    loaded = load_preference_set(str(ALPACA_FARM))
    source = raw(ALPACA_FARM)
    assert loaded.format == "alpaca_farm"
    assert {r["preference"] for r in source} == {1, 2}
    for got, row in zip(loaded.rows, source):
        preferred, other = ("output_1", "output_2") if row["preference"] == 1 else ("output_2", "output_1")
        assert got["chosen"] == row[preferred] and got["rejected"] == row[other]
        assert got["prompt"] == (row["instruction"] + "\n" + row["input"] if row["input"] else row["instruction"])
    assert any(r["input"] for r in source)


def test_plain_rows_pass_through():
    loaded = load_preference_set(str(PLAIN))
    assert loaded.format == "plain"
    assert loaded.rows[3] == {k: raw(PLAIN)[3][k] for k in ("prompt", "chosen", "rejected")}


def test_sft_rows_are_refused():
    with pytest.raises(DataError, match="messages rows have no rejected response; the similarities need pairs"):
        load_preference_set(str(ULTRAFEEDBACK), format="messages")


def test_hub_ids_get_the_papers_split_and_config(monkeypatch):
    calls = []
    monkeypatch.setattr(preference_data, "load_records",
                        lambda source, split, name: calls.append((source, split, name)) or raw(ALPACA_FARM))
    load_preference_set("tatsu-lab/alpaca_farm")
    load_preference_set("HuggingFaceH4/ultrafeedback_binarized")
    load_preference_set("someone/prefs", split="test")
    assert calls == [("tatsu-lab/alpaca_farm", "preference", "alpaca_human_preference"),
                     ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs", None),
                     ("someone/prefs", "test", None)]


@pytest.mark.parametrize("rows, format, message", [
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b"}], "auto",
     "row 1: missing field 'rejected'"),
    ([{"prompt": "a", "chosen": [{"role": "user", "content": "a"}],
       "rejected": [{"role": "assistant", "content": "c"}]}], "auto",
     "row 0: the last message of 'chosen' must be an assistant message"),
    ([{"instruction": "a", "input": "", "output_1": "b", "output_2": "c", "preference": 3}], "auto",
     "row 0: 'preference' must be 1 or 2"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}], "alpaca_farm", "row 0: missing field 'instruction'"),
    ([{"prompt": "a", "chosen": "b", "rejected": 5}], "plain", "row 0: field 'rejected' is a number; it must be text"),
    # A message without content used to reach the chat template and end in a jinja traceback.
    ([{"prompt": [{"role": "user", "content": "a"}, {"role": "user"}], "chosen": "b", "rejected": "c"}], "plain",
     "row 0: prompt message 1 must be an object with text 'role' and 'content'"),
    ([{"prompt": ["a"], "chosen": "b", "rejected": "c"}], "plain", "row 0: prompt message 0 must be an object"),
    ([{"prompt": [], "chosen": "b", "rejected": "c"}], "plain", "row 0: the prompt is an empty list of messages"),
])
def test_bad_rows_name_the_row(tmp_path, rows, format, message):
    with pytest.raises(DataError, match=message):
        load_preference_set(write(tmp_path, rows), format=format)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_preference_set(str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="unknown preference set format 'csv'"):
        load_preference_set(str(PLAIN), format="csv")
