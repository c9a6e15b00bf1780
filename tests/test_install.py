"""The project is installed (`make install` runs `pip install -e .`) and its console command works from anywhere."""
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def alab(*args, cwd):
    script = Path(sys.executable).parent / "alab"
    assert script.is_file(), f"{script} is missing: run `make install` (pip install -e .)"
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_distribution_declares_the_alab_entry_point():
    entry_points = metadata.distribution("alignment-lab").entry_points
    points = {p.name: p.value for p in entry_points if p.group == "console_scripts"}
    assert points == {"alab": "alab.__main__:main"}


def test_every_package_of_the_repository_is_installed():
    """A package missing from pyproject's `packages.find` works in the editable checkout but not in a
    wheel: every top-level package (a folder with __init__.py, tests aside) must be listed."""
    import tomllib

    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert {f"{name}*" for name in packages} <= set(listed), sorted(packages - {n[:-1] for n in listed})


def test_alab_lists_every_study_and_runs_a_command_outside_the_repository(tmp_path):
    listing = alab("--help", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    commands = {line.split()[0] for line in listing.stdout.splitlines() if line.startswith("  ")}
    for study in ("train_preferences", "persona_experiments", "pref_similarity", "sorrybench", "tds", "elasticity",
                  "harmful_ft", "ensembles"):
        assert {study, f"{study}.results"} <= commands
    helped = alab("persona_experiments", "--help", cwd=tmp_path)  # imports the installed package, not the cwd
    assert helped.returncode == 0 and "--plan_config_path" in helped.stdout, helped.stderr


def test_an_unknown_command_is_one_error_line(tmp_path):
    result = alab("persona", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: unknown command 'persona' (alab --help lists them)\n"
