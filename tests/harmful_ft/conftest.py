import os
from pathlib import Path

import pytest

from tests.conftest import single_thread

one_thread = pytest.fixture(autouse=True, scope="package")(single_thread)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def run_plan(tiny_models):
    """run_plan(plan, outputs_dir, *words): a plan of harmful_ft/experiments_plans through the CLI, from the
    repository root (the tiny plans' model and data paths are relative to it), writing under `outputs_dir`;
    `words` are more CLI words. Returns `outputs_dir`."""
    from harmful_ft import __main__ as cli

    def run(plan: str, outputs_dir: Path, *words: str) -> Path:
        cwd = os.getcwd()
        os.chdir(REPO)
        try:
            cli.main(["--plan_config_path", str(REPO / "harmful_ft" / "experiments_plans" / plan),
                      "--set", f"outputs_dir={outputs_dir}", *words])
        finally:
            os.chdir(cwd)
        return outputs_dir
    return run
