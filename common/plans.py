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

import dataclasses
import itertools
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from common.config import did_you_mean, from_dict, run_config_class, to_dict
from common.distributed import process_state
from common.errors import ConfigError
from common.tracking import attach_run_log, logger, read_json, write_json

PLAN_KEYS = {"name", "description", "skip", "repetitions", "configurations"}
CONFIGURATION_KEYS = {"base_config", "options", "skip"}
_TEMPLATE = re.compile(r"\{(\w+)\}")


@dataclass
class PlannedRun:
    index: int
    config: Any
    origin: str  # e.g. "configurations[1], options {'seed': 3}"

    @property
    def run_dir(self) -> Path:
        return Path(self.config.outputs_dir) / self.config.experiment_name


def load_plan(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: plan file not found")
    try:
        plan = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(plan, dict):
        raise ConfigError(f"{path}: a plan is a JSON object with a 'configurations' list")
    return plan


def _check_keys(obj: dict, allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}")


def _fill_templates(values: dict, origins: dict, context: dict) -> dict:
    """Replace `{name}` in string values by other values of the run (defaults and `context` included)."""
    filled = dict(values)
    for _ in range(10):  # templates may refer to templated fields; 10 levels is plenty
        changed = False
        for key, value in filled.items():
            if not isinstance(value, str) or "{" not in value:
                continue

            def substitute(match: re.Match) -> str:
                name = match.group(1)
                if name in context:
                    return str(context[name])
                if name not in filled:
                    raise ConfigError(f"{origins.get(key, key)}: template {{{name}}} names no config field"
                                      f"{did_you_mean(name, list(filled) + list(context))}")
                return str(filled[name])

            new = _TEMPLATE.sub(substitute, value)
            if new != value:
                filled[key], changed = new, True
        if not changed:
            return filled
    raise ConfigError("templates refer to each other in a cycle: " +
                      ", ".join(k for k, v in filled.items() if isinstance(v, str) and _TEMPLATE.search(v)))


def expand_plan(plan: dict, config_cls: type, plan_name: str = "plan.json") -> list[PlannedRun]:
    """Expand a plan into validated runs, in plan order. Raises ConfigError naming the JSON path."""
    _check_keys(plan, PLAN_KEYS, plan_name)
    if plan.get("skip", False):
        return []
    repetitions = plan.get("repetitions", 1)
    if not isinstance(repetitions, int) or isinstance(repetitions, bool) or repetitions < 1:
        raise ConfigError(f"{plan_name}: repetitions: expected an integer >= 1, got {json.dumps(repetitions)}")
    configurations = plan.get("configurations")
    if not isinstance(configurations, list) or not configurations:
        raise ConfigError(f"{plan_name}: configurations: expected a non-empty list of objects")

    runs: list[PlannedRun] = []
    for ci, configuration in enumerate(configurations):
        where = f"{plan_name}: configurations[{ci}]"
        if not isinstance(configuration, dict):
            raise ConfigError(f"{where}: expected an object with base_config and options")
        _check_keys(configuration, CONFIGURATION_KEYS, where)
        if configuration.get("skip", False):
            continue
        base = configuration.get("base_config", {})
        options = configuration.get("options", {})
        if not isinstance(base, dict):
            raise ConfigError(f"{where}.base_config: expected an object")
        if not isinstance(options, dict):
            raise ConfigError(f"{where}.options: expected an object mapping fields to lists of values")
        key_origins = {**{k: f"{where}.options.{k}" for k in options},
                       **{k: f"{where}.base_config.{k}" for k in base}}
        for key, values in options.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}.options.{key}: expected a non-empty list of values, "
                                  f"got {json.dumps(values)}")

        keys = list(options)
        for choice in itertools.product(*(range(len(options[k])) for k in keys)):
            chosen = {**base, **{key: options[key][i] for key, i in zip(keys, choice)}}
            run_cls = run_config_class(config_cls, chosen, key_origins)  # the class of this run, keys checked
            values = {**{f.name: getattr(run_cls(), f.name) for f in dataclasses.fields(run_cls)}, **base}
            origins = {k: f"{where}.base_config.{k}" for k in base}
            for key, i in zip(keys, choice):
                values[key] = options[key][i]
                origins[key] = f"{where}.options.{key}[{i}]"
            for rep in range(repetitions):
                rep_values = dict(values)
                if repetitions > 1:
                    rep_values["seed"] = values["seed"] + rep
                    if "{repetition}" not in str(values["experiment_name"]):
                        rep_values["experiment_name"] = f"{values['experiment_name']}_rep{rep}"
                filled = _fill_templates(rep_values, origins, {"repetition": rep})
                config = from_dict(run_cls, filled, {k: origins.get(k, f"{where}.{k}") for k in filled})
                label = ", ".join(f"{k}={json.dumps(options[k][i])}" for k, i in zip(keys, choice))
                origin = f"configurations[{ci}]" + (f" ({label})" if label else "")
                if repetitions > 1:
                    origin += f" repetition {rep}"
                runs.append(PlannedRun(len(runs), config, origin))

    seen: dict[Path, PlannedRun] = {}
    for run in runs:
        if run.run_dir in seen:
            raise ConfigError(f"{plan_name}: runs {seen[run.run_dir].index} ({seen[run.run_dir].origin}) and "
                              f"{run.index} ({run.origin}) both write to {run.run_dir}; put the varying "
                              f"fields in experiment_name, e.g. \"name_{{seed}}\"")
        seen[run.run_dir] = run
    return runs


# ----------------------------------------------------------------------------------------------
# Run status and the runner

FINISHED = "finished"


def run_status(run: PlannedRun) -> str:
    """'new', 'finished', 'partial' (started, not finished: resumes) or 'changed' (other config).

    A directory with a config but nothing else of a run (it failed during set-up: a missing file, a
    bad token) counts as new, so a corrected plan simply replaces it.
    """
    config_path = run.run_dir / "config.json"
    if not config_path.exists():
        return "new"
    if not any(p.name not in ("config.json", "log.txt") for p in run.run_dir.iterdir()):
        return "new"
    try:
        stored = stored_config(run)
    except (OSError, json.JSONDecodeError, AttributeError):
        return "changed"
    if stored != config_record(run.config):
        return "changed"
    return FINISHED if (run.run_dir / "summary.json").exists() else "partial"


def study_of(config: Any) -> str:
    """The study a config belongs to: the package of its class (tds.config.TDSConfig -> "tds")."""
    return type(config).__module__.split(".")[0]


def config_record(config: Any) -> dict:
    """What a run's config.json holds: the study (so printers find their own runs), then the fields."""
    return {"study": study_of(config), **json.loads(json.dumps(to_dict(config)))}


def stored_config(run: PlannedRun) -> dict:
    """The run directory's config.json; one written before config.json named its study counts as this
    run's study, so such a run stays finished (or resumes) instead of looking changed."""
    stored = read_json(run.run_dir / "config.json")
    stored.setdefault("study", study_of(run.config))
    return stored


def describe_changes(run: PlannedRun) -> str:
    stored = stored_config(run)
    current = config_record(run.config)
    diffs = [f"{k}: {json.dumps(stored.get(k))} -> {json.dumps(current.get(k))}"
             for k in sorted(set(stored) | set(current)) if stored.get(k) != current.get(k)]
    return "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")


RunFn = Callable[[Any, Path], dict]


def run_plan(plan_path: str | Path, config_cls: type, run_fn: RunFn, *, dry_run: bool = False,
             force: bool = False, only: list[int] | None = None) -> list[PlannedRun]:
    """Expand the plan and run each run not finished yet; returns the runs of the plan.

    `run_fn(config, run_dir) -> summary dict` does the study's work; when it returns, the summary is
    written to `run_dir/summary.json` (the run's "finished" mark). A run directory holding another
    config is an error unless `force` (which clears it). Under `accelerate launch` every process
    executes the same runs; only the main process writes the run files.
    """
    plan_path = Path(plan_path)
    plan = load_plan(plan_path)
    runs = expand_plan(plan, config_cls, str(plan_path))
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

    for run in selected:  # check every run before starting any, so a late conflict loses no time
        if not force and run_status(run) == "changed":
            raise ConfigError(f"{run.run_dir}: holds a run with a different config ({describe_changes(run)}); "
                              f"rename experiment_name or pass --force to overwrite it")

    for run in selected:
        execute_run(run, run_fn, force=force)
    return runs


def execute_run(run: PlannedRun, run_fn: RunFn, *, force: bool = False) -> None:
    """Run one planned run unless it is finished (or `force`): config.json, run_fn, then summary.json.

    The caller has checked that the run directory holds no other config (or passes `force`, which
    clears it). Studies that also take a run from command-line flags build a `PlannedRun` and call this.
    """
    state = process_state()
    status = run_status(run)
    if status == FINISHED and not force:
        logger.info(f"[{run.index}] skip (finished): {run.run_dir}")
        return
    if state.is_main_process:
        if force and status != "new":
            shutil.rmtree(run.run_dir)
        run.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run.run_dir / "config.json", config_record(run.config))
    state.wait_for_everyone()
    handler = attach_run_log(run.run_dir) if state.is_main_process else None
    try:
        logger.info(f"[{run.index}] {'resume' if status == 'partial' else 'run'}: {run.run_dir}  <- {run.origin}")
        from accelerate.utils import set_seed  # local: accelerate imports torch, plans stay light

        set_seed(run.config.seed)  # every run is seeded from its config (python, numpy, torch)
        summary = run_fn(run.config, run.run_dir) or {}
        if state.is_main_process:
            write_json(run.run_dir / "summary.json", {"status": FINISHED, **summary})
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
    state.wait_for_everyone()
