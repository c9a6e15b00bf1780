"""Every study has the same shape, and the import graph holds: the core and the shared packages
import no study, no study imports another, and no file edits sys.path (the project is installed)."""
import ast
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDIES = ("persona_experiments", "pref_similarity", "sorrybench", "tds", "elasticity", "train_preferences",
           "harmful_ft", "ensembles")
SHARED = ("common", "tiny", "ches")  # the core and the packages any study may import


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_has_the_same_layout(study):
    package = REPO / study
    for name in ("__init__.py", "__main__.py", "config.py", "run.py", "results.py"):
        assert (package / name).is_file(), f"{study}/{name} missing"
    plans = sorted((package / "experiments_plans").glob("*.json"))
    assert plans, f"{study}/experiments_plans/ holds no plan"
    for plan in plans:
        assert "configurations" in json.loads(plan.read_text()), plan
    assert (REPO / "docs" / f"{study}.md").is_file(), f"docs/{study}.md missing"
    assert (REPO / "tests" / study / "__init__.py").is_file(), f"tests/{study}/ missing"


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a file imports (absolute imports; the project uses no relative ones)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", SHARED + STUDIES)
def test_import_graph(package):
    allowed = {package, *SHARED}  # tiny/ and ches/ may import the core and each other; common: see below
    for path in sorted((REPO / package).rglob("*.py")):
        forbidden = imported_packages(path) & (set(STUDIES) | set(SHARED)) - allowed
        assert not forbidden, f"{path.relative_to(REPO)} imports {sorted(forbidden)}"


def test_the_core_imports_neither_tiny_nor_ches():
    for path in sorted((REPO / "common").rglob("*.py")):
        assert not imported_packages(path) & {"tiny", "ches", *STUDIES}, path


def test_no_file_edits_sys_path():
    sources = [p for d in (*SHARED, *STUDIES, "alab", "scripts", "tests") for p in (REPO / d).rglob("*.py")]
    for path in sources:
        if path != Path(__file__).resolve():
            assert not {"sys.path.insert", "sys.path.append"} & set(path.read_text().split("(")), path
