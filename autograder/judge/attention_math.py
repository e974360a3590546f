"""Assignment 2's formulas in float64 NumPy, each with its typical mistakes.

`mistake=None` gives the correct result, which the package's tests prove
equal to the reference (and so to `keras.layers.MultiHeadAttention`). Weights
use Keras's layout: `W_q`, `W_k` `(d, h, d_k)`, `W_v` `(d, h, d_v)`, biases
`(h, d)`, `W_o` `(h, d_v, d_out)`.
"""

import numpy as np

NEG = -1e9


def softmax(x, axis=-1):
    x = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def attend(scores, mask=None, mistake=None):
    """Masked softmax over the keys; rows with no allowed key are all zero.

    Mistakes: "wrong_axis" (over the queries), "inverted" (True read as
    padding), "wrong_sign" (+1e9 added where masked), "no_mask".
    """
    axis = -2 if mistake == "wrong_axis" else -1
    if mask is None or mistake == "no_mask":
        return softmax(scores, axis)
    mask = np.broadcast_to(np.asarray(mask, bool), scores.shape)
    if mistake == "inverted":
        mask = ~mask
    if mistake == "wrong_sign":
        return softmax(np.where(mask, scores, -NEG), axis)
    weights = softmax(np.where(mask, scores, NEG), axis)
    return np.where(mask, weights, 0.0)


def sdpa(q, k, v, mask=None, mistake=None):
    """Scaled dot-product attention; returns (output, weights).

    Mistakes: "no_scale", "scale_by_d" (divided by d_k, not sqrt(d_k)), and
    those of `attend`.
    """
    d = q.shape[-1]
    scores = q @ np.swapaxes(k, -1, -2)
    if mistake == "scale_by_d":
        scores = scores / d
    elif mistake != "no_scale":
        scores = scores / np.sqrt(d)
    weights = attend(scores, mask, mistake)
    return weights @ v, weights


def padding_mask(ids, pad_id=0, mistake=None):
    """(B, 1, S) True on real tokens. Mistakes: "inverted", "on_queries",
    "pad_zero" (`pad_id` ignored: padding taken as 0)."""
    real = np.asarray(ids) != (0 if mistake == "pad_zero" else pad_id)
    if mistake == "inverted":
        real = ~real
    if mistake == "on_queries":
        return real[:, :, None]
    return real[:, None, :]


def causal_mask(length, mistake=None, keys=None):
    """(T, T) True where key <= query (`(T, keys)` aligned top-left, as
    Keras's `use_causal_mask`, when `keys` is given). Mistakes: "no_diagonal"
    (key < query), "one_ahead" (key <= query + 1: leaks the next token),
    "inverted", "upper" (key >= query: only the future)."""
    i = np.arange(length)[:, None]
    j = np.arange(length if keys is None else keys)[None, :]
    if mistake == "no_diagonal":
        return j < i
    if mistake == "one_ahead":
        return j <= i + 1
    if mistake == "inverted":
        return ~(j <= i)
    if mistake == "upper":
        return j >= i
    return j <= i


def combined_mask(ids, pad_id=0, mistake=None):
    """(B, T, T): padding of the keys and no future. Mistakes: "or" (either),
    "pad_zero" (`pad_id` ignored)."""
    pad = padding_mask(ids, pad_id, "pad_zero" if mistake == "pad_zero" else None)
    causal = causal_mask(np.asarray(ids).shape[-1])
    if mistake == "or":
        return pad | causal[None]
    return pad & causal[None]


def mha(query, value, key, weights, mask=None, mistake=None):
    """Multi-head attention; returns (output, weights (B, h, T, S)).

    `mask` is the (B, T, S) combined mask. Mistakes: "no_scale",
    "scale_d_model" (divided by sqrt(d_model) instead of sqrt(d_k)),
    "wrong_axis", "inverted", "wrong_sign", "split_wrong_axis" (heads taken as
    (d_k, h) when splitting and merging), "merge_wrong_order" (right split,
    heads merged as (d_v, h)), "no_output_projection".
    """
    key = value if key is None else key
    W_q, W_k, W_v, W_o = (weights[n] for n in ("W_q", "W_k", "W_v", "W_o"))
    b_q = weights.get("b_q", np.zeros(W_q.shape[1:]))
    b_k = weights.get("b_k", np.zeros(W_k.shape[1:]))
    b_v = weights.get("b_v", np.zeros(W_v.shape[1:]))
    b_o = weights.get("b_o", np.zeros(W_o.shape[-1]))
    h, dk = W_q.shape[1], W_q.shape[2]
    dv = W_v.shape[2]

    def project(x, W, b, size):
        flat = x @ W.reshape(W.shape[0], -1) + b.reshape(-1)  # (B, T, h*size)
        if mistake == "split_wrong_axis":
            parts = flat.reshape(*flat.shape[:2], size, h)
            return np.transpose(parts, (0, 3, 1, 2))
        parts = flat.reshape(*flat.shape[:2], h, size)
        return np.transpose(parts, (0, 2, 1, 3))  # (B, h, T, size)

    q = project(query, W_q, b_q, dk)
    k = project(key, W_k, b_k, dk)
    v = project(value, W_v, b_v, dv)
    head_mask = None if mask is None else np.asarray(mask, bool)[:, None]
    if mistake is None:  # the student's scaled dot-product attention, a part
        context, attention = sdpa(q, k, v, head_mask)
        merged = np.transpose(context, (0, 2, 1, 3))  # (B, T, h, dv)
        merged = merged.reshape(*merged.shape[:2], h * dv)
        return merged @ W_o.reshape(h * dv, -1) + b_o, attention
    scores = q @ np.swapaxes(k, -1, -2)
    if mistake == "scale_d_model":
        scores = scores / np.sqrt(query.shape[-1])
    elif mistake != "no_scale":
        scores = scores / np.sqrt(dk)
    head_mask = None if mask is None else np.asarray(mask, bool)[:, None]
    attention = attend(scores, head_mask, mistake)
    context = attention @ v  # (B, h, T, dv)
    if mistake in ("split_wrong_axis", "merge_wrong_order"):
        merged = np.transpose(context, (0, 2, 3, 1))  # (B, T, dv, h)
    else:
        merged = np.transpose(context, (0, 2, 1, 3))  # (B, T, h, dv)
    merged = merged.reshape(*merged.shape[:2], h * dv)
    if mistake == "no_output_projection":
        return merged, attention
    return merged @ W_o.reshape(h * dv, -1) + b_o, attention
