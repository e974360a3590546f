"""The reference layers of Assignment 1, proven against independent code.

Keras's own `Attention` (dot score) and `AdditiveAttention` (behind our W
projections), NumPy formulas written separately, and Keras conventions:
config round trip, symbolic calls, Keras masks, a compiled training step.
"""

import keras
import numpy as np
import pytest

from autograder.judge import seq2seq_math as M
from autograder.reference import seq2seq as R

RNG = np.random.default_rng(0)
PAD = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)


def normal(*shape):
    return RNG.standard_normal(shape).astype("float32")


def np_(x):
    return keras.ops.convert_to_numpy(x)


def test_dot_score_weights_equal_keras_attention():
    q, k = normal(2, 3, 4), normal(2, 5, 4)
    weights = R.masked_softmax(R.DotScore()(q, k), PAD)
    context, keras_weights = keras.layers.Attention(score_mode="dot")(
        [q, k], mask=[None, PAD], return_attention_scores=True
    )
    np.testing.assert_allclose(np_(weights), np_(keras_weights), atol=1e-6)
    np.testing.assert_allclose(np_(weights) @ k, np_(context), atol=1e-5)


def test_concat_score_equals_keras_additive_attention_behind_projections():
    q, k = normal(2, 3, 4), normal(2, 5, 6)
    layer = R.ConcatScore(3)
    scores = layer(q, k)
    additive = keras.layers.AdditiveAttention(use_scale=True)
    qp, kp = q @ np_(layer.W_1), k @ np_(layer.W_2)
    additive.build([qp.shape, k.shape, kp.shape])
    additive.scale.assign(np_(layer.v_a))  # Keras: sum(scale * tanh(q + k))
    _, keras_weights = additive(
        [qp, k, kp], mask=[None, PAD], return_attention_scores=True
    )
    np.testing.assert_allclose(
        np_(R.masked_softmax(scores, PAD)), np_(keras_weights), atol=1e-6
    )


def test_general_score_is_dot_score_of_projected_keys():
    q, k = normal(2, 3, 4), normal(2, 5, 6)
    layer = R.GeneralScore()
    scores = layer(q, k)
    expected = np_(R.DotScore()(q, k @ np_(layer.W_a)))
    np.testing.assert_allclose(np_(scores), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("layer", "formula"),
    [
        (R.DotScore(), lambda q, k, w: M.dot_score(q, k)),
        (R.GeneralScore(), lambda q, k, w: M.general_score(q, k, *w)),
        (R.ConcatScore(3), lambda q, k, w: M.concat_score(q, k, *w)),
    ],
)
def test_scores_equal_numpy_formulas(layer, formula):
    q, k = normal(2, 3, 4), normal(2, 5, 4)
    out = layer(q, k)
    weights = [np_(w).astype("float64") for w in layer.weights]
    np.testing.assert_allclose(np_(out), formula(q, k, weights), rtol=1e-5, atol=1e-5)


def test_masked_softmax_zero_on_padding_and_no_nan_on_empty_rows():
    scores = normal(2, 3, 4) * 3
    mask = np.array([[0, 0, 0, 0], [1, 0, 1, 1]], dtype=bool)
    weights = np_(R.masked_softmax(scores, mask))
    assert np.isfinite(weights).all()
    np.testing.assert_array_equal(weights[0], 0.0)
    np.testing.assert_array_equal(weights[1][:, 1], 0.0)
    np.testing.assert_allclose(weights[1].sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weights, M.masked_softmax(scores, mask), atol=1e-6)


def test_masked_softmax_full_mask_and_float16():
    scores = normal(1, 3, 3)
    causal = np.tril(np.ones((1, 3, 3), bool))
    out = np_(R.masked_softmax(scores, causal))
    np.testing.assert_allclose(out, M.masked_softmax(scores, causal), atol=1e-6)
    half = np_(R.masked_softmax(scores.astype("float16"), causal))
    assert np.isfinite(half).all()


def test_luong_equals_formula_and_keras_mask_equals_explicit_mask():
    q, v = normal(2, 3, 4), normal(2, 5, 4)
    v[~PAD] = 0.0
    layer = R.LuongAttention(6, 7)
    probs, weights = layer(q, v, values_mask=PAD, return_attention_scores=True)
    w = [np_(x).astype("float64") for x in layer.weights]
    expected = M.luong(q, v, PAD, *w)
    np.testing.assert_allclose(np_(probs), expected["probs"], atol=1e-6)
    np.testing.assert_allclose(np_(weights), expected["weights"], atol=1e-6)
    # The same padding as a Keras mask, in a functional model.
    q_in, v_in = keras.Input((None, 4)), keras.Input((None, 4))
    out = layer(q_in, keras.layers.Masking(0.0)(v_in), return_attention_scores=True)
    model_probs, model_weights = keras.Model([q_in, v_in], out)([q, v])
    np.testing.assert_allclose(np_(model_probs), np_(probs), atol=1e-6)
    np.testing.assert_allclose(np_(model_weights), np_(weights), atol=1e-6)


def test_bahdanau_equals_concat_score_for_one_step_and_formula():
    s, H = normal(2, 4), normal(2, 5, 6)
    layer = R.BahdanauAttention(3)
    context, weights = layer(s, H, values_mask=PAD)
    w = [np_(x).astype("float64") for x in layer.weights]
    expected = M.bahdanau(s, H, PAD, *w)
    np.testing.assert_allclose(np_(context), expected["context"], atol=1e-6)
    np.testing.assert_allclose(np_(weights), expected["weights"], atol=1e-6)
    concat = R.ConcatScore(3)
    concat.build(s[:, None].shape, H.shape)
    for target, source in zip(concat.weights, layer.weights, strict=True):
        target.assign(source)
    scores = concat(s[:, None], H)[:, 0]
    np.testing.assert_allclose(
        np_(R.masked_softmax(scores, PAD)), np_(weights), atol=1e-6
    )


def test_decoder_step_equals_numpy_gru_formula():
    step = R.BahdanauDecoderStep(11, 4, 5, 3)
    tokens, state, H = np.array([1, 7]), normal(2, 5), normal(2, 5, 6)
    logits, new_state, weights = step(tokens, state, H, values_mask=PAD)
    names = [
        "embeddings",
        "W_b",
        "W_c",
        "w_a",
        "kernel",
        "recurrent_kernel",
        "bias",
        "output_kernel",
        "output_bias",
    ]
    w = dict(zip(names, [np_(x).astype("float64") for x in step.weights], strict=True))
    expected = M.decoder_step(tokens, state, H, PAD, w)
    np.testing.assert_allclose(np_(logits), expected["logits"], atol=1e-5)
    np.testing.assert_allclose(np_(new_state), expected["state"], atol=1e-5)
    np.testing.assert_allclose(np_(weights), expected["weights"], atol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [
        R.ConcatScore(units=3),
        R.LuongAttention(units=6, output_dim=7),
        R.BahdanauAttention(units=3),
        R.BahdanauDecoderStep(
            vocab_size=11, embedding_dim=4, units=5, attention_units=3
        ),
    ],
)
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            lambda: R.ConcatScore(units=0),
            "expected a positive integer. Received: units=0",
        ),
        (lambda: R.LuongAttention(6, output_dim=-1), "Received: output_dim=-1"),
        (lambda: R.BahdanauAttention(units=2.5), "Received: units=2.5"),
    ],
)
def test_argument_errors_in_keras_style(factory, message):
    with pytest.raises(ValueError, match="Received an invalid value for argument"):
        factory()
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        factory()


def test_luong_rejects_different_sizes():
    with pytest.raises(ValueError, match="same size"):
        R.LuongAttention(6, 7)(normal(1, 2, 4), normal(1, 3, 5))


def test_compiled_training_step_reduces_loss():
    keras.utils.set_random_seed(0)
    src = keras.Input((None,), dtype="int32")
    dec = keras.Input((None,), dtype="int32")
    H, h = keras.layers.GRU(8, return_sequences=True, return_state=True)(
        keras.layers.Embedding(10, 4, mask_zero=True)(src)
    )
    s = keras.layers.GRU(8, return_sequences=True)(
        keras.layers.Embedding(6, 4)(dec), initial_state=h
    )
    model = keras.Model([src, dec], R.LuongAttention(8, 6)(s, H))
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=False)
    x = RNG.integers(1, 10, (16, 7)).astype("int32")
    x[:, 5:] = 0
    y = RNG.integers(1, 6, (16, 4)).astype("int32")
    first = model.train_on_batch([x, y], y)
    for _ in range(20):
        last = model.train_on_batch([x, y], y)
    assert np.isfinite(last) and last < first
