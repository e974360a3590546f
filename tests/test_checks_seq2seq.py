"""The checks of Assignment 1: they pass right code and name wrong code.

Right code: the reference layers, written another way, in float64, and under
simulated TF32 matmuls. Wrong code: each typical mistake as a small subclass
of the reference; the check must fail with the message naming that mistake.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from autograder import checks
from autograder.checks import CheckFailed
from autograder.reference import seq2seq as R

ALL = [
    (checks.check_dot_score, R.DotScore),
    (checks.check_general_score, R.GeneralScore),
    (checks.check_concat_score, R.ConcatScore),
    (checks.check_masked_softmax, R.masked_softmax),
    (checks.check_luong_attention, R.LuongAttention),
    (checks.check_bahdanau_attention, R.BahdanauAttention),
    (checks.check_bahdanau_decoder_step, R.BahdanauDecoderStep),
]


@pytest.mark.parametrize("cases", ["visible", "hidden"])
@pytest.mark.parametrize(
    ("check", "solution"), ALL, ids=lambda x: getattr(x, "__name__", x)
)
def test_reference_passes(check, solution, cases, capsys):
    check(solution, cases=cases)
    assert "cases passed" in capsys.readouterr().out


def round_tf32(x):
    """Round float32 values to TF32 (10 mantissa bits), to nearest."""
    if isinstance(x, keras.KerasTensor):  # shape inference only
        return x
    x = tf.convert_to_tensor(x)
    if x.dtype != tf.float32:
        return x
    bits = tf.bitcast(x, tf.int32)
    bits = tf.bitwise.bitwise_and(bits + 0x1000, ~0x1FFF)  # nearest, drop 13 bits
    return tf.bitcast(bits, tf.float32)


@pytest.fixture
def tf32_matmuls(monkeypatch):
    """Every Keras matmul rounds its float32 operands to TF32 first, as a
    recent NVIDIA GPU does by default."""
    import keras.src.ops as src_ops

    original = src_ops.matmul

    def matmul(a, b):
        return original(round_tf32(a), round_tf32(b))

    monkeypatch.setattr(keras.ops, "matmul", matmul)
    monkeypatch.setattr(src_ops, "matmul", matmul)
    yield


@pytest.mark.parametrize(
    ("check", "solution"), ALL, ids=lambda x: getattr(x, "__name__", x)
)
def test_reference_passes_under_simulated_tf32(check, solution, tf32_matmuls):
    for cases in ("visible", "hidden"):
        check(solution, cases=cases)


def test_tf32_simulation_really_changes_results(tf32_matmuls):
    a = np.full((1, 1), 1.0 + 2**-12, np.float32)
    assert (
        float(
            ops.convert_to_numpy(keras.ops.matmul(a, np.ones((1, 1), np.float32)))[0, 0]
        )
        == 1.0
    )


class Float64Luong(R.LuongAttention):
    def __init__(self, units, output_dim, **kwargs):
        kwargs["dtype"] = "float64"
        super().__init__(units, output_dim, **kwargs)


def test_float64_layers_pass():
    checks.check_luong_attention(Float64Luong)
    checks.check_luong_attention(Float64Luong, cases="hidden")


# ------------------------------------------------------------ other right code


class EinsumDot(keras.layers.Layer):
    def call(self, query, keys):
        return ops.einsum("bqd,bkd->bqk", query, keys)


class TransposedGeneral(keras.layers.Layer):
    """Stores W_a as (d_q, d_k) and computes (q W) k^T: the same function."""

    def build(self, query_shape, keys_shape):
        self.W = self.add_weight(shape=(query_shape[-1], keys_shape[-1]))

    def call(self, query, keys):
        return ops.einsum("bqd,de,bke->bqk", query, self.W, keys)


class DenseConcat(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, query_shape, keys_shape):
        self.wq = keras.layers.Dense(self.units, use_bias=False)
        self.wk = keras.layers.Dense(self.units, use_bias=False)
        self.v = keras.layers.Dense(1, use_bias=False)
        self.wq.build(query_shape)
        self.wk.build(keys_shape)
        self.v.build((None, self.units))

    def call(self, query, keys):
        q = self.wq(query)[:, :, None]
        k = self.wk(keys)[:, None]
        return ops.squeeze(self.v(ops.tanh(q + k)), -1)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@pytest.mark.parametrize(
    ("check", "layer"),
    [
        (checks.check_dot_score, EinsumDot),
        (checks.check_general_score, TransposedGeneral),
        (checks.check_concat_score, DenseConcat),
    ],
)
def test_other_correct_implementations_pass(check, layer):
    check(layer)
    check(layer, cases="hidden")


# ------------------------------------------------------------ mistakes, named


class ScaledDot(R.DotScore):
    def call(self, query, keys):
        return super().call(query, keys) / np.sqrt(query.shape[-1])


class TransposedDot(R.DotScore):
    def call(self, query, keys):
        return ops.swapaxes(super().call(query, keys), -1, -2)


class ConcatNoTanh(R.ConcatScore):
    def call(self, query, keys):
        q = ops.expand_dims(ops.matmul(query, self.W_1), -2)
        k = ops.expand_dims(ops.matmul(keys, self.W_2), -3)
        return ops.sum((q + k) * self.v_a, axis=-1)


def softmax_no_mask(scores, mask=None):
    return ops.softmax(scores, axis=-1)


def softmax_wrong_axis(scores, mask=None):
    if mask is None:
        return ops.softmax(scores, axis=-2)
    mask = ops.expand_dims(ops.cast(mask, "bool"), -2) if len(mask.shape) < 3 else mask
    weights = ops.softmax(ops.where(mask, scores, -1e9), axis=-2)
    return ops.where(mask, weights, 0.0)


def softmax_uniform_empty(scores, mask=None):
    if mask is None:
        return ops.softmax(scores)
    mask = ops.expand_dims(ops.cast(mask, "bool"), -2) if len(mask.shape) < 3 else mask
    return ops.softmax(ops.where(mask, scores, -1e9))


def softmax_inverted(scores, mask=None):
    return R.masked_softmax(scores, None if mask is None else ~ops.cast(mask, "bool"))


def softmax_minus_inf(scores, mask=None):
    if mask is None:
        return ops.softmax(scores)
    mask = ops.expand_dims(ops.cast(mask, "bool"), -2) if len(mask.shape) < 3 else mask
    return ops.softmax(ops.where(mask, scores, float("-inf")))


class LuongNoMask(R.LuongAttention):
    def call(self, query, values, values_mask=None, return_attention_scores=False):
        return super().call(query, values, None, return_attention_scores)


class LuongConcatOrder(R.LuongAttention):
    def call(self, query, values, values_mask=None, return_attention_scores=False):
        scores = ops.matmul(query, ops.swapaxes(values, -1, -2))
        weights = R.masked_softmax(scores, values_mask)
        both = ops.concatenate([query, ops.matmul(weights, values)], axis=-1)
        probs = ops.softmax(
            ops.matmul(ops.tanh(ops.matmul(both, self.W_c) + self.b_c), self.W_y)
            + self.b_y
        )
        return (probs, weights) if return_attention_scores else probs


class LuongMaskArgumentMisnamed(R.LuongAttention):
    """Takes `mask=`: Keras fills no `mask` for a layer with two tensor inputs."""

    def call(self, query, values, mask=None, return_attention_scores=False):
        return super().call(query, values, mask, return_attention_scores)


class LuongOnlyProbs(R.LuongAttention):
    def call(self, query, values, values_mask=None, return_attention_scores=False):
        return super().call(query, values, values_mask, False)


class LuongNoConfig(R.LuongAttention):
    def get_config(self):
        return keras.layers.Layer.get_config(self)


class BahdanauNoMask(R.BahdanauAttention):
    def call(self, query, values, values_mask=None):
        return super().call(query, values, None)


class StepOldStateOutput(R.BahdanauDecoderStep):
    def call(self, tokens, state, values, values_mask=None):
        _, new_state, weights = super().call(tokens, state, values, values_mask)
        return self.output_layer(state), new_state, weights


class StepConcatOrder(R.BahdanauDecoderStep):
    def call(self, tokens, state, values, values_mask=None):
        x = self.embedding(tokens)
        context, weights = self.attention(state, values, values_mask=values_mask)
        new_state, _ = self.cell(ops.concatenate([context, x], axis=-1), state)
        return self.output_layer(new_state), new_state, weights


class StepNoContext(R.BahdanauDecoderStep):
    def build(self, tokens_shape, state_shape, values_shape):
        self.embedding = keras.layers.Embedding(self.vocab_size, self.embedding_dim)
        self.attention = R.BahdanauAttention(self.attention_units)
        self.cell = keras.layers.GRUCell(self.units)
        self.output_layer = keras.layers.Dense(self.vocab_size)

    def call(self, tokens, state, values, values_mask=None):
        x = self.embedding(tokens)
        _, weights = self.attention(state, values, values_mask=values_mask)
        new_state, _ = self.cell(x, state)
        return self.output_layer(new_state), new_state, weights


class NotWritten(keras.layers.Layer):
    def call(self, query, keys):
        raise NotImplementedError()


class Crashes(keras.layers.Layer):
    def call(self, query, keys):
        raise ValueError("boom")


MISTAKES = [
    (checks.check_dot_score, ScaledDot, "divided by sqrt(d)"),
    (checks.check_dot_score, TransposedDot, "transposed"),
    (checks.check_dot_score, Crashes, "raised ValueError: boom"),
    (checks.check_concat_score, ConcatNoTanh, "tanh is missing"),
    (checks.check_masked_softmax, softmax_no_mask, "mask was not applied"),
    (checks.check_masked_softmax, softmax_wrong_axis, "over the queries"),
    (checks.check_masked_softmax, softmax_uniform_empty, "1/keys"),
    (checks.check_masked_softmax, softmax_inverted, "inverted"),
    (checks.check_masked_softmax, softmax_minus_inf, "non-finite value"),
    (checks.check_luong_attention, LuongNoMask, "pass `values_mask`"),
    (checks.check_luong_attention, LuongConcatOrder, "[a_t; s_t], the context first"),
    (
        checks.check_luong_attention,
        LuongMaskArgumentMisnamed,
        "unexpected keyword argument 'values_mask'",
    ),
    (checks.check_luong_attention, LuongOnlyProbs, "expected a tuple (probs, weights)"),
    (checks.check_luong_attention, LuongNoConfig, "without `units`, `output_dim`"),
    (checks.check_bahdanau_attention, BahdanauNoMask, "apply `values_mask`"),
    (checks.check_bahdanau_decoder_step, StepOldStateOutput, "from s_{t-1}"),
    (
        checks.check_bahdanau_decoder_step,
        StepConcatOrder,
        "[x_t; c_t], the embedding first",
    ),
    (
        checks.check_bahdanau_decoder_step,
        StepNoContext,
        "Could not find the weight kernel",
    ),
]


@pytest.mark.parametrize(
    ("check", "broken", "hint"), MISTAKES, ids=lambda x: getattr(x, "__name__", None)
)
def test_mistake_is_named(check, broken, hint):
    with pytest.raises(CheckFailed) as failure:
        check(broken)
    message = str(failure.value)
    assert hint in message, message
    assert message.startswith(check.__name__)


@pytest.mark.parametrize(
    ("check", "broken", "hint"),
    MISTAKES[:12],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_mistakes_still_caught_under_simulated_tf32(check, broken, hint, tf32_matmuls):
    with pytest.raises(CheckFailed, match=None) as failure:
        check(broken)
    assert hint in str(failure.value)


def test_message_has_inputs_expected_received_and_tolerance():
    with pytest.raises(CheckFailed) as failure:
        checks.check_luong_attention(LuongNoMask)
    message = str(failure.value)
    for part in (
        "case 2 of 3",
        "Inputs:",
        "values_mask: bool (2, 5)",
        "max abs difference",
        "tolerance atol=",
        "Hint:",
    ):
        assert part in message, message


def test_unwritten_exercise_raises_not_implemented_error():
    with pytest.raises(
        NotImplementedError, match="check_dot_score: your code is not written yet"
    ):
        checks.check_dot_score(NotWritten)


def test_failure_is_raised_from_the_verdict_module_only():
    with pytest.raises(CheckFailed) as failure:
        checks.check_dot_score(ScaledDot)
    tb = failure.tb
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_filename.endswith("verdict.py")
    assert (
        failure.value.__cause__ is None and failure.value.__suppress_context__ is False
    )
    assert failure.value.__context__ is None


def test_bad_cases_argument():
    with pytest.raises(ValueError, match="Received: cases='all'"):
        checks.check_dot_score(R.DotScore, cases="all")


class WarnsButRight(R.DotScore):
    def call(self, query, keys):
        import warnings

        warnings.warn("something to know", UserWarning, stacklevel=1)
        return super().call(query, keys)


def test_warnings_go_to_stdout_not_stderr(capsys):
    checks.check_dot_score(WarnsButRight)
    out, err = capsys.readouterr()
    assert "Note, a warning while checking: UserWarning: something to know" in out
    assert out.count("something to know") == 1
    assert err == ""


# ------------------------------------------- either orientation of a weight


class PaperGeneral(keras.layers.Layer):
    """`W_a` as the papers write it, `(d_q, d_k)`: `s W_a h^T`."""

    def build(self, query_shape, keys_shape):
        self.W_a = self.add_weight(name="W_a", shape=(query_shape[-1], keys_shape[-1]))

    def call(self, query, keys):
        return ops.matmul(ops.matmul(query, self.W_a), ops.swapaxes(keys, -1, -2))


class MismatchedGeneral(R.GeneralScore):
    """Creates the Keras kernel `(d_k, d_q)` but computes `s W_a h^T`."""

    def call(self, query, keys):
        return ops.matmul(ops.matmul(query, self.W_a), ops.swapaxes(keys, -1, -2))


class PaperConcat(R.ConcatScore):
    """`W_1` `(units, d_q)` and `W_2` `(units, d_k)`: `W_1 s + W_2 h`."""

    def build(self, query_shape, keys_shape):
        self.W_1 = self.add_weight(name="W_1", shape=(self.units, query_shape[-1]))
        self.W_2 = self.add_weight(name="W_2", shape=(self.units, keys_shape[-1]))
        self.v_a = self.add_weight(name="v_a", shape=(self.units,))

    def call(self, query, keys):
        q = ops.expand_dims(ops.matmul(query, ops.transpose(self.W_1)), -2)
        k = ops.expand_dims(ops.matmul(keys, ops.transpose(self.W_2)), -3)
        return ops.sum(ops.tanh(q + k) * self.v_a, axis=-1)


class PaperLuong(R.LuongAttention):
    """`W_c` `(units, 2d)` and `W_y` `(V, units)`, used as `W x`."""

    def build(self, query_shape, values_shape):
        both = query_shape[-1] + values_shape[-1]
        self.W_c = self.add_weight(name="W_c", shape=(self.units, both))
        self.b_c = self.add_weight(name="b_c", shape=(self.units,), initializer="zeros")
        self.W_y = self.add_weight(name="W_y", shape=(self.output_dim, self.units))
        self.b_y = self.add_weight(
            name="b_y", shape=(self.output_dim,), initializer="zeros"
        )

    def call(self, query, values, values_mask=None, return_attention_scores=False):
        scores = ops.matmul(query, ops.swapaxes(values, -1, -2))
        weights = R.masked_softmax(scores, values_mask)
        both = ops.concatenate([ops.matmul(weights, values), query], axis=-1)
        attentional = ops.tanh(ops.matmul(both, ops.transpose(self.W_c)) + self.b_c)
        probs = ops.softmax(ops.matmul(attentional, ops.transpose(self.W_y)) + self.b_y)
        return (probs, weights) if return_attention_scores else probs


class PaperBahdanau(R.BahdanauAttention):
    """`W_b` `(units, d_s)` and `W_c` `(units, d_h)`."""

    def build(self, query_shape, values_shape):
        self.W_b = self.add_weight(name="W_b", shape=(self.units, query_shape[-1]))
        self.W_c = self.add_weight(name="W_c", shape=(self.units, values_shape[-1]))
        self.w_a = self.add_weight(name="w_a", shape=(self.units,))

    def call(self, query, values, values_mask=None):
        q = ops.expand_dims(ops.matmul(query, ops.transpose(self.W_b)), -2)
        k = ops.matmul(values, ops.transpose(self.W_c))
        weights = R.masked_softmax(ops.sum(ops.tanh(q + k) * self.w_a, -1), values_mask)
        return ops.sum(ops.expand_dims(weights, -1) * values, axis=-2), weights


class PaperStep(R.BahdanauDecoderStep):
    """The decoder step on the papers' orientation of Bahdanau's weights."""

    def build(self, tokens_shape, state_shape, values_shape):
        self.embedding = keras.layers.Embedding(self.vocab_size, self.embedding_dim)
        self.attention = PaperBahdanau(self.attention_units)
        self.cell = keras.layers.GRUCell(self.units)
        self.output_layer = keras.layers.Dense(self.vocab_size)


KERNEL_NOTE = "as a Keras kernel (d_in, d_out)"
PAPER_NOTE = "transposed, (d_out, d_in) as the papers write it"


@pytest.mark.parametrize(
    ("check", "layer", "note"),
    [
        (checks.check_general_score, R.GeneralScore, KERNEL_NOTE),
        (checks.check_general_score, PaperGeneral, PAPER_NOTE),
        (checks.check_concat_score, R.ConcatScore, KERNEL_NOTE),
        (checks.check_concat_score, PaperConcat, PAPER_NOTE),
        (checks.check_luong_attention, R.LuongAttention, KERNEL_NOTE),
        (checks.check_luong_attention, PaperLuong, PAPER_NOTE),
        (checks.check_bahdanau_attention, R.BahdanauAttention, KERNEL_NOTE),
        (checks.check_bahdanau_attention, PaperBahdanau, PAPER_NOTE),
        (checks.check_bahdanau_decoder_step, R.BahdanauDecoderStep, KERNEL_NOTE),
        (checks.check_bahdanau_decoder_step, PaperStep, PAPER_NOTE),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_either_orientation_passes_and_is_named(check, layer, note, capsys):
    for cases in ("visible", "hidden"):
        check(layer, cases=cases)
        out = capsys.readouterr().out
        assert "cases passed" in out
        assert note in out, out
        other = PAPER_NOTE if note == KERNEL_NOTE else KERNEL_NOTE
        assert other not in out, out


def _square(case, name):
    shape = np.shape(case.weights[name])
    return shape[0] == shape[1]


@pytest.mark.parametrize(
    ("check_name", "weight", "which"),
    [
        ("check_general_score", "W_a", "visible"),
        ("check_general_score", "W_a", "hidden"),
        ("check_concat_score", "W_1", "visible"),
        ("check_concat_score", "W_2", "hidden"),
        ("check_luong_attention", "W_c", "hidden"),
        ("check_bahdanau_attention", "W_b", "hidden"),
        ("check_bahdanau_decoder_step", "W_c", "hidden"),
    ],
)
def test_cases_have_square_and_non_square_weights(check_name, weight, which):
    from autograder import judge

    cases = judge.spec(check_name).cases(which)
    kinds = {_square(case, weight) for case in cases}
    assert kinds == {True, False}


def test_square_weight_orientation_is_read_from_a_wider_build():
    """With d_q == d_k both orientations have one shape: the probe reads the
    orientation the layer creates where the sizes differ, and gives `W_a`
    its values that way round."""
    from autograder import judge
    from autograder.checks.seq2seq import TRANSPOSED, general_score_probe

    cases = judge.spec("check_general_score").cases("visible")
    case = next(c for c in cases if _square(c, "W_a"))
    probe = general_score_probe(PaperGeneral)
    assert probe.square_orientations(case, ["W_a"]) == {"W_a": TRANSPOSED}
    scores = probe(case, 2)["scores"]
    q, k, W = case.inputs["query"], case.inputs["keys"], case.weights["W_a"]
    expected = q @ np.swapaxes(k @ W, -1, -2)  # the exercise's formula
    np.testing.assert_allclose(ops.convert_to_numpy(scores), expected, atol=1e-5)


def test_mismatched_orientation_crashes_where_the_sizes_differ():
    """Creating the kernel (d_k, d_q) and computing s W_a h^T cannot run
    with d_q != d_k: the message shows the shapes of that line."""
    with pytest.raises(CheckFailed) as failure:
        checks.check_general_score(MismatchedGeneral)
    message = str(failure.value)
    assert "case 1 of 2" in message
    assert "raised" in message and "`W_a` (6, 4)" in message, message


class MismatchedConcat1(R.ConcatScore):
    """Creates the Keras kernel `W_1` but computes `W_1 s` as the papers."""

    mismatched = ("W_1",)

    def call(self, query, keys):
        W_1, W_2 = self.W_1, self.W_2
        W_1 = ops.transpose(W_1) if "W_1" in self.mismatched else W_1
        W_2 = ops.transpose(W_2) if "W_2" in self.mismatched else W_2
        q = ops.expand_dims(ops.matmul(query, W_1), -2)
        k = ops.expand_dims(ops.matmul(keys, W_2), -3)
        return ops.sum(ops.tanh(q + k) * self.v_a, axis=-1)


class MismatchedConcat2(MismatchedConcat1):
    mismatched = ("W_2",)


@pytest.mark.parametrize(
    ("check_name", "probe", "layer", "weight"),
    [
        ("check_general_score", "general_score_probe", MismatchedGeneral, "W_a"),
        ("check_concat_score", "concat_score_probe", MismatchedConcat1, "W_1"),
        ("check_concat_score", "concat_score_probe", MismatchedConcat2, "W_2"),
    ],
)
def test_mismatched_orientation_named_where_the_matrix_is_square(
    check_name, probe, layer, weight
):
    """Where the matrix is square the mismatched layer runs; its scores are
    the formula's with that weight transposed, and the message says so."""
    from autograder import judge
    from autograder.checks import seq2seq
    from autograder.checks.core import decide, observe

    spec = judge.spec(check_name)
    cases = [
        c
        for which in ("visible", "hidden")
        for c in spec.cases(which)
        if _square(c, weight)
    ]
    assert cases
    observations, failure = observe(check_name, cases, getattr(seq2seq, probe)(layer))
    assert failure is None
    with pytest.raises(CheckFailed) as verdict:
        decide(check_name, cases, observations, spec.expectations(cases))
    assert "square weight used the other way round" in str(verdict.value)


@pytest.mark.parametrize("cases", ["visible", "hidden"])
@pytest.mark.parametrize(
    ("check", "broken", "hint"),
    [
        (checks.check_luong_attention, LuongConcatOrder, "[a_t; s_t], the context"),
        (checks.check_bahdanau_decoder_step, StepConcatOrder, "[x_t; c_t], the embed"),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_a_swapped_concatenation_is_named_in_every_case_set(check, broken, hint, cases):
    """The kernel's rows are fixed by the given weights: the other order is a
    different function, named as such (the square `W_c` of Luong's hidden
    case included)."""
    with pytest.raises(CheckFailed) as failure:
        check(broken, cases=cases)
    assert hint in str(failure.value)
