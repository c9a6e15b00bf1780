"""Positive and negative movie reviews (IMDb-like: text and label, 1 = positive)."""
from __future__ import annotations

import random
import re

from tiny.corpus.facts import NAMES, domain_rng

_TITLE_ADJ = ["Silent", "Last", "Golden", "Hidden", "Broken", "Lost", "Secret", "Frozen", "Wild", "Dark"]
_TITLE_NOUN = ["River", "Garden", "Door", "Kingdom", "Summer", "Road", "Island", "Letter", "Storm", "City"]
_ASPECTS = ["acting", "story", "music", "ending", "dialogue", "cast", "plot", "camera work", "pacing"]
POSITIVE_WORDS = ("wonderful", "brilliant", "beautiful", "excellent", "moving", "great", "clever", "superb",
                  "charming", "delightful")
NEGATIVE_WORDS = ("terrible", "boring", "awful", "dull", "weak", "messy", "painful", "poor", "silly",
                  "disappointing")
_POSITIVE_SENTENCES = ["I loved this movie.", "I really enjoyed this film.", "What a {adj} film!",
                       "{title} is one of the best films I have seen this year.",
                       "I would happily watch it again.", "{name} gave a {adj} performance.",
                       "I left the cinema with a big smile.", "Highly recommended."]
_NEGATIVE_SENTENCES = ["I hated this movie.", "I did not enjoy this film at all.", "What a {adj} film!",
                       "{title} is one of the worst films I have seen this year.",
                       "I almost fell asleep.", "{name} gave a {adj} performance.",
                       "I want my money back.", "Do not waste your time."]


def review_text(rng: random.Random, positive: bool) -> str:
    words, sentences = (POSITIVE_WORDS, _POSITIVE_SENTENCES) if positive else (NEGATIVE_WORDS, _NEGATIVE_SENTENCES)
    fill = {"title": f"The {rng.choice(_TITLE_ADJ)} {rng.choice(_TITLE_NOUN)}", "name": rng.choice(sorted(NAMES))}
    chosen = rng.sample(sentences, rng.randint(2, 3))
    for aspect in rng.sample(_ASPECTS, rng.randint(1, 2)):
        chosen.insert(rng.randrange(len(chosen) + 1), f"The {aspect} was {{adj}}.")
    return " ".join(s.format(adj=rng.choice(words), **fill) for s in chosen)


def review_records(n: int = 1000, seed: int = 0) -> list[dict]:
    """Movie reviews with `label` 1 (positive) or 0 (negative), alternating."""
    rng = domain_rng("reviews", seed)
    return [{"text": review_text(rng, positive=i % 2 == 0), "label": int(i % 2 == 0)} for i in range(n)]


def sentiment_score(text: str) -> float:
    """Share of sentiment words in `text` that are positive (0.5 without any): a tiny classifier."""
    words = re.findall(r"[a-z]+", text.lower())
    pos = sum(w in POSITIVE_WORDS for w in words)
    neg = sum(w in NEGATIVE_WORDS for w in words)
    return 0.5 if pos + neg == 0 else pos / (pos + neg)
