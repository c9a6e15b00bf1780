"""The similarity file: a damaged file or row is a DataError naming the file, never a traceback."""
import pytest

from ches.similarity_file import FILE_NAME, append_rows, measure_values, read_similarities
from common.errors import DataError


def write(tmp_path, text):
    (tmp_path / FILE_NAME).write_text(text)
    return tmp_path


def test_round_trip_and_truncated_last_line(tmp_path):
    append_rows(tmp_path / FILE_NAME, [{"index": 3, "ches": -1.5}, {"index": 0, "ches": 2}])
    with open(tmp_path / FILE_NAME, "a") as f:
        f.write('{"index": 7, "ch')  # a process killed mid-write: ignored, and cut by the next append
    assert read_similarities(tmp_path) == {3: {"index": 3, "ches": -1.5}, 0: {"index": 0, "ches": 2}}
    append_rows(tmp_path / FILE_NAME, [{"index": 7, "ches": 0.5}])
    assert measure_values(read_similarities(tmp_path), "ches") == {3: -1.5, 0: 2.0, 7: 0.5}


@pytest.mark.parametrize("text, message", [
    ('{"index": 0, "ches": 1}\nnot json\n{"index": 2, "ches": 1}\n', "line 2 is not JSON"),
    ('{"index": "a", "ches": 1}\n', "'index' must be an integer row number, got 'a'"),
    ('[1, 2]\n', "a row without 'index'"),
    ('{"ches": 1}\n', "a row without 'index'"),
])
def test_damaged_file_is_a_data_error(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_similarities(write(tmp_path, text))


def test_non_numeric_measure_is_a_data_error(tmp_path):
    rows = read_similarities(write(tmp_path, '{"index": 0, "ches": 1}\n{"index": 1, "ches": null}\n'))
    with pytest.raises(DataError, match="example 1: 'ches' must be a number, got None"):
        measure_values(rows, "ches", source="f")
    with pytest.raises(DataError, match="unknown similarity measure 'chess'"):
        measure_values(rows, "chess")
