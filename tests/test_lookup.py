"""The lookup task of Assignment 2: deterministic, well formed, answerable."""

import numpy as np
import pytest

from autograder.data import lookup


def test_examples_are_deterministic_and_answerable():
    a = lookup.make_lookup(200, items=5, seed=3)
    b = lookup.make_lookup(200, items=5, seed=3)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert a.tokens.shape == (200, 7)
    for row in range(200):
        words = a.describe(row)
        assert words[-2] == "?"
        asked = words[-1]
        items = dict(w.split("=") for w in words[:-2])
        assert len(items) == 5  # distinct letters: one right answer
        assert int(items[asked]) == a.answers[row]
    assert a.tokens.max() < a.vocab_size


def test_answers_are_balanced_and_the_position_varies():
    task = lookup.make_lookup(5000, seed=0)
    counts = np.bincount(task.answers, minlength=10)
    assert counts.min() > 400
    positions = [
        task.describe(r)[:-2].index(
            next(
                w
                for w in task.describe(r)[:-2]
                if w.startswith(task.describe(r)[-1] + "=")
            )
        )
        for r in range(300)
    ]
    assert len(set(positions)) == 6


def test_bad_item_count():
    with pytest.raises(ValueError, match="items"):
        lookup.make_lookup(10, items=9)


def test_asked_positions_point_at_the_asked_item():
    task = lookup.make_lookup(100, seed=4)
    positions = lookup.asked_positions(task)
    for row in range(100):
        words = task.describe(row)
        assert words[positions[row]].split("=")[0] == words[-1]
