"""A lookup task whose answer needs one token to find another.

Each input is a short list of `letter=digit` items followed by a question
mark and one letter: `c=4 a=7 f=1 ? a`, whose answer is the digit stored with
that letter, `7`. An item is one token (letter and digit together), the
question is one token (the letter alone). The answer is not at a fixed
position: the question must *find* its item, by content. That is what one
head of a self-attention layer learns to do, and what the notebook of
Assignment 2 lets students see, head by head.

Deterministic: the same seed gives the same examples on every platform.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["LookupTask", "asked_positions", "make_lookup"]

LETTERS = "abcdefgh"
DIGITS = 10


@dataclasses.dataclass(frozen=True)
class LookupTask:
    """Token ids `(n, items + 2)`, answers `(n,)`, and how to read them.

    Token ids: 0 is padding (unused here), `1 + letter * 10 + digit` is an item,
    `81 + letter` a question (after the `?` token, 89).
    """

    tokens: np.ndarray
    answers: np.ndarray
    items: int

    vocab_size: int = 1 + len(LETTERS) * DIGITS + len(LETTERS) + 1
    question_mark: int = 1 + len(LETTERS) * DIGITS + len(LETTERS)

    def describe(self, row):
        """The tokens of one example as text: `['c=4', 'a=7', ..., '?', 'a']`."""
        return [token_text(t) for t in self.tokens[row]]


def token_text(token):
    token = int(token)
    items = len(LETTERS) * DIGITS
    if token == 0:
        return "_"
    if token <= items:
        letter, digit = divmod(token - 1, DIGITS)
        return f"{LETTERS[letter]}={digit}"
    if token <= items + len(LETTERS):
        return LETTERS[token - items - 1]
    return "?"


def make_lookup(n, items=6, seed=0):
    """`n` examples with `items` distinct letters each."""
    if not 1 <= items <= len(LETTERS):
        raise ValueError(
            f"Received an invalid value for argument `items`, expected 1 to "
            f"{len(LETTERS)}. Received: items={items!r}"
        )
    rng = np.random.Generator(np.random.PCG64(seed))
    letters = np.argsort(rng.random((n, len(LETTERS))), axis=1)[:, :items]
    digits = rng.integers(0, DIGITS, size=(n, items))
    asked = rng.integers(0, items, size=n)
    tokens = np.empty((n, items + 2), dtype=np.int32)
    tokens[:, :items] = 1 + letters * DIGITS + digits
    task = LookupTask(tokens, digits[np.arange(n), asked].astype(np.int32), items)
    tokens[:, items] = task.question_mark
    tokens[:, items + 1] = 1 + len(LETTERS) * DIGITS + letters[np.arange(n), asked]
    return task


def asked_positions(task):
    """For each example, the position of the item the question asks about."""
    items = task.tokens[:, : task.items]
    letters = (items - 1) // DIGITS
    asked = task.tokens[:, -1] - (1 + len(LETTERS) * DIGITS)
    return np.argmax(letters == asked[:, None], axis=1)
