"""write_table/read_table round trips: every column kind comes back with its values and dtype."""
import numpy as np
import pyarrow.parquet as pq

from tds.storage import read_table, write_table


def test_columns_round_trip(tmp_path):
    grid = np.arange(24, dtype=np.float32).reshape(6, 4)
    columns = {"i8": np.array([0, 1, 2, -1, 1, 2], dtype=np.int8), "i32": np.arange(6, dtype=np.int32),
               "i64": np.arange(6, dtype=np.int64) * 10 ** 12, "u16": np.arange(6, dtype=np.uint16),
               "f32": np.array([0.5, -np.inf, np.inf, np.nan, 1e-40, 3.25], dtype=np.float32),
               "f64": np.linspace(0, 1, 6), "strided": np.arange(12, dtype=np.int32)[::2],
               "flags": np.array([True, False] * 3),
               "topk": grid, "topk_ids": grid[:, ::-1].astype(np.int32), "text": ["a", "<b>", "", "é", "\n", " x"]}
    path = tmp_path / "t.parquet"
    write_table(path, columns)
    back = read_table(path)
    assert list(back) == list(columns)
    for name, values in columns.items():
        expected = np.asarray(values)
        np.testing.assert_array_equal(back[name], expected, err_msg=name)
        assert back[name].dtype.kind == expected.dtype.kind or name == "text", name
    schema = pq.read_schema(path)
    assert str(schema.field("i8").type) == "int8" and str(schema.field("strided").type) == "int32"
    topk = schema.field("topk").type
    assert topk.list_size == 4 and str(topk.value_type) == "float"
