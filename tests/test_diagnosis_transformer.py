"""Assignment 3's parts and training pieces diagnosed from the structure of
their formula (`autograder.judge.diagnose_transformer`), through the real
checks and `decide` as the grader calls it (with the judge's diagnosis).

The mistakes here are held out: they are not in
solutions/03_transformer/mistakes.toml, nor among the judge's known
variants, and were written after the diagnosers. Each must be named (its
hint holds the words of its diagnosis) and no hint may name a mistake it
does not have; each hint is also tried on code with a different mistake of
the same exercise, where it must not appear.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from autograder import judge
from autograder.checks import core, transformer
from autograder.checks.core import CheckFailed
from autograder.reference import transformer as R


@pytest.fixture(autouse=True)
def judged(monkeypatch):
    """`decide` in the notebook path given the judge's diagnosis, as the
    grader's `decide` is (`autograder.trusted`)."""
    original = core.decide

    def decide(
        check_name,
        cases,
        observations,
        expectations,
        failure=None,
        generic_hint="",
        **kwargs,
    ):
        return original(
            check_name,
            cases,
            observations,
            expectations,
            failure,
            generic_hint,
            diagnose=judge.spec(check_name).diagnose,
        )

    monkeypatch.setattr(core, "decide", decide)


def message(check, *code, cases="visible"):
    with pytest.raises(CheckFailed) as failure:
        check(*code, cases=cases)
    return str(failure.value)


def hints(text):
    return " ".join(
        line[len("Hint:") :].lower()
        for line in text.splitlines()
        if line.startswith("Hint:")
    )


# ------------------------------------------------------------ the mistakes


def pe_sines_only(length, depth):
    positions = np.arange(length)[:, None]
    i = np.arange(depth)[None, :]
    angles = positions / np.power(10000.0, (2 * (i // 2)) / depth)
    return np.sin(angles).astype("float32")


def pe_dimension_exponent(length, depth):
    positions = np.arange(length)[:, None]
    i = np.arange(depth)[None, :]
    angles = positions / np.power(10000.0, 2 * i / depth)
    return np.where(i % 2 == 0, np.sin(angles), np.cos(angles)).astype("float32")


class EmbeddingDivided(R.PositionalEmbedding):
    def call(self, tokens):
        length = ops.shape(tokens)[-1]
        x = self.embedding(tokens) / math.sqrt(self.d_model)
        encoding = ops.convert_to_tensor(self.encoding)[:length]
        return x + ops.cast(encoding, x.dtype)[None]


class EmbeddingTimesDModel(R.PositionalEmbedding):
    def call(self, tokens):
        length = ops.shape(tokens)[-1]
        x = self.embedding(tokens) * self.d_model
        encoding = ops.convert_to_tensor(self.encoding)[:length]
        return x + ops.cast(encoding, x.dtype)[None]


class FeedForwardTanh(R.FeedForward):
    def __init__(self, d_model, dff, **kwargs):
        kwargs.pop("activation", None)
        super().__init__(d_model, dff, activation="tanh", **kwargs)


class FeedForwardGelu(R.FeedForward):
    def __init__(self, d_model, dff, **kwargs):
        kwargs.pop("activation", None)
        super().__init__(d_model, dff, activation="gelu", **kwargs)


class AddNormResidualTwice(R.AddNorm):
    def call(self, x, y, training=None):
        return x + self.norm(x + self.dropout(y, training=training))


class AddNormEpsilon(R.AddNorm):
    def __init__(self, dropout=0.1, **kwargs):
        kwargs.pop("epsilon", None)
        super().__init__(dropout, epsilon=1e-7, **kwargs)


class WarmupSignSlip(R.WarmupSchedule):
    def __call__(self, step):
        s = ops.cast(step, "float32") + 1.0
        rate = ops.minimum(ops.rsqrt(s), s * self.warmup_steps**1.5)
        return rate * self.d_model**-0.5


class WarmupMax(R.WarmupSchedule):
    def __call__(self, step):
        s = ops.cast(step, "float32") + 1.0
        rate = ops.maximum(ops.rsqrt(s), s * self.warmup_steps**-1.5)
        return rate * self.d_model**-0.5


def _per_token(labels, logits, label_smoothing):
    labels = ops.cast(labels, "int32")
    vocab = ops.shape(logits)[-1]
    target = ops.one_hot(labels, vocab)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / vocab
    per_token = keras.losses.categorical_crossentropy(
        target, ops.cast(logits, "float32"), from_logits=True
    )
    return per_token, ops.cast(ops.not_equal(labels, 0), per_token.dtype)


def loss_over_batch(labels, logits, label_smoothing=0.0):
    per_token, real = _per_token(labels, logits, label_smoothing)
    return ops.sum(per_token * real) / ops.cast(ops.shape(labels)[0], "float32")


def loss_sparse_on_logits(labels, logits, label_smoothing=0.0):
    per_token = keras.losses.sparse_categorical_crossentropy(
        ops.cast(labels, "int32"), ops.cast(logits, "float32")
    )
    real = ops.cast(ops.not_equal(labels, 0), per_token.dtype)
    return ops.sum(per_token * real) / ops.maximum(ops.sum(real), 1.0)


def greedy_any_done(model, source, start_id, end_id, max_length):
    source = np.asarray(source)
    output = np.full((len(source), 1), start_id, dtype="int32")
    done = np.zeros(len(source), dtype=bool)
    for _ in range(max_length):
        logits = model((source, output), training=False)
        following = ops.convert_to_numpy(ops.argmax(logits[:, -1], axis=-1))
        following = np.where(done, 0, following).astype("int32")
        output = np.concatenate([output, following[:, None]], axis=1)
        done |= following == end_id
        if done.any():
            break
    return output[:, 1:]


def greedy_done_reassigned(model, source, start_id, end_id, max_length):
    source = np.asarray(source)
    output = np.full((len(source), 1), start_id, dtype="int32")
    done = np.zeros(len(source), dtype=bool)
    for _ in range(max_length):
        logits = model((source, output), training=False)
        following = ops.convert_to_numpy(ops.argmax(logits[:, -1], axis=-1))
        following = np.where(done, 0, following).astype("int32")
        output = np.concatenate([output, following[:, None]], axis=1)
        done = following == end_id
        if done.all():
            break
    return output[:, 1:]


C = transformer
#: name -> (check, code, cases, words its hint must hold)
HELD_OUT = {
    "pe-sines-only": (
        C.check_positional_encoding,
        (pe_sines_only,),
        "visible",
        ["cosine"],
    ),
    "pe-exponent-of-the-dimension": (
        C.check_positional_encoding,
        (pe_dimension_exponent,),
        "visible",
        ["2 * (i // 2)", "pair"],
    ),
    "embedding-divided-by-sqrt": (
        C.check_positional_embedding,
        (EmbeddingDivided,),
        "visible",
        ["divided"],
    ),
    "ffn-tanh": (C.check_feed_forward, (FeedForwardTanh,), "visible", ["tanh"]),
    "addnorm-residual-added-again": (
        C.check_add_norm,
        (AddNormResidualTwice,),
        "visible",
        ["added again"],
    ),
    "warmup-power-sign": (
        C.check_warmup_schedule,
        (WarmupSignSlip,),
        "visible",
        ["warmup ** 1.5"],
    ),
    "loss-divided-by-batch": (
        C.check_masked_loss,
        (loss_over_batch, R.masked_accuracy),
        "visible",
        ["batch size"],
    ),
    "loss-sparse-from-probabilities": (
        C.check_masked_loss,
        (loss_sparse_on_logits, R.masked_accuracy),
        "visible",
        ["from_logits"],
    ),
    "greedy-stops-at-any-row": (
        C.check_greedy_decode,
        (greedy_any_done,),
        "visible",
        ["every row"],
    ),
}

#: Mistakes of the same exercises, for the hints that must not appear.
OTHERS = {
    "embedding-times-d-model": (
        C.check_positional_embedding,
        (EmbeddingTimesDModel,),
        "visible",
        ["d_model itself"],
    ),
    "ffn-gelu": (C.check_feed_forward, (FeedForwardGelu,), "visible", ["gelu"]),
    "addnorm-epsilon-1e-7": (
        C.check_add_norm,
        (AddNormEpsilon,),
        "visible",
        ["epsilon"],
    ),
    "warmup-max": (C.check_warmup_schedule, (WarmupMax,), "visible", ["maximum"]),
    "greedy-done-reassigned": (
        C.check_greedy_decode,
        (greedy_done_reassigned,),
        "visible",
        ["|="],
    ),
}
ALL = {**HELD_OUT, **OTHERS}

_MESSAGES = {}


def verdict(name):
    if name not in _MESSAGES:
        check, code, cases, _ = ALL[name]
        _MESSAGES[name] = message(check, *code, cases=cases)
    return _MESSAGES[name]


@pytest.mark.parametrize("name", list(ALL))
def test_each_mistake_is_named(name):
    text = verdict(name)
    words = ALL[name][3]
    assert all(w.lower() in hints(text) for w in words), text


def _exercise(name):
    return ALL[name][0]


@pytest.mark.parametrize(
    "name, other",
    [(a, b) for a in ALL for b in ALL if a != b and ALL[a][0] is ALL[b][0]],
)
def test_a_hint_does_not_appear_for_a_different_mistake(name, other):
    """`other`'s hint is never given for `name`'s mistake."""
    text = hints(verdict(name))
    assert not any(w.lower() in text for w in ALL[other][3]), (name, other, text)


def test_the_solution_passes_with_the_diagnosis_in_place():
    C.check_positional_encoding(R.positional_encoding)
    C.check_feed_forward(R.FeedForward)
    C.check_add_norm(R.AddNorm)
    C.check_warmup_schedule(R.WarmupSchedule)
