"""What every results printer shares: finding a study's runs under a directory, printing tables, saving plots.

A run directory is one holding `config.json` (written by the plan runner, common/plans.py); it is
finished when it also holds `summary.json`. The search does not descend into a run directory, so the
models and checkpoints saved inside runs (their own config.json) are never taken for runs.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

from common.errors import DataError
from common.tracking import read_json


@dataclass(frozen=True)
class Run:
    dir: Path
    config: dict
    summary: dict


class FoundRuns(NamedTuple):
    finished: list[Run]  # in path order
    unfinished: list[Path]  # run directories of the study without summary.json yet


def read_run_file(path: Path) -> Any:
    """A run's JSON file; an unreadable or malformed one is a DataError naming it."""
    try:
        return read_json(path)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg}); delete it or "
                        f"re-run the plan") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e}); delete it or re-run the plan") from None


def find_runs(experiments_dir: str | Path, study: Optional[str] = None, *,
              legacy: Optional[Callable[[dict], bool]] = None) -> FoundRuns:
    """The runs under `experiments_dir` (any depth), of `study` when given.

    A run's study is the "study" key of its config.json. A config.json written before that key
    existed belongs to `study` when `legacy(config)` says so (no `legacy`: it does); its config then
    gets the key, so every returned config has the same fields.
    """
    root = Path(experiments_dir)
    if not root.is_dir():
        raise DataError(f"--experiments_dir {root}: no such directory")
    finished, unfinished = [], []
    pending = [root]
    while pending:
        directory = pending.pop()
        config_path = directory / "config.json"
        if not config_path.is_file():
            pending.extend(sorted((p for p in directory.iterdir() if p.is_dir()), reverse=True))
            continue
        config = read_run_file(config_path)
        if not isinstance(config, dict):
            continue  # not a run's config
        if study is not None:
            if "study" not in config and (legacy is None or legacy(config)):
                config["study"] = study
            if config.get("study") != study:
                continue  # another study's run, or a saved model
        summary_path = directory / "summary.json"
        if summary_path.is_file():
            summary = read_run_file(summary_path)
            if not isinstance(summary, dict):
                raise DataError(f"{summary_path}: expected a JSON object; delete it to re-run that run")
            finished.append(Run(directory, config, summary))
        else:
            unfinished.append(directory)
    return FoundRuns(sorted(finished, key=lambda r: str(r.dir)), sorted(unfinished))


# ----------------------------------------------------------------------------------------------
# Tables


def number(value: Any, digits: int = 4) -> str:
    """A cell's text: `digits` significant digits for floats, integers as they are, None/NaN as "-"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}g}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, align: Optional[str] = None,
                 digits: int = 4) -> str:
    """A header, a rule and the rows, each column padded to its widest cell.

    Numbers are written by `number(value, digits)`. `align` has one letter per column, "l" or "r";
    by default a column is right-aligned when all its cells are numbers (or None), else left-aligned.
    """
    if align is None:
        align = "".join("r" if rows and all(c is None or (isinstance(c, (int, float)) and not isinstance(c, bool))
                                            for c in column) else "l" for column in zip(*rows))
        align = align or "l" * len(header)
    if len(align) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError("format_table: every row and `align` need one entry per header column")
    cells = [list(map(str, header))] + [[number(c, digits) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(row) for row in cells[1:]])



# ----------------------------------------------------------------------------------------------
# Plots


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only: printers run on machines without a display),
    imported when a plot is drawn, so printing tables never needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, dpi: int = 120) -> Path:
    """Lay `fig` out, write it to `path` (making its folder) and close it, freeing its memory; return `path`."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
