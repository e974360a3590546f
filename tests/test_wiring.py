"""One mistake, one exercise (`autograder.judge.wiring`, `checks.taps`).

A composite layer built on a wrong part of the student's own, but wired
right, gets its points while grading, with a note naming the part to fix
first; a composite wired wrong fails whether its parts are right or not, and
its message says where the wiring departs. Each case runs the solution's
code with one patch through the real check (its probe and taps, as in the
student's kernel) and the grader's `decide` (the judge's expectations,
diagnosis and wiring), in this process.
"""

import ast
import contextlib
import math
import sys
import types
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from autograder import judge
from autograder.checks import attention as attention_checks
from autograder.checks import core, sources
from autograder.checks import seq2seq as seq2seq_checks
from autograder.checks import transformer as transformer_checks
from autograder.checks.core import CheckFailed, decide
from autograder.judge import wiring

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "A1": ROOT / "solutions/01_attention_seq2seq/attention_seq2seq.py",
    "A2": ROOT / "solutions/02_self_attention/self_attention.py",
    "A3": ROOT / "solutions/03_transformer/transformer.py",
}
NAMES = {
    "A1": [
        "masked_softmax",
        "LuongAttention",
        "BahdanauAttention",
        "BahdanauDecoderStep",
    ],
    "A2": ["scaled_dot_product_attention", "MultiHeadAttention"],
    "A3": [
        "positional_encoding",
        "PositionalEmbedding",
        "FeedForward",
        "AddNorm",
        "EncoderLayer",
        "DecoderLayer",
        "Encoder",
        "Decoder",
        "Transformer",
        "greedy_decode",
    ],
}
_count = [0]


def student(assignment, patches=()):
    """The solution's definitions, with `(old, new)` text patches, in a fresh
    module (as a notebook's namespace)."""
    text = SOURCES[assignment].read_text(encoding="utf-8")
    tree = ast.parse(text)
    wanted = set(NAMES[assignment])
    code = "\n\n".join(
        ast.get_source_segment(text, node)
        for node in tree.body
        if getattr(node, "name", None) in wanted
    )
    for old, new in patches:
        assert code.count(old) == 1, old
        code = code.replace(old, new)
    _count[0] += 1
    module = types.ModuleType(f"student_{assignment}_{_count[0]}")
    sys.modules[module.__name__] = module
    module.__dict__.update(
        keras=keras, ops=ops, np=np, math=math, contextlib=contextlib
    )
    exec(compile(code, module.__name__, "exec"), module.__dict__)
    return module


class _Recording:
    grading = True

    def __init__(self):
        self.records = {}

    def cases(self, check_name, which):
        return judge.spec(check_name).cases(which)

    def record(self, check_name, which, observations, failure, evidence):
        self.records[check_name, which] = (observations, failure)


def grade(monkeypatch, check, check_name, *layers, which="visible"):
    """`(passed, message)`: the grader's verdict on one check call."""
    source = _Recording()
    monkeypatch.setattr(sources, "current", lambda: source)
    with contextlib.suppress(CheckFailed):
        check.__wrapped__(*layers, cases=which)
    observations, failure = source.records[check_name, which]
    spec = judge.spec(check_name)
    cases = spec.cases(which)
    notes = []
    try:
        decide(
            check_name,
            cases,
            observations,
            spec.expectations(cases),
            failure,
            spec.generic_hint,
            diagnose=spec.diagnose,
            wiring=wiring.judge(check_name),
            notes=notes,
        )
    except CheckFailed as failed:
        return False, failed.message
    return True, "\n".join(notes)


MULTIPLIED_MASK = (
    "masked_softmax",
    "    return ops.where(mask, weights, 0.0)",
    None,
)


def _softmax_patch():
    text = SOURCES["A1"].read_text(encoding="utf-8")
    tree = ast.parse(text)
    node = next(n for n in tree.body if getattr(n, "name", None) == "masked_softmax")
    body = ast.get_source_segment(text, node)
    assert "-1e9" in body or "NEG" in body or "where" in body
    # the mask multiplies the scores instead of filling them
    start = body.index('"""', body.index('"""') + 3) + 3
    new = (
        body[:start]
        + "\n    if mask is None:\n        return ops.softmax(scores, axis=-1)\n"
        + "    mask = ops.cast(mask, scores.dtype)\n"
        + "    if len(mask.shape) == len(scores.shape) - 1:\n"
        + "        mask = ops.expand_dims(mask, -2)\n"
        + "    return ops.softmax(scores * mask, axis=-1) * mask\n"
    )
    return body, new


@pytest.mark.parametrize(
    "check_name, layer",
    [
        ("check_luong_attention", "LuongAttention"),
        ("check_bahdanau_attention", "BahdanauAttention"),
    ],
)
def test_a_layer_wired_right_on_a_wrong_softmax_gets_its_points(
    monkeypatch, check_name, layer
):
    module = student("A1", [_softmax_patch()])
    check = getattr(seq2seq_checks, check_name)
    passed, note = grade(monkeypatch, check, check_name, getattr(module, layer))
    assert passed, note
    assert "wired right" in note and "`masked_softmax`" in note
    assert "check_masked_softmax" in note


def test_a_layer_wired_wrong_fails_even_when_its_part_is_wrong_too(monkeypatch):
    order = (
        "both = ops.concatenate([context, query], axis=-1)",
        "both = ops.concatenate([query, context], axis=-1)",
    )
    module = student("A1", [_softmax_patch(), order])
    passed, message = grade(
        monkeypatch,
        seq2seq_checks.check_luong_attention,
        "check_luong_attention",
        module.LuongAttention,
    )
    assert not passed
    # the first case has no padding (the part is right there): the known
    # mistake is named; with padding the wiring judge says where it departs
    assert "concatenation is in the wrong order" in message
    passed, message = grade(
        monkeypatch,
        seq2seq_checks.check_luong_attention,
        "check_luong_attention",
        module.LuongAttention,
        which="hidden",
    )
    assert not passed


def test_a_part_called_without_its_mask_is_the_layers_mistake(monkeypatch):
    module = student(
        "A1",
        [
            (
                "weights = masked_softmax(scores, values_mask)  # (B, Tq, Tk)",
                "weights = masked_softmax(scores)  # (B, Tq, Tk)",
            )
        ],
    )
    passed, message = grade(
        monkeypatch,
        seq2seq_checks.check_luong_attention,
        "check_luong_attention",
        module.LuongAttention,
    )
    assert not passed
    assert "values_mask" in message


def test_the_decoder_step_on_a_wrong_bahdanau_attention(monkeypatch):
    module = student(
        "A1",
        [
            (
                "scores = ops.sum(ops.tanh(q + k) * self.w_a, axis=-1)  # (B, Tk)",
                "scores = ops.sum((q + k) * self.w_a, axis=-1)  # (B, Tk)",
            )
        ],
    )
    passed, note = grade(
        monkeypatch,
        seq2seq_checks.check_bahdanau_decoder_step,
        "check_bahdanau_decoder_step",
        module.BahdanauDecoderStep,
    )
    assert passed, note
    assert "`BahdanauAttention`" in note


def test_a_right_layer_on_right_parts_gets_no_note(monkeypatch):
    module = student("A1")
    passed, note = grade(
        monkeypatch,
        seq2seq_checks.check_luong_attention,
        "check_luong_attention",
        module.LuongAttention,
        which="hidden",
    )
    assert passed and note == ""


def test_multi_head_attention_on_an_unscaled_sdpa(monkeypatch):
    module = student("A2", [("/ ops.sqrt(d_k)", "/ 1.0")])
    passed, note = grade(
        monkeypatch,
        attention_checks.check_multi_head_attention,
        "check_multi_head_attention",
        module.MultiHeadAttention,
    )
    assert passed, note
    assert "`scaled_dot_product_attention`" in note
    # the hidden cases too, one under tf.function(jit_compile=True): its
    # parts are recorded from an eager call beside the compiled one
    passed, note = grade(
        monkeypatch,
        attention_checks.check_multi_head_attention,
        "check_multi_head_attention",
        module.MultiHeadAttention,
        which="hidden",
    )
    assert passed, note


def _a3(check_name, *patches):
    module = student("A3", patches)
    return module, getattr(transformer_checks, check_name)


GELU = ('activation="relu"', 'activation="gelu"')


@pytest.mark.parametrize(
    "check_name, layer",
    [
        ("check_encoder_layer", "EncoderLayer"),
        ("check_decoder_layer", "DecoderLayer"),
    ],
)
def test_blocks_on_a_wrong_feed_forward_get_their_points(
    monkeypatch, check_name, layer
):
    module, check = _a3(check_name, GELU)
    passed, note = grade(monkeypatch, check, check_name, getattr(module, layer))
    assert passed, note
    assert "`FeedForward`" in note


def test_a_block_that_feeds_the_ffn_the_wrong_tensor_fails(monkeypatch):
    module, check = _a3(
        "check_encoder_layer",
        GELU,
        (
            "return self.ffn_norm(x, self.ffn(x), training=training)",
            "return self.ffn_norm(x, self.ffn(attended), training=training)",
        ),
    )
    passed, message = grade(
        monkeypatch, check, "check_encoder_layer", module.EncoderLayer
    )
    assert not passed
    assert "FeedForward" in message


@pytest.mark.parametrize(
    "check_name, layer",
    [("check_encoder", "Encoder"), ("check_transformer", "Transformer")],
)
def test_stacks_on_a_wrong_layer_get_their_points(monkeypatch, check_name, layer):
    module, check = _a3(check_name, GELU)
    passed, note = grade(monkeypatch, check, check_name, getattr(module, layer))
    assert passed, note
    assert "wired right" in note


def test_the_notebook_names_a_part_that_failed_its_own_check(monkeypatch):
    module = student("A1", [_softmax_patch()])
    monkeypatch.setattr(core, "_RESULTS", {})
    with pytest.raises(Exception):  # noqa: B017 - the verdict module's error
        seq2seq_checks.check_masked_softmax(module.masked_softmax)
    with pytest.raises(Exception) as failed:
        seq2seq_checks.check_luong_attention(module.LuongAttention)
    assert "calls your `masked_softmax` (check_masked_softmax)" in str(failed.value)


def test_a_part_that_crashes_inside_a_layer_is_named(monkeypatch):
    """A part that fails on what the layer gives it: the layer cannot be
    judged apart from it, and the message says which part failed."""
    module = student(
        "A1",
        [
            (
                "    if len(mask.shape) == len(scores.shape) - 1:\n"
                "        mask = ops.expand_dims(mask, -2)\n",
                "    mask = ops.reshape(mask, ops.shape(scores))\n",
            )
        ],
    )
    passed, message = grade(
        monkeypatch,
        seq2seq_checks.check_luong_attention,
        "check_luong_attention",
        module.LuongAttention,
    )
    assert not passed
    assert "inside your `masked_softmax`, which `LuongAttention` calls" in message
    assert "check_masked_softmax" in message


SWAPPED_ENCODING = (
    "np.where(i % 2 == 0, np.sin(angles), np.cos(angles))",
    "np.where(i % 2 == 0, np.cos(angles), np.sin(angles))",
)


@pytest.mark.parametrize(
    "check_name, layer",
    [
        ("check_positional_embedding", "PositionalEmbedding"),
        ("check_encoder", "Encoder"),
        ("check_decoder", "Decoder"),
    ],
)
def test_layers_on_a_wrong_positional_encoding_get_their_points(
    monkeypatch, check_name, layer
):
    """The encoding is made once in `__init__` for `max_length` positions and
    sliced: the tap of that call stands for every shorter encoding."""
    module, check = _a3(check_name, SWAPPED_ENCODING)
    passed, note = grade(monkeypatch, check, check_name, getattr(module, layer))
    assert passed, note
    assert "wired right" in note


def test_a_layer_on_a_part_random_at_inference_gets_its_points(monkeypatch):
    """AddNorm's dropout always on is AddNorm's mistake: the encoder layer
    that calls it right is not the one that is random."""
    module, check = _a3(
        "check_encoder_layer",
        ("self.drop(y, training=training)", "self.drop(y, training=True)"),
    )
    passed, note = grade(monkeypatch, check, "check_encoder_layer", module.EncoderLayer)
    assert passed, note
    assert "`AddNorm`" in note


def test_a_layer_that_turns_dropout_on_in_its_part_fails(monkeypatch):
    module, check = _a3(
        "check_encoder_layer",
        (
            "x = self.attention_norm(x, attended, training=training)",
            "x = self.attention_norm(x, attended, training=True)",
        ),
    )
    passed, message = grade(
        monkeypatch, check, "check_encoder_layer", module.EncoderLayer
    )
    assert not passed
    assert "training=True" in message


def test_a_block_on_a_wrong_part_in_a_functional_model_gets_its_points(monkeypatch):
    """In the hidden case where padding comes as a Keras mask, the attention's
    rows of padded queries differ from the reference's: rows the case does not
    compare are not compared in what the parts received either."""
    module, check = _a3("check_encoder_layer", GELU)
    passed, note = grade(
        monkeypatch, check, "check_encoder_layer", module.EncoderLayer, which="hidden"
    )
    assert passed, note
    assert "`FeedForward`" in note


def test_a_stack_on_an_embedding_without_a_mask(monkeypatch):
    """The embedding carries no mask: the encoder, which takes its mask from
    it, cannot be judged apart from it, and says so."""
    module, check = _a3(
        "check_encoder",
        (
            "keras.layers.Embedding(vocab_size, d_model, mask_zero=True)",
            "keras.layers.Embedding(vocab_size, d_model)",
        ),
    )
    passed, message = grade(monkeypatch, check, "check_encoder", module.Encoder)
    assert not passed
    assert "takes its mask from your `PositionalEmbedding`" in message
    assert "cannot be judged until" in message


def test_a_step_on_an_attention_that_returns_the_wrong_shape(monkeypatch):
    """Bahdanau attention whose context is the projected keys (units wide):
    the decoder step's cell cannot take it; the message names the part."""
    module = student(
        "A1",
        [
            (
                "context = ops.sum(ops.expand_dims(weights, -1) * values, axis=-2)",
                "context = ops.sum(ops.expand_dims(weights, -1) * k, axis=-2)",
            )
        ],
    )
    passed, message = grade(
        monkeypatch,
        seq2seq_checks.check_bahdanau_decoder_step,
        "check_bahdanau_decoder_step",
        module.BahdanauDecoderStep,
    )
    assert not passed
    assert "builds on your `BahdanauAttention` (check_bahdanau_attention)" in message
