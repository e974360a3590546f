"""Reference layers for Assignment 3: the Transformer (Vaswani et al., 2017).

Post-norm, as in the paper: every sublayer is `LayerNorm(x + Dropout(f(x)))`.
The attention is `keras.layers.MultiHeadAttention`: Assignment 2 proved it
equal to the students' own. `tests/test_reference_transformer.py` proves
these layers equal to keras-hub's `SinePositionEncoding`, `TransformerEncoder`
and `TransformerDecoder` with the same weights.
"""

import contextlib
import math

import keras
import numpy as np
from keras import ops

from autograder.reference.seq2seq import _check_positive_int

__all__ = [
    "AddNorm",
    "Decoder",
    "DecoderLayer",
    "Encoder",
    "EncoderLayer",
    "FeedForward",
    "MaskedLoss",
    "PositionalEmbedding",
    "Transformer",
    "WarmupSchedule",
    "fast_greedy_decoder",
    "greedy_decode",
    "masked_accuracy",
    "masked_loss",
    "positional_encoding",
]


def positional_encoding(length, depth, max_wavelength=10000.0, dtype="float32"):
    """`(length, depth)`: `PE[p, 2i] = sin(p / w^(2i/d))`, `PE[p, 2i+1] = cos(...)`.

    Sines and cosines interleaved, as in the paper (and keras-hub), with
    wavelengths from 2 pi to `max_wavelength * 2 pi` in a geometric series.
    """
    positions = np.arange(length, dtype="float64")[:, None]
    i = np.arange(depth)[None, :]
    angles = positions / np.power(max_wavelength, (2 * (i // 2)) / depth)
    return np.where(i % 2 == 0, np.sin(angles), np.cos(angles)).astype(dtype)


class PositionalEmbedding(keras.layers.Layer):
    """Token embedding times sqrt(d_model) plus the positional encoding; the
    padding mask (token 0) is carried on as a Keras mask."""

    def __init__(self, vocab_size, d_model, max_length=2048, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = _check_positive_int("vocab_size", vocab_size)
        self.d_model = _check_positive_int("d_model", d_model)
        self.max_length = _check_positive_int("max_length", max_length)
        self.embedding = keras.layers.Embedding(vocab_size, d_model, mask_zero=True)
        self.encoding = positional_encoding(max_length, d_model)

    def build(self, input_shape):
        self.embedding.build(input_shape)

    def call(self, tokens):
        length = ops.shape(tokens)[-1]
        x = self.embedding(tokens) * math.sqrt(self.d_model)
        encoding = ops.slice(
            ops.convert_to_tensor(self.encoding), (0, 0), (length, self.d_model)
        )
        return x + ops.cast(encoding, x.dtype)[None]

    def compute_mask(self, tokens, previous_mask=None):
        return self.embedding.compute_mask(tokens)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "max_length": self.max_length,
        }


class FeedForward(keras.layers.Layer):
    """`max(0, x W_1 + b_1) W_2 + b_2`, position by position."""

    def __init__(self, d_model, dff, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.d_model = _check_positive_int("d_model", d_model)
        self.dff = _check_positive_int("dff", dff)
        self.activation = activation
        self.inner = keras.layers.Dense(dff, activation=activation)
        self.outer = keras.layers.Dense(d_model)
        self.supports_masking = True

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.outer.build((*input_shape[:-1], self.dff))

    def call(self, x):
        return self.outer(self.inner(x))

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "dff": self.dff,
            "activation": self.activation,
        }


class AddNorm(keras.layers.Layer):
    """`LayerNorm(x + Dropout(sublayer_output))`: the paper's post-norm."""

    def __init__(self, dropout=0.1, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(dropout)
        self.epsilon = float(epsilon)
        self.dropout = keras.layers.Dropout(dropout)
        self.norm = keras.layers.LayerNormalization(epsilon=epsilon)
        self.supports_masking = True

    def build(self, x_shape, y_shape=None):
        self.norm.build(x_shape)

    def call(self, x, y, training=None):
        return self.norm(x + self.dropout(y, training=training))

    def get_config(self):
        return {**super().get_config(), "dropout": self.rate, "epsilon": self.epsilon}


def _keys(mask, queries):
    """A `(B, S)` padding mask of the keys as a `(B, T, S)` attention mask."""
    if mask is None:
        return None
    mask = ops.cast(mask, "bool")[:, None, :]
    shape = (ops.shape(mask)[0], ops.shape(queries)[1], ops.shape(mask)[-1])
    return ops.broadcast_to(mask, shape)


class _Block(keras.layers.Layer):
    """What encoder and decoder layers share: sizes, the feed-forward sublayer
    with its Add & Norm, and the configuration."""

    def __init__(self, d_model, num_heads, dff, dropout=0.1, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.num_heads, self.dff = d_model, num_heads, dff
        self.rate, self.epsilon = dropout, epsilon
        self.ffn = FeedForward(d_model, dff)
        self.ffn_norm = AddNorm(dropout, epsilon)
        self.supports_masking = True

    def _attention(self):
        return keras.layers.MultiHeadAttention(
            self.num_heads, self.d_model // self.num_heads, dropout=self.rate
        )

    def _norm(self):
        return AddNorm(self.rate, self.epsilon)

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dff": self.dff,
            "dropout": self.rate,
            "epsilon": self.epsilon,
        }


class EncoderLayer(_Block):
    """Self-attention and feed-forward, each with Add & Norm."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.self_attention = self._attention()
        self.attention_norm = self._norm()

    def call(self, x, mask=None, training=None):
        attended = self.self_attention(
            x, x, attention_mask=_keys(mask, x), training=training
        )
        x = self.attention_norm(x, attended, training=training)
        return self.ffn_norm(x, self.ffn(x), training=training)


class DecoderLayer(_Block):
    """Masked self-attention, cross-attention over the encoder, feed-forward."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.self_attention = self._attention()
        self.self_norm = self._norm()
        self.cross_attention = self._attention()
        self.cross_norm = self._norm()

    def call(
        self,
        x,
        context,
        mask=None,
        context_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        attended = self.self_attention(
            x,
            x,
            attention_mask=_keys(mask, x),
            use_causal_mask=True,
            training=training,
        )
        x = self.self_norm(x, attended, training=training)
        crossed, scores = self.cross_attention(
            x,
            context,
            attention_mask=_keys(context_mask, x),
            return_attention_scores=True,
            training=training,
        )
        x = self.cross_norm(x, crossed, training=training)
        x = self.ffn_norm(x, self.ffn(x), training=training)
        return (x, scores) if return_attention_scores else x


class _Stack(keras.layers.Layer):
    """Positional embedding, dropout, then `num_layers` layers of `LAYER`."""

    LAYER = None

    def __init__(
        self, num_layers, d_model, num_heads, dff, vocab_size, dropout=0.1, **kwargs
    ):
        super().__init__(**kwargs)
        self.config = dict(
            num_layers=num_layers,
            d_model=d_model,
            num_heads=num_heads,
            dff=dff,
            vocab_size=vocab_size,
            dropout=dropout,
        )
        self.embedding = PositionalEmbedding(vocab_size, d_model)
        self.dropout = keras.layers.Dropout(dropout)
        self.blocks = [
            self.LAYER(d_model, num_heads, dff, dropout) for _ in range(num_layers)
        ]
        self.supports_masking = True

    def _run(self, tokens, training, **context):
        mask = self.embedding.compute_mask(tokens)
        x = self.dropout(self.embedding(tokens), training=training)
        for layer in self.blocks:
            x = layer(x, mask=mask, training=training, **context)
        return x

    def compute_mask(self, tokens, previous_mask=None):
        return self.embedding.compute_mask(tokens)

    def get_config(self):
        return {**super().get_config(), **self.config}


class Encoder(_Stack):
    """Positional embedding, dropout, then `num_layers` encoder layers."""

    LAYER = EncoderLayer

    def call(self, tokens, training=None):
        return self._run(tokens, training)


class Decoder(_Stack):
    """Positional embedding, dropout, then `num_layers` decoder layers."""

    LAYER = DecoderLayer

    def call(self, tokens, context, context_mask=None, training=None):
        return self._run(tokens, training, context=context, context_mask=context_mask)


@keras.saving.register_keras_serializable(package="attention_kit")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)` (step counted from 1)."""

    def __init__(self, d_model, warmup_steps=4000):
        self.d_model = d_model
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        return ops.minimum(ops.rsqrt(step), step * self.warmup_steps**-1.5) * ops.rsqrt(
            ops.cast(self.d_model, "float32")
        )

    def get_config(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="attention_kit")
class Transformer(keras.Model):
    """Encoder, decoder and a final projection to the target vocabulary.

    Called on `(source_ids, target_input_ids)`, it returns logits
    `(B, T, target_vocab)`. Id 0 is padding on both sides.
    """

    def __init__(
        self,
        num_layers,
        d_model,
        num_heads,
        dff,
        input_vocab,
        target_vocab,
        dropout=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.settings = dict(
            num_layers=num_layers,
            d_model=d_model,
            num_heads=num_heads,
            dff=dff,
            input_vocab=input_vocab,
            target_vocab=target_vocab,
            dropout=dropout,
        )
        self.encoder = Encoder(
            num_layers, d_model, num_heads, dff, input_vocab, dropout
        )
        self.decoder = Decoder(
            num_layers, d_model, num_heads, dff, target_vocab, dropout
        )
        self.final = keras.layers.Dense(target_vocab)

    def call(self, inputs, training=None):
        source, target = inputs
        context = self.encoder(source, training=training)
        context_mask = self.encoder.compute_mask(source)
        x = self.decoder(target, context, context_mask=context_mask, training=training)
        logits = self.final(x)
        # The loss masks padding itself: a Keras mask left on the logits would
        # be applied a second time, as sample weights.
        with contextlib.suppress(AttributeError):
            del logits._keras_mask
        return logits

    def get_config(self):
        return {**super().get_config(), **self.settings}


@keras.saving.register_keras_serializable(package="attention_kit")
class MaskedLoss(keras.losses.Loss):
    """Cross-entropy over real target tokens only (id 0 is padding), with
    optional label smoothing; the mean is over real tokens."""

    def __init__(self, label_smoothing=0.0, name="masked_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, logits):
        y_true = ops.cast(y_true, "int32")
        depth = ops.shape(logits)[-1]
        one_hot = ops.one_hot(y_true, depth)
        if self.label_smoothing:
            one_hot = one_hot * (1.0 - self.label_smoothing) + (
                self.label_smoothing / ops.cast(depth, one_hot.dtype)
            )
        per_token = keras.losses.categorical_crossentropy(
            one_hot, ops.cast(logits, "float32"), from_logits=True
        )
        mask = ops.cast(ops.not_equal(y_true, 0), per_token.dtype)
        return ops.sum(per_token * mask) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def masked_loss(label_smoothing=0.0):
    """A `MaskedLoss`."""
    return MaskedLoss(label_smoothing)


@keras.saving.register_keras_serializable(package="attention_kit")
def masked_accuracy(y_true, logits):
    """Share of real target tokens predicted exactly."""
    y_true = ops.cast(y_true, "int32")
    predicted = ops.cast(ops.argmax(logits, axis=-1), "int32")
    mask = ops.not_equal(y_true, 0)
    hits = ops.logical_and(ops.equal(predicted, y_true), mask)
    return ops.sum(ops.cast(hits, "float32")) / ops.maximum(
        ops.sum(ops.cast(mask, "float32")), 1.0
    )


def greedy_decode(model, source, start_id, end_id, max_length):
    """Decode a batch token by token; rows stop at `end_id` (then padding).

    Returns an int32 array `(B, <= max_length)` without the start token.
    """
    source = np.asarray(source)
    batch = source.shape[0]
    output = np.full((batch, 1), start_id, dtype=np.int32)
    done = np.zeros(batch, dtype=bool)
    for _ in range(max_length):
        logits = model((source, output), training=False)
        following = np.asarray(ops.argmax(logits[:, -1], axis=-1)).astype(np.int32)
        following = np.where(done, 0, following)
        output = np.concatenate([output, following[:, None]], axis=1)
        done |= following == end_id
        if done.all():
            break
    return output[:, 1:]


def fast_greedy_decoder(model):
    """A batched greedy `decode(model, source, start_id, end_id, max_length)`,
    faster than `greedy_decode` for the benchmarks (not shipped to students:
    greedy decoding is an exercise).

    Calls `model((source_ids, decoder_inputs))` -> logits once per output
    step, in one `tf.function` (traced again for the first few shapes only).
    Rows that produced `end_id` get padding afterwards; it stops when all
    did. Returns int32 `(B, <= max_length)` without the start token.
    """
    import tensorflow as tf

    @tf.function(reduce_retracing=True, autograph=False)  # no Python control flow
    def following(source, known):
        logits = model((source, known), training=False)
        return tf.argmax(logits[:, -1], axis=-1, output_type=tf.int32)

    def decode(model_, source, start_id, end_id, max_length):
        rows = len(source)
        tokens = np.zeros((rows, max_length + 1), dtype="int32")  # 0: padding
        tokens[:, 0] = start_id
        finished = np.zeros(rows, dtype=bool)
        for step in range(max_length):
            best = following(source, tokens[:, : step + 1]).numpy()
            tokens[:, step + 1] = np.where(finished, 0, best)
            finished |= tokens[:, step + 1] == end_id
            if finished.all():
                return tokens[:, 1 : step + 2]
        return tokens[:, 1:]

    return decode
