"""The registry: lazy "module:attr" entries, duplicate names, unknown names and keys as one error line."""
import random
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.registry import SCORERS, TIE_BREAKERS, Registry


def test_a_string_entry_is_imported_on_first_use_only(tmp_path, monkeypatch):
    (tmp_path / "registry_probe_module.py").write_text(
        "class Probe:\n    def __init__(self, k=1):\n        self.k = k\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("probe")
    registry.register("probe", "registry_probe_module:Probe")
    assert "registry_probe_module" not in sys.modules
    assert registry.make({"type": "probe", "k": 3}).k == 3
    assert "registry_probe_module" in sys.modules


def test_a_duplicate_name_names_both_places():
    registry = Registry("judge")
    registry.register("j", "some.module:First")
    with pytest.raises(ValueError, match="judge 'j' is registered twice: some.module:First and other.module:Second"):
        registry.register("j", "other.module:Second")


def test_unknown_names_and_keys_are_one_config_error():
    with pytest.raises(ConfigError, match="unknown scorer 'hf_rewad'; did you mean 'hf_reward'.*; registered: "):
        SCORERS.check({"type": "hf_rewad", "model": "m"})
    with pytest.raises(ConfigError, match="scorer 'hf_reward': unknown key 'labels'; did you mean 'label'"):
        SCORERS.check({"type": "hf_reward", "model": "m", "labels": 1})
    with pytest.raises(ConfigError, match="scorer 'hf_classifier': missing key 'model'"):
        SCORERS.check("hf_classifier")
    with pytest.raises(ConfigError, match='expected a name or an object with a "type"'):
        SCORERS.check({"model": "m"})


def test_the_core_entries_import_no_study():
    code = ("import sys; from common.registry import SCORERS, TIE_BREAKERS; "
            "[r.get(n) for r in (SCORERS, TIE_BREAKERS) for n in r.names()]; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'sorrybench', 'elasticity', 'persona_experiments', 'tds', 'pref_similarity'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


def test_random_tie_breaker_takes_the_seed_it_is_given():
    assert TIE_BREAKERS.make("random", seed=3).rng.random() == random.Random(3).random()
