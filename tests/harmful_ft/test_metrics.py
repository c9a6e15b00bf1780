"""FA rules on hand-made outputs (expected values worked out by hand)."""
import pytest

from harmful_ft import metrics
from harmful_ft.data import AGNEWS_LABELS, SST2_LABELS


def test_sst2_substring_and_strict_rules():
    outputs = ["positive", "The sentiment is Positive.", "positive or negative", "negative", "nothing"]
    gold = "positive"
    assert [metrics.substring_correct(o, gold) for o in outputs] == [True, True, True, False, False]
    assert [metrics.strict_correct(o, gold, SST2_LABELS) for o in outputs] == [True, True, False, False, False]


def test_agnews_strict_rule_treats_sci_tech_as_one_word():
    assert metrics.strict_correct("Sci/Tech", "Sci/Tech", AGNEWS_LABELS)
    assert not metrics.strict_correct("World or Sports", "World", AGNEWS_LABELS)
    assert metrics.substring_correct("World or Sports", "World")
    assert metrics.label_words("Business news, not sports", AGNEWS_LABELS) == {"Business", "Sports"}


@pytest.mark.parametrize("output, expected", [
    ("3 plus 4 is 7. The final answer is: 7", 7.0),
    ("The final answer is: 1,234 apples, not 5", 1234.0),
    ("she has 3 and then 12 apples", 12.0),
    ("The final answer is: none, so 9", 9.0),
    ("no number", None),
    ("The final answer is: -2.5", -2.5),
])
def test_gsm8k_number_extraction(output, expected):
    assert metrics.gsm8k_answer(output) == expected


def test_gsm8k_correct_compares_numbers():
    assert metrics.gsm8k_correct("The final answer is: 18.0", "18")
    assert not metrics.gsm8k_correct("The final answer is: 17", "18")
    assert metrics.accuracy([True, False, True, True]) == 75.0
