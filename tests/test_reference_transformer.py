"""Assignment 3's reference layers against keras-hub's, weight for weight.

keras-hub is an independent implementation (post-norm when
`normalize_first=False`, layer-norm epsilon 1e-5, ReLU). With the same
weights copied in, the reference encoder and decoder layers must give the
same outputs on every real (non-padding) position; the positional encoding
must equal `SinePositionEncoding`.
"""

import keras
import keras_hub
import numpy as np
import pytest

from autograder.reference import transformer as T

RNG = np.random.default_rng(11)
D, HEADS, DFF, VOCAB = 16, 4, 32, 30


def _copy(targets, sources):
    targets, sources = list(targets), list(sources)
    assert [tuple(t.shape) for t in targets] == [tuple(s.shape) for s in sources]
    for target, source in zip(targets, sources, strict=True):
        target.assign(source)


def _tokens(lengths, width):
    tokens = RNG.integers(1, VOCAB, (len(lengths), width))
    for row, n in enumerate(lengths):
        tokens[row, n:] = 0
    return tokens


def test_positional_encoding_equals_keras_hub():
    hub = keras_hub.layers.SinePositionEncoding(max_wavelength=10000)
    expected = np.asarray(hub(np.zeros((1, 50, 64), "float32")))[0]
    np.testing.assert_allclose(T.positional_encoding(50, 64), expected, atol=1e-5)


def test_relative_positions_are_linear_in_the_encoding():
    pe = T.positional_encoding(60, 16, dtype="float64")
    # PE[p + k] = M_k PE[p] for one matrix M_k, whatever p: fit it on some
    # positions, check it on others.
    k = 5
    m, *_ = np.linalg.lstsq(pe[:30], pe[k : 30 + k], rcond=None)
    np.testing.assert_allclose(pe[30:55] @ m, pe[30 + k : 55 + k], atol=1e-6)


@pytest.mark.parametrize("lengths", [(6, 6), (6, 3)])
def test_encoder_layer_equals_keras_hub(lengths):
    tokens = _tokens(lengths, 6)
    embed = T.PositionalEmbedding(VOCAB, D)
    x = embed(tokens)
    ours = T.EncoderLayer(D, HEADS, DFF, dropout=0.0)
    hub = keras_hub.layers.TransformerEncoder(DFF, HEADS, dropout=0.0)
    y = ours(x)
    hub(x, padding_mask=tokens != 0)
    for w in hub.weights:
        w.assign(RNG.standard_normal(w.shape).astype("float32") * 0.3)
    _copy(ours.self_attention.weights, hub._self_attention_layer.weights)
    _copy(ours.attention_norm.norm.weights, hub._self_attention_layer_norm.weights)
    _copy(ours.ffn.inner.weights, hub._feedforward_intermediate_dense.weights)
    _copy(ours.ffn.outer.weights, hub._feedforward_output_dense.weights)
    _copy(ours.ffn_norm.norm.weights, hub._feedforward_layer_norm.weights)
    y = np.asarray(ours(x, mask=tokens != 0))
    expected = np.asarray(hub(x, padding_mask=tokens != 0))
    real = tokens != 0
    np.testing.assert_allclose(y[real], expected[real], atol=1e-4)


@pytest.mark.parametrize("lengths", [((5, 5), (4, 4)), ((5, 2), (4, 1))])
def test_decoder_layer_equals_keras_hub(lengths):
    source, target = _tokens(lengths[0], 5), _tokens(lengths[1], 4)
    context = T.PositionalEmbedding(VOCAB, D)(source)
    x = T.PositionalEmbedding(VOCAB, D)(target)
    ours = T.DecoderLayer(D, HEADS, DFF, dropout=0.0)
    hub = keras_hub.layers.TransformerDecoder(DFF, HEADS, dropout=0.0)
    ours(x, context)
    masks = {
        "decoder_padding_mask": target != 0,
        "encoder_padding_mask": source != 0,
    }
    hub(x, context, **masks)
    for w in hub.weights:
        w.assign(RNG.standard_normal(w.shape).astype("float32") * 0.3)
    _copy(ours.self_attention.weights, hub._self_attention_layer.weights)
    _copy(ours.self_norm.norm.weights, hub._self_attention_layer_norm.weights)
    _copy(ours.cross_attention.weights, hub._cross_attention_layer.weights)
    _copy(ours.cross_norm.norm.weights, hub._cross_attention_layer_norm.weights)
    _copy(ours.ffn.inner.weights, hub._feedforward_intermediate_dense.weights)
    _copy(ours.ffn.outer.weights, hub._feedforward_output_dense.weights)
    _copy(ours.ffn_norm.norm.weights, hub._feedforward_layer_norm.weights)
    y = np.asarray(ours(x, context, mask=target != 0, context_mask=source != 0))
    expected = np.asarray(hub(x, context, **masks))
    real = target != 0
    np.testing.assert_allclose(y[real], expected[real], atol=1e-4)


def test_positional_embedding_scales_and_carries_the_padding_mask():
    layer = T.PositionalEmbedding(VOCAB, D)
    tokens = np.array([[3, 4, 0]])
    out = layer(tokens)
    table = np.asarray(layer.embedding.embeddings)
    expected = table[[3, 4, 0]] * np.sqrt(D) + T.positional_encoding(3, D)
    np.testing.assert_allclose(np.asarray(out)[0], expected, atol=1e-5)
    np.testing.assert_array_equal(layer.compute_mask(tokens), [[True, True, False]])


def test_warmup_schedule_follows_the_paper():
    schedule = T.WarmupSchedule(512, warmup_steps=4000)
    rates = [float(schedule(step - 1)) for step in (1, 2000, 4000, 16000)]
    expected = [
        512**-0.5 * min(s**-0.5, s * 4000**-1.5) for s in (1, 2000, 4000, 16000)
    ]
    np.testing.assert_allclose(rates, expected, rtol=1e-5)
    assert rates[2] == max(rates)  # peak at the end of the warm-up
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert restored.get_config() == schedule.get_config()


def test_stacks_ignore_padding_and_the_future():
    source = keras.Input((None,), dtype="int32")
    target = keras.Input((None,), dtype="int32")
    context = T.Encoder(2, D, HEADS, DFF, VOCAB, dropout=0.0)(source)
    hidden = T.Decoder(2, D, HEADS, DFF, VOCAB, dropout=0.0)(target, context)
    model = keras.Model([source, target], keras.layers.Dense(VOCAB)(hidden))
    src = np.array([[5, 6, 7, 0, 0]])
    tgt = np.array([[1, 8, 9, 4]])
    base = np.asarray(model([src, tgt]))
    other_pad = np.asarray(model([np.array([[5, 6, 7, 0, 0, 0, 0]]), tgt]))
    np.testing.assert_allclose(base, other_pad, atol=1e-5)  # padding is ignored
    future = np.asarray(model([src, np.array([[1, 8, 3, 2]])]))
    np.testing.assert_allclose(base[0, :2], future[0, :2], atol=1e-5)  # causal
    assert not np.allclose(base[0, 2:], future[0, 2:])


def _copy_task(n=2000, length=6, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, length + 1, n)
    source = np.zeros((n, length), "int32")
    for row, k in enumerate(lengths):
        source[row, :k] = rng.integers(4, VOCAB, k)
    target = np.zeros((n, length + 2), "int32")
    target[:, 0] = 1  # start
    for row, k in enumerate(lengths):
        target[row, 1 : k + 1] = source[row, :k][::-1]  # reversed copy
        target[row, k + 1] = 2  # end
    return source, target[:, :-1], target[:, 1:]


def test_masked_loss_and_accuracy_ignore_padding():
    logits = np.zeros((1, 3, 5), "float32")
    logits[0, 0, 2] = logits[0, 1, 3] = 10.0
    y = np.array([[2, 3, 0]])
    assert float(T.masked_accuracy(y, logits)) == 1.0
    assert float(T.masked_loss()(y, logits)) < 1e-3
    smoothed = float(T.masked_loss(label_smoothing=0.1)(y, logits))
    assert smoothed > 0.1  # smoothing penalises certainty


def test_transformer_learns_saves_loads_and_decodes(tmp_path):
    keras.utils.set_random_seed(0)
    source, decoder_in, decoder_out = _copy_task()
    model = T.Transformer(2, 32, 4, 64, VOCAB, VOCAB, dropout=0.0)
    model.compile(
        keras.optimizers.Adam(2e-3),
        loss=T.masked_loss(),
        metrics=[T.masked_accuracy],
    )
    history = model.fit(
        (source, decoder_in), decoder_out, epochs=6, batch_size=64, verbose=0
    )
    assert history.history["masked_accuracy"][-1] > 0.9
    decoded = T.greedy_decode(model, source[:20], 1, 2, max_length=8)
    right = np.mean(
        [
            list(decoded[r][: list(decoded[r]).index(2) if 2 in decoded[r] else None])
            == list(decoder_out[r][: list(decoder_out[r]).index(2)])
            for r in range(20)
        ]
    )
    assert right > 0.8
    path = tmp_path / "transformer.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(
        model((source[:4], decoder_in[:4])),
        restored((source[:4], decoder_in[:4])),
        atol=1e-5,
    )


def test_mixed_precision_policy_trains_without_overflow():
    """What a GPU runtime does (`mixed_float16`), simulated on the CPU: the
    layers compute in float16, the loss in float32, the steps stay finite and
    the loss goes down; the logits of the padding-aware loss are cast first."""
    source, decoder_in, decoder_out = _copy_task()
    before = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = T.Transformer(1, 16, 2, 32, VOCAB, VOCAB, dropout=0.0)
        model.compile(
            keras.optimizers.Adam(T.WarmupSchedule(16, 50)),
            loss=T.masked_loss(label_smoothing=0.1),
            metrics=[T.masked_accuracy],
        )
        history = model.fit(
            (source[:256], decoder_in[:256]),
            decoder_out[:256],
            epochs=3,
            batch_size=32,
            verbose=0,
        )
        logits = model((source[:2], decoder_in[:2]))
    finally:
        keras.config.set_dtype_policy(before)
    assert keras.backend.standardize_dtype(logits.dtype) == "float16"
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
