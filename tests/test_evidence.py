"""Diagnosis by evidence (`autograder.checks.evidence`): what a wrong output
shows names the mistake without a list of mistakes, and a named mistake is
never one the output rules out.

Each rule is tried on the arrays a mistake produces (computed here with
NumPy, as a student's code would) and, through the real checks, on
students' layers with mistakes that are not among the judge's variants.
Every hint is also tried on code with a *different* mistake, where it must
not appear.
"""

import numpy as np
import pytest
from keras import ops

from autograder.checks import evidence
from autograder.checks.attention import check_scaled_dot_product_attention
from autograder.checks.core import Case, CheckFailed
from autograder.checks.seq2seq import check_masked_softmax

RNG = np.random.default_rng(7)
CASE = Case("a case", {"q": RNG.standard_normal((2, 3, 8))}, init={"units": 5})


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def masked(scores, mask):
    weights = softmax(np.where(mask, scores, -1e9))
    return np.where(mask, weights, 0.0)


SCORES = RNG.standard_normal((2, 3, 4))
MASK = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)[:, None, :]
WEIGHTS = masked(SCORES, MASK)

#: mistake -> (received weights, words its diagnosis must use)
MISTAKES = {
    "softmax over the queries": (
        softmax(np.where(MASK, SCORES, -1e9), axis=1),
        ["axis 1"],
    ),
    "scores returned": (
        np.where(MASK, SCORES, -1e9) / 1e9 + SCORES,
        ["not softmax weights"],
    ),
    "mask inverted": (masked(SCORES, ~MASK), ["inverted"]),
    "mask not applied": (softmax(SCORES), ["does not reach the softmax"]),
    "weights doubled": (2 * WEIGHTS, ["added twice"]),
}


def named(received, expected=WEIGHTS, case=CASE):
    found = evidence.read(case, "weights", received, expected)
    return " ".join(found.observed + found.named), found.named


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_is_named_from_the_output(mistake):
    received, words = MISTAKES[mistake]
    text, hints = named(received)
    assert hints, text
    assert all(w in " ".join(hints) for w in words), (mistake, text)


@pytest.mark.parametrize("mistake", list(MISTAKES))
@pytest.mark.parametrize("other", list(MISTAKES))
def test_no_hint_names_a_mistake_the_output_rules_out(mistake, other):
    """The hint that names `other` never appears for `mistake`."""
    if mistake == other:
        return
    _, hints = named(MISTAKES[mistake][0])
    _, other_words = MISTAKES[other]
    assert not any(w in " ".join(hints) for w in other_words), (mistake, hints)


def test_shapes_say_which_axes():
    expected = RNG.standard_normal((2, 3, 5))
    text, hints = named(np.swapaxes(expected, 1, 2), expected)
    assert "another order" in text and "transpose" in hints[0]
    text, hints = named(expected[:, :, None, :], expected)
    assert "extra axis of size 1 at position 2" in text
    q, k = RNG.standard_normal((2, 3, 5)), RNG.standard_normal((2, 4, 5))
    batched = np.einsum("btd,csd->btcs", q, k)  # what ops.dot(q, k^T) gives
    text, hints = named(batched, np.einsum("btd,bsd->bts", q, k))
    assert "ops.matmul" in hints[0] and "batch axis twice" in text
    text, hints = named(expected.sum(-1), expected)
    assert "one axis too few" in text and not hints
    # a size-1 axis too many is not taken for ops.dot's doubled batch axis
    one = RNG.standard_normal((1, 1))
    text, hints = named(one[None], one)
    assert "extra axis of size 1" in text and "ops.matmul" not in " ".join(hints)


def test_a_factor_is_measured_and_compared_with_the_sizes():
    expected = RNG.standard_normal((2, 3, 8))
    text, hints = named(expected * np.sqrt(8), expected)
    assert "sqrt(8)" in text and "division by sqrt(8) is missing" in hints[0]
    text, hints = named(expected / np.sqrt(8), expected)
    assert "once too often" in hints[0]
    text, hints = named(expected * 1.37, expected)
    assert "times 1.37" in text and not hints  # observed, nothing named
    text, hints = named(-expected, expected)
    assert "sign is flipped" in hints[0]


def test_values_swapped_between_axes_of_the_same_size():
    expected = RNG.standard_normal((2, 4, 4))
    text, hints = named(np.swapaxes(expected, 1, 2), expected)
    assert "axes 1 and 2 swapped" in text and "transpose" in hints[0]


def test_errors_confined_to_some_positions_are_located():
    expected = RNG.standard_normal((2, 5, 3))
    received = expected.copy()
    received[:, 4] += 1.0 + RNG.random((2, 3))
    text, hints = named(received, expected)
    assert "only at index 4 of axis 1" in text and not hints


def test_nan_where_every_key_is_masked_is_explained():
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)[:, None, :]
    expected = softmax(np.where(mask, SCORES, -1e9))
    received = softmax(np.where(mask, SCORES, -np.inf))
    text, hints = named(received, expected)
    assert "non-finite" in text and "-inf" in hints[0]


def test_weights_right_output_wrong_points_past_the_attention():
    found = evidence.read_outputs(["weights"], ["context"])
    assert "attention itself is right" in found.observed[0]
    found = evidence.read_outputs(["context"], ["weights"])
    assert "return those same weights" in found.observed[0]


# ------------------------------------------------- through the real checks


def message(check, code):
    with pytest.raises(CheckFailed) as failure:
        check(code)
    return str(failure.value)


def sdpa(softmax_axis=-1, product=ops.matmul, return_scores=False):
    def scaled_dot_product_attention(q, k, v, mask=None):
        scores = product(q, ops.swapaxes(k, -1, -2)) / ops.sqrt(
            ops.cast(ops.shape(k)[-1], "float32")
        )
        if mask is not None:
            scores = ops.where(mask, scores, -1e9)
        weights = ops.softmax(scores, axis=softmax_axis)
        if mask is not None:
            weights = ops.where(mask, weights, 0.0)
        return ops.matmul(weights, v), scores if return_scores else weights

    return scaled_dot_product_attention


def test_a_crash_shows_the_operands_shapes_at_the_failing_line():
    text = message(check_scaled_dot_product_attention, sdpa(product=ops.dot))
    # ops.dot made the weights (B, T, B, S); the next matmul failed on them
    assert "At that line: `weights` (2, 3, 2, 4), `v` (2, 4, 5)" in text, text
    assert "Hint:" not in text


def test_a_check_names_returned_scores_and_rules_out_the_mask():
    text = message(check_scaled_dot_product_attention, sdpa(return_scores=True))
    hints = " ".join(line for line in text.splitlines() if line.startswith("Hint:"))
    assert "scores" in hints, text
    assert "mask" not in hints and "axis" not in hints


def test_a_check_without_a_named_mistake_says_what_was_observed():
    def masked_softmax(scores, mask=None):  # a plain bug: exp without softmax
        weights = ops.exp(scores)
        if mask is not None:
            weights = ops.where(mask, weights, 0.0)
        return weights

    text = message(check_masked_softmax, masked_softmax)
    assert "Observed:" in text and "does not sum to 1" in text, text


def test_randomness_at_inference_is_named_from_two_identical_calls():
    from autograder.checks.transformer import check_add_norm
    from autograder.reference.transformer import AddNorm

    class AlwaysDropping(AddNorm):
        def call(self, x, y, training=None):
            return self.norm(x + self.dropout(y, training=True))

    text = message(check_add_norm, AlwaysDropping)
    assert "Two identical calls" in text and "training=True" in text, text
    check_add_norm(AddNorm)  # the right layer is not random at inference
