"""Plain narrative and descriptive text, so the base model is a general language model."""
from __future__ import annotations

import random

from tiny.corpus.facts import (
    ABILITIES,
    ANIMALS,
    CAPITALS,
    CATEGORIES,
    COLORS,
    NAMES,
    POSSESSIVE,
    capitalize,
    domain_rng,
    with_article,
)

_PLACES = ["village", "town", "city", "farm", "cottage", "house"]
_PLACE_ADJ = ["small", "quiet", "busy", "old", "pretty", "little"]
_LANDMARKS = ["river", "forest", "mountain", "lake", "old bridge", "market", "harbour", "library", "sea"]
_TIMES = ["morning", "evening", "Sunday", "summer", "winter"]
_ROUTINES = ["walked to the {landmark}", "fed the animals", "baked bread for the neighbours",
             "read a book under a tree", "played the {instrument}", "worked in the garden",
             "went fishing with {poss} father", "painted pictures of the {landmark}"]
_FINDS = ["a lost puppy", "an old map", "a shiny key", "a tiny kitten", "a letter with no name",
          "a broken clock", "a box of seeds", "a wooden boat"]
_FIND_PLACES = ["near the {landmark}", "under a stone", "behind the house", "in the tall grass",
                "on the path"]
_REACTIONS = ["was surprised and smiled", "felt curious and looked closer", "called a friend to help",
              "took it home carefully", "asked the neighbours about it"]
_ENDINGS = ["From that day on, {pron} never felt lonely again.", "It became {poss} favourite story.",
            "The whole {place} talked about it for weeks.", "{Name} learned that small things can matter.",
            "In the end, everyone was happy.", "{Pron} still remembers that day."]
_SEASONS = {"spring": "flowers bloom and birds build nests", "summer": "the days are long and warm",
            "autumn": "the leaves turn red and fall", "winter": "the nights are long and cold"}


def narrative_story(rng: random.Random) -> tuple[str, str]:
    """A short story and a one-sentence summary of it (the summary feeds instruction data)."""
    name = rng.choice(sorted(NAMES))
    pron = NAMES[name]
    fill = {"name": name, "Name": name, "pron": pron, "Pron": capitalize(pron), "poss": POSSESSIVE[pron],
            "landmark": rng.choice(_LANDMARKS), "instrument": rng.choice(CATEGORIES["instruments"]),
            "place": rng.choice(_PLACES)}
    find = rng.choice(_FINDS)
    sentences = [f"{name} lived in {with_article(rng.choice(_PLACE_ADJ))} {fill['place']} near the {fill['landmark']}.",
                 f"Every {rng.choice(_TIMES)}, {pron} {rng.choice(_ROUTINES).format(**fill)}.",
                 f"One day, {name} found {find} {rng.choice(_FIND_PLACES).format(**fill)}.",
                 f"{capitalize(pron)} {rng.choice(_REACTIONS)}.",
                 rng.choice(_ENDINGS).format(**fill)]
    return " ".join(sentences), f"{name} found {find} and it changed {fill['poss']} day."


def describe_animal(animal: str) -> str:
    food, home, legs, sound, size = ANIMALS[animal]
    text = f"The {animal} is {with_article(size)} animal. It lives in {home} and eats {food}. It has {legs} legs."
    if sound:
        text += f" The {animal} {sound}."
    can = [ability for ability, animals in ABILITIES.items() if animal in animals]
    if can:
        text += f" It can {' and '.join(can)}."
    return text


def _descriptive_text(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return describe_animal(rng.choice(sorted(ANIMALS)))
    if kind == 1:
        country = rng.choice(sorted(CAPITALS))
        return (f"{country} is a country. Its capital is {CAPITALS[country]}. Many people visit "
                f"{CAPITALS[country]} every year.")
    if kind == 2:
        season = rng.choice(sorted(_SEASONS))
        return f"In {season}, {_SEASONS[season]}. Many people like {season}."
    thing = rng.choice(sorted(COLORS))
    return f"The color of {thing} is {COLORS[thing]}. {capitalize(thing)} is {COLORS[thing]}."


def narrative_texts(n: int = 1000, seed: int = 0) -> list[str]:
    """Plain stories and descriptions (two in three are stories)."""
    rng = domain_rng("narrative", seed)
    return [narrative_story(rng)[0] if rng.random() < 2 / 3 else _descriptive_text(rng) for _ in range(n)]
