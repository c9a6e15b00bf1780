"""Token distribution shift analysis of a base/aligned model pair (AlignTDS), from flags or from a plan.

    python -m tds --base M --aligned M --data F --output_dir O [--<config field> VALUE ...]
    python -m tds --plan_config_path PLAN.json [--dry_run] [--force] [--only I]
    accelerate launch -m tds ...        # N processes analyse disjoint parts of the examples

Every field of tds.config.TDSConfig is also a flag (`python -m tds --help` lists them, see common/cli.py
for the value syntax: `--generate` or `--generate true`). Re-running the same command resumes an interrupted
analysis and skips a finished one; --force starts over.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import add_options, exit_on_user_error, make_parser, options_from_args, parse_flags, study_main
from common.config import option
from common.errors import ConfigError
from common.plans import PlannedRun, describe_changes, execute_run, run_status
from common.tracking import setup_console_logging
from tds.config import TDSConfig
from tds.run import run_analysis

PROG = "python -m tds"
DESCRIPTION = __doc__.splitlines()[0]
# the short flags of the issue; --output_dir gives the run directory (outputs_dir / experiment_name)
FLAG_NAMES = {"base_model": "base", "aligned_model": "aligned", "outputs_dir": "output_dir",
              "experiment_name": "output_dir"}


@dataclass
class FlagsModeOptions:
    output_dir: str = option(help="the analysis directory")
    force: bool = option(False, help="start over in a directory holding another config")


@exit_on_user_error
def run_from_flags(argv) -> None:
    parser = make_parser(PROG, __doc__)
    add_options(parser, TDSConfig, flag_names=FLAG_NAMES, exclude=("outputs_dir", "experiment_name"))
    add_options(parser, FlagsModeOptions)
    values = parse_flags(parser, argv)
    mode = options_from_args(FlagsModeOptions, {k: values.pop(k) for k in ("output_dir", "force") if k in values},
                             prog=PROG)
    output_dir = Path(mode.output_dir)
    values.update(outputs_dir=str(output_dir.parent), experiment_name=output_dir.name)
    run = PlannedRun(0, options_from_args(TDSConfig, values, prog=PROG, flag_names=FLAG_NAMES), "command line")
    if not mode.force and run_status(run) == "changed":
        raise ConfigError(f"{run.run_dir}: holds an analysis with other settings ({describe_changes(run)}); "
                          "choose another --output_dir or pass --force to start over")
    setup_console_logging()
    execute_run(run, run_analysis, force=mode.force)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a.split("=")[0] in ("--plan_config_path", "--help_config") for a in argv):
        study_main("tds", DESCRIPTION, TDSConfig, run_analysis, argv)
    else:
        run_from_flags(argv)


if __name__ == "__main__":
    main()
