"""Experiment plans: JSON -> expanded, validated run configs, and the runner that skips finished runs.

A plan (see docs/plans.md):
    {"name": ..., "description": ..., "skip": false, "repetitions": 1,
     "configurations": [{"base_config": {...}, "options": {"field": [v1, v2]}, "skip": false}]}

`options` expand as a Cartesian product over each configuration; `{field}` inside strings is filled
from the run's final config (defaults included), so `experiment_name` and paths that name another
run's output can be derived instead of hand-edited. With `repetitions` R > 1 every run is repeated
with `seed + r`, and `_rep{r}` is appended to its name unless the name uses `{repetition}`.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from common.config import did_you_mean, from_dict, run_config_class, to_dict
from common.distributed import process_state
from common.errors import ConfigError, DataError
from common.fingerprint import data_fingerprints
from common.rundir import (
    LOCK_FILE,
    clear_run_dir,
    foreign_dir_error,
    in_use_error,
    is_empty_dir,
    is_run_dir,
    lock_holder,
    remove_resume_state,
    remove_stale_temporaries,
    run_dir_lock,
    write_summary,
)
from common.tracking import attach_run_log, logger, read_json, write_json

PLAN_KEYS = {"name", "description", "skip", "repetitions", "configurations"}
CONFIGURATION_KEYS = {"base_config", "options", "skip"}
_TEMPLATE = re.compile(r"\{(\w+)\}")
MAX_RUNS = 100_000  # more is a typo in the options (10**5 runs dry-run in seconds; 10**10 would never end)


@dataclass
class PlannedRun:
    index: int
    config: Any
    origin: str  # e.g. "configurations[1], options {'seed': 3}"

    @functools.cached_property
    def run_dir(self) -> Path:
        return Path(os.path.normpath(os.path.join(self.config.outputs_dir, self.config.experiment_name)))


def load_plan(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: plan file not found")
    try:
        plan = json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the plan as UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{path}: JSON nested too deeply; a plan is a few levels of objects and lists") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: unreadable JSON: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the plan: {e.strerror}") from None
    if not isinstance(plan, dict):
        raise ConfigError(f"{path}: a plan is a JSON object with a 'configurations' list")
    return plan


def _check_keys(obj: dict, allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}")


@functools.lru_cache(maxsize=4096)
def _template_pieces(text: str) -> tuple[str, ...]:
    """`text` split at its `{field}`s: (literal, field, literal, ..., literal); parsed once per string."""
    return tuple(_TEMPLATE.split(text))


def _fill_templates(values: dict, origins: dict, context: dict, candidates=None) -> dict:
    """Replace `{name}` in string values by other values of the run (defaults and `context` included);
    a template that refers back to itself, directly or through others, is an error naming the cycle.
    `candidates`: the only keys whose values may hold templates (default: all)."""
    templated = {k for k in (candidates if candidates is not None else values)
                 if isinstance(values[k], str) and "{" in values[k]}
    if not templated:
        return values
    filled, resolving = {}, []

    def resolve(key: str) -> Any:
        if key in filled or key not in templated:
            return filled.get(key, values[key])
        value = values[key]
        if key in resolving:
            cycle = " -> ".join(resolving[resolving.index(key):] + [key])
            raise ConfigError(f"{origins.get(key, key)}: templates refer to each other in a cycle: {cycle}; "
                              f"write one of them without a template")
        resolving.append(key)

        pieces = list(_template_pieces(value))
        for i in range(1, len(pieces), 2):  # left to right, as the errors name the first bad field
            name = pieces[i]
            if name in context:
                pieces[i] = str(context[name])
            elif name not in values:
                raise ConfigError(f"{origins.get(key, key)}: template {{{name}}} names no config field"
                                  f"{did_you_mean(name, list(values) + list(context))}")
            else:
                pieces[i] = str(resolve(name))
        filled[key] = "".join(pieces)
        resolving.pop()
        return filled[key]

    for key in templated:
        resolve(key)
    return {**values, **filled}


def _plan_flag(obj: dict, key: str, where: str) -> bool:
    """A plan-level true/false (`skip`): strictly a JSON boolean, so "false" is not taken for true."""
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected true or false, got {json.dumps(value)}")
    return value


def _integer(value: Any) -> int | None:
    """`value` as an int when it is one (3 or 3.0), else None (from_dict then reports its type)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, float) and value.is_integer() else None


@functools.lru_cache(maxsize=None)
def _defaults(cls: type) -> dict:
    instance = cls()
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(cls)}


@functools.lru_cache(maxsize=None)
def _mutable_defaults(cls: type) -> tuple[str, ...]:
    """The fields whose default is a list or dict: each run gets its own copy."""
    return tuple(k for k, v in _defaults(cls).items() if isinstance(v, (list, dict)))


@functools.lru_cache(maxsize=None)
def _templated_defaults(cls: type) -> tuple[str, ...]:
    """The fields whose default holds a template, e.g. a path "{outputs_dir}/model"."""
    return tuple(k for k, v in _defaults(cls).items() if isinstance(v, str) and "{" in v)


def _checked_configurations(plan: dict, plan_name: str, repetitions: int) -> list[tuple[int, dict, dict]]:
    """(index, base_config, options) of each configuration not skipped, with their shapes checked and
    the number of runs they make counted before any is built (a plan of 10**10 runs fails at once)."""
    configurations = plan.get("configurations")
    if not isinstance(configurations, list) or not configurations:
        raise ConfigError(f"{plan_name}: configurations: expected a non-empty list of objects")
    checked, sizes = [], []
    for ci, configuration in enumerate(configurations):
        where = f"{plan_name}: configurations[{ci}]"
        if not isinstance(configuration, dict):
            raise ConfigError(f"{where}: expected an object with base_config and options")
        _check_keys(configuration, CONFIGURATION_KEYS, where)
        if _plan_flag(configuration, "skip", where):
            continue
        base = configuration.get("base_config", {})
        options = configuration.get("options", {})
        if not isinstance(base, dict):
            raise ConfigError(f"{where}.base_config: expected an object")
        if not isinstance(options, dict):
            raise ConfigError(f"{where}.options: expected an object mapping fields to lists of values")
        for key, values in options.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}.options.{key}: expected a non-empty list of values, "
                                  f"got {json.dumps(values)}")
        checked.append((ci, base, options))
        sizes.append(math.prod(len(v) for v in options.values()) * repetitions)
    if sum(sizes) > MAX_RUNS:
        biggest = max(range(len(sizes)), key=sizes.__getitem__)
        raise ConfigError(f"{plan_name}: the plan expands to {sum(sizes):,} runs (configurations[{checked[biggest][0]}]"
                          f": {sizes[biggest]:,}); at most {MAX_RUNS:,} per plan: use fewer options or "
                          f"repetitions, or split it into several plans")
    return checked


def expand_plan(plan: dict, config_cls: type, plan_name: str = "plan.json",
                overrides: dict[str, Any] | None = None) -> list[PlannedRun]:
    """Expand a plan into validated runs, in plan order. Raises ConfigError naming the JSON path.

    `overrides` (the command line's `--set field=value`) replace the field in every configuration's
    base_config and options before expansion; their errors name `--set field`.
    """
    overrides = overrides or {}
    set_origins = {k: f"--set {k}" for k in overrides}
    _check_keys(plan, PLAN_KEYS, plan_name)
    if _plan_flag(plan, "skip", plan_name):
        return []
    repetitions = plan.get("repetitions", 1)
    if not isinstance(repetitions, int) or isinstance(repetitions, bool) or repetitions < 1:
        raise ConfigError(f"{plan_name}: repetitions: expected an integer >= 1, got {json.dumps(repetitions)}")

    runs: list[PlannedRun] = []
    for ci, base, options in _checked_configurations(plan, plan_name, repetitions):
        where = f"{plan_name}: configurations[{ci}]"
        options = {k: v for k, v in options.items() if k not in overrides}
        base = {**base, **overrides}
        base_origins = {**{k: f"{where}.base_config.{k}" for k in base}, **set_origins}
        key_origins = {**{k: f"{where}.options.{k}" for k in options}, **base_origins}
        labels = {k: [f"{k}={json.dumps(v)}" for v in values] for k, values in options.items()}
        default_origins: dict[type, dict] = {}
        keys = list(options)
        for choice in itertools.product(*(range(len(options[k])) for k in keys)):
            chosen = {**base, **{key: options[key][i] for key, i in zip(keys, choice)}}
            run_cls = run_config_class(config_cls, chosen, key_origins)  # the class of this run, keys checked
            defaults = _defaults(run_cls)
            values = {**defaults, **{k: copy.deepcopy(defaults[k]) for k in _mutable_defaults(run_cls)}, **base}
            if run_cls not in default_origins:
                default_origins[run_cls] = {**{k: f"{where}.{k}" for k in defaults}, **base_origins}
            origins = dict(default_origins[run_cls])
            for key, i in zip(keys, choice):
                values[key] = options[key][i]
                origins[key] = f"{where}.options.{key}[{i}]"
            label = ", ".join(labels[k][i] for k, i in zip(keys, choice))
            for rep in range(repetitions):
                rep_values = dict(values)
                seed, name = _integer(values["seed"]), values["experiment_name"]
                if repetitions > 1 and seed is not None:  # else from_dict reports the seed's type
                    rep_values["seed"] = seed + rep
                if repetitions > 1 and isinstance(name, str) and "{repetition}" not in name:
                    rep_values["experiment_name"] = f"{name}_rep{rep}"
                filled = _fill_templates(rep_values, origins, {"repetition": rep},
                                         [*_templated_defaults(run_cls), *chosen])
                config = from_dict(run_cls, filled, origins)
                origin = f"configurations[{ci}]" + (f" ({label})" if label else "")
                if repetitions > 1:
                    origin += f" repetition {rep}"
                runs.append(PlannedRun(len(runs), config, origin))

    check_distinct_run_dirs(runs, plan_name)
    return runs


def _real_path(path: str) -> str:
    """os.path.realpath of a normalised path, resolving each parent directory once (a plan's runs share
    few parents): only a leaf that is a symbolic link needs resolving on its own."""
    parent, name = os.path.split(path)
    real = os.path.join(_real_parent(parent), name)
    return os.path.realpath(real) if os.path.islink(real) else real


@functools.lru_cache(maxsize=4096)
def _real_parent(parent: str) -> str:
    return os.path.realpath(parent)


def check_distinct_run_dirs(runs: list[PlannedRun], plan_name: str) -> None:
    """No two runs share a directory, or nest (--force on the outer one would delete the inner one),
    compared after resolving `..`, symbolic links and trailing slashes."""
    by_dir = {}
    for run in runs:
        real = _real_path(str(run.run_dir))
        other = by_dir.get(real)
        if other is not None:
            alias = f" (as {run.run_dir})" if run.run_dir != other.run_dir else ""
            raise ConfigError(f"{plan_name}: runs {other.index} ({other.origin}) and {run.index} ({run.origin}) "
                              f"both write to {other.run_dir}{alias}; put the varying fields in experiment_name, "
                              f"e.g. \"name_{{seed}}\"")
        by_dir[real] = run

    @functools.lru_cache(maxsize=None)  # the runs share few parent directories: each is looked up once
    def run_at_or_above(directory: str) -> PlannedRun | None:
        parent = os.path.dirname(directory)
        return by_dir.get(directory) or (None if parent == directory else run_at_or_above(parent))

    for real, run in by_dir.items():
        parent = os.path.dirname(real)
        outer = None if parent == real else run_at_or_above(parent)
        if outer is not None:
            raise ConfigError(f"{plan_name}: run {run.index} ({run.origin}) writes to {run.run_dir}, inside the "
                              f"directory of run {outer.index} ({outer.origin}); give them sibling experiment_names")


# ----------------------------------------------------------------------------------------------
# Run status and the runner

FINISHED = "finished"
FOREIGN = "foreign"


def run_status(run: PlannedRun) -> str:
    """'new', 'finished', 'partial' (started, not finished: resumes), 'changed' (other config) or
    'foreign' (a file, or a non-empty directory that is not a run's: never written into or deleted).

    A directory with a config but nothing else of a run (it failed during set-up: a missing file, a
    bad token) counts as new, so a corrected plan simply replaces it.
    """
    if not run.run_dir.exists() or is_empty_dir(run.run_dir):
        return "new"
    if not is_run_dir(run.run_dir):
        return FOREIGN
    if not any(p.name not in ("config.json", "log.txt", LOCK_FILE) for p in run.run_dir.iterdir()):
        return "new"
    try:
        stored = stored_config(run)
    except (OSError, DataError, AttributeError):
        return "changed"
    if stored != _compared(stored, config_record(run.config)):
        return "changed"
    return FINISHED if (run.run_dir / "summary.json").exists() else "partial"


def study_of(config: Any) -> str:
    """The study a config belongs to: the package of its class (tds.config.TDSConfig -> "tds")."""
    return type(config).__module__.split(".")[0]


def config_record(config: Any) -> dict:
    """What a run's config.json holds: the study (so printers find their own runs), the fields, then
    `data_files`, the fingerprints of its local input data (common/fingerprint.py), when it has any."""
    record = {"study": study_of(config), **json.loads(json.dumps(to_dict(config)))}
    prints = data_fingerprints(config)
    return {**record, "data_files": prints} if prints else record


def stored_config(run: PlannedRun) -> dict:
    """The run directory's config.json; one written before config.json named its study counts as this
    run's study, so such a run stays finished (or resumes) instead of looking changed."""
    stored = read_json(run.run_dir / "config.json")
    stored.setdefault("study", study_of(run.config))
    return stored


def _compared(stored: dict, current: dict) -> dict:
    """`current` as compared with `stored`: a run recorded before data fingerprints existed keeps its
    status (its data cannot be compared)."""
    return current if "data_files" in stored else {k: v for k, v in current.items() if k != "data_files"}


def describe_changes(run: PlannedRun) -> str:
    stored = stored_config(run)
    current = _compared(stored, config_record(run.config))
    diffs = [f"{k}: {json.dumps(stored.get(k))} -> {json.dumps(current.get(k))}"
             for k in sorted(set(stored) | set(current)) if stored.get(k) != current.get(k)]
    return "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")


RunFn = Callable[[Any, Path], dict]


def run_plan(plan_path: str | Path, config_cls: type, run_fn: RunFn, *, dry_run: bool = False,
             force: bool = False, only: list[int] | None = None,
             overrides: dict[str, Any] | None = None) -> list[PlannedRun]:
    """Expand the plan (with `overrides`, see expand_plan) and run each run not finished yet; returns
    the runs of the plan.

    `run_fn(config, run_dir) -> summary dict` does the study's work; when it returns, the summary is
    written to `run_dir/summary.json` (the run's "finished" mark). A run directory holding another
    config is an error unless `force` (which clears it); one that is not a run's, or that another
    process is running, is an error. Under `accelerate launch` every process
    executes the same runs; only the main process writes the run files.
    """
    plan_path = Path(plan_path)
    plan = load_plan(plan_path)
    runs = expand_plan(plan, config_cls, str(plan_path), overrides)
    if only:
        bad = [i for i in only if not 0 <= i < len(runs)]
        if bad:
            raise ConfigError(f"--only {bad[0]}: the plan has {len(runs)} runs (0..{len(runs) - 1}); "
                              f"use --dry_run to list them")
        selected = [runs[i] for i in only]
    else:
        selected = runs

    if dry_run:
        print(f"plan {plan.get('name', plan_path.stem)}: {len(runs)} runs")
        for run in selected:
            print(f"  [{run.index}] {run_status(run):8s} {run.run_dir}  <- {run.origin}")
        return runs

    main = process_state().is_main_process
    for run in selected:  # check every run before starting any, so a late conflict loses no time
        if main:  # one peek per plan (ranks would collide), first: a run being set up looks foreign for a moment
            check_not_in_use(run.run_dir)
        status = run_status(run)
        if status == FOREIGN:
            raise foreign_dir_error(run.run_dir)
        if not force and status == "changed":
            raise ConfigError(f"{run.run_dir}: holds a run with a different config ({describe_changes(run)}); "
                              f"rename experiment_name or pass --force to overwrite it")

    for run in selected:
        execute_run(run, run_fn, force=force)
    return runs


def check_not_in_use(run_dir: Path) -> None:
    """ConfigError naming the process that holds the run's lock, if one does. Checked before anything else
    about the directory: while its holder writes config.json, the directory holds only the lock and a
    temporary file, which would otherwise read as a directory that is not a run's."""
    holder = lock_holder(run_dir)
    if holder is not None:
        raise in_use_error(run_dir, holder)


def execute_run(run: PlannedRun, run_fn: RunFn, *, force: bool = False) -> None:
    """Run one planned run unless it is finished (or `force`): config.json, run_fn, then summary.json.

    The main process holds the run directory's lock throughout (see common/rundir.py): a second
    process on the same run is a ConfigError naming the holder. A directory that is not a run's is
    refused, `force` clears a run's directory. Studies that also take a run from command-line flags
    build a `PlannedRun` and call this.
    """
    state = process_state()
    if state.is_main_process:
        check_not_in_use(run.run_dir)
    if run_status(run) == FOREIGN:  # checked before the lock, whose file would land in the directory
        raise foreign_dir_error(run.run_dir)
    with run_dir_lock(run.run_dir) if state.is_main_process else contextlib.nullcontext():
        state.wait_for_everyone()
        status = run_status(run)  # under the lock: no other process changes it any more
        state.wait_for_everyone()  # every process decides on the same status before the directory changes
        if status == FINISHED and not force:
            logger.info(f"[{run.index}] skip (finished): {run.run_dir}")
            if state.is_main_process:
                remove_resume_state(run.run_dir)
            return
        if state.is_main_process:
            if force and status != "new":
                clear_run_dir(run.run_dir)
            remove_stale_temporaries(run.run_dir)
            write_json(run.run_dir / "config.json", config_record(run.config))
        state.wait_for_everyone()
        handler = attach_run_log(run.run_dir) if state.is_main_process else None
        try:
            logger.info(f"[{run.index}] {'resume' if status == 'partial' else 'run'}: {run.run_dir}  <- {run.origin}")
            from accelerate.utils import set_seed  # local: accelerate imports torch, plans stay light

            set_seed(run.config.seed)  # every run is seeded from its config (python, numpy, torch)
            summary = run_fn(run.config, run.run_dir) or {}
            if state.is_main_process:
                write_summary(run.run_dir, {"status": FINISHED, **summary})
        finally:
            if handler is not None:
                logger.removeHandler(handler)
                handler.close()
        state.wait_for_everyone()
