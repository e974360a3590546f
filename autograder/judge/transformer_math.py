"""Assignment 3's formulas in float64 NumPy, each with its typical mistakes.

`mistake=None` gives the correct result; the package's tests prove it equal
to the reference layers (`autograder.reference.transformer`), which are
themselves proven equal to keras-hub's. Weights are looked up by the keys the
checks use: `"<sublayer path>:<weight>"` (for example
`"blocks.0.self_attention:query/kernel"`), or the bare weight name for a
layer without sublayers.
"""

import numpy as np

from autograder.judge import attention_math as A

EPSILON = 1e-5


def key(prefix, name):
    return f"{prefix}:{name}" if prefix else name


# --------------------------------------------------------------- embeddings


def positional_encoding(length, depth, mistake=None):
    """`(length, depth)`, sines at even and cosines at odd dimensions.

    Mistakes: "concatenated" (all sines, then all cosines), "exponent_i"
    (`10000^(i/d)` for dimension i instead of `10000^(2i/d)` per pair),
    "swapped" (cosines at even dimensions).
    """
    positions = np.arange(length, dtype=np.float64)[:, None]
    i = np.arange(depth)[None, :]
    if mistake == "concatenated":
        half = depth // 2
        j = np.arange(half)[None, :]
        angles = positions / np.power(10000.0, 2 * j / depth)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)
    pair = i if mistake == "exponent_i" else 2 * (i // 2)
    angles = positions / np.power(10000.0, pair / depth)
    even, odd = (np.cos, np.sin) if mistake == "swapped" else (np.sin, np.cos)
    return np.where(i % 2 == 0, even(angles), odd(angles))


def embed(tokens, table, mistake=None):
    """Token embedding times sqrt(d) plus the encoding; returns (x, mask).

    Mistakes: "no_scale", "scale_both" (the sum times sqrt(d)),
    "no_positional".
    """
    d = table.shape[1]
    x = table[tokens]
    pe = positional_encoding(tokens.shape[-1], d)[None]
    if mistake == "no_scale":
        out = x + pe
    elif mistake == "scale_both":
        out = (x + pe) * np.sqrt(d)
    elif mistake == "no_positional":
        out = x * np.sqrt(d)
    else:
        out = x * np.sqrt(d) + pe
    return out, tokens != 0


# --------------------------------------------------------- position-wise parts


def feed_forward(x, w, prefix="", mistake=None):
    """`max(0, x W_1 + b_1) W_2 + b_2`. Mistakes: "no_relu", "relu_on_output"."""
    hidden = x @ w[key(prefix, "W_1")] + w[key(prefix, "b_1")]
    if mistake != "no_relu":
        hidden = np.maximum(hidden, 0.0)
    out = hidden @ w[key(prefix, "W_2")] + w[key(prefix, "b_2")]
    return np.maximum(out, 0.0) if mistake == "relu_on_output" else out


def layer_norm(x, gamma, beta, epsilon=EPSILON):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def add_norm(x, y, w, prefix="", mistake=None):
    """`LayerNorm(x + y)` (dropout is off at inference).

    Mistakes: "pre_norm" (`x + LayerNorm(y)`), "no_residual"
    (`LayerNorm(y)`), "default_epsilon" (Keras's default 1e-3, not 1e-5).
    """
    gamma, beta = w[key(prefix, "gamma")], w[key(prefix, "beta")]
    if mistake == "pre_norm":
        return x + layer_norm(y, gamma, beta)
    if mistake == "no_residual":
        return layer_norm(y, gamma, beta)
    epsilon = 1e-3 if mistake == "default_epsilon" else EPSILON
    return layer_norm(x + y, gamma, beta, epsilon)


# ---------------------------------------------------------------- attention


def mha(query, value, w, prefix, mask=None):
    """`keras.layers.MultiHeadAttention` with Keras's weight names; returns
    (output, scores)."""
    names = {
        "W_q": "query/kernel",
        "b_q": "query/bias",
        "W_k": "key/kernel",
        "b_k": "key/bias",
        "W_v": "value/kernel",
        "b_v": "value/bias",
        "W_o": "attention_output/kernel",
        "b_o": "attention_output/bias",
    }
    weights = {short: w[key(prefix, long)] for short, long in names.items()}
    return A.mha(query, value, None, weights, mask)


def key_mask(mask, queries):
    """A `(B, S)` padding mask as `(B, T, S)`, or None."""
    if mask is None:
        return None
    return np.broadcast_to(mask[:, None, :], (mask.shape[0], queries, mask.shape[1]))


def _sublayer(x, y, w, prefix, mistake):
    """Add & Norm around a sublayer's output, post-norm unless "pre_norm"."""
    if mistake == "no_residual":
        return layer_norm(y, w[key(prefix, "gamma")], w[key(prefix, "beta")])
    return add_norm(x, y, w, prefix)


def encoder_layer(x, w, prefix="", mask=None, mistake=None):
    """Self-attention and feed-forward, each with Add & Norm.

    Mistakes: "pre_norm" (`x + f(LayerNorm(x))`), "no_residual",
    "mask_ignored".
    """
    p = f"{prefix}." if prefix else ""
    t = x.shape[1]
    keys = None if mistake == "mask_ignored" else key_mask(mask, t)
    if mistake == "pre_norm":
        normed = layer_norm(
            x, w[f"{p}attention_norm:gamma"], w[f"{p}attention_norm:beta"]
        )
        x = x + mha(normed, normed, w, f"{p}self_attention", keys)[0]
        normed = layer_norm(x, w[f"{p}ffn_norm:gamma"], w[f"{p}ffn_norm:beta"])
        return x + feed_forward(normed, w, f"{p}ffn")
    attended = mha(x, x, w, f"{p}self_attention", keys)[0]
    x = _sublayer(x, attended, w, f"{p}attention_norm", mistake)
    return _sublayer(x, feed_forward(x, w, f"{p}ffn"), w, f"{p}ffn_norm", mistake)


def decoder_layer(x, context, w, prefix="", mask=None, context_mask=None, mistake=None):
    """Masked self-attention, cross-attention, feed-forward; returns
    (output, cross-attention scores).

    Mistakes: "no_causal", "context_mask_ignored", "cross_on_self" (the
    cross-attention's keys and values are the decoder's own states),
    "pre_norm", "no_residual".
    """
    p = f"{prefix}." if prefix else ""
    t = x.shape[1]
    causal = np.tril(np.ones((t, t), bool))[None]
    self_mask = key_mask(mask, t)
    if mistake != "no_causal":
        self_mask = causal if self_mask is None else self_mask & causal
    cross_mask = (
        None if mistake == "context_mask_ignored" else key_mask(context_mask, t)
    )
    if mistake == "pre_norm":

        def norm(h, name):
            return layer_norm(h, w[f"{p}{name}:gamma"], w[f"{p}{name}:beta"])

        normed = norm(x, "self_norm")
        x = x + mha(normed, normed, w, f"{p}self_attention", self_mask)[0]
        crossed, scores = mha(
            norm(x, "cross_norm"), context, w, f"{p}cross_attention", cross_mask
        )
        x = x + crossed
        return x + feed_forward(norm(x, "ffn_norm"), w, f"{p}ffn"), scores
    inner = mistake if mistake == "no_residual" else None
    attended = mha(x, x, w, f"{p}self_attention", self_mask)[0]
    x = _sublayer(x, attended, w, f"{p}self_norm", inner)
    source = x if mistake == "cross_on_self" else context
    if mistake == "cross_on_self":
        cross_mask = key_mask(mask, t)
    crossed, scores = mha(x, source, w, f"{p}cross_attention", cross_mask)
    x = _sublayer(x, crossed, w, f"{p}cross_norm", inner)
    x = _sublayer(x, feed_forward(x, w, f"{p}ffn"), w, f"{p}ffn_norm", inner)
    return x, scores


# ------------------------------------------------------------------ stacks


def encoder(tokens, w, num_layers, prefix="", mistake=None):
    """Embedding, then `num_layers` encoder layers; returns (x, mask).

    Mistakes: those of `embed` ("no_scale", "no_positional") and of
    `encoder_layer` ("mask_ignored", "pre_norm").
    """
    p = f"{prefix}." if prefix else ""
    x, mask = embed(tokens, w[f"{p}embedding:embeddings"], mistake)
    for i in range(num_layers):
        x = encoder_layer(x, w, f"{p}blocks.{i}", mask, mistake)
    return x, mask


def decoder(tokens, context, w, num_layers, prefix="", context_mask=None, mistake=None):
    """Embedding, then `num_layers` decoder layers; returns the output."""
    p = f"{prefix}." if prefix else ""
    x, mask = embed(tokens, w[f"{p}embedding:embeddings"], mistake)
    for i in range(num_layers):
        x, _ = decoder_layer(
            x, context, w, f"{p}blocks.{i}", mask, context_mask, mistake
        )
    return x


def transformer(source, target, w, num_layers, mistake=None):
    """Logits `(B, T, V)`. Mistakes: "context_mask_ignored", "softmax"
    (probabilities instead of logits), "no_causal"."""
    context, source_mask = encoder(source, w, num_layers, "encoder")
    x = decoder(target, context, w, num_layers, "decoder", source_mask, mistake)
    logits = x @ w["final:kernel"] + w["final:bias"]
    if mistake == "softmax":
        return A.softmax(logits)
    return logits


# ------------------------------------------------------------------ training


def warmup_schedule(steps, d_model, warmup, mistake=None):
    """`d^-0.5 * min(s^-0.5, s * warmup^-1.5)` with `s = step + 1`.

    Mistakes: "from_zero" (s = step: infinite at step 0), "warmup_sqrt"
    (`warmup^-0.5`), "no_d_model".
    """
    s = np.asarray(steps, np.float64) + (0.0 if mistake == "from_zero" else 1.0)
    power = -0.5 if mistake == "warmup_sqrt" else -1.5
    with np.errstate(divide="ignore"):
        rate = np.minimum(s**-0.5, s * warmup**power)
    return rate if mistake == "no_d_model" else rate * d_model**-0.5


def masked_loss(labels, logits, label_smoothing=0.0, mistake=None):
    """Mean cross-entropy over real tokens (label 0 is padding).

    Mistakes: "pad_counted" (mean over every position), "smoothing_rest"
    (the smoothing mass spread over the V - 1 wrong classes only),
    "sum" (a sum over tokens, not a mean).
    """
    v = logits.shape[-1]
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    one_hot = np.eye(v)[labels]
    if mistake == "smoothing_rest":
        target = one_hot * (1 - label_smoothing) + (1 - one_hot) * label_smoothing / (
            v - 1
        )
    else:
        target = one_hot * (1 - label_smoothing) + label_smoothing / v
    per_token = -(target * log_p).sum(-1)
    real = labels != 0
    if mistake == "pad_counted":
        return per_token.mean()
    if mistake == "sum":
        return (per_token * real).sum()
    return (per_token * real).sum() / max(real.sum(), 1)


def masked_accuracy(labels, logits, mistake=None):
    """Share of real tokens predicted exactly. Mistake: "pad_counted"."""
    hits = logits.argmax(-1) == labels
    real = labels != 0
    if mistake == "pad_counted":
        return hits.mean()
    return (hits & real).sum() / max(real.sum(), 1)


def greedy(script, start_id, end_id, max_length, mistake=None):
    """What greedy decoding gives on a scripted model.

    The scripted model's next token, for a row and the number of tokens
    decoded so far, is `script[row, step]`. Returns `(B, max_length)` ids
    without the start token, 0 after each row's end token.

    Mistakes: "keeps_start" (the start token is returned too, so
    `max_length + 1` columns), "never_stops" (no padding after a row's end
    token, and all `max_length` steps always run), "no_stop"
    (rows go on after their end token), "stops_at_first" (every row stops
    when the first row ends), "first_token" (every step decodes the row's
    first token: the model is given the start token only, or the argmax is
    taken at the first position).
    """
    batch = script.shape[0]
    out = np.zeros((batch, max_length), np.int64)
    done = np.zeros(batch, bool)
    for step in range(max_length):
        following = script[:, 0 if mistake == "first_token" else step]
        following = following.astype(np.int64)
        if mistake not in ("no_stop", "never_stops"):
            following = np.where(done, 0, following)
        out[:, step] = following
        done |= following == end_id
        if mistake == "never_stops":
            continue
        if done.all() or (mistake == "stops_at_first" and done[0]):
            break
    if mistake == "keeps_start":
        out = np.concatenate([np.full((batch, 1), start_id), out], axis=1)
    return out
