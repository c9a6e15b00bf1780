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


def test_alab_lists_every_study_and_runs_a_command_outside_the_repository(tmp_path):
    listing = alab("--help", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    commands = {line.split()[0] for line in listing.stdout.splitlines() if line.startswith("  ")}
    for study in ("train_preferences", "persona_experiments", "pref_similarity", "sorrybench", "tds", "elasticity"):
        assert {study, f"{study}.results"} <= commands
    helped = alab("persona_experiments", "--help", cwd=tmp_path)  # imports the installed package, not the cwd
    assert helped.returncode == 0 and "--plan_config_path" in helped.stdout, helped.stderr


def test_an_unknown_command_is_one_error_line(tmp_path):
    result = alab("persona", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: unknown command 'persona' (alab --help lists them)\n"
