"""The study's task metric as pure functions: the fine-tune accuracy FA (the harmful score HS and its
flag rule are common.moderation's).

FA = 100 x share of task test items answered correctly:
- SST2 / AGNews, `substring` rule (the public code): correct when the gold label word is a substring
  of the output (so "positive or negative" counts as correct for both labels);
- SST2 / AGNews, `strict` rule: correct when the gold label word is the ONLY label word in the output
  (case-insensitive, whole words; "Sci/Tech" as one word);
- GSM8K: the first number after "The final answer is: " (else the last number in the output) equals
  the gold number (commas removed, compared as numbers).
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def substring_correct(output: str, gold: str) -> bool:
    """The public code's rule: the gold label word occurs in the output (case-insensitive)."""
    return gold.lower() in output.lower()


def label_words(output: str, labels: Sequence[str]) -> set[str]:
    """The label words that occur in the output as whole words (case-insensitive)."""
    text = output.lower()
    return {label for label in labels if re.search(rf"(?<![\w/]){re.escape(label.lower())}(?![\w/])", text)}


def strict_correct(output: str, gold: str, labels: Sequence[str]) -> bool:
    """Exactly one label word in the output, and it is the gold one."""
    return label_words(output, labels) == {gold}


def gsm8k_answer(output: str, mark: str = "The final answer is: ") -> Optional[float]:
    """The first number after the first `mark` (the public code's split(mark)[1]), else the output's last
    number; commas removed; None without any number."""
    text = output.replace(",", "")
    after = text.split(mark)[1] if mark in text else ""
    numbers = _NUMBER.findall(after) or _NUMBER.findall(text)[-1:]
    return float(numbers[0]) if numbers else None


def gsm8k_correct(output: str, gold: str) -> bool:
    answer = gsm8k_answer(output)
    return answer is not None and answer == float(gold.replace(",", ""))


def accuracy(correct: Sequence[bool]) -> float:
    if not correct:
        raise ValueError("accuracy of no items")
    return 100.0 * sum(correct) / len(correct)
