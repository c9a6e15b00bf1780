"""Fingerprints of a run's local input data, so that a finished run whose data changed is not skipped.

A study marks the fields that name its input data with `option(..., data_path=True)`: a path, or a
dict of name -> path (e.g. elasticity's `data_sources`). For each local file or directory named,
config.json records `{"bytes": N, "sha256": ...}` (a
directory: over its files' relative names and contents); a hub id or an empty value records nothing.
The plan runner compares the record like any other config value (common/plans.py `run_status`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from typing import Any


def data_fingerprints(config: Any) -> dict:
    """{field: fingerprint} of the config's data_path fields that name local files or directories."""
    prints = {}
    for f in dataclasses.fields(config):
        if not f.metadata.get("data_path"):
            continue
        value = getattr(config, f.name)
        named = value.items() if isinstance(value, dict) else [(None, value)]
        for name, path in named:
            if isinstance(path, str) and path and os.path.exists(path):
                prints[f.name if name is None else f"{f.name}.{name}"] = fingerprint(path)
    return prints


def fingerprint(path: str) -> dict:
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, n) for d, _, names in os.walk(path) for n in names if not n.startswith("."))
    digest, total = hashlib.sha256(), 0
    for file in files:
        stat = os.stat(file)
        total += stat.st_size
        digest.update(os.path.relpath(file, path).encode() + b"\0")
        digest.update(_file_hash(os.path.realpath(file), stat.st_size, stat.st_mtime_ns).encode())
    return {"bytes": total, "sha256": digest.hexdigest()}


@functools.lru_cache(maxsize=1024)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, computed once per process for each (size, modification time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
