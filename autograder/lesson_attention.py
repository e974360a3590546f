"""Code the notebook of Assignment 2 shares: measurements and figures.

Kept out of the notebook so that its cells read as the lesson, and tested
with the package (`tests/test_lesson_attention.py`).
"""

import time

import numpy as np

from autograder.lesson import import_tensorflow_quietly

import_tensorflow_quietly()

__all__ = [
    "attention_cost_model",
    "build_lookup_model",
    "build_pronoun_model",
    "keras_twin",
    "plot_complexity",
    "plot_heads",
    "plot_masks",
    "plot_pronoun_attention",
    "plot_scaling",
    "pronoun_accuracy",
    "pronoun_head_report",
    "pronoun_weights",
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


def time_layers(layers, lengths, d_model=64, batch=8, repeats=7, seed=0, compiled=True):
    """Fastest forward time (ms) of each layer on `(batch, n, d_model)` inputs.

    The fastest of `repeats` runs, as `timeit` reports: other programs on the
    machine can only slow a run down, so the minimum is the least noisy.

    Args:
        layers: `{name: callable(x) -> y}`, e.g. a self-attention layer and a
            GRU, built for `d_model` features.
        lengths: the sequence lengths n.
        compiled: Wrap each callable in `tf.function`, which traces it once
            into a TensorFlow graph and then runs the graph without Python:
            the times measure the arithmetic, not Python's per-operation
            overhead (which, eagerly, makes a GRU's n steps 100x slower).

    Returns:
        `{name: [milliseconds for each n]}`; the first call of each length is
        a warm-up (tracing, allocation) and not counted.
    """
    if compiled:
        import tensorflow as tf

        layers = {name: tf.function(layer) for name, layer in layers.items()}
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
            times[name].append(1000 * min(runs))
    return times


def plot_complexity(times, lengths, d_model, kernel_size=3, cost=None):
    """Measured times, then sequential steps and path length, by n.

    Args:
        times: `{name: [ms for each n]}` from `time_layers`.
        lengths: The sequence lengths n.
        d_model: The layers' width d.
        kernel_size: k of the convolution drawn in the right-hand panels.
        cost: Optional, from `attention_cost_model`: its two terms are drawn
            (dashed) beside the measured times, with the crossover n = 2d.

    Returns:
        The Figure (three Axes).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, values in times.items():
        axes[0].plot(lengths, values, "o-", label=name)
    if cost is not None:
        for key, label in (
            ("projections_ms", "projections, 4 n d² (fit)"),
            ("scores_ms", "scores + sum, 2 n² d (fit)"),
        ):
            axes[0].plot(lengths, cost[key], "--", lw=1, label=label)
        axes[0].axvline(cost["crossover"], color="gray", lw=0.8, ls=":")
        if cost["overhead_ms"] > 0:
            axes[0].axhline(
                cost["overhead_ms"],
                color="gray",
                lw=1,
                ls="-.",
                label="fixed cost (fit)",
            )
    axes[0].set_xscale("log", base=2)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("sequence length n")
    axes[0].set_ylabel("forward time (ms), this machine")
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"one layer, d = {d_model}")
    n = np.asarray(lengths, float)
    axes[1].plot(n, n, "o-", label="recurrent: n")
    axes[1].plot(
        n,
        np.ones_like(n),
        "s-",
        label=f"self-attention, convolution (k={kernel_size}): 1",
    )
    axes[1].set_title("sequential operations")
    axes[2].plot(n, n - 1, "o-", label="recurrent: n - 1")
    axes[2].plot(n, np.ones_like(n), "s-", label="self-attention: 1")
    axes[2].plot(
        n,
        np.ceil(np.log(n) / np.log(kernel_size)),
        "^-",
        label=f"dilated convolution: log_{kernel_size} n",
    )
    axes[2].plot(
        n,
        np.ceil((n - 1) / (kernel_size - 1)),
        "v:",
        label=f"convolution: (n - 1) / {kernel_size - 1}",
    )
    axes[2].set_title("longest path between two positions (layers)")
    for ax in axes[1:]:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.legend(fontsize=7)
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


def build_pronoun_model(
    make_attention, vocab_size, max_length, d_model=64, num_layers=2, ff_dim=128
):
    """A small Transformer encoder that names the noun "it" refers to.

    Word embedding plus a learned position embedding, layer-normalised (as in
    BERT, so that the first layer's scores are not all near zero), then
    `num_layers` encoder layers: self-attention from `make_attention()`, a
    residual connection and layer normalisation, a ReLU feed-forward layer, a
    residual and layer normalisation (the paper's post-norm layer, without
    dropout). Padding (word id 0) is never attended to: it is given to the
    attention as its `value_mask`. The encoder's output at the pronoun's
    position goes through one `Dense` layer to logits over the whole
    vocabulary: the model answers by *naming* the noun, so it has to fetch
    that noun's identity from its position in the sentence.

    Args:
        make_attention: `callable() -> layer`, e.g.
            `lambda: MultiHeadAttention(num_heads=4, key_dim=16)`, called
            once per encoder layer. The layer must accept `value_mask` and
            `return_attention_scores=True`.
        vocab_size: Number of word ids (0 is padding).
        max_length: Length of every (padded) sentence.
        d_model: Width of the embeddings and of every layer's output.
        num_layers: Number of encoder layers.
        ff_dim: Width of the feed-forward layer's hidden layer.

    Returns:
        `(model, probe)`: `model` maps `[word ids (B, max_length), pronoun
        position (B,)]` to logits `(B, vocab_size)`; `probe` maps word ids to
        the list of every layer's attention weights, each
        `(B, heads, max_length, max_length)`.
    """
    import keras
    from keras import ops

    words = keras.Input(shape=(max_length,), dtype="int32", name="words")
    where = keras.Input(shape=(), dtype="int32", name="pronoun")
    real = ops.not_equal(words, 0)  # (B, T): padding is never attended
    x = keras.layers.Embedding(vocab_size, d_model, name="word_embedding")(words)
    positions = keras.layers.Embedding(max_length, d_model, name="position_embedding")
    x = keras.layers.LayerNormalization()(x + positions(ops.arange(max_length)[None]))
    all_weights = []
    for _ in range(num_layers):
        y, weights = make_attention()(
            x, x, value_mask=real, return_attention_scores=True
        )
        all_weights.append(weights)  # (B, h, T, T)
        x = keras.layers.LayerNormalization()(x + y)
        y = keras.layers.Dense(ff_dim, activation="relu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(d_model)(y))
    at_pronoun = ops.take_along_axis(x, where[:, None, None], axis=1)[:, 0]  # (B, d)
    logits = keras.layers.Dense(vocab_size)(at_pronoun)
    return keras.Model([words, where], logits), keras.Model(words, all_weights)


def pronoun_weights(probe, data, layer=-1, batch_size=500):
    """Each head's attention from "it" in one layer: `(n, heads, T)`.

    Args:
        probe: The second model of `build_pronoun_model`.
        data: A `pronouns.PronounSplit`.
        layer: Which encoder layer (-1: the last).
    """
    from autograder.data import pronouns

    ids = pronouns.encode(data.sentences)
    rows = []
    for start in range(0, len(ids), batch_size):
        layers = probe(ids[start : start + batch_size])
        if not isinstance(layers, list | tuple):  # a one-layer model's probe
            layers = [layers]
        weights = np.asarray(layers[layer])
        index = np.arange(len(weights))
        rows.append(weights[index, :, data.pronoun[start : start + batch_size], :])
    return np.concatenate(rows)


def pronoun_head_report(weights, data):
    """Where each head of one layer looks from "it", on average.

    Args:
        weights: `(n, heads, T)` from `pronoun_weights`.
        data: The `pronouns.PronounSplit` the rows come from.

    Returns:
        A dict of `(heads,)` arrays: `"right"` the mean weight on the noun
        "it" refers to, `"other"` on the other noun, `"predicate"` on the
        predicate's last word (`tired`, `wide`, ...), `"right_creature"` and
        `"right_place"` the weight on the right noun when "it" is a creature
        or a place, and `"prefers_right"` the share of sentences where the
        head puts more weight on the right noun than on the other.
    """
    from autograder.data import pronouns

    weights = np.asarray(weights)
    index = np.arange(len(weights))
    right = weights[index, :, data.referent_positions]  # (n, heads)
    other = weights[index, :, data.nouns[index, 1 - data.labels]]
    last_word = np.array([len(s) - 2 for s in data.sentences])  # before "."
    predicate = weights[index, :, last_word]
    creature = np.isin(np.asarray(data.referents), pronouns.CREATURES)
    return {
        "right": right.mean(0),
        "other": other.mean(0),
        "predicate": predicate.mean(0),
        "right_creature": right[creature].mean(0),
        "right_place": right[~creature].mean(0),
        "prefers_right": (right > other).mean(0),
    }


def plot_pronoun_attention(weights, data, title=None):
    """Heatmaps: every head's attention from "it", one panel per sentence.

    Args:
        weights: `(sentences, heads, T)`, e.g. `pronoun_weights(probe, pair)`.
        data: The `pronouns.PronounSplit` of those sentences (e.g.
            `pronouns.classic_pair()`). The noun "it" refers to is marked
            with a box and its label is bold.

    Returns:
        The Figure; one Axes per sentence (plus one colour bar).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    weights = np.asarray(weights)
    rows, heads = weights.shape[:2]
    fig, axes = plt.subplots(
        rows, 1, figsize=(9, 0.6 + (1.5 + 0.4 * heads) * rows), layout="constrained"
    )
    axes = np.atleast_1d(axes)
    for row, ax in enumerate(axes):
        words = data.sentences[row]
        shown = weights[row, :, : len(words)]
        image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for h in range(heads):
            for col, w in enumerate(shown[h]):
                if w >= 0.05:
                    ax.text(
                        col,
                        h,
                        f"{w:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if w > 0.6 else "black",
                    )
        right = int(data.referent_positions[row])
        ax.add_patch(
            Rectangle((right - 0.5, -0.5), 1, heads, fill=False, lw=2, color="tab:red")
        )
        pronoun = int(data.pronoun[row])
        ax.set_xticks(range(len(words)))
        ax.set_xticklabels(
            [f"[{w}]" if i == pronoun else w for i, w in enumerate(words)],
            rotation=45,
            ha="right",
            fontsize=9,
        )
        ax.get_xticklabels()[right].set_fontweight("bold")
        ax.set_yticks(range(heads))
        ax.set_yticklabels([f"head {h}" for h in range(heads)], fontsize=8)
        ax.set_title(f'{" ".join(words)}   ("it" = {data.referents[row]})', fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="weight from [it]")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def attention_cost_model(times, lengths, d_model, batch=8):
    """Fit the measured time of a self-attention layer to its two terms.

    The layer pays `4 n d^2` multiply-adds per sequence for its projections
    (queries, keys, values, output) and `2 n^2 d` for the scores `Q K^T` and
    the weighted sum of the values. Fits `time = overhead + c * (4 n d^2 +
    2 n^2 d) * batch` by least squares on relative errors (`c`, `overhead`
    >= 0).

    Returns:
        A dict: `"overhead_ms"`, `"ns_per_op"` (nanoseconds per
        multiply-add), `"projections_ms"` and `"scores_ms"` (lists, the two
        terms for each n), and `"crossover"` (n = 2 d, where they are equal).
    """
    n = np.asarray(lengths, float)
    projections = 4 * n * d_model**2 * batch
    scores = 2 * n**2 * d_model * batch
    times = np.asarray(times, float)
    total = projections + scores
    # relative errors: every n counts, not only the slowest (noisiest) ones
    design = np.stack([np.ones_like(n), total], axis=1) / times[:, None]
    (overhead, per_op), *_ = np.linalg.lstsq(design, np.ones_like(n), rcond=None)
    if overhead < 0:  # keep both non-negative: refit through the origin
        overhead = 0.0
        per_op = float(np.median(times / total))
    per_op = max(float(per_op), 0.0)
    return {
        "overhead_ms": float(overhead),
        "ns_per_op": per_op * 1e6,
        "projections_ms": list(per_op * projections),
        "scores_ms": list(per_op * scores),
        "crossover": 2 * d_model,
    }


def pronoun_accuracy(model, data, batch_size=500):
    """Share of sentences whose referent the model names, overall and by template.

    Args:
        model: The first model of `build_pronoun_model`, trained.
        data: A `pronouns.PronounSplit`.

    Returns:
        A dict: `"all"`, `"either_order"` (the templates that take the two
        nouns in either order, where only the nouns' meaning decides) and
        `"one_way"` (the others), each a fraction in [0, 1] (NaN when `data`
        holds no sentence of that kind).
    """
    from autograder.data import pronouns

    ids = pronouns.encode(data.sentences)
    logits = model.predict([ids, data.pronoun], batch_size=batch_size, verbose=0)
    right = np.argmax(logits, -1) == data.referent_ids
    either = np.array([pronouns.TEMPLATES[t][1] == "any" for t in data.templates])

    def share(rows):
        return float(right[rows].mean()) if rows.any() else float("nan")

    return {
        "all": share(np.ones_like(right)),
        "either_order": share(either),
        "one_way": share(~either),
    }
