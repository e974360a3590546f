"""The reference layers of Assignment 2 against Keras's and NumPy's.

`MultiHeadAttention` must equal `keras.layers.MultiHeadAttention` with the
same weights on both of Keras's code paths (the fused one, taken when no
scores are asked for, and the one that returns scores), for self-, cross-,
padded, causal and explicitly masked attention. Rows of queries that may
attend to nothing are left out: there the two Keras paths disagree with
each other.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from autograder.judge import attention_math as M
from autograder.reference import attention as A

RNG = np.random.default_rng(7)


def _pair(h=2, dk=4, dv=None, out=None, dq=8, dkv=8):
    ref = A.MultiHeadAttention(h, dk, value_dim=dv, output_dim=out)
    other = keras.layers.MultiHeadAttention(h, dk, value_dim=dv, output_shape=out)
    q = RNG.standard_normal((2, 5, dq)).astype("float32")
    v = RNG.standard_normal((2, 6, dkv)).astype("float32")
    ref(q, v)
    other(q, v)
    for w in ref.weights:
        w.assign(RNG.standard_normal(w.shape).astype("float32") * 0.4)
    _transfer(ref, other)
    return ref, other, q, v


def _transfer(ref, other):
    for dense, names in (
        (other._query_dense, ("W_q", "b_q")),
        (other._key_dense, ("W_k", "b_k")),
        (other._value_dense, ("W_v", "b_v")),
        (other._output_dense, ("W_o", "b_o")),
    ):
        dense.kernel.assign(getattr(ref, names[0]))
        dense.bias.assign(getattr(ref, names[1]))


MASK = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"value_mask": MASK},
        {"use_causal_mask": True},
        {"attention_mask": RNG.random((2, 5, 6)) > 0.3},
        {"value_mask": MASK, "use_causal_mask": True},
    ],
    ids=["plain", "padding", "causal", "attention_mask", "padding+causal"],
)
@pytest.mark.parametrize("shape", [(2, 4, None, None), (4, 2, 3, 5)])
def test_equals_keras_multi_head_attention_on_both_paths(kwargs, shape):
    h, dk, dv, out = shape
    ref, other, q, v = _pair(h, dk, dv, out, dkv=7)
    v = v[..., :7] if v.shape[-1] == 7 else v
    mine, weights = ref(q, v, return_attention_scores=True, **kwargs)
    theirs, their_weights = other(q, v, return_attention_scores=True, **kwargs)
    fused = other(q, v, **kwargs)  # no scores, no dropout: Keras's fused path
    mask = np.ones((2, 5, 6), bool)
    if "value_mask" in kwargs:
        mask &= MASK[:, None]
    if "attention_mask" in kwargs:
        mask &= kwargs["attention_mask"]
    if kwargs.get("use_causal_mask"):
        mask &= np.tril(np.ones((5, 6), bool))
    rows = mask.any(-1)
    np.testing.assert_allclose(
        np.asarray(mine)[rows], np.asarray(theirs)[rows], atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(mine)[rows], np.asarray(fused)[rows], atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(weights).transpose(0, 2, 1, 3)[rows],
        np.asarray(their_weights).transpose(0, 2, 1, 3)[rows],
        atol=1e-6,
    )


def test_self_attention_and_query_keras_mask_equal_keras():
    ref, other, q, _ = _pair(dkv=8)
    q_in = keras.Input((None, 8))
    masked = keras.layers.Masking(0.0)(q_in)
    q = q.copy()
    q[0, 3:] = 0.0
    rows = np.any(q != 0, -1)
    for layer in (ref, other):
        model = keras.Model(q_in, layer(masked, masked))
        out = np.asarray(model(q))
        if layer is ref:
            mine = out
    np.testing.assert_allclose(mine[rows], out[rows], atol=1e-5)


def test_separate_key_equals_keras():
    ref = A.MultiHeadAttention(2, 3)
    other = keras.layers.MultiHeadAttention(2, 3)
    q = RNG.standard_normal((2, 3, 4)).astype("float32")
    v = RNG.standard_normal((2, 5, 6)).astype("float32")
    k = RNG.standard_normal((2, 5, 7)).astype("float32")
    ref(q, v, key=k)
    other(q, v, key=k)
    for w in ref.weights:
        w.assign(RNG.standard_normal(w.shape).astype("float32") * 0.4)
    _transfer(ref, other)
    np.testing.assert_allclose(ref(q, v, key=k), other(q, v, key=k), atol=1e-5)


def test_numpy_formula_equals_the_reference():
    ref, _, q, v = _pair(h=3, dk=2, dv=4, out=5, dkv=6)
    weights = {w.path.split("/")[-1]: w.numpy().astype(np.float64) for w in ref.weights}
    mask = np.broadcast_to(MASK[:, None], (2, 5, 6))
    out, att = M.mha(q.astype(np.float64), v.astype(np.float64), None, weights, mask)
    mine, mine_att = ref(q, v, value_mask=MASK, return_attention_scores=True)
    np.testing.assert_allclose(out, mine, atol=1e-5)
    np.testing.assert_allclose(att, mine_att, atol=1e-6)


def test_scaled_dot_product_attention_any_leading_axes_and_empty_rows():
    q = RNG.standard_normal((2, 3, 4, 5))
    k = RNG.standard_normal((2, 3, 6, 5))
    v = RNG.standard_normal((2, 3, 6, 2))
    mask = RNG.random((4, 6)) > 0.4
    mask[1] = False
    out, weights = A.scaled_dot_product_attention(q, k, v, mask)
    expected, expected_weights = M.sdpa(q, k, v, mask)
    np.testing.assert_allclose(out, expected, atol=1e-10)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-12)
    assert np.all(np.asarray(weights)[..., 1, :] == 0)
    out2d, _ = A.scaled_dot_product_attention(q[0, 0], k[0, 0], v[0, 0])
    np.testing.assert_allclose(out2d, M.sdpa(q[0, 0], k[0, 0], v[0, 0])[0], atol=1e-10)


def test_masks_follow_the_kit_convention():
    ids = np.array([[3, 4, 0], [1, 0, 0]])
    np.testing.assert_array_equal(A.padding_mask(ids), M.padding_mask(ids))
    np.testing.assert_array_equal(A.causal_mask(4), np.tril(np.ones((4, 4), bool)))
    np.testing.assert_array_equal(A.combined_mask(ids), M.combined_mask(ids))
    assert A.padding_mask(ids).shape == (2, 1, 3)


def test_config_round_trip_and_argument_errors():
    layer = A.MultiHeadAttention(4, 8, value_dim=6, output_dim=10, use_bias=False)
    clone = A.MultiHeadAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="num_heads"):
        A.MultiHeadAttention(0, 8)
    with pytest.raises(ValueError, match="key_dim"):
        A.MultiHeadAttention(2, "8")


def test_compiled_and_jit_compiled_equal_eager():
    ref, _, q, v = _pair()
    eager = ref(q, v, use_causal_mask=False)
    compiled = tf.function(lambda a, b: ref(a, b), jit_compile=True)(q, v)
    np.testing.assert_allclose(eager, compiled, atol=1e-5)


def test_trains_in_a_functional_model():
    x = keras.Input((None, 8))
    y = A.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True)
    model = keras.Model(x, keras.layers.Dense(1)(y))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    data = RNG.standard_normal((64, 6, 8)).astype("float32")
    target = data[..., :1].cumsum(1) / np.arange(1, 7)[None, :, None]  # causal mean
    first = model.evaluate(data, target, verbose=0)
    model.fit(data, target, epochs=30, verbose=0)
    assert model.evaluate(data, target, verbose=0) < 0.5 * first
