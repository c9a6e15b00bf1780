"""The files of an analysis directory: columnar parquet tables, written atomically.

    token_shifts.parquet   one row per response token: the columns of `tds.analysis.COLUMNS`
                           (top-k ids/log-probs as fixed-size list columns)
    examples.parquet       one row per example: id, instruction, response, prompts as the models saw
                           them, token count, category counts and ratios, mean KL
    tokens.json            {token id: decoded text} for every id in token_shifts.parquet
    parts/part-NNNNNN.parquet   finished chunks of examples while the analysis runs (the resume points)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.errors import DataError
from common.tracking import read_json

TOKEN_TABLE = "token_shifts.parquet"
EXAMPLE_TABLE = "examples.parquet"
TOKEN_STRINGS = "tokens.json"


def _arrow_array(values: np.ndarray | list) -> pa.Array:
    """A numeric numpy column wrapped without a copy; anything else through pa.array.

    (pa.array imports pandas on its first call, to check whether its input is a pandas object: about
    0.3 s, more than writing a 32-response table takes.)
    """
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iuf" and values.dtype.isnative:
        values = np.ascontiguousarray(values)
        return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])
    return pa.array(values)


def write_table(path: str | os.PathLike, columns: dict[str, np.ndarray | list]) -> None:
    """Columns -> parquet at `path`, atomically; 2-D numpy columns become fixed-size list columns."""
    arrays = {}
    for name, values in columns.items():
        if isinstance(values, np.ndarray) and values.ndim == 2:
            flat = _arrow_array(values.reshape(-1))
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        else:
            arrays[name] = _arrow_array(values)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(pa.table(arrays), tmp, compression="zstd")
    os.replace(tmp, path)


def read_table(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A parquet table as numpy columns; fixed-size list columns come back 2-D."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found (is this a finished TDS analysis directory? run python -m tds first)")
    table = pq.read_table(path)
    columns = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            width = column.type.list_size
            columns[name] = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        else:
            columns[name] = column.to_numpy(zero_copy_only=False)
    return columns


def concat_tables(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}


def read_token_strings(analysis_dir: str | os.PathLike) -> dict[int, str]:
    path = Path(analysis_dir) / TOKEN_STRINGS
    if not path.is_file():
        raise DataError(f"{path}: not found (is this a finished TDS analysis directory?)")
    return {int(k): v for k, v in read_json(path).items()}
