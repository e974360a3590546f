"""Helpers of Assignment 2's notebook: figures, timing, the Keras twin."""

import matplotlib

matplotlib.use("Agg")

import keras
import numpy as np

from autograder import lesson_attention as la
from autograder.data import lookup
from autograder.reference.attention import MultiHeadAttention


def test_scaling_figure_shows_saturation_without_the_scale():
    ax = la.plot_scaling(dims=(4, 1024), samples=300)
    raw, scaled = (line.get_ydata() for line in ax.get_lines()[:2])
    assert raw[-1] > 0.9 and scaled[-1] < 0.5


def test_keras_twin_computes_the_same_for_both_weight_layouts():
    x = np.random.default_rng(0).standard_normal((2, 5, 12)).astype("float32")
    layer = MultiHeadAttention(3, 4)
    layer(x, x)
    for w in layer.weights:
        w.assign(np.random.default_rng(1).standard_normal(w.shape) * 0.3)
    twin = la.keras_twin(layer, x, x)
    np.testing.assert_allclose(
        layer(x, x, use_causal_mask=True), twin(x, x, use_causal_mask=True), atol=1e-5
    )


def test_time_layers_and_complexity_figure():
    layer = MultiHeadAttention(2, 4)
    times = la.time_layers({"attention": lambda x: layer(x, x)}, [4, 8], d_model=8)
    assert len(times["attention"]) == 2 and min(times["attention"]) > 0
    fig = la.plot_complexity(times, [4, 8], 8)
    assert len(fig.axes) == 3


def test_lookup_model_wires_the_attention_weights_out():
    task = lookup.make_lookup(16, seed=0)
    model, probe = la.build_lookup_model(MultiHeadAttention(4, 8), task.vocab_size)
    assert model(task.tokens).shape == (16, 10)
    weights = np.asarray(probe(task.tokens))
    assert weights.shape == (16, 4, 8, 8)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    fig = la.plot_heads(weights[0], task.describe(0))
    assert len(fig.axes) == 4
    assert isinstance(model, keras.Model)
