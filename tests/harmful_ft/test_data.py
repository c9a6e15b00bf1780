"""The data selection: exact counts for p and n, prompts de-duplicated across the three sets, seeded
shuffling, row-level errors, and the fixtures are what harmful_ft.fixtures writes."""
import dataclasses
import json

import pytest

from common.config import from_dict
from common.errors import ConfigError, DataError
from harmful_ft import data, fixtures
from harmful_ft.config import FinetuneConfig

SOURCES = {k: f"data_files/harmful_ft/{k}" for k in data.SOURCES}


def config(**fields):
    values = {"model": "m", "data_sources": SOURCES, "eval_protocol": "custom", "num_harmful_eval": 20,
              "num_task_eval": 12, "max_new_tokens": 8, "num_align": 40, "task": "sst2", "n": 60, "p": 0.2,
              **fields}
    return from_dict(FinetuneConfig, values)


@pytest.mark.parametrize("p, n, harmful", [(0.0, 60, 0), (0.2, 60, 12), (0.1, 50, 5), (0.29, 100, 29), (1.0, 40, 40)])
def test_counts_for_p_and_n(p, n, harmful):
    s = data.select(config(p=p, n=n))
    assert (len(s.attack_harmful), len(s.attack_benign), len(s.user_data)) == (harmful, n - harmful, n)
    assert sorted(map(repr, s.user_data)) == sorted(map(repr, s.attack_harmful + s.attack_benign))
    assert all(x.output in {"positive", "negative"} for x in s.attack_benign)
    assert (len(s.harmful_eval), len(s.align), len(s.task_eval)) == (20, 40, 12)


def test_prompts_are_distinct_across_alignment_attack_and_evaluation():
    s = data.select(config(p=1.0, n=40))
    sets = [{x.instruction for x in part} for part in (s.harmful_eval, s.align, s.attack_harmful)]
    assert [len(x) for x in sets] == [20, 40, 40]  # no prompt twice inside a set either
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    # the fixture's train split repeats 5 evaluation prompts: they are left out of the alignment data
    train_prompts = [json.loads(line)["prompt"] for line in open("data_files/harmful_ft/beavertails/30k_train.jsonl")]
    assert len(sets[0] & set(train_prompts)) == fixtures.NUM_SHARED


def test_shuffling_is_seeded():
    a, b, c = (data.select(config(data_seed=seed)).user_data for seed in (0, 0, 1))
    assert a == b and a != c


def test_n_larger_than_the_harmful_pool_is_an_error():
    with pytest.raises(DataError, match="harmful pool"):
        data.select(config(p=1.0, n=100))


@pytest.mark.parametrize("fields, message", [({"task": "mnli"}, "unknown task 'mnli'"),
                                             ({"p": 1.5}, r"must be in \[0, 1\]"),
                                             ({"defense": "vacine"}, "defense")])
def test_bad_fields(fields, message):
    with pytest.raises(ConfigError, match=message):
        config(**fields)


def test_row_level_error_names_the_row(tmp_path):
    rows = [{"sentence": "good", "label": 1}, {"sentence": "bad"}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = dataclasses.replace(config(), data_sources={**SOURCES, "sst2": str(tmp_path)})
    with pytest.raises(DataError, match=r"sst2 train: row 1: field 'label' is missing"):
        data.task_samples(cfg, "sst2", "train")


def test_gsm8k_answers_use_the_final_answer_mark():
    sample = data.task_samples(config(task="gsm8k"), "gsm8k", "test")[0]
    assert data.GSM8K_ANSWER_MARK + sample.label in sample.output and "####" not in sample.output


def test_fixtures_are_what_the_writer_writes(tmp_path):
    fixtures.write_fixtures(tmp_path)
    for path in sorted(fixtures.OUTPUT_DIR.rglob("*.jsonl")):
        assert (tmp_path / path.relative_to(fixtures.OUTPUT_DIR)).read_text() == path.read_text(), path
