"""The pre-norm Transformer of Assignment 3's experiments (section 13.4).

Each sublayer f is applied as `x + Dropout(f(LayerNorm(x)))` and each stack
ends with a layer normalisation, built from the student's
`PositionalEmbedding` and `FeedForward`. Its stacks are wired as Exercises
5 to 8 ask (masks, cross-attention, the encoder's output), so this module
is left out of the student bundle (`autograder.bundle.STUDENT_MODULES`):
it ships with the solutions. `lesson_experiments.PreNormTransformer`
imports it from here where it is installed.
"""

from autograder.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402  (after the quiet import)
from keras import ops  # noqa: E402

from autograder.reference import transformer as reference  # noqa: E402

__all__ = ["PreNormLayer", "PreNormStack", "PreNormTransformer"]


def _keys(mask):
    return None if mask is None else ops.cast(mask, "bool")[:, None, :]


class PreNormLayer(keras.layers.Layer):
    """`x + f(LayerNorm(x))` for each sublayer f, in order."""

    def __init__(self, d_model, num_heads, dff, feed_forward, cross=False, dropout=0.0):
        super().__init__()
        self.supports_masking = True

        def attention():
            return keras.layers.MultiHeadAttention(
                num_heads, key_dim=d_model // num_heads, dropout=dropout
            )

        def norm():
            return keras.layers.LayerNormalization(epsilon=1e-5)

        self.self_attention, self.self_norm = attention(), norm()
        if cross:
            self.cross_attention, self.cross_norm = attention(), norm()
        self.ffn, self.ffn_norm = feed_forward(d_model, dff), norm()
        self.drop = keras.layers.Dropout(dropout)

    def call(self, x, context=None, mask=None, context_mask=None, training=None):
        h = self.self_norm(x)
        causal = context is not None  # a decoder layer
        h = self.self_attention(
            h, h, attention_mask=_keys(mask), use_causal_mask=causal, training=training
        )
        x = x + self.drop(h, training=training)
        if context is not None:
            h = self.cross_attention(
                self.cross_norm(x),
                context,
                attention_mask=_keys(context_mask),
                training=training,
            )
            x = x + self.drop(h, training=training)
        return x + self.drop(self.ffn(self.ffn_norm(x)), training=training)


class PreNormStack(keras.layers.Layer):
    def __init__(
        self, num_layers, d_model, num_heads, dff, vocab, parts, cross, dropout
    ):
        super().__init__()
        positional_embedding, feed_forward = parts
        self.supports_masking = True
        self.embedding = positional_embedding(vocab, d_model)
        self.drop = keras.layers.Dropout(dropout)
        self.blocks = [
            PreNormLayer(d_model, num_heads, dff, feed_forward, cross, dropout)
            for _ in range(num_layers)
        ]
        # Pre-norm leaves the residual stream unnormalised: one norm at the end.
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5)

    def call(self, tokens, context=None, context_mask=None, training=None):
        mask = self.embedding.compute_mask(tokens)
        x = self.drop(self.embedding(tokens), training=training)
        for block in self.blocks:
            x = block(
                x, context, mask=mask, context_mask=context_mask, training=training
            )
        return self.final_norm(x)

    def compute_mask(self, tokens, previous_mask=None):
        return self.embedding.compute_mask(tokens)


class PreNormTransformer(keras.Model):
    """The Transformer with pre-norm residuals, built from the student's parts.

    Each sublayer f is applied as `x + Dropout(f(LayerNorm(x)))` instead of
    the paper's `LayerNorm(x + Dropout(f(x)))`, and each stack ends with a
    layer normalisation (Xiong et al., 2020, "On Layer Normalization in the
    Transformer Architecture"). Everything else is as in the notebook's
    `Transformer`: the student's `PositionalEmbedding` and `FeedForward`,
    Keras's `MultiHeadAttention` (the decoder's self-attention causal), the
    source's padding as the cross-attention's mask, a final `Dense` to
    logits. Called on `(source_ids, target_input_ids)`.

    Args:
        num_layers, d_model, num_heads, dff, input_vocab, target_vocab,
            dropout: as the notebook's `Transformer`.
        positional_embedding: the class `PositionalEmbedding(vocab, d_model)`.
        feed_forward: the class `FeedForward(d_model, dff)`.
    """

    def __init__(
        self,
        num_layers,
        d_model,
        num_heads,
        dff,
        input_vocab,
        target_vocab,
        positional_embedding,
        feed_forward,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        parts = (positional_embedding, feed_forward)
        sizes = (num_layers, d_model, num_heads, dff)
        self.encoder = PreNormStack(*sizes, input_vocab, parts, False, dropout)
        self.decoder = PreNormStack(*sizes, target_vocab, parts, True, dropout)
        self.final = keras.layers.Dense(target_vocab)

    # The reference Transformer's forward pass: it only uses `encoder`,
    # `decoder` and `final`, which this model has too.
    call = reference.Transformer.call
