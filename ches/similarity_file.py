"""The per-example preference-similarity file: written by pref_similarity.compute, read by any study (sorrybench).

One JSON object per line, keyed by the example's index in the source preference set:
    {"index": 12, "ches": ..., "ln_ches": ..., "minus_normalized_edit_distance": ...,
     "last_hidden_inner_prod": ..., "preferred_len": 7, "dispreferred_len": 9}
Lines are appended as examples finish, so an interrupted computation resumes from what is there;
a truncated last line (a killed process) is ignored.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from common.errors import DataError
from common.tracking import read_jsonl

MEASURES = ("ches", "ln_ches", "minus_normalized_edit_distance", "last_hidden_inner_prod")
FILE_NAME = "preference_similarities.jsonl"


def append_rows(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Append finished examples and flush them to disk (the resume point).

    A truncated last line left by a killed process is cut off first, so appended rows start on a
    line of their own.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    drop_partial_last_line(path)
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def drop_partial_last_line(path: str | os.PathLike) -> None:
    """Cut a last line without its newline (a process killed mid-write); that row is computed again."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)  # rfind gives -1 when no line is complete: truncate to 0


def read_similarities(path: str | os.PathLike) -> dict[int, dict]:
    """index -> row. A directory is taken to hold `preference_similarities.jsonl`."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        raise DataError(f"{path}: preference similarity file not found (run python -m pref_similarity.compute)")
    lines = read_jsonl(path)  # a damaged line before the last is a DataError naming the file and line
    rows = {}
    for row in lines:
        if not isinstance(row, dict) or "index" not in row:
            raise DataError(f"{path}: a row without 'index'")
        if isinstance(row["index"], bool) or not isinstance(row["index"], int):
            raise DataError(f"{path}: 'index' must be an integer row number, got {row['index']!r}")
        rows[row["index"]] = row
    return rows


def measure_values(rows: dict[int, dict], measure: str, source: str = "similarity file") -> dict[int, float]:
    """index -> value of one measure, with a clear error for an unknown measure."""
    if measure not in MEASURES:
        raise DataError(f"unknown similarity measure {measure!r}; choose one of {', '.join(MEASURES)}")
    missing = [i for i, r in rows.items() if measure not in r]
    if missing:
        raise DataError(f"{source}: example {missing[0]} has no {measure!r}")
    bad = [i for i, r in rows.items() if isinstance(r[measure], bool) or not isinstance(r[measure], (int, float))]
    if bad:
        raise DataError(f"{source}: example {bad[0]}: {measure!r} must be a number, got {rows[bad[0]][measure]!r}")
    return {i: float(r[measure]) for i, r in rows.items()}
