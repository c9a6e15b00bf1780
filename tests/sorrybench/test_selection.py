"""LN-CHES filtering keeps the lowest-k examples; config checks name the field."""
import json

import pytest

from ches.similarity_file import append_rows
from common.config import from_dict
from common.data import PreferenceExample
from common.errors import ConfigError, DataError
from sorrybench.config import SorryBenchConfig
from sorrybench.run import lowest_by_measure, of_pair_kind, select_train, setting_name


def examples(indices):
    return [PreferenceExample([1], [2], [3], index=i) for i in indices]


def test_lowest_k_by_hand():
    values = {0: 0.5, 1: -3.0, 2: 7.0, 3: -3.0, 4: -10.0, 5: 0.0}
    chosen = lowest_by_measure(examples(range(6)), values, 3)
    assert [e.index for e in chosen] == [4, 1, 3]  # -10, then the two -3.0 by index
    assert [e.index for e in lowest_by_measure(examples([5, 2]), values, 5)] == [5, 2]  # k > n keeps all


def test_missing_value_is_a_data_error():
    with pytest.raises(DataError, match="no value for train.jsonl row 7"):
        lowest_by_measure(examples([0, 7]), {0: 1.0}, 1)


def config(tmp_path, **values):
    return from_dict(SorryBenchConfig, {"model": "m", "dataset_path": str(tmp_path), "judge": "keyword_refusal",
                                        **values})


def test_select_train_reads_the_similarity_file(tmp_path):
    path = tmp_path / "sim" / "preference_similarities.jsonl"
    ln_ches = [2.0, -1.0, 0.5, -4.0, 3.0, -0.5]
    append_rows(path, [{"index": i, "ches": -v, "ln_ches": v} for i, v in enumerate(ln_ches)])
    cfg = config(tmp_path, similarity_path=str(path.parent), num_samples=2)
    # row 3 (-4.0) and row 1 (-1.0); row 5 was dropped (too long) so it cannot be picked
    assert [e.index for e in select_train(cfg, examples([0, 1, 2, 3, 4]), num_rows=6)] == [3, 1]
    cfg = config(tmp_path, similarity_path=str(path), num_samples=2, similarity_measure="ches")
    assert [e.index for e in select_train(cfg, examples(range(6)), num_rows=6)] == [4, 0]
    with pytest.raises(DataError, match="index 5 is not a row of train.jsonl"):
        select_train(config(tmp_path, similarity_path=str(path), num_samples=2), examples(range(5)), num_rows=5)


def test_without_similarity_file_num_samples_is_a_seeded_subset(tmp_path):
    cfg = config(tmp_path, num_samples=3, samples_seed=4)
    first = [e.index for e in select_train(cfg, examples(range(10)), 10)]
    assert first == [e.index for e in select_train(cfg, examples(range(10)), 10)] and len(set(first)) == 3
    assert len(select_train(config(tmp_path), examples(range(10)), 10)) == 10


@pytest.mark.parametrize("values, message", [
    ({"similarity_path": "x"}, "num_samples: with similarity_path"),
    ({"similarity_path": "x", "num_samples": 3, "use_gold_preferences": True}, "similarity_path: the similarity"),
    ({"judge": "keywords"}, "judge: unknown scorer 'keywords'; did you mean 'keyword_refusal'"),
    ({"similarity_measure": "lnches"}, "did you mean 'ln_ches'"),
    ({"dataset_path": ""}, "dataset_path: required"),
])
def test_config_errors_name_the_field(tmp_path, values, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **values)


def test_setting_names(tmp_path):
    assert setting_name(config(tmp_path)) == "dpo"
    assert setting_name(config(tmp_path, sft_coeff=1.0)) == "dpo+sft"
    assert setting_name(config(tmp_path, use_gold_preferences=True, lr=1e-6)) == "gold"
    assert setting_name(config(tmp_path, similarity_path="s", num_samples=19)) == "ln_ches_lowest_19"
    assert json.loads(json.dumps(config(tmp_path, judge={"type": "sorrybench_judge"}).judge))["type"] == \
        "sorrybench_judge"


def test_pair_kind_filters_keep_the_public_runners_score_pairs(tmp_path):
    rows = [{"chosen_score": c, "rejected_score": r} for c, r in ((0, 0), (0, 1), (1, 1), (0, 1), (None, 1), (0, 0))]
    kept = {name: [e.index for e in of_pair_kind(config(tmp_path, **{name: True}), examples(range(6)), rows)]
            for name in ("use_only_two_refusal_samples", "use_only_two_non_refusal_samples",
                         "use_only_one_of_each_samples")}
    assert kept == {"use_only_two_refusal_samples": [0, 5], "use_only_two_non_refusal_samples": [2],
                    "use_only_one_of_each_samples": [1, 3]}
    assert len(of_pair_kind(config(tmp_path), examples(range(6)), rows)) == 6
    with pytest.raises(ConfigError, match="use_only_one_of_each_samples: use_only_two_refusal_samples is set"):
        config(tmp_path, use_only_two_refusal_samples=True, use_only_one_of_each_samples=True)
    with pytest.raises(ConfigError, match="use_only_two_refusal_samples: filters the judged pairs"):
        config(tmp_path, use_only_two_refusal_samples=True, use_gold_preferences=True)
