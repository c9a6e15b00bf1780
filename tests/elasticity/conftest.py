"""Shared pieces of the elasticity tests: the tiny base model, plan writing, a keyword sentiment scorer."""
import json

import pytest

from common.registry import SCORERS
from tiny.corpus.reviews import sentiment_score

FIXTURES = "data_files/elasticity"
SOURCES = {name: f"{FIXTURES}/{name}" for name in ("alpaca", "truthful_qa", "beavertails", "imdb", "text")}


@pytest.fixture(scope="session")
def tiny_base(tiny_models) -> str:
    return tiny_models["base"]


@SCORERS.register("test_keyword_sentiment")
class KeywordSentiment:
    """Share of positive sentiment words (common.sentiment_score): a scorer with known output."""

    name = "test_keyword_sentiment"

    prompts_seen: list = []  # every prompt the scorer was given, in order

    def score(self, prompts, responses):
        KeywordSentiment.prompts_seen.extend(prompts)
        return [sentiment_score(r) for r in responses]

    def close(self):
        pass


def write_plan(path, *configurations) -> str:
    path.write_text(json.dumps({"name": "test", "configurations": [{"base_config": c} for c in configurations]}))
    return str(path)
