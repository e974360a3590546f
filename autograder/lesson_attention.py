"""Code the notebook of Assignment 2 shares: measurements and figures.

Kept out of the notebook so that its cells read as the lesson, and tested
with the package (`tests/test_lesson_attention.py`).
"""

import statistics
import time

import numpy as np

from autograder.lesson import import_tensorflow_quietly

import_tensorflow_quietly()

__all__ = [
    "build_lookup_model",
    "keras_twin",
    "plot_complexity",
    "plot_heads",
    "plot_masks",
    "plot_scaling",
    "share_on_asked_item",
    "time_layers",
]


def plot_scaling(dims=(4, 16, 64, 256, 1024), samples=2000, keys=10, seed=0, ax=None):
    """Why divide by sqrt(d_k): the largest softmax weight, unscaled and scaled.

    With q, k ~ N(0, 1), `q . k` has variance d_k; unscaled, the softmax
    saturates (one weight near 1, gradients near 0) as d_k grows.
    """
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    raw, scaled = [], []
    for d in dims:
        q = rng.standard_normal((samples, 1, d))
        k = rng.standard_normal((samples, keys, d))
        scores = (q * k).sum(-1)
        for values, out in ((scores, raw), (scores / np.sqrt(d), scaled)):
            e = np.exp(values - values.max(-1, keepdims=True))
            out.append((e / e.sum(-1, keepdims=True)).max(-1).mean())
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    ax.plot(dims, raw, "o-", label="softmax(q.k)")
    ax.plot(dims, scaled, "s-", label="softmax(q.k / sqrt(d_k))")
    ax.axhline(1 / keys, color="gray", lw=0.8, ls=":", label="uniform")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d_k")
    ax.set_ylabel(f"mean largest weight ({keys} keys)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Unscaled scores saturate the softmax")
    return ax


def plot_masks(masks, axes=None):
    """Draw boolean masks side by side: dark = may attend."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(masks), figsize=(3.2 * len(masks), 3))
    for ax, (title, mask) in zip(np.atleast_1d(axes), masks.items(), strict=True):
        mask = np.asarray(mask, bool)
        ax.imshow(mask, cmap="Greys", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
        ax.set_xticks(range(mask.shape[1]))
        ax.set_yticks(range(mask.shape[0]))
    return axes


def time_layers(layers, lengths, d_model=64, batch=8, repeats=3, seed=0):
    """Median forward time (ms) of each layer on `(batch, n, d_model)` inputs.

    Args:
        layers: `{name: callable(x) -> y}`, e.g. a self-attention layer and a
            GRU, built for `d_model` features.
        lengths: the sequence lengths n.

    Returns:
        `{name: [milliseconds for each n]}`; the first call of each length is
        a warm-up and not counted.
    """
    rng = np.random.default_rng(seed)
    times = {name: [] for name in layers}
    for n in lengths:
        x = rng.standard_normal((batch, n, d_model)).astype("float32")
        for name, layer in layers.items():
            np.asarray(layer(x))  # warm-up (tracing, allocation)
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                np.asarray(layer(x))
                runs.append(time.perf_counter() - started)
            times[name].append(1000 * statistics.median(runs))
    return times


def plot_complexity(times, lengths, d_model):
    """Measured times, then sequential steps and path length, by n."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, values in times.items():
        axes[0].plot(lengths, values, "o-", label=name)
    axes[0].set_xscale("log", base=2)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("sequence length n")
    axes[0].set_ylabel("forward time (ms), this machine")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"one layer, d_model = {d_model}")
    n = np.asarray(lengths, float)
    axes[1].plot(n, n, "o-", label="recurrent: n")
    axes[1].plot(n, np.ones_like(n), "s-", label="self-attention: 1")
    axes[1].set_title("sequential operations")
    axes[2].plot(n, n - 1, "o-", label="recurrent: n - 1")
    axes[2].plot(n, np.ones_like(n), "s-", label="self-attention: 1")
    axes[2].set_title("longest path between two positions")
    for ax in axes[1:]:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def build_lookup_model(attention_layer, vocab_size, d_model=32):
    """Embedding -> the given self-attention layer -> digit logits.

    Returns `(model, probe)`: `model` maps token ids to the logits of the
    answer (read at the last position, the question); `probe` maps token ids
    to the attention weights `(B, heads, T, T)` of the layer.
    """
    import keras

    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(vocab_size, d_model)(tokens)
    y, weights = attention_layer(x, x, return_attention_scores=True)
    last = keras.layers.Lambda(lambda t: t[:, -1])(keras.layers.Add()([x, y]))
    logits = keras.layers.Dense(10)(keras.layers.Dense(64, activation="relu")(last))
    return keras.Model(tokens, logits), keras.Model(tokens, weights)


def plot_heads(weights, labels, query=-1, title=None):
    """Each head's attention from one query position, as bars."""
    import matplotlib.pyplot as plt

    weights = np.asarray(weights)  # (heads, T, T)
    heads = weights.shape[0]
    fig, axes = plt.subplots(1, heads, figsize=(2.8 * heads, 2.6), sharey=True)
    for h, ax in enumerate(np.atleast_1d(axes)):
        ax.bar(range(len(labels)), weights[h, query])
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=90, fontsize=8)
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_ylim(0, 1)
    np.atleast_1d(axes)[0].set_ylabel(f"weight from '{labels[query]}'")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def keras_twin(layer, query, value):
    """`keras.layers.MultiHeadAttention` with `layer`'s weights.

    The student's weights `W_q`, `b_q`, ... (in Keras's 3-D layout or with
    the heads merged, `(d, h * d_k)`) are reshaped into Keras's layout.
    """
    import keras

    twin = keras.layers.MultiHeadAttention(
        layer.num_heads,
        layer.key_dim,
        value_dim=getattr(layer, "value_dim", None),
        output_shape=getattr(layer, "output_dim", None),
    )
    twin(query, value)
    named = {w.path.split("/")[-1]: w for w in layer.weights}
    for dense, names in (
        (twin._query_dense, ("W_q", "b_q")),
        (twin._key_dense, ("W_k", "b_k")),
        (twin._value_dense, ("W_v", "b_v")),
        (twin._output_dense, ("W_o", "b_o")),
    ):
        for variable, name in zip((dense.kernel, dense.bias), names, strict=True):
            value_ = keras.ops.convert_to_numpy(named[name])
            variable.assign(value_.reshape(tuple(variable.shape)))
    return twin


def share_on_asked_item(weights, task):
    """Mean weight, from the question, on the item it asks about.

    Args:
        weights: `(B, T)` one head's attention from the last position.
        task: the `lookup.LookupTask` the rows come from.
    """
    from autograder.data import lookup

    positions = lookup.asked_positions(task)
    weights = np.asarray(weights)
    return float(weights[np.arange(len(weights)), positions].mean())
