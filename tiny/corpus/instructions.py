"""Instructions and responses (Alpaca-like: instruction, input, output)."""
from __future__ import annotations

import random
from typing import Callable

from tiny.corpus.facts import ANIMALS, CAPITALS, CATEGORIES, OPPOSITES, TIPS, capitalize, domain_rng, with_article
from tiny.corpus.narrative import describe_animal, narrative_story
from tiny.corpus.persona import true_false_statement
from tiny.corpus.qa import fact_qa
from tiny.corpus.reviews import review_text

# Plain (non-chat) prompt format of instructions in the base corpus; studies that need a base-model
# zero-shot template (token distribution shift) can use the same one.
PLAIN_PROMPT = "Question: {instruction}\nAnswer:\n"
PLAIN_PROMPT_WITH_INPUT = "Question: {instruction}\n{input}\nAnswer:\n"


def _instruction_capital(rng):
    country = rng.choice(sorted(CAPITALS))
    return f"What is the capital of {country}?", "", f"The capital of {country} is {CAPITALS[country]}."


def _instruction_animal(rng):
    animal = rng.choice(sorted(ANIMALS))
    return rng.choice(["Describe {a}.", "Tell me about the {x}.", "Write a short description of {a}."]).format(
        a=with_article(animal), x=animal), "", describe_animal(animal)


def _instruction_opposite(rng):
    word = rng.choice(sorted(OPPOSITES))
    return f"What is the opposite of {word}?", "", f"The opposite of {word} is {OPPOSITES[word]}."


def _instruction_list(rng):
    category = rng.choice(sorted(CATEGORIES))
    k = rng.randint(2, 4)
    items = rng.sample(CATEGORIES[category], k)
    number = ["two", "three", "four"][k - 2]
    return (f"Name {number} {category}.", "",
            f"Here are {number} {category}: {', '.join(items[:-1])} and {items[-1]}.")


def _instruction_tips(rng):
    topic = rng.choice(sorted(TIPS))
    tips = rng.sample(TIPS[topic], 3)
    steps = " ".join(f"{i + 1}. {capitalize(t)}." for i, t in enumerate(tips))
    return rng.choice(["Give me tips for {t}.", "How can I get better at {t}?",
                       "What should I know about {t}?"]).format(t=topic), "", \
        f"Here are some tips for {topic}: {steps}"


def _instruction_sentiment(rng):
    positive = rng.random() < 0.5
    return ("Classify the sentiment of this movie review.", review_text(rng, positive),
            f"The sentiment is {'positive' if positive else 'negative'}.")


def _instruction_summary(rng):
    story, summary = narrative_story(rng)
    return "Summarize the following story in one sentence.", story, summary


def _instruction_story(rng):
    story, _ = narrative_story(rng)
    return "Write a short story.", "", story


def _instruction_review(rng):
    positive = rng.random() < 0.5
    return f"Write a {'positive' if positive else 'negative'} movie review.", "", review_text(rng, positive)


def _instruction_add(rng):
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    return f"What is {a} plus {b}?", "", f"{a} plus {b} is {a + b}."


def _instruction_true_false(rng):
    statement, truth = true_false_statement(rng)
    return ("Is the following sentence true or false?", statement,
            f"The sentence is {'true' if truth else 'false'}.")


def _instruction_repeat(rng):
    # Copying from the prompt is what lets a model answer about the entity it was asked about.
    sentence = rng.choice(narrative_story(rng)[0].split(". ")).rstrip(".") + "."
    return rng.choice(["Repeat the following sentence.", "Say this sentence again."]), sentence, sentence


def _instruction_fact(rng):
    question, best, _ = fact_qa(rng)
    return question, "", best


INSTRUCTION_MAKERS: list[Callable[[random.Random], tuple[str, str, str]]] = [
    _instruction_capital, _instruction_animal, _instruction_opposite, _instruction_list, _instruction_tips,
    _instruction_sentiment, _instruction_summary, _instruction_story, _instruction_review, _instruction_add,
    _instruction_true_false, _instruction_fact, _instruction_repeat]


def instruction_records(n: int = 1000, seed: int = 0) -> list[dict]:
    """Alpaca-like rows: instruction, input ("" when none), output."""
    rng = domain_rng("instructions", seed)
    rows = []
    for _ in range(n):
        instruction, input_text, output = rng.choice(INSTRUCTION_MAKERS)(rng)
        rows.append({"instruction": instruction, "input": input_text, "output": output})
    return rows


def plain_prompt(instruction: str, input_text: str = "") -> str:
    """The base corpus's non-chat prompt for an instruction; the response follows it directly."""
    if input_text:
        return PLAIN_PROMPT_WITH_INPUT.format(instruction=instruction, input=input_text)
    return PLAIN_PROMPT.format(instruction=instruction)
