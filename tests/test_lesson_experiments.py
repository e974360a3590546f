"""Assignment 3's experiments (`lesson_experiments`) on the reference layers."""

import math

import matplotlib

matplotlib.use("Agg")

import keras
import numpy as np
import pytest
from keras import ops

from autograder import lesson_experiments as X
from autograder.reference import transformer as T

SOURCE_VOCAB, TARGET_VOCAB = 13, 11


def tiny(layers=1, d_model=16, seed=0):
    keras.utils.set_random_seed(seed)
    return T.Transformer(
        layers, d_model, 2, 32, SOURCE_VOCAB, TARGET_VOCAB, dropout=0.0
    )


def pairs(n=6, source_length=7, target_length=5, seed=1):
    rng = np.random.default_rng(seed)
    source = rng.integers(1, SOURCE_VOCAB, (n, source_length)).astype("int32")
    target = rng.integers(1, TARGET_VOCAB, (n, target_length)).astype("int32")
    source[0, -2:] = 0  # padding, on both sides
    target[1, -1:] = 0
    return source, target


def test_causal_mask_removed_lets_a_position_see_the_future_and_is_undone():
    model = tiny()
    source, target = pairs()
    before = ops.convert_to_numpy(model((source, target)))
    changed = target.copy()
    changed[:, -1] = (changed[:, -1] % (TARGET_VOCAB - 1)) + 1  # the last word only
    # causal: the earlier positions cannot see the last word
    same = ops.convert_to_numpy(model((source, changed)))
    np.testing.assert_allclose(same[:, :-1], before[:, :-1], atol=1e-5)
    with X.causal_mask_removed(model) as leaky:
        assert leaky is model
        leaked = ops.convert_to_numpy(model((source, changed)))
        unchanged = ops.convert_to_numpy(model((source, target)))
    assert np.abs(leaked[:, :-1] - unchanged[:, :-1]).max() > 1e-3
    # the last position sees everything anyway: the same with and without the mask
    np.testing.assert_allclose(unchanged[:, -1], before[:, -1], atol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model((source, target))), before, atol=1e-6
    )
    for block in model.decoder.blocks:
        assert "call" not in vars(block.self_attention)


def test_causal_mask_removed_names_a_decoder_without_blocks():
    class Bare(keras.Model):
        def __init__(self):
            super().__init__()
            self.decoder = keras.layers.Dense(2)

    with pytest.raises(AttributeError, match="blocks"), X.causal_mask_removed(Bare()):
        pass


def test_embedding_norms_of_a_fresh_layer():
    for d_model in (16, 64):
        norms = X.embedding_norms(T.PositionalEmbedding, d_model, length=40)
        # uniform(-0.05, 0.05): variance 0.05^2 / 3 per entry
        assert norms["token"] == pytest.approx(0.05 * math.sqrt(d_model / 3), rel=0.15)
        assert norms["scaled_token"] == pytest.approx(
            norms["token"] * math.sqrt(d_model)
        )
        assert norms["position"] == pytest.approx(math.sqrt(d_model / 2), rel=1e-4)
        assert 0.5 < norms["position_share"] < 1.0


def test_embedding_norms_of_a_built_layer_uses_its_own_vocabulary_and_weights():
    layer = T.PositionalEmbedding(5, 8)
    layer(np.ones((1, 3), "int32"))
    layer.embedding.embeddings.assign(np.ones((5, 8), "float32"))
    norms = X.embedding_norms(layer, length=12)  # ids 1..4 only
    assert norms["token"] == pytest.approx(math.sqrt(8))
    assert norms["scaled_token"] == pytest.approx(8.0)
    assert norms["position"] == pytest.approx(2.0, rel=1e-4)


def test_without_positions_shuffling_the_source_changes_nothing():
    model = tiny(layers=2)
    source, target = pairs()
    result = X.order_blindness(model, source, target, seed=3)
    assert result["context_without"] < 1e-4
    assert result["logits_without"] < 1e-4
    assert result["logits_with"] > 1e-2
    assert result["logits_scale"] > result["logits_with"] / 100


def test_logits_without_positions_differ_from_the_models_own():
    model = tiny()
    source, target = pairs()
    context, logits = X.logits_without_source_positions(model, source, target)
    assert context.shape == (6, 7, 16) and logits.shape == (6, 5, TARGET_VOCAB)
    full = ops.convert_to_numpy(model((source, target)))
    assert np.abs(full - logits).max() > 1e-3


def test_without_warmup_starts_at_the_peak_then_follows_the_schedule():
    schedule = T.WarmupSchedule(64, 100)
    flat = X.without_warmup(schedule)
    steps = np.array([0, 10, 98, 99, 100, 500])
    got = ops.convert_to_numpy(flat(steps))
    peak = float(ops.convert_to_numpy(schedule(99)))
    np.testing.assert_allclose(got[:4], peak, rtol=1e-6)
    np.testing.assert_allclose(
        got[4:], ops.convert_to_numpy(schedule(steps[4:])), rtol=1e-6
    )
    assert float(ops.convert_to_numpy(schedule(0))) < peak / 50


def test_warmup_switch_gives_either_schedule_without_a_new_trace():
    import tensorflow as tf

    schedule = T.WarmupSchedule(64, 100)
    switch = X.warmup_switch(schedule)
    steps = np.array([0, 10, 98, 99, 100, 500])
    traces = []

    @tf.function
    def rates(step):
        traces.append(1)
        return switch(step)

    warm = ops.convert_to_numpy(rates(tf.constant(steps)))
    np.testing.assert_allclose(warm, ops.convert_to_numpy(schedule(steps)), rtol=1e-6)
    switch.warm.assign(False)
    flat = ops.convert_to_numpy(rates(tf.constant(steps)))
    np.testing.assert_allclose(
        flat, ops.convert_to_numpy(X.without_warmup(schedule)(steps)), rtol=1e-6
    )
    assert len(traces) == 1  # one graph, both ways
    assert switch.get_config()["warm"] is False
    rebuilt = X.warmup_switch.from_config(switch.get_config())
    assert ops.convert_to_numpy(rebuilt.warm).item() is False
    np.testing.assert_allclose(ops.convert_to_numpy(rebuilt(steps)), flat, rtol=1e-6)
    again = X.without_warmup.from_config(X.without_warmup(schedule).get_config())
    np.testing.assert_allclose(ops.convert_to_numpy(again(steps)), flat, rtol=1e-6)


def test_restart_trains_again_as_a_fresh_model_without_recompiling():
    source, target = pairs()
    labels = np.roll(target, -1, axis=1)

    def compiled(model, schedule):
        model.compile(
            keras.optimizers.Adam(schedule, beta_2=0.98, epsilon=1e-9),
            loss=T.masked_loss(0.1),
            metrics=[T.masked_accuracy],
            jit_compile=False,
        )
        return model

    def batches():
        return X.training_batches((source, target), labels, batch_size=3, seed=2)

    schedule = T.WarmupSchedule(16, 10)
    # two fresh models: warm-up on, then off
    fresh = {}
    for warm in (True, False):
        model = compiled(tiny(), schedule if warm else X.without_warmup(schedule))
        fresh[warm] = X.fit_steps(model, batches(), steps=8, every=4)["loss"]
    assert np.abs(fresh[True] - fresh[False]).max() > 1e-3
    # one model, its weights taken before training, restarted with the switch flipped
    model = tiny()
    start = X.starting_weights(model, (source, target))
    switch = X.warmup_switch(schedule)
    compiled(model, switch)
    with pytest.raises(ValueError, match="compiled and trained"):
        X.restart(model, start)
    first = X.fit_steps(model, batches(), steps=8, every=4)["loss"]
    step_function = model.train_function
    X.restart(model, start)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0
    for now, then in zip(model.get_weights(), start, strict=True):
        np.testing.assert_array_equal(now, then)
    switch.warm.assign(False)
    second = X.fit_steps(model, batches(), steps=8, every=4)["loss"]
    assert model.train_function is step_function  # not traced again
    np.testing.assert_allclose(first, fresh[True], rtol=1e-5)
    np.testing.assert_allclose(second, fresh[False], rtol=1e-5)


def test_pre_norm_transformer_is_causal_masks_padding_and_trains():
    keras.utils.set_random_seed(0)
    model = X.PreNormTransformer(
        2, 16, 2, 32, SOURCE_VOCAB, TARGET_VOCAB, T.PositionalEmbedding, T.FeedForward
    )
    source, target = pairs()
    logits = ops.convert_to_numpy(model((source, target)))
    assert logits.shape == (6, 5, TARGET_VOCAB)
    assert not hasattr(model((source, target)), "_keras_mask")
    changed = target.copy()
    changed[:, -1] = (changed[:, -1] % (TARGET_VOCAB - 1)) + 1
    np.testing.assert_allclose(
        ops.convert_to_numpy(model((source, changed)))[:, :-1],
        logits[:, :-1],
        atol=1e-5,
    )
    # padding is masked: a longer tail of padding changes nothing
    longer = np.concatenate([source, np.zeros((6, 3), "int32")], axis=1)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model((longer, target))), logits, atol=1e-5
    )
    # the parts: the student's classes, and one norm per sublayer plus a final one
    assert isinstance(model.encoder.embedding, T.PositionalEmbedding)
    assert isinstance(model.decoder.blocks[0].ffn, T.FeedForward)
    assert hasattr(model.decoder.blocks[0], "cross_attention")
    assert not hasattr(model.encoder.blocks[0], "cross_attention")
    model.compile(
        keras.optimizers.Adam(1e-2), loss=T.masked_loss(0.0), jit_compile=False
    )
    labels = np.roll(target, -1, axis=1)
    batches = X.training_batches((source, target), labels, batch_size=6)
    curve = X.fit_steps(model, batches, steps=40, every=10)
    assert curve["loss"][-1] < curve["loss"][0]


def test_fit_steps_records_one_point_per_every_steps():
    model = tiny()
    model.compile(
        keras.optimizers.Adam(1e-3),
        loss=T.masked_loss(0.0),
        metrics=[T.masked_accuracy],
        jit_compile=False,  # XLA's compile would cost more than these steps
    )
    source, target = pairs()
    batches = X.training_batches(
        (source, target), np.roll(target, -1, axis=1), batch_size=3
    )
    curve = X.fit_steps(model, batches, steps=12, every=5)
    assert list(curve["steps"]) == [5, 10, 15]
    assert curve["loss"].shape == (3,) and curve["masked_accuracy"].shape == (3,)
    assert curve["seconds"] > 0
    assert list(X.fit_steps(model, batches, steps=2, every=5)["steps"]) == [2]
    ax = X.plot_curves({"post-norm": curve, "pre-norm": curve}, title="t", logy=True)
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--"]
    assert ax.get_yscale() == "log"


def test_training_batches_are_seeded_and_full():
    x = np.arange(10)
    first = [b[0].numpy().tolist() for b in X.training_batches(x, x, 4, seed=1).take(4)]
    again = [b[0].numpy().tolist() for b in X.training_batches(x, x, 4, seed=1).take(4)]
    assert first == again and all(len(batch) == 4 for batch in first)


def test_confidence_on_known_logits():
    class Fixed(keras.Model):
        def call(self, inputs, training=None):
            _, target = inputs
            # two classes of three: probabilities (0.5, 0.25, 0.25) everywhere
            logits = np.log(np.array([0.5, 0.25, 0.25], "float32"))
            return ops.broadcast_to(logits, (*ops.shape(target), 3))

    labels = np.array([[1, 2, 0]])  # the padded position is ignored
    stats = X.confidence(Fixed(), np.ones((1, 2)), np.ones((1, 3)), labels)
    assert stats["max_probability"] == pytest.approx(0.5)
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert stats["entropy"] == pytest.approx(entropy)
    assert stats["accuracy"] == pytest.approx(0.0)
    assert stats["nll"] == pytest.approx(math.log(4))  # both labels have 0.25


def test_architecture_figure_has_both_stacks_three_attentions_and_the_masks():
    fig = X.draw_transformer(num_layers=2)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for part in ("ENCODER", "DECODER", "x 2", "causal", "source padding", "context"):
        assert part in texts, part
    attentions = [name for name in fig.boxes if "attention" in name]
    assert len(attentions) == 3
    assert sum("norm" in name for name in fig.boxes) == 5


def test_layer_gradient_norms_one_per_layer_and_no_update():
    model = tiny(layers=3)
    source, target = pairs()
    labels = np.roll(target, -1, axis=1)
    before = (
        [w.numpy().copy() for w in model.trainable_variables] if model.built else None
    )
    norms = X.layer_gradient_norms(model, (source, target), labels, T.masked_loss(0.0))
    assert [len(norms["encoder"]), len(norms["decoder"])] == [3, 3]
    assert all(n > 0 for stack in norms.values() for n in stack)
    if before is not None:
        for w, b in zip(model.trainable_variables, before, strict=True):
            np.testing.assert_array_equal(w.numpy(), b)
    # post-norm: the decoder's last layer gets a larger gradient than its first
    assert norms["decoder"][-1] > norms["decoder"][0]


def test_the_pre_norm_model_is_left_out_of_the_student_kit(monkeypatch):
    from autograder.bundle import STUDENT_MODULES

    assert "lesson_prenorm.py" not in STUDENT_MODULES
    assert "lesson_experiments.py" in STUDENT_MODULES
    assert X.HAS_PRE_NORM  # the full kit has it
    monkeypatch.setattr(X, "HAS_PRE_NORM", False)
    with pytest.raises(AttributeError, match="ships with the solutions"):
        X.PreNormTransformer  # noqa: B018
