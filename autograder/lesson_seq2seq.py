"""Notebook helpers of Assignment 1 beyond `autograder.lesson`: training
Bahdanau's decoder, whose step depends on the previous one.

A Luong model runs its decoder RNN over the whole target at once and attends
afterwards. Bahdanau's decoder feeds the context into the RNN cell, so each
step needs the state the previous step produced: `StepDecoder` runs the
student's `BahdanauDecoderStep` over a whole target sequence (teacher
forcing: the true previous character at every step) as one loop inside the
model, so that `model.fit` trains it like any Keras model.
"""

import keras
import numpy as np
from keras import ops

__all__ = [
    "StepDecoder",
    "bahdanau_encoder_decoder",
    "decode_with_attention",
    "step_greedy_decode",
]


class StepDecoder(keras.layers.Layer):
    """Run a one-step decoder over every step of a target sequence.

    `step(tokens, state, values, values_mask=...)` must return
    `(logits, new_state, weights)` for one step, as the notebook's
    `BahdanauDecoderStep` does. The loop is `tf.scan` over the time axis (it
    is traced once, whatever the target length), and its outputs are the
    per-step distributions and attention weights.

    Args:
        step: the one-step decoder layer.

    Call arguments:
        tokens: int `(B, T)`, the decoder inputs (`<start>` then the target
            shifted right by one).
        state: the initial decoder state `s_0`, `(B, units)`.
        values: encoder states `H`, `(B, Tk, d_h)`.
        values_mask: bool `(B, Tk)`, True on real encoder steps.

    Returns:
        `(probs, weights)` of shapes `(B, T, V)` and `(B, T, Tk)`; `probs`
        carries the padding mask of `tokens` (id 0 is padding), so the loss
        and the metrics skip padded steps.
    """

    def __init__(self, step, **kwargs):
        super().__init__(**kwargs)
        self.step = step
        self.supports_masking = True

    def build(self, tokens_shape, state_shape, values_shape, values_mask_shape=None):
        # One eager call builds every weight of the step before the loop is
        # traced (weights cannot be created inside a traced loop).
        self.step(
            np.zeros((1,), "int32"),
            np.zeros((1, state_shape[-1]), "float32"),
            np.zeros((1, 2, values_shape[-1]), "float32"),
            values_mask=np.ones((1, 2), bool),
        )

    def call(self, tokens, state, values, values_mask=None):
        import tensorflow as tf

        if values_mask is None:
            values_mask = ops.ones(ops.shape(values)[:2], "bool")
        batch, keys = ops.shape(values)[0], ops.shape(values)[1]
        vocabulary = self.step.vocab_size

        def one_step(carry, token):
            logits, new_state, weights = self.step(
                token, carry[0], values, values_mask=values_mask
            )
            return new_state, logits, weights

        start = (
            state,
            ops.zeros((batch, vocabulary), state.dtype),
            ops.zeros((batch, keys), state.dtype),
        )
        _, logits, weights = tf.scan(
            one_step, ops.transpose(ops.cast(tokens, "int32")), initializer=start
        )
        probs = ops.softmax(ops.transpose(logits, (1, 0, 2)))  # (B, T, V)
        return probs, ops.transpose(weights, (1, 0, 2))  # (B, T, Tk)

    def compute_mask(self, tokens, previous_mask=None):
        return [ops.not_equal(tokens, 0), None]

    def compute_output_shape(
        self, tokens_shape, state_shape, values_shape, values_mask_shape=None
    ):
        vocabulary = self.step.vocab_size
        return (
            (*tokens_shape, vocabulary),
            (*tokens_shape, values_shape[1]),
        )


def bahdanau_encoder_decoder(step, source_vocab_size, units, embedding_dim=32):
    """The notebook's encoder with Bahdanau's decoder on top.

    The encoder is the one of the Luong model (an embedding with padding
    mask and a GRU of `units` returning all its states `H` and the last one);
    the decoder starts from the last encoder state, as in the Luong model,
    and runs `step` (the student's `BahdanauDecoderStep`, whose `units` must
    be `units`) over the target with `StepDecoder`.

    Returns:
        `(model, inspector, encoder)`: `model([sources, decoder_inputs])`
        gives the per-step distributions `(B, T, V)`; `inspector` the
        attention weights `(B, T, Tk)`; `encoder(sources)` the encoder states
        `H` and the last one (for `step_greedy_decode`). The three share
        their layers.
    """
    sources = keras.Input(shape=(None,), dtype="int32", name="sources")
    decoder_inputs = keras.Input(shape=(None,), dtype="int32", name="decoder_inputs")
    x = keras.layers.Embedding(source_vocab_size, embedding_dim, mask_zero=True)(
        sources
    )
    H, h_last = keras.layers.GRU(units, return_sequences=True, return_state=True)(x)
    probs, weights = StepDecoder(step)(
        decoder_inputs, h_last, H, values_mask=ops.not_equal(sources, 0)
    )
    model = keras.Model([sources, decoder_inputs], probs, name="bahdanau")
    inspector = keras.Model([sources, decoder_inputs], weights, name="bahdanau_weights")
    encoder = keras.Model(sources, [H, h_last], name="bahdanau_encoder")
    return model, inspector, encoder


def step_greedy_decode(encoder, step, sources, max_length, start_id=1, batch_size=512):
    """Greedy decoding with a one-step decoder: one step call per character.

    `lesson.greedy_decode` runs a teacher-forced model on the whole prefix
    for every new character (`T (T + 1) / 2` decoder steps for `T`
    characters); a step decoder carries its state instead, `T` steps.

    Args:
        encoder: `encoder(sources) -> (H, h_last)`.
        step: `step(tokens, state, H, values_mask=...) -> (logits, state,
            weights)`, the notebook's `BahdanauDecoderStep`.
        sources: int `(B, Tk)`, 0-padded.
        max_length: output steps.
        start_id: the id of `<start>`.
        batch_size: inputs decoded at once.

    Returns:
        `(predicted, weights)`: int32 `(B, max_length)` and float
        `(B, max_length, Tk)`, the attention of the step that wrote each
        character.
    """
    sources = np.asarray(sources, "int32")
    predicted = np.zeros((len(sources), max_length), "int32")
    attention = np.zeros((len(sources), max_length, sources.shape[1]), "float32")
    for begin in range(0, len(sources), batch_size):
        batch = sources[begin : begin + batch_size]
        H, state = encoder(batch, training=False)
        mask = batch != 0
        tokens = np.full((len(batch),), start_id, "int32")
        for t in range(max_length):
            logits, state, weights = step(tokens, state, H, values_mask=mask)
            tokens = ops.convert_to_numpy(ops.argmax(logits, axis=-1)).astype("int32")
            predicted[begin : begin + len(batch), t] = tokens
            attention[begin : begin + len(batch), t] = ops.convert_to_numpy(weights)
    return predicted, attention


def decode_with_attention(model, inspector, sources, max_length, start_id=1):
    """Greedy decoding, then the attention weights behind each output step.

    Args:
        model: `model([sources, decoder_inputs])` gives `(B, T, V)`.
        inspector: the same network's attention weights `(B, T, Tk)`.
        sources: int `(B, Tk)`.
        max_length: output steps.
        start_id: the id of `<start>`.

    Returns:
        `(predicted, weights)`: int `(B, max_length)` and float
        `(B, max_length, Tk)`; row `t` of `weights` is the attention of the
        step that wrote `predicted[:, t]` (the decoder fed `<start>` and the
        predictions before it).
    """
    from autograder import lesson

    predicted = lesson.greedy_decode(model, sources, max_length, start_id=start_id)
    start = np.full((len(sources), 1), start_id, "int32")
    known = np.concatenate([start, predicted[:, :-1]], axis=1)
    return predicted, inspector.predict([sources, known], verbose=0)
