"""Assignment 1's formulas in float64 NumPy, each with its typical mistakes.

`mistake=None` gives the correct result, which the package's tests prove equal
to the reference layers. Every other value builds one typical mistake into
the computation, so that the checks can recognise it in a student's output.
"""

import numpy as np

NEG = -1e9


def softmax(x, axis=-1):
    x = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def key_mask(mask, scores):
    """A `(B, Tk)` key mask as `(B, 1, Tk)`; a full mask as it is."""
    mask = np.asarray(mask, bool)
    if mask.ndim == scores.ndim - 1:
        mask = np.expand_dims(mask, -2)
    return np.broadcast_to(mask, scores.shape)


def masked_softmax(scores, mask=None, mistake=None):
    """Softmax over keys; padded keys get 0 and an all-padded row is all 0.

    Mistakes: "no_mask", "inverted" (True read as padding), "wrong_axis"
    (normalised over queries), "uniform_empty" (an all-padded row gets 1/Tk
    instead of zeros).
    """
    scores = np.asarray(scores, np.float64)
    axis = -2 if mistake == "wrong_axis" else -1
    if mask is None or mistake == "no_mask":
        return softmax(scores, axis)
    mask = key_mask(mask, scores)
    if mistake == "inverted":
        mask = ~mask
    filled = np.where(mask, scores, NEG)
    weights = softmax(filled, axis)
    if mistake == "uniform_empty":
        return weights
    return np.where(mask, weights, 0.0)


def dot_score(q, k, mistake=None):
    s = q @ np.swapaxes(k, -1, -2)
    if mistake == "scaled":
        s = s / np.sqrt(q.shape[-1])
    if mistake == "transposed":
        s = np.swapaxes(s, -1, -2)
    return s


def _square_only(W):
    """`W` transposed, for the mistake of using a square matrix the other way
    round; a non-square one cannot be (the product would not run)."""
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError("only a square matrix can be used the other way round")
    return W.T


def general_score(q, k, W_a, mistake=None):
    """`q (k W_a)^T`, `W_a` a Keras kernel `(d_k, d_q)`.

    Mistakes: "transposed" (scores `(B, Tk, Tq)`), "weight_transposed" (a
    square `W_a` used the other way round: `q W_a k^T`)."""
    if mistake == "weight_transposed":
        W_a = _square_only(W_a)
    if mistake == "transposed":
        return np.swapaxes(q @ np.swapaxes(k @ W_a, -1, -2), -1, -2)
    return q @ np.swapaxes(k @ W_a, -1, -2)


def concat_score(q, k, W_1, W_2, v_a, mistake=None):
    """`tanh(q W_1 + k W_2) v_a` for every query and key.

    Mistakes: "no_tanh", "no_v", "transposed", "weight_transposed" (the
    square ones of `W_1`, `W_2` used the other way round)."""
    if mistake == "weight_transposed":
        squares = [W.ndim == 2 and W.shape[0] == W.shape[1] for W in (W_1, W_2)]
        if not any(squares):
            raise ValueError("no square matrix to use the other way round")
        W_1 = W_1.T if squares[0] else W_1
        W_2 = W_2.T if squares[1] else W_2
    a = np.expand_dims(q @ W_1, -2)  # (B, Tq, 1, u)
    b = np.expand_dims(k @ W_2, -3)  # (B, 1, Tk, u)
    inner = a + b if mistake == "no_tanh" else np.tanh(a + b)
    if mistake == "no_v":
        return inner.sum(-1)
    s = (inner * v_a).sum(-1)
    if mistake == "transposed":
        s = np.swapaxes(s, -1, -2)
    return s


def luong(query, values, mask, W_c, b_c, W_y, b_y, mistake=None):
    """Returns {"probs", "weights"} of Luong's dot attention and its output."""
    scores = dot_score(query, values, "scaled" if mistake == "scaled" else None)
    soft_mistake = {"no_mask": "no_mask", "wrong_axis": "wrong_axis"}.get(mistake)
    weights = masked_softmax(scores, mask, soft_mistake)
    context = weights @ values
    parts = [query, context] if mistake == "concat_order" else [context, query]
    pre = np.concatenate(parts, -1) @ W_c + b_c
    attentional = pre if mistake == "no_tanh" else np.tanh(pre)
    logits = attentional @ W_y + b_y
    probs = logits if mistake == "logits" else softmax(logits)
    return {"probs": probs, "weights": weights}


def bahdanau(query, values, mask, W_b, W_c, w_a, mistake=None):
    """Returns {"context", "weights"} for one step of Bahdanau attention."""
    q = np.expand_dims(query @ W_b, -2)
    inner = q + values @ W_c
    inner = inner if mistake == "no_tanh" else np.tanh(inner)
    scores = inner.sum(-1) if mistake == "no_v" else (inner * w_a).sum(-1)
    if mistake == "no_mask":
        weights = softmax(scores)
    else:  # the student's masked softmax (a part of this exercise), always
        weights = masked_softmax(
            scores, None if mask is None else np.asarray(mask, bool)
        )
    context = (weights[..., None] * values).sum(-2)
    return {"context": context, "weights": weights}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gru_cell(x, h, kernel, recurrent_kernel, bias):
    """Keras's GRUCell (reset_after=True; gates ordered z, r, h)."""
    u = h.shape[-1]
    xz = x @ kernel + bias[0]
    hz = h @ recurrent_kernel + bias[1]
    z = sigmoid(xz[:, :u] + hz[:, :u])
    r = sigmoid(xz[:, u : 2 * u] + hz[:, u : 2 * u])
    candidate = np.tanh(xz[:, 2 * u :] + r * hz[:, 2 * u :])
    return z * h + (1.0 - z) * candidate


def decoder_step(tokens, state, values, mask, weights, mistake=None):
    """Returns {"logits", "state", "weights"} of one Bahdanau decoder step."""
    w = weights
    x = w["embeddings"][tokens]
    query = np.zeros_like(state) if mistake == "zero_query" else state
    att = bahdanau(
        query,
        values,
        mask,
        w["W_b"],
        w["W_c"],
        w["w_a"],
        "no_mask" if mistake == "no_mask" else None,
    )
    parts = [att["context"], x] if mistake == "concat_order" else [x, att["context"]]
    new_state = gru_cell(
        np.concatenate(parts, -1), state, w["kernel"], w["recurrent_kernel"], w["bias"]
    )
    source = state if mistake == "old_state_output" else new_state
    logits = source @ w["output_kernel"] + w["output_bias"]
    if mistake == "softmax_output":
        logits = softmax(logits)
    return {"logits": logits, "state": new_state, "weights": att["weights"]}
