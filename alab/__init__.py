"""`alab`: the one console command of the lab, a subcommand per study command and results printer.

    alab persona_experiments --plan_config_path PLAN.json     # = python -m persona_experiments ...
    alab persona_experiments.results --experiments_dir DIR    # = python -m persona_experiments.results ...
    alab --help                                               # every subcommand, one line each

A subcommand is the module that `python -m` runs, so both spellings take the same flags and behave the
same; `alab` only saves typing the interpreter and works from any directory once the project is
installed (`pip install -e .`).
"""
