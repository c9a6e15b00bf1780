"""Run directories kept safe: the run marker, one lock per run, atomic checkpoints, a durable finish.

- A directory is a *run directory* when its `config.json` was written by the runner: a JSON object
  holding the fields every RunConfig has. Only such a directory (or an empty one) is written into,
  cleared by `--force` or cleaned; anything else (a model, a folder of other runs) is refused.
- One process at a time works in a run directory: it holds an exclusive `flock` on `run_dir/.lock`
  (non-blocking; the kernel drops it when the process dies, so a killed run's lock is simply taken over).
- Resume state (`checkpoint/`, and `checkpoint.prev/` while a new one is moved in) is replaced so
  that one complete checkpoint exists at every instant, and removed only after `summary.json` is on disk.
- Temporary files and directories (`.NAME.tmp`, `.NAME.tmp-PID`) found when the lock is taken were
  left by a killed process (nobody else may write there) and are removed.

ALAB_CRASH_AT=<point> makes the process exit abruptly at that point (`crash_point`), so tests can kill
a run at each write step.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from common.errors import ConfigError
from common.tracking import logger, write_json

LOCK_FILE = ".lock"
CHECKPOINT_DIR = "checkpoint"
PREVIOUS_CHECKPOINT_DIR = "checkpoint.prev"
RESUME_STATE = (CHECKPOINT_DIR, PREVIOUS_CHECKPOINT_DIR)
RUN_KEYS = ("experiment_name", "outputs_dir", "seed")  # fields of every RunConfig: the runner wrote the file
CRASH_EXIT = 86
_TEMPORARY = re.compile(r"^\..+\.tmp(-\d+)?$")


def crash_point(name: str) -> None:
    """Test hook: exit at once, as `kill -9` would leave the files, when ALAB_CRASH_AT names this point."""
    if os.environ.get("ALAB_CRASH_AT") == name:
        os._exit(CRASH_EXIT)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames and new entries in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Make every file under `path` durable (an FSDP checkpoint keeps its shards in a subdirectory)."""
    for entry in path.iterdir():
        if entry.is_dir():
            fsync_tree(entry)
            continue
        with open(entry, "rb+") as f:
            os.fsync(f.fileno())
    fsync_dir(path)


# ----------------------------------------------------------------------------------------------
# Which directories may be written, cleared or deleted


def is_run_dir(path: Path) -> bool:
    """True when `path/config.json` is a config the runner wrote (see the module docstring)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and all(k in config for k in RUN_KEYS)


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and all(p.name == LOCK_FILE for p in path.iterdir())


def foreign_dir_error(path: Path) -> ConfigError:
    what = "is not a directory" if path.exists() and not path.is_dir() else \
        "is not a run directory (no config.json written by a run)"
    return ConfigError(f"{path}: {what}; refusing to write into or delete it (with or without --force): "
                       f"choose another experiment_name / outputs_dir (--output_dir), or move its files away")


def clear_run_dir(run_dir: Path) -> None:
    """`--force`: delete a run directory's contents (not its lock). Refuses anything but a run directory,
    and a run directory that holds another run's directory."""
    if not is_run_dir(run_dir):
        raise foreign_dir_error(run_dir)
    for dirpath, _, files in os.walk(run_dir):
        if Path(dirpath) != run_dir and "config.json" in files and is_run_dir(Path(dirpath)):
            raise ConfigError(f"{run_dir}: holds another run's directory {dirpath}; --force would delete it: "
                              f"move it out first")
    for entry in run_dir.iterdir():
        if entry.name != LOCK_FILE:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the `.NAME.tmp[-PID]` files and directories of killed processes (call with the lock held)."""
    for dirpath, dirs, files in os.walk(run_dir):
        for name in [d for d in dirs if _TEMPORARY.match(d)]:
            logger.info(f"removing {Path(dirpath) / name}, left by a killed process")
            shutil.rmtree(Path(dirpath) / name, ignore_errors=True)
            dirs.remove(name)
        for name in files:
            if _TEMPORARY.match(name):
                (Path(dirpath) / name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# One process per run directory


def lock_holder(run_dir: Path) -> Optional[str]:
    """The pid written by the process that holds the run's lock, "another process" if unknown, or None."""
    path = run_dir / LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            return f.read().strip() or "another process"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def in_use_error(run_dir: Path, holder: str) -> ConfigError:
    return ConfigError(f"run {run_dir} is in use by process {holder}; wait for it to finish (or stop it), "
                       f"or leave this run out with --only")


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock (creating the directory); ConfigError naming the holder when it is taken."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise in_use_error(run_dir, os.pread(fd, 64, 0).decode().strip() or "another process") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as e:  # a full disk: name the file for the one-line error
            e.filename = str(run_dir / LOCK_FILE)
            raise
        yield
    finally:
        os.close(fd)  # releases the lock


# ----------------------------------------------------------------------------------------------
# Checkpoint rotation and the finish


def install_checkpoint(tmp: Path, run_dir: Path) -> None:
    """Move the complete checkpoint written in `tmp` to run_dir/checkpoint, keeping the previous one
    until the new one is in place: a crash at any point leaves at least one complete checkpoint."""
    current, previous = run_dir / CHECKPOINT_DIR, run_dir / PREVIOUS_CHECKPOINT_DIR
    fsync_tree(tmp)
    crash_point("checkpoint_written")
    if current.exists():
        shutil.rmtree(previous, ignore_errors=True)  # an older one; `current` is complete
        os.replace(current, previous)
        crash_point("checkpoint_moved_aside")
    os.replace(tmp, current)
    fsync_dir(run_dir)
    crash_point("checkpoint_installed")
    shutil.rmtree(previous, ignore_errors=True)


def checkpoint_candidates(run_dir: Path) -> list[Path]:
    """The checkpoints to try on resume, newest first."""
    return [run_dir / name for name in RESUME_STATE if (run_dir / name).is_dir()]


def write_summary(run_dir: Path, summary: dict) -> None:
    """Write summary.json (the "finished" mark) durably, then drop the resume state it makes useless."""
    write_json(run_dir / "summary.json", summary)
    fsync_dir(run_dir)
    crash_point("summary_written")
    remove_resume_state(run_dir)


def remove_resume_state(run_dir: Path) -> None:
    """Drop the checkpoints of a finished run (also those a kill right after summary.json left behind)."""
    for name in RESUME_STATE:
        shutil.rmtree(run_dir / name, ignore_errors=True)
