"""The fusion's train and validation splits are disjoint (the public code's were not), and test is the rest."""
import numpy as np
import pytest

from common.errors import DataError
from ensembles.run import split_samples


def test_splits_are_disjoint_seeded_and_cover_the_set():
    splits = split_samples(100, 0.4, 0.2, seed=3)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [40, 20, 40]
    assert np.array_equal(np.sort(np.concatenate(list(splits.values()))), np.arange(100))
    assert not set(splits["train"]) & set(splits["validation"])
    assert all(np.array_equal(a, b) for a, b in zip(splits.values(), split_samples(100, 0.4, 0.2, seed=3).values()))
    assert not np.array_equal(splits["train"], split_samples(100, 0.4, 0.2, seed=4)["train"])


def test_a_set_too_small_for_a_test_split():
    with pytest.raises(DataError, match="2 samples leave no test split"):
        split_samples(2, 0.4, 0.2, seed=0)  # one train and one validation sample at least
