"""Flags built from an options dataclass (common/cli.py): types, choices, ranges, required flags, --help,
and one `error: --flag: ...` line with exit status 2 for every kind of bad input."""
from dataclasses import dataclass
from typing import Optional

import pytest

from common.cli import command_main, parse_options, study_main
from common.config import FieldError, option
from common.errors import DataError


@dataclass(kw_only=True)
class Options:
    model: str = option(help="the model to load")
    batch_size: int = option(16, min=1, help="examples per step")
    lr: float = option(1e-3, min=0, min_exclusive=True)
    dtype: str = option("float32", choices=["float32", "bfloat16"])
    trust_remote_code: bool = option(False, help="allow hub code")
    shuffle: bool = option(True)
    splits: list[str] = option(["train"])
    only: Optional[list[int]] = option(None)
    kl_epsilon: Optional[float] = option(None, help="100% of the threshold")  # a % must not break --help
    low: int = option(0)
    high: int = option(10)

    def validate(self) -> None:
        if self.low > self.high:
            raise FieldError("low", f"must be <= --high ({self.high})")


def parse(*argv):
    return parse_options("python -m demo", "a demo command", Options, list(argv))


def one_error_line(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_defaults_and_typed_values():
    options = parse("--model", "m")
    assert options == Options(model="m")
    options = parse("--model", "m", "--batch_size", "4", "--lr", "2e-5", "--dtype", "bfloat16", "--trust_remote_code",
                    "--shuffle", "false", "--splits", "train", "test", "--only", "0", "2", "--kl_epsilon", "0.5")
    assert (options.batch_size, options.lr, options.dtype, options.trust_remote_code, options.shuffle) == \
        (4, 2e-5, "bfloat16", True, False)
    assert options.splits == ["train", "test"] and options.only == [0, 2] and options.kl_epsilon == 0.5
    assert isinstance(options.batch_size, int) and isinstance(options.lr, float)
    assert parse("--model", "m", "--trust_remote_code", "true", "--kl_epsilon", "null").trust_remote_code is True
    assert parse("--model", "m", "--kl_epsilon", "null").kl_epsilon is None
    assert parse("--model=m", "--batch_size=3").batch_size == 3


@pytest.mark.parametrize("argv, message", [
    ((), "error: --model: required; see python -m demo --help"),
    (("--model", "m", "--batch_size", "0"), "error: --batch_size: expected a value >= 1, got 0"),
    (("--model", "m", "--batch_size", "two"), 'error: --batch_size: expected an integer, got "two"'),
    (("--model", "m", "--batch_size", "1.5"), 'error: --batch_size: expected an integer, got "1.5"'),
    (("--model", "m", "--lr", "0"), "error: --lr: expected a value > 0, got 0.0"),
    (("--model", "m", "--dtype", "int8"), 'error: --dtype: "int8" is not one of "float32", "bfloat16"'),
    (("--model", "m", "--dtype", "bfloat"),
     'error: --dtype: "bfloat" is not one of "float32", "bfloat16"; did you mean \'bfloat16\'?'),
    (("--model", "m", "--shuffle", "maybe"), 'error: --shuffle: expected true or false, got "maybe"'),
    (("--model", "m", "--only", "0", "x"), 'error: --only: expected a list of an integer or null, got [0, "x"]'),
    (("--model", "m", "--low", "5", "--high", "2"), "error: --low: must be <= --high (2)"),
    (("--model", "m", "--batchsize", "2"), "error: --batchsize: unknown flag; did you mean '--batch_size'? "
                                           "(see python -m demo --help)"),
    (("--model",), "error: --model: expected one argument (see python -m demo --help)"),
    (("--model", "m", "stray"), "error: unexpected value 'stray' (see python -m demo --help)"),
])
def test_bad_flags_are_one_error_line_naming_the_flag(capsys, argv, message):
    assert one_error_line(capsys, *argv) == message


def test_help_lists_every_flag_with_its_help_default_and_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--help")
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "a demo command" in out
    assert "--model MODEL the model to load (required)" in out
    assert "--batch_size BATCH_SIZE examples per step (>= 1; default: 16)" in out
    assert "--dtype {float32,bfloat16}" in out and "(default: float32)" in out
    assert "--trust_remote_code [true|false] allow hub code (default: false)" in out
    assert "--lr LR (> 0; default: 0.001)" in out
    assert "--splits SPLITS [SPLITS ...]" in out and "100% of the threshold" in out
    assert out.index("--model MODEL the model") < out.index("--batch_size BATCH_SIZE examples")  # required first


def test_command_main_runs_the_function_and_turns_user_errors_into_one_line(capsys):
    assert command_main("python -m demo", "d", Options, lambda o: o.batch_size * 2, ["--model", "m"]) == 32

    def fail(options):
        raise DataError(f"{options.model}: not found")

    with pytest.raises(SystemExit) as exit_info:
        command_main("python -m demo", "d", Options, fail, ["--model", "m.jsonl"])
    assert exit_info.value.code == 2 and capsys.readouterr().err == "error: m.jsonl: not found\n"


def test_study_main_needs_a_plan_unless_help_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        study_main("demo", "d", Options, lambda config, run_dir: None, [])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("error: --plan_config_path: required (or --help_config to list the "
                                       "config fields)\n")
    study_main("demo", "d", Options, lambda config, run_dir: None, ["--help_config"])
    out = capsys.readouterr().out
    assert out.startswith("Options fields:") and "batch_size: an integer = 16  examples per step" in out


def test_set_overrides_every_run_of_the_plan_and_its_errors_name_the_flag(tmp_path, capsys):
    import json

    from common.config import RunConfig

    @dataclass
    class Toy(RunConfig):
        lr: float = option(1e-3, min=0)
        steps: int = option(10, min=1)

    plan = {"configurations": [{"base_config": {"outputs_dir": str(tmp_path), "experiment_name": "a{steps}",
                                                "lr": 0.5}},
                               {"base_config": {"outputs_dir": str(tmp_path), "experiment_name": "b{steps}"},
                                "options": {"lr": [0.1, 0.2]}}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    seen = []
    study_main("demo", "d", Toy, lambda config, run_dir: seen.append((config.experiment_name, config.lr)) or {},
               ["--plan_config_path", str(tmp_path / "plan.json"), "--set", "lr=1e-4", "--set", "steps=3"])
    assert seen == [("a3", 1e-4), ("b3", 1e-4)]  # base_config and options both overridden, templates filled
    capsys.readouterr()

    for flags, message in [(["--set", "lr=fast"], 'error: --set lr: expected a number, got "fast"'),
                           (["--set", "steps=0"], "error: --set steps: expected a value >= 1, got 0"),
                           (["--set", "lrr=1"], "error: --set lrr: unknown key 'lrr'; did you mean 'lr'?"),
                           (["--set", "learning_rate=1"], "error: --set learning_rate: unknown key 'learning_rate'; "
                                                          "TRL name: use lr"),
                           (["--set", "lr"], "error: --set lr: expected field=value, e.g. --set lr=1e-4")]:
        with pytest.raises(SystemExit) as exit_info:
            study_main("demo", "d", Toy, lambda config, run_dir: {},
                       ["--plan_config_path", str(tmp_path / "plan.json"), *flags])
        assert exit_info.value.code == 2 and capsys.readouterr().err == message + "\n"
