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


def test_complexity_figure_draws_the_convolution_and_the_fitted_terms():
    lengths = [16, 32, 64, 128]
    d = 8
    # times that follow the model exactly: 0.5 ms + 1e-6 ms per multiply-add
    ops_ = [8 * (4 * n * d * d + 2 * n * n * d) for n in lengths]
    times = [0.5 + 1e-6 * o for o in ops_]
    cost = la.attention_cost_model(times, lengths, d, batch=8)
    assert abs(cost["overhead_ms"] - 0.5) < 1e-6
    assert abs(cost["ns_per_op"] - 1.0) < 1e-6
    assert cost["crossover"] == 16
    # the two terms are equal at n = 2d
    assert abs(cost["projections_ms"][0] - cost["scores_ms"][0]) < 1e-9
    assert cost["scores_ms"][-1] > cost["projections_ms"][-1]
    fig = la.plot_complexity({"attention": times}, lengths, d, cost=cost)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert any("projections" in label for label in labels)
    assert any("scores" in label for label in labels)
    assert any("convolution" in line.get_label() for line in fig.axes[2].get_lines())
    assert any("convolution" in line.get_label() for line in fig.axes[1].get_lines())


def test_cost_model_stays_non_negative_on_noisy_times():
    cost = la.attention_cost_model([5.0, 1.0, 2.0], [16, 32, 64], 8)
    assert cost["overhead_ms"] >= 0 and cost["ns_per_op"] >= 0


def test_pronoun_model_names_a_word_and_exposes_every_layers_weights():
    from autograder.data import pronouns

    data = pronouns.load_pronouns("test", size=8)  # both kinds of template
    ids = pronouns.encode(data.sentences)
    model, probe = la.build_pronoun_model(
        lambda: MultiHeadAttention(2, 4),
        len(pronouns.VOCAB),
        pronouns.MAX_LENGTH,
        d_model=8,
        num_layers=2,
        ff_dim=16,
    )
    assert model([ids, data.pronoun]).shape == (8, len(pronouns.VOCAB))
    weights = [np.asarray(w) for w in probe(ids)]
    assert len(weights) == 2
    assert weights[0].shape == (8, 2, pronouns.MAX_LENGTH, pronouns.MAX_LENGTH)
    np.testing.assert_allclose(weights[-1].sum(-1), 1.0, atol=1e-5)
    # padding is never attended to
    padded = ids == 0
    assert padded.any()
    for layer in weights:
        assert np.abs(layer * padded[:, None, None, :]).max() == 0
    accuracy = la.pronoun_accuracy(model, data)
    assert set(accuracy) == {"all", "either_order", "one_way"}
    assert 0 <= accuracy["all"] <= 1


def test_pronoun_head_report_measures_weight_on_the_right_noun():
    from autograder.data import pronouns

    data = pronouns.load_pronouns("test", size=40)
    n, heads, t = len(data), 3, pronouns.MAX_LENGTH
    weights = np.zeros((n, heads, t))
    rows = np.arange(n)
    weights[rows, 0, data.referent_positions] = 1.0  # head 0: the right noun
    weights[rows, 1, data.nouns[rows, 1 - data.labels]] = 1.0  # head 1: the other
    weights[:, 2, :] = 1.0 / t  # head 2: everywhere
    report = la.pronoun_head_report(weights, data)
    np.testing.assert_allclose(report["right"], [1.0, 0.0, 1.0 / t])
    np.testing.assert_allclose(report["other"], [0.0, 1.0, 1.0 / t])
    np.testing.assert_allclose(report["prefers_right"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(report["right_creature"], [1.0, 0.0, 1.0 / t])
    np.testing.assert_allclose(report["predicate"][:2], [0.0, 0.0])


def test_pronoun_weights_reads_the_row_of_it_and_the_figure_marks_the_referent():
    from autograder.data import pronouns

    pair = pronouns.classic_pair()
    t = pronouns.MAX_LENGTH

    def probe(ids):
        # one layer, one head; query i puts all its weight on key i (identity)
        eye = np.broadcast_to(np.eye(t), (len(ids), 1, t, t))
        return [eye.astype("float32")]

    weights = la.pronoun_weights(probe, pair)
    assert weights.shape == (2, 1, t)
    # a one-layer model's probe returns the tensor, not a list
    np.testing.assert_array_equal(
        la.pronoun_weights(lambda ids: probe(ids)[0], pair), weights
    )
    assert np.all(weights[np.arange(2), 0, pair.pronoun] == 1.0)
    fig = la.plot_pronoun_attention(np.repeat(weights, 4, axis=1), pair, title="x")
    heatmaps = [ax for ax in fig.axes if ax.get_images() and ax.get_xticklabels()]
    assert len(heatmaps) == 2
    for row, ax in enumerate(heatmaps[:2]):
        labels = [label.get_text() for label in ax.get_xticklabels()]
        words = list(pair.sentences[row])
        words[pair.pronoun[row]] = "[it]"  # the query is marked
        assert labels == words
        assert ax.get_images()[0].get_array().shape == (4, len(pair.sentences[row]))
        assert len(ax.patches) == 1  # the box on the referent
        x = ax.patches[0].get_x() + 0.5
        assert labels[round(x)] == pair.referents[row]


def test_pronoun_model_learns_the_held_out_combinations():
    """126 steps of a small model (the notebook's trains 626 of a larger one)."""
    from autograder.data import pronouns

    keras.utils.set_random_seed(0)
    train = pronouns.load_pronouns("train", size=4000)
    held_out = pronouns.load_pronouns("test", size=400)
    model, _ = la.build_pronoun_model(
        lambda: MultiHeadAttention(2, 16),
        len(pronouns.VOCAB),
        pronouns.MAX_LENGTH,
        d_model=32,
        ff_dim=64,
    )
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        [pronouns.encode(train.sentences), train.pronoun],
        train.referent_ids,
        epochs=2,
        batch_size=64,
        verbose=0,
    )
    accuracy = la.pronoun_accuracy(model, held_out)
    assert accuracy["all"] >= 0.95, accuracy  # measured: 1.0
    assert accuracy["either_order"] >= 0.95, accuracy
