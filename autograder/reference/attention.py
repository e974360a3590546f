"""Reference layers for Assignment 2: self-attention and multi-head attention.

The instructor's solutions. `tests/test_reference_attention.py` proves
`MultiHeadAttention` equal to `keras.layers.MultiHeadAttention` (weights
transferred, on both of Keras's code paths: the fused one and the one that
returns scores) for self-, cross-, padded and causal attention, and the
functions equal to NumPy formulas.

Mask convention, the whole kit: a boolean mask is **True where attention is
allowed** (a real token, a past position), as Keras uses it.

Shapes: `B` batch, `T` query positions, `S` key/value positions, `h` heads,
`d_k`/`d_v` per-head sizes, `d_model` the model's width.
"""

import keras
from keras import ops

from autograder.reference.seq2seq import _check_positive_int, _large_negative

__all__ = [
    "MultiHeadAttention",
    "causal_mask",
    "combined_mask",
    "padding_mask",
    "scaled_dot_product_attention",
]


def scaled_dot_product_attention(q, k, v, mask=None):
    """`softmax(q k^T / sqrt(d_k)) v`, over any leading (batch, head) axes.

    Args:
        q: `(..., T, d_k)` queries.
        k: `(..., S, d_k)` keys.
        v: `(..., S, d_v)` values.
        mask: optional boolean, broadcastable to `(..., T, S)`, True where a
            query may attend to a key. A query with no allowed key gets zero
            weights (and a zero output), never NaN.

    Returns:
        `(output (..., T, d_v), weights (..., T, S))`.
    """
    # Scaling q (T x d_k numbers) costs less than scaling the T x S scores.
    scale = 1.0 / ops.sqrt(ops.cast(ops.shape(q)[-1], q.dtype))
    scores = ops.matmul(q * scale, ops.swapaxes(k, -1, -2))
    if mask is None:
        weights = ops.softmax(scores, axis=-1)
    else:
        mask = ops.cast(mask, "bool")
        weights = ops.softmax(
            ops.where(mask, scores, _large_negative(scores.dtype)), axis=-1
        )
        # Masked keys already get exactly 0 (exp underflows); a row with no
        # allowed key would be uniform: zero it with a (..., T, 1) factor.
        allowed = ops.any(mask, axis=-1, keepdims=True)
        weights = weights * ops.cast(allowed, weights.dtype)
    return ops.matmul(weights, v), weights


def padding_mask(token_ids, pad_id=0):
    """`(B, 1, S)`: True on real tokens, for every query (keys' padding)."""
    return ops.expand_dims(ops.not_equal(token_ids, pad_id), -2)


def causal_mask(length):
    """`(T, T)`: True where key position <= query position (no future)."""
    i = ops.arange(length)[:, None]
    j = ops.arange(length)[None, :]
    return ops.greater_equal(i, j)


def combined_mask(token_ids, pad_id=0):
    """`(B, T, T)` decoder self-attention mask: no padding and no future."""
    length = ops.shape(token_ids)[-1]
    return ops.logical_and(padding_mask(token_ids, pad_id), causal_mask(length))


class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention (Vaswani et al., 2017), written out.

    `head_i = softmax(Q W_q^i (K W_k^i)^T / sqrt(d_k)) V W_v^i`, all heads at
    once, then `concat(head_1..head_h) W_o`. Weights use Keras's layout, so they
    transfer one to one into `keras.layers.MultiHeadAttention`: `W_q`, `W_k`
    `(d, h, d_k)`, `W_v` `(d, h, d_v)`, biases `(h, d_k)`/`(h, d_v)`, `W_o`
    `(h, d_v, d_out)`, `b_o` `(d_out,)`.

    Args:
        num_heads: number of heads `h`.
        key_dim: size of each head's queries and keys `d_k`.
        value_dim: size of each head's values (default `key_dim`).
        output_dim: size of the output (default: the query's last dimension).
        use_bias: whether the projections have biases.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        output_dim=None,
        use_bias=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = _check_positive_int("num_heads", num_heads)
        self.key_dim = _check_positive_int("key_dim", key_dim)
        self.value_dim = _check_positive_int("value_dim", value_dim or key_dim)
        self.output_dim = output_dim and _check_positive_int("output_dim", output_dim)
        self.use_bias = bool(use_bias)
        self.supports_masking = True

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        h, dk, dv = self.num_heads, self.key_dim, self.value_dim
        out = self.output_dim or query_shape[-1]
        init = "glorot_uniform"
        self.W_q = self.add_weight(
            name="W_q", shape=(query_shape[-1], h, dk), initializer=init
        )
        self.W_k = self.add_weight(
            name="W_k", shape=(key_shape[-1], h, dk), initializer=init
        )
        self.W_v = self.add_weight(
            name="W_v", shape=(value_shape[-1], h, dv), initializer=init
        )
        self.W_o = self.add_weight(name="W_o", shape=(h, dv, out), initializer=init)
        if self.use_bias:
            self.b_q = self.add_weight(name="b_q", shape=(h, dk), initializer="zeros")
            self.b_k = self.add_weight(name="b_k", shape=(h, dk), initializer="zeros")
            self.b_v = self.add_weight(name="b_v", shape=(h, dv), initializer="zeros")
            self.b_o = self.add_weight(name="b_o", shape=(out,), initializer="zeros")

    def _project(self, x, kernel, bias):
        y = ops.einsum("bsd,dhk->bhsk", x, kernel)  # (B, h, S, d_head)
        if self.use_bias:
            y = y + ops.expand_dims(bias, -2)
        return y

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
    ):
        key = value if key is None else key
        b_q = self.b_q if self.use_bias else None
        b_k = self.b_k if self.use_bias else None
        b_v = self.b_v if self.use_bias else None
        q = self._project(query, self.W_q, b_q)  # (B, h, T, d_k)
        k = self._project(key, self.W_k, b_k)  # (B, h, S, d_k)
        v = self._project(value, self.W_v, b_v)  # (B, h, S, d_v)
        mask = self._mask(
            query,
            value,
            query_mask,
            value_mask,
            key_mask,
            attention_mask,
            use_causal_mask,
        )
        if mask is not None:
            mask = ops.expand_dims(mask, 1)  # (B, 1, T, S): every head
        context, weights = scaled_dot_product_attention(q, k, v, mask)
        output = ops.einsum("bhtv,hvo->bto", context, self.W_o)
        if self.use_bias:
            output = output + self.b_o
        if return_attention_scores:
            return output, weights
        return output

    def _mask(
        self,
        query,
        value,
        query_mask,
        value_mask,
        key_mask,
        attention_mask,
        use_causal_mask,
    ):
        """The `(B, T, S)` mask from every source, as Keras combines them."""
        parts = []
        if query_mask is not None:
            parts.append(ops.expand_dims(ops.cast(query_mask, "bool"), -1))
        for keys in (value_mask, key_mask):
            if keys is not None:
                parts.append(ops.expand_dims(ops.cast(keys, "bool"), -2))
        if attention_mask is not None:
            parts.append(ops.cast(attention_mask, "bool"))
        if use_causal_mask:
            t, s = ops.shape(query)[1], ops.shape(value)[1]
            i = ops.arange(t)[:, None]
            j = ops.arange(s)[None, :]
            parts.append(ops.expand_dims(ops.greater_equal(i, j), 0))
        if not parts:
            return None
        mask = parts[0]
        for part in parts[1:]:
            mask = ops.logical_and(mask, part)
        shape = (ops.shape(query)[0], ops.shape(query)[1], ops.shape(value)[1])
        return ops.broadcast_to(mask, shape)

    def compute_mask(self, inputs, previous_mask=None):
        return previous_mask  # the query's padding carries on

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "output_dim": self.output_dim,
            "use_bias": self.use_bias,
        }
