"""Entry points: every command declares its options as a dataclass; here they become flags.

    command_main("python -m pkg.cmd", "what it does", CmdOptions, run)   # parse, validate, run(options)
    study_main("pkg", "what it does", PkgConfig, run_fn)                 # python -m pkg --plan_config_path P

A field `name: T = option(default, help=..., choices=..., min=..., max=...)` is the flag `--name`; its help,
default and choices make the `--help` text, and its value is checked by `common.config.from_dict`, so a bad
value is the same one line as in a plan, naming the flag: `error: --batch_size: expected a value >= 1, got 0`.
Flag values by type: int/float/str as written; list fields take one or more values (`--only 0 2`); a bool
is a switch (`--force`) that also takes an explicit value (`--generate false`); dict/Any fields are JSON;
`null` gives None to an Optional number. A field without a default is a required flag. Cross-field rules
live in the dataclass's `validate()` (raising `common.config.FieldError`).

Bad input raises a `UserError`; `exit_on_user_error` prints it as one line `error: ...` on stderr with exit
status 2, never a traceback. Earlier runs' files are untouched because each run writes atomically.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import json
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Optional

from common.config import FieldError, config_fields, describe_fields, did_you_mean, from_dict, option, range_notes
from common.errors import ConfigError, UserError
from common.plans import RunFn, run_plan
from common.tracking import setup_console_logging


def exit_on_user_error(main: Callable) -> Callable:
    """Decorator for `main` functions: UserError, OSError (a full disk, a read-only directory, ...) and
    undecodable input -> one line `error: <msg>` and exit 2; Ctrl-C -> exit 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:  # a full disk, a read-only or forbidden directory, a file where a directory goes
            print(f"error: {os_error_message(e)}", file=sys.stderr)
            sys.exit(2)
        except UnicodeDecodeError as e:
            print(f"error: an input file is not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8",
                  file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted: finished runs are kept; re-run the same command to continue", file=sys.stderr)
            sys.exit(130)

    return wrapper


_OS_ERROR_ADVICE = {
    errno.ENOSPC: "free some space (or choose another outputs_dir), then re-run the same command: finished runs "
                  "are kept and a partial run resumes",
    errno.EDQUOT: "free some space within your quota, then re-run the same command",
    errno.EROFS: "the file system is read-only: choose a writable outputs_dir",
    errno.EACCES: "no permission: fix the permissions or choose another outputs_dir",
    errno.EPERM: "no permission: fix the permissions or choose another outputs_dir",
    errno.ENOTDIR: "a file stands where a directory should be: move it away or choose another path",
    errno.EEXIST: "a file stands where a directory should be: move it away or choose another path",
    errno.EISDIR: "a directory stands where a file should be: give the file's path",
    errno.ENOENT: "no such file or directory: check the path",
    errno.ENAMETOOLONG: "the name is too long: shorten experiment_name or outputs_dir",
}


def os_error_message(e: OSError) -> str:
    """One line for an OSError: the path, what the system said, and what to do."""
    path = e.filename if e.filename is not None else "a file"
    advice = _OS_ERROR_ADVICE.get(e.errno, "check the path and the disk, then re-run the same command")
    return f"{path}: {e.strerror or e}; {advice}"


# ----------------------------------------------------------------------------------------------
# Flags from a dataclass


def _without_none(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None was allowed) for Optional[X]; other types unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True
    return tp, False


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, tuple) or tp in (list, tuple)


def flag_value(text: str, tp: Any) -> Any:
    """The JSON value of a flag's text for a field of type `tp`. Text that does not convert is returned
    as it is, so that `from_dict` reports it with the field's expected type."""
    tp, nullable = _without_none(tp)
    if nullable and text == "null" and tp is not str:
        return None
    if tp is bool:
        return {"true": True, "false": False}.get(text.lower(), text)
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            return text
    if tp is str or typing.get_origin(tp) is Literal and all(isinstance(a, str) for a in typing.get_args(tp)):
        return text
    try:
        return json.loads(text)  # dict, Any, unions of numbers and text
    except json.JSONDecodeError:
        return text


class _ArgumentParser(argparse.ArgumentParser):
    """argparse whose own errors (a flag without its value, ...) are one `error:` line with status 2."""

    def error(self, message: str):
        print(f"error: {message.replace('argument ', '', 1)} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _help(f: dataclasses.Field, required: bool) -> str:
    """The field's help, then its range and default: "examples per step (>= 1; default: 16)"."""
    meta = f.metadata
    notes = range_notes(meta)
    if required:
        notes.append("required")
    else:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if default not in (None, "", []):
            notes.append(f"default: {default if isinstance(default, str) else json.dumps(default)}")
    text = meta.get("help", "") + (f" ({'; '.join(notes)})" if notes else "")
    return text.strip().replace("%", "%%") or " "  # argparse %-formats help texts


def add_options(parser: argparse.ArgumentParser, options_cls: type, *, flag_names: Mapping[str, str] = None,
                exclude=()) -> None:
    """Add one flag per field of `options_cls` (`flag_names` renames some, `exclude` leaves some out)."""
    flag_names = flag_names or {}
    hints = typing.get_type_hints(options_cls)
    fields = [f for f in dataclasses.fields(options_cls) if f.name not in exclude]
    for f in sorted(fields, key=lambda f: not _required(f)):  # required flags first in --help
        name, tp, required = f.name, _without_none(hints[f.name])[0], _required(f)
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": _help(f, required), "dest": name}
        if tp is bool:
            kwargs.update(nargs="?", const="true", metavar="true|false")
        elif _is_list(tp):
            kwargs.update(nargs="+", action="extend", metavar=name.upper())  # a repeated flag adds values
        if f.metadata.get("choices"):
            kwargs["metavar"] = "{" + ",".join(str(c) for c in f.metadata["choices"]) + "}"
        parser.add_argument(f"--{flag_names.get(name, name)}", **kwargs)


def options_from_args(options_cls: type, values: Mapping[str, Any], *, prog: str,
                      flag_names: Mapping[str, str] = None):
    """The `options_cls` instance of parsed flag texts (argparse's `vars(namespace)` of `add_options` flags),
    with the errors of `from_dict` naming the flags."""
    flag_names = flag_names or {}
    hints = typing.get_type_hints(options_cls)
    where = {name: f"--{flag_names.get(name, name)}" for name in config_fields(options_cls)}
    converted = {}
    for name, f in config_fields(options_cls).items():
        if name in values:
            text = values[name]
            item_type = typing.get_args(_without_none(hints[name])[0]) or (Any,)
            converted[name] = ([flag_value(t, item_type[0]) for t in text] if isinstance(text, list)
                               else flag_value(text, hints[name]))
        elif _required(f):
            raise ConfigError(f"{where[name]}: required; see {prog} --help")
    return from_dict(options_cls, converted, where)


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_flags(parser: argparse.ArgumentParser, argv=None) -> dict[str, Any]:
    """The given flags' texts by field name; an unknown flag is one error line with a suggestion."""
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        known = [s for action in parser._actions for s in action.option_strings]
        flag = unknown[0].split("=")[0]
        hint = did_you_mean(flag, known) if flag.startswith("-") else ""
        parser.error(f"{flag}: unknown flag{hint}" if flag.startswith("-") else f"unexpected value {flag!r}")
    return vars(namespace)


@exit_on_user_error
def parse_options(prog: str, description: str, options_cls: type, argv=None):
    """Parse `argv` into an `options_cls` instance; bad flags exit with one `error:` line and status 2."""
    parser = make_parser(prog, description)
    add_options(parser, options_cls)
    return options_from_args(options_cls, parse_flags(parser, argv), prog=prog)


def command_main(prog: str, description: str, options_cls: type, fn: Callable, argv=None):
    """The `main` of a command: parse the flags into `options_cls`, then return `fn(options)`; a UserError
    from either is one `error:` line and exit status 2."""
    options = parse_options(prog, description, options_cls, argv)
    return exit_on_user_error(fn)(options)


# ----------------------------------------------------------------------------------------------
# Plan runners


@dataclass
class PlanOptions:
    plan_config_path: Optional[str] = option(None, help="the JSON experiment plan to run")
    dry_run: bool = option(False, help="list the expanded runs and their directories")
    force: bool = option(False, help="re-run finished runs and overwrite changed ones")
    only: Optional[list[int]] = option(None, help="run only these run indices")
    set: Optional[list[str]] = option(None, help="field=value: override a config field in every run of the plan "
                                                 "(repeatable; the value as on the command line: 1e-4, true, "
                                                 "JSON for objects)")
    help_config: bool = option(False, help="list the config fields with defaults, choices and ranges")

    def validate(self) -> None:
        if not self.plan_config_path and not self.help_config:
            raise FieldError("plan_config_path", "required (or --help_config to list the config fields)")


def overrides_from_flags(texts: list[str], config_cls: type) -> dict[str, Any]:
    """`--set field=value` texts -> {field: JSON value}, each converted by its field's type (of `config_cls`
    or, for a dispatching class, of the run class that has it); the plan expansion validates them."""
    classes = [config_cls] + (list(config_cls.run_classes()[1].values()) if hasattr(config_cls, "run_classes")
                              else [])
    hints = {}
    for cls in reversed(classes):
        hints.update(typing.get_type_hints(cls))
    overrides = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set {text}: expected field=value, e.g. --set lr=1e-4")
        overrides[name] = flag_value(value, hints.get(name, Any))
    return overrides


def study_main(prog: str, description: str, config_cls: type, run_fn: RunFn, argv=None) -> None:
    """The `__main__` of a study: parse the plan flags and run the plan."""
    options = parse_options(f"python -m {prog}", description, PlanOptions, argv)
    if options.help_config:
        print(f"{config_cls.__name__} fields:\n{describe_fields(config_cls)}")
        return
    setup_console_logging()

    @exit_on_user_error
    def run_with_overrides():
        run_plan(options.plan_config_path, config_cls, run_fn, dry_run=options.dry_run, force=options.force,
                 only=options.only, overrides=overrides_from_flags(options.set or [], config_cls))

    run_with_overrides()
