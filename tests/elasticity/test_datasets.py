"""Dataset loaders on the fixture files and hand-made rows: schemas, held-out split, bad rows."""
import json

import pytest

from common.errors import DataError
from elasticity.datasets import DATASETS, heldout_split, load_examples, split_words, with_label
from elasticity.fixtures import write_fixtures

FIXTURES = "data_files/elasticity"


def test_committed_fixtures_are_what_the_generator_writes(tmp_path):
    for name, path in write_fixtures(tmp_path).items():
        committed = f"{FIXTURES}/{path.parent.name}/{path.name}"
        assert path.read_text() == open(committed).read(), f"{committed} is stale: python -m elasticity.fixtures"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_fixtures_load_in_the_hub_schema(name):
    examples = load_examples(name, f"{FIXTURES}/{name}")
    assert len(examples) >= 200
    assert all(e.response for e in examples)
    assert (examples[0].prompt is None) == (name == "text")
    labels = {e.label for e in examples}
    assert labels == ({0, 1} if DATASETS[name].label else {None})


def test_row_conversions(tmp_path):
    rows = {"alpaca": [{"instruction": "Add.", "input": "1 and 2", "output": "3", "text": "..."},
                       {"instruction": "Hi?", "input": "", "output": "Hello."}],
            "beavertails": [{"prompt": "p", "response": "r", "category": {}, "is_safe": False}],
            "imdb": [{"text": "A <br /><br />fine   film, truly.", "label": 1}]}
    for name, data in rows.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    alpaca = load_examples("alpaca", str(tmp_path / "alpaca.jsonl"))
    assert [(e.prompt, e.response) for e in alpaca] == [("Add.\n1 and 2", "3"), ("Hi?", "Hello.")]
    beaver = load_examples("beavertails", str(tmp_path / "beavertails.jsonl"))
    assert (beaver[0].label, beaver[0].response) == (0, "r")
    imdb = load_examples("imdb", str(tmp_path / "imdb.jsonl"), imdb_prompt_words=2)
    assert (imdb[0].prompt, imdb[0].response, imdb[0].label) == ("A fine", " film, truly.", 1)
    assert DATASETS["imdb"].classifier_text(imdb[0]) == "A fine film, truly."


def test_split_words_keeps_the_text_whole():
    assert split_words("one two  three four", 2) == ("one two", "  three four")
    assert split_words("short", 3) == ("short", "")


def test_missing_field_names_the_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "ok", "label": 1}) + "\n" + json.dumps({"text": "no label"}) + "\n")
    with pytest.raises(DataError, match=r"row 1: missing field 'label'"):
        load_examples("imdb", str(path))
    with pytest.raises(DataError, match="file not found"):
        load_examples("imdb", str(tmp_path / "none.jsonl"))


def test_heldout_split_is_seeded_and_disjoint():
    examples = load_examples("imdb", f"{FIXTURES}/imdb")
    a, b = heldout_split(examples, 100, seed=0), heldout_split(examples, 100, seed=0)
    assert [e.index for e in a.heldout] == [e.index for e in b.heldout]
    assert len(a.heldout) == 100 and len(a.train) == len(examples) - 100
    assert not {e.index for e in a.heldout} & {e.index for e in a.train}
    assert [e.index for e in heldout_split(examples, 100, seed=1).heldout] != [e.index for e in a.heldout]
    assert all(e.label == 1 for e in with_label(a.train, "positive"))
    with pytest.raises(DataError, match="num_heldout"):
        heldout_split(examples[:10], 10, seed=0)


@pytest.mark.parametrize("name, row, message", [
    ("imdb", {"text": "a fine film", "label": "positive"},
     "row 1: field 'label': expected 0/1 or false/true, got 'positive'"),
    ("imdb", {"text": "a fine film", "label": 2}, "row 1: field 'label'"),
    ("beavertails", {"prompt": "p", "response": "r", "is_safe": "false"}, "row 1: field 'is_safe'"),  # not "safe"
    ("imdb", {"text": ["a", "list"], "label": 1}, "row 1: field 'text': expected a string"),
    ("alpaca", {"instruction": "Add.", "input": 3, "output": "4"}, "row 1: field 'input': expected a string"),
])
def test_malformed_values_name_the_row_and_field(tmp_path, name, row, message):
    good = {"imdb": {"text": "a film", "label": 0}, "beavertails": {"prompt": "p", "response": "r", "is_safe": True},
            "alpaca": {"instruction": "Hi?", "input": "", "output": "Hello."}}[name]
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=message):
        load_examples(name, str(path))
