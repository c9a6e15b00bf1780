"""Run records: atomic file writes, `metrics.jsonl`, optional wandb, and the run's log file.

`metrics.jsonl` is always written (one JSON object per line, each with a `step` and a `kind`, e.g.
"train" or "eval"). wandb is used only when a config turns it on; it honours WANDB_MODE (tests run
it offline and read the files it wrote).
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from common.errors import DataError

logger = logging.getLogger("alignlab")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk: drop the partial copy, and say which file it was
        tmp.unlink(missing_ok=True)
        if e.filename is None:
            e.filename = str(path)
        raise


def _json_default(obj: Any):
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file; one that is not JSON is a DataError naming it (OSError propagates: missing is not
    malformed, and common.cli prints it as one line)."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg}); the file is "
                        f"truncated or not a run's: delete it or re-run the plan") from None


def _read_text(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a jsonl file, tolerating a truncated last line (a run killed mid-write); another malformed line
    is a DataError naming the file and the line."""
    rows = []
    lines = _read_text(path).splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise DataError(f"{path}: line {i + 1} is not JSON ({e.msg}); the file was damaged: delete it or "
                            f"re-run the plan") from None
    return rows


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append `line` + newline with one write; a write that fails part-way is cut back off, so a reader
    never sees half a line (a full disk leaves the file as it was)."""
    data = (line + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        except OSError as e:
            os.ftruncate(fd, size)
            if e.filename is None:
                e.filename = str(path)
            raise
    finally:
        os.close(fd)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as strings so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Tracker:
    """Appends metric records to `run_dir/metrics.jsonl` and mirrors them to wandb when enabled.

    Only the main process writes (`enabled=False` elsewhere), so N processes give one file.
    """

    def __init__(self, run_dir: str | os.PathLike, *, config: dict | None = None, use_wandb: bool = False,
                 wandb_project: str = "alignment-lab", enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.wandb_run = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if use_wandb:
            import wandb

            # A stable id derived from the run directory lets a resumed run continue the same wandb run.
            run_id = hashlib.sha1(str(self.run_dir.resolve()).encode()).hexdigest()[:16]
            self.wandb_run = wandb.init(project=wandb_project, name=self.run_dir.name, id=run_id,
                                        resume="allow", dir=str(self.run_dir), config=config or {})

    def truncate_after(self, step: int) -> None:
        """Drop records past `step`: a run resumed from a checkpoint at `step` logs them again."""
        if self.enabled and self.path.exists():
            write_jsonl(self.path, [r for r in read_jsonl(self.path) if r.get("step", 0) <= step])

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {k: _clean(v) for k, v in record.items()}
        append_line(self.path, json.dumps(record, default=_json_default))
        if self.wandb_run is not None:
            prefix = "/".join(str(record[k]) for k in ("kind", "split") if k in record)
            numbers = {f"{prefix}/{k}": v for k, v in record.items()
                       if k not in ("kind", "split", "step") and isinstance(v, (int, float))}
            self.wandb_run.log(numbers, step=int(record.get("step", 0)))

    def finish(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def attach_run_log(run_dir: str | os.PathLike) -> logging.Handler:
    """Copy the framework's log lines into `run_dir/log.txt`; returns the handler to detach later."""
    handler = logging.FileHandler(Path(run_dir) / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return handler


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def log_from_main_only(is_main: bool) -> None:
    """On processes other than the main one keep only warnings and errors, so N processes print (and
    write to log.txt) each info line once."""
    if not is_main and not any(isinstance(f, _WarningsOnly) for f in logger.filters):
        logger.addFilter(_WarningsOnly())


class _StderrHandler(logging.StreamHandler):
    """Writes to the current sys.stderr, looked up at each record (a handler that kept the stream of
    its set-up would write to a closed file once a caller, e.g. a test's capture, replaced it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # logging.StreamHandler.__init__ assigns it
        pass


def setup_console_logging() -> None:
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
