"""The notebook helpers of Assignment 1 (`autograder.lesson_seq2seq`): the
loop that trains Bahdanau's decoder step over a whole target, and decoding
with the attention behind each output."""

import keras
import numpy as np
import pytest
from keras import ops

from autograder import lesson_seq2seq as L
from autograder.reference import seq2seq as R

VOCAB, SOURCE_VOCAB, UNITS = 7, 9, 6


def _batch():
    rng = np.random.default_rng(0)
    sources = rng.integers(1, SOURCE_VOCAB, size=(3, 5)).astype("int32")
    sources[1, 3:] = 0  # padding
    decoder_inputs = rng.integers(1, VOCAB, size=(3, 4)).astype("int32")
    decoder_inputs[2, 2:] = 0
    return sources, decoder_inputs


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    step = R.BahdanauDecoderStep(VOCAB, 4, UNITS, attention_units=3)
    model, inspector, encoder = L.bahdanau_encoder_decoder(
        step, SOURCE_VOCAB, UNITS, embedding_dim=5
    )
    return model, inspector, step, encoder


def test_step_decoder_is_the_step_called_once_per_target_position():
    """Teacher forcing: step t gets the true token t and the state of step
    t - 1; the probabilities are the softmax of the step's logits."""
    step = R.BahdanauDecoderStep(VOCAB, 4, UNITS, attention_units=3)
    decoder = L.StepDecoder(step)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, VOCAB, size=(2, 4)).astype("int32")
    state = rng.standard_normal((2, UNITS)).astype("float32")
    values = rng.standard_normal((2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    probs, weights = decoder(tokens, state, values, values_mask=mask)
    assert tuple(probs.shape) == (2, 4, VOCAB)
    assert tuple(weights.shape) == (2, 4, 5)
    s = state
    for t in range(4):
        logits, s, alpha = step(tokens[:, t], s, values, values_mask=mask)
        np.testing.assert_allclose(
            ops.convert_to_numpy(probs[:, t]),
            ops.convert_to_numpy(ops.softmax(logits)),
            atol=1e-5,
        )
        np.testing.assert_allclose(
            ops.convert_to_numpy(weights[:, t]), ops.convert_to_numpy(alpha), atol=1e-6
        )
    assert np.all(ops.convert_to_numpy(weights)[0, :, 3:] == 0)  # padded keys


def test_model_outputs_distributions_and_masks_padded_steps():
    model, inspector, _, _ = _model()
    sources, decoder_inputs = _batch()
    probs = ops.convert_to_numpy(model([sources, decoder_inputs]))
    assert probs.shape == (3, 4, VOCAB)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    weights = ops.convert_to_numpy(inspector([sources, decoder_inputs]))
    assert weights.shape == (3, 4, 5)
    assert np.all(weights[1, :, 3:] == 0)  # the padded source steps
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    mask = L.StepDecoder(R.BahdanauDecoderStep(VOCAB, 4, UNITS, 3)).compute_mask(
        decoder_inputs
    )[0]
    np.testing.assert_array_equal(ops.convert_to_numpy(mask), decoder_inputs != 0)


def test_model_trains_with_fit_and_ignores_padded_targets():
    model, _, step, _ = _model()
    sources, decoder_inputs = _batch()
    targets = np.roll(decoder_inputs, -1, axis=1)
    targets[decoder_inputs == 0] = 0
    before = np.array(step.cell.kernel.numpy()).copy()
    model.compile(
        optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy"
    )
    history = model.fit(
        [sources, decoder_inputs], targets, epochs=15, batch_size=3, verbose=0
    )
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    # the step's own weights are trained
    assert not np.allclose(np.array(step.cell.kernel.numpy()), before)
    # a padded target step changes nothing: its loss is masked
    changed = targets.copy()
    changed[2, 3] = 5
    a = model.evaluate([sources, decoder_inputs], targets, verbose=0)
    b = model.evaluate([sources, decoder_inputs], changed, verbose=0)
    assert a == pytest.approx(b, rel=1e-6)


def test_decode_with_attention_is_greedy_and_deterministic():
    model, inspector, _, _ = _model(seed=3)
    sources, _ = _batch()
    predicted, weights = L.decode_with_attention(model, inspector, sources, 4)
    assert predicted.shape == (3, 4) and predicted.dtype == np.int32
    assert weights.shape == (3, 4, 5)
    again, weights_again = L.decode_with_attention(model, inspector, sources, 4)
    np.testing.assert_array_equal(predicted, again)
    np.testing.assert_allclose(weights, weights_again)
    # step t's prediction is the argmax of the model fed <start> and the
    # predictions before it
    known = np.concatenate([np.ones((3, 1), "int32"), predicted[:, :-1]], axis=1)
    probs = ops.convert_to_numpy(model([sources, known]))
    np.testing.assert_array_equal(probs.argmax(-1), predicted)


def test_step_greedy_decode_is_the_model_decoded_one_step_at_a_time():
    """Carrying the step's state gives what the teacher-forced model gives
    fed its own predictions, with the same attention."""
    model, inspector, step, encoder = _model(seed=4)
    sources, _ = _batch()
    predicted, weights = L.step_greedy_decode(encoder, step, sources, 4, batch_size=2)
    expected, expected_weights = L.decode_with_attention(model, inspector, sources, 4)
    np.testing.assert_array_equal(predicted, expected)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
    assert np.all(weights[1, :, 3:] == 0)
