"""Reference layers for Assignment 1: attention in sequence-to-sequence models.

These are the instructor's solutions. The checks in `autograder.checks` run them
(in float64) beside a student's layer after giving both the same weights, and
`tests/test_reference_seq2seq.py` proves them equal to Keras's own
`Attention` and `AdditiveAttention` layers and to plain NumPy formulas.

Names follow the papers: `s` is a decoder state, `H` the encoder states
(`h_i` one of them), `W_*`, `b_*` and `v_a` are weights. Vectors are rows
and a weight is a Keras kernel `(d_in, d_out)` applied as `x W`; the papers'
column-vector `W x` uses the transpose of our kernel.

Shapes in comments: `B` batch, `Tq` query (decoder) steps, `Tk` key (encoder)
steps, `d_q`/`d_k` their feature sizes, `u` attention units, `V` vocabulary.
"""

import keras
from keras import ops

__all__ = [
    "BahdanauAttention",
    "BahdanauDecoderStep",
    "ConcatScore",
    "DotScore",
    "GeneralScore",
    "LuongAttention",
    "masked_softmax",
]


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"positive integer. Received: {name}={value!r}"
        )
    return value


def _large_negative(dtype):
    """A finite number that `exp` turns into 0 in `dtype`, without overflow."""
    return -65500.0 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


def masked_softmax(scores, mask=None):
    """Softmax over the last axis that gives padded keys exactly zero weight.

    `weights[..., i] = exp(scores[..., i]) / sum_j exp(scores[..., j])`, where
    both the numerator and the sum run only over keys `j` with `mask[..., j]`
    True. A row with no valid key at all gets all-zero weights (never NaN), so
    its context vector is zero.

    Args:
        scores: float tensor of shape `(..., Tq, Tk)`.
        mask: optional boolean tensor, `True` where a key may be attended to.
            Either broadcastable to `scores`, or one dimension shorter
            (`(B, Tk)` for `(B, Tq, Tk)` scores), in which case it is the
            padding mask of the keys and applies to every query.

    Returns:
        Tensor of the shape and dtype of `scores`.
    """
    scores = ops.convert_to_tensor(scores)
    if mask is None:
        return ops.softmax(scores, axis=-1)
    mask = ops.cast(mask, "bool")
    if len(mask.shape) == len(scores.shape) - 1:
        mask = ops.expand_dims(mask, axis=-2)  # (B, 1, Tk): same keys per query
    filler = ops.full_like(scores, _large_negative(scores.dtype))
    weights = ops.softmax(ops.where(mask, scores, filler), axis=-1)
    return ops.where(mask, weights, ops.zeros_like(weights))


class _Score(keras.layers.Layer):
    """Base of the score layers: `call(query, keys) -> (B, Tq, Tk)`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def compute_output_shape(self, query_shape, keys_shape):
        return (*query_shape[:-1], keys_shape[-2])


class DotScore(_Score):
    """Luong's dot score: `score(s_t, h_i) = s_t . h_i`.

    No weights: query and keys must have the same feature size.

    Call arguments:
        query: decoder states `s`, shape `(B, Tq, d)`.
        keys: encoder states `H`, shape `(B, Tk, d)`.

    Returns:
        Scores of shape `(B, Tq, Tk)`.
    """

    def call(self, query, keys):
        return ops.matmul(query, ops.swapaxes(keys, -1, -2))  # (B, Tq, Tk)


class GeneralScore(_Score):
    """Luong's general score: `score(s_t, h_i) = s_t . (h_i W_a)`.

    Creates one weight `W_a` of shape `(d_k, d_q)` (no bias), a Keras kernel
    that maps the keys into the query space; the paper's `s_t^T W_a h_i`
    uses its transpose, `(d_q, d_k)`.

    Call arguments:
        query: `(B, Tq, d_q)`.
        keys: `(B, Tk, d_k)`.

    Returns:
        Scores of shape `(B, Tq, Tk)`.
    """

    def build(self, query_shape, keys_shape):
        self.W_a = self.add_weight(
            name="W_a",
            shape=(keys_shape[-1], query_shape[-1]),
            initializer="glorot_uniform",
        )

    def call(self, query, keys):
        projected = ops.matmul(keys, self.W_a)  # (B, Tk, d_q)
        return ops.matmul(query, ops.swapaxes(projected, -1, -2))  # (B, Tq, Tk)


class ConcatScore(_Score):
    """Concat (additive) score: `score(s_t, h_i) = tanh(s_t W_1 + h_i W_2) . v_a`.

    Bahdanau et al. (2015) and Luong et al. (2015, "concat"). Creates `W_1` of
    shape `(d_q, units)`, `W_2` of shape `(d_k, units)` and `v_a` of shape
    `(units,)`, none with a bias.

    Args:
        units: size of the hidden layer inside the score.

    Call arguments:
        query: `(B, Tq, d_q)`.
        keys: `(B, Tk, d_k)`.

    Returns:
        Scores of shape `(B, Tq, Tk)`.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = _check_positive_int("units", units)

    def build(self, query_shape, keys_shape):
        init = "glorot_uniform"
        self.W_1 = self.add_weight(
            name="W_1", shape=(query_shape[-1], self.units), initializer=init
        )
        self.W_2 = self.add_weight(
            name="W_2", shape=(keys_shape[-1], self.units), initializer=init
        )
        self.v_a = self.add_weight(name="v_a", shape=(self.units,), initializer=init)

    def call(self, query, keys):
        q = ops.expand_dims(ops.matmul(query, self.W_1), -2)  # (B, Tq, 1, u)
        k = ops.expand_dims(ops.matmul(keys, self.W_2), -3)  # (B, 1, Tk, u)
        return ops.sum(ops.tanh(q + k) * self.v_a, axis=-1)  # (B, Tq, Tk)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class LuongAttention(keras.layers.Layer):
    """Luong et al. (2015) global attention with the dot score, and its output.

    For every decoder state `s_t`:

    1. scores `e_ti = s_t . h_i` and weights `alpha_t = softmax(e_t)` over the
       valid (unpadded) encoder steps,
    2. context `a_t = sum_i alpha_ti h_i`,
    3. attentional state `s~_t = tanh([a_t; s_t] W_c + b_c)` (context first),
    4. output distribution `p_t = softmax(s~_t W_y + b_y)`.

    All decoder steps are computed at once (teacher forcing), so a whole
    sequence costs a few matrix products.

    Args:
        units: size of the attentional state `s~_t`.
        output_dim: size of the output distribution (the target vocabulary).

    Call arguments:
        query: decoder states `s`, shape `(B, Tq, d)`.
        values: encoder states `H`, shape `(B, Tk, d)`.
        values_mask: optional boolean `(B, Tk)`, True on real (unpadded)
            encoder steps. Taken from `values`' Keras mask when not given.
        return_attention_scores: also return the weights `alpha`.

    Returns:
        `p` of shape `(B, Tq, output_dim)`, and with
        `return_attention_scores=True` the weights of shape `(B, Tq, Tk)`.
    """

    def __init__(self, units, output_dim, **kwargs):
        super().__init__(**kwargs)
        self.units = _check_positive_int("units", units)
        self.output_dim = _check_positive_int("output_dim", output_dim)
        self.supports_masking = True

    def build(self, query_shape, values_shape):
        if query_shape[-1] != values_shape[-1]:
            raise ValueError(
                "The dot score needs queries and values of the same size. "
                f"Received: query_shape={query_shape}, values_shape={values_shape}"
            )
        init = "glorot_uniform"
        both = query_shape[-1] + values_shape[-1]
        self.W_c = self.add_weight(
            name="W_c", shape=(both, self.units), initializer=init
        )
        self.b_c = self.add_weight(name="b_c", shape=(self.units,), initializer="zeros")
        self.W_y = self.add_weight(
            name="W_y", shape=(self.units, self.output_dim), initializer=init
        )
        self.b_y = self.add_weight(
            name="b_y", shape=(self.output_dim,), initializer="zeros"
        )

    def call(self, query, values, values_mask=None, return_attention_scores=False):
        scores = ops.matmul(query, ops.swapaxes(values, -1, -2))  # (B, Tq, Tk)
        weights = masked_softmax(scores, values_mask)  # (B, Tq, Tk)
        context = ops.matmul(weights, values)  # (B, Tq, d)
        both = ops.concatenate([context, query], axis=-1)  # (B, Tq, 2d)
        attentional = ops.tanh(ops.matmul(both, self.W_c) + self.b_c)  # (B, Tq, u)
        probs = ops.softmax(ops.matmul(attentional, self.W_y) + self.b_y)  # (B, Tq, V)
        if return_attention_scores:
            return probs, weights
        return probs

    def compute_mask(self, inputs, previous_mask=None):
        return previous_mask  # the decoder's padding mask still applies

    def get_config(self):
        config = {"units": self.units, "output_dim": self.output_dim}
        return {**super().get_config(), **config}


class BahdanauAttention(keras.layers.Layer):
    """Bahdanau et al. (2015) additive attention for one decoder step.

    The query is the *previous* decoder state `s_{t-1}`, because in Bahdanau's
    decoder the context feeds the recurrent cell that computes `s_t`:

    `e_ti = tanh(s_{t-1} W_b + h_i W_c) . w_a`, `alpha_t = softmax(e_t)`,
    `c_t = sum_i alpha_ti h_i`.

    Creates `W_b` `(d_s, units)`, `W_c` `(d_h, units)` and `w_a` `(units,)`,
    none with a bias.

    Args:
        units: size of the hidden layer inside the score.

    Call arguments:
        query: the previous decoder state `s_{t-1}`, shape `(B, d_s)`.
        values: encoder states `H`, shape `(B, Tk, d_h)`.
        values_mask: optional boolean `(B, Tk)`; from `values`' Keras mask
            when not given.

    Returns:
        A tuple `(context, weights)` of shapes `(B, d_h)` and `(B, Tk)`.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = _check_positive_int("units", units)
        self.supports_masking = True

    def build(self, query_shape, values_shape):
        init = "glorot_uniform"
        self.W_b = self.add_weight(
            name="W_b", shape=(query_shape[-1], self.units), initializer=init
        )
        self.W_c = self.add_weight(
            name="W_c", shape=(values_shape[-1], self.units), initializer=init
        )
        self.w_a = self.add_weight(name="w_a", shape=(self.units,), initializer=init)

    def call(self, query, values, values_mask=None):
        q = ops.expand_dims(ops.matmul(query, self.W_b), -2)  # (B, 1, u)
        k = ops.matmul(values, self.W_c)  # (B, Tk, u)
        scores = ops.sum(ops.tanh(q + k) * self.w_a, axis=-1)  # (B, Tk)
        weights = masked_softmax(scores, values_mask)  # (B, Tk)
        context = ops.sum(ops.expand_dims(weights, -1) * values, axis=-2)  # (B, d_h)
        return context, weights

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class BahdanauDecoderStep(keras.layers.Layer):
    """One step of Bahdanau's attention decoder.

    1. embed the previous output token: `x_t = E[y_{t-1}]`,
    2. attend with the previous state: `c_t, alpha_t = attention(s_{t-1}, H)`,
    3. feed `[x_t; c_t]` (embedding first) to a GRU cell: `s_t = GRU(s_{t-1}, .)`,
    4. output logits `o_t = s_t W_o + b_o` over the target vocabulary.

    Sublayers: `keras.layers.Embedding`, `BahdanauAttention`,
    `keras.layers.GRUCell` (Keras defaults, `reset_after=True`) and a `Dense`
    output layer.

    Args:
        vocab_size: size of the target vocabulary.
        embedding_dim: size of the token embedding.
        units: size of the decoder state `s`.
        attention_units: size of the hidden layer inside the attention score.

    Call arguments:
        tokens: previous output tokens `y_{t-1}`, int `(B,)`.
        state: previous decoder state `s_{t-1}`, `(B, units)`.
        values: encoder states `H`, `(B, Tk, d_h)`.
        values_mask: optional boolean `(B, Tk)`.

    Returns:
        A tuple `(logits, state, weights)` of shapes `(B, vocab_size)`,
        `(B, units)` and `(B, Tk)`.
    """

    def __init__(self, vocab_size, embedding_dim, units, attention_units, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = _check_positive_int("vocab_size", vocab_size)
        self.embedding_dim = _check_positive_int("embedding_dim", embedding_dim)
        self.units = _check_positive_int("units", units)
        self.attention_units = _check_positive_int("attention_units", attention_units)
        self.supports_masking = True

    def build(self, tokens_shape, state_shape, values_shape):
        self.embedding = keras.layers.Embedding(
            self.vocab_size, self.embedding_dim, name="embedding"
        )
        self.embedding.build(tokens_shape)
        self.attention = BahdanauAttention(self.attention_units, name="attention")
        self.attention.build(state_shape, values_shape)
        self.cell = keras.layers.GRUCell(self.units, name="cell")
        self.cell.build((tokens_shape[0], self.embedding_dim + values_shape[-1]))
        self.output_layer = keras.layers.Dense(self.vocab_size, name="output")
        self.output_layer.build((tokens_shape[0], self.units))

    def call(self, tokens, state, values, values_mask=None):
        x = self.embedding(tokens)  # (B, E)
        context, weights = self.attention(state, values, values_mask=values_mask)
        cell_input = ops.concatenate([x, context], axis=-1)  # (B, E + d_h)
        new_state, _ = self.cell(cell_input, state)  # (B, units)
        logits = self.output_layer(new_state)  # (B, V)
        return logits, new_state, weights

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def get_config(self):
        config = {
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "attention_units": self.attention_units,
        }
        return {**super().get_config(), **config}
