"""The fixture writer is deterministic and writes every schema the loaders read."""
from pref_similarity.fixtures import write_fixtures
from pref_similarity.preference_sets import load_preference_set


def test_fixtures_are_deterministic_and_loadable(tmp_path):
    first = write_fixtures(tmp_path / "a")
    second = write_fixtures(tmp_path / "b")
    expected = {"ultrafeedback_tiny.jsonl": ("conversational", 400), "alpaca_farm_tiny.jsonl": ("alpaca_farm", 200),
                "plain_tiny.jsonl": ("plain", 40)}
    for name, (format, count) in expected.items():
        assert first[name].read_text() == second[name].read_text()
        loaded = load_preference_set(str(first[name]))
        assert (loaded.format, len(loaded.rows)) == (format, count)
        assert all(r["chosen"] != r["rejected"] for r in loaded.rows)
