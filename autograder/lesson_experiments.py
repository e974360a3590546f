"""Assignment 3's experiments: what each piece of the Transformer is for.

The notebook's section "Experiments" runs these on the student's own
classes (passed in as arguments: nothing here is a solution to an
exercise) and on the date task of its section 12. Each function does one
measurement and returns numbers (and a figure where there is a picture),
so the lesson can state what the student should see, and the tests
(`tests/test_lesson_experiments.py`) can check the behaviour on the
reference layers.

    >>> with causal_mask_removed(model):         # the future leaks
    ...     fit_steps(model, data, steps=300)
    >>> embedding_norms(PositionalEmbedding, d_model=64)
    >>> order_blindness(date_model, sources, targets)
    >>> PreNormTransformer(6, 32, 4, 64, 40, 20, PositionalEmbedding, FeedForward)
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import math
import time

import numpy as np

from autograder.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402  (after the quiet import)
from keras import ops  # noqa: E402

from autograder.lesson_transformer import WrappedSchedule  # noqa: E402

__all__ = [
    "HAS_PRE_NORM",
    "causal_mask_removed",
    "confidence",
    "draw_transformer",
    "embedding_norms",
    "fit_steps",
    "layer_gradient_norms",
    "logits_without_source_positions",
    "order_blindness",
    "plot_curves",
    "restart",
    "starting_weights",
    "token_embedding",
    "training_batches",
    "warmup_switch",
    "without_warmup",
]


# --------------------------------------------------------------------------
# Training for a number of steps, with a loss curve


def training_batches(inputs, labels, batch_size=64, seed=0):
    """An endless, shuffled `tf.data` stream of `(inputs, labels)` batches.

    Args:
        inputs: an array or a tuple of arrays with the same first axis.
        labels: an array with that first axis.
        batch_size: rows per batch (the last partial batch is dropped).
        seed: the shuffle's seed: two runs with one seed see the same
            batches in the same order, so they differ only by the model.
    """
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((inputs, labels))
    data = data.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size, drop_remainder=True).repeat().prefetch(2)


def fit_steps(model, batches, steps, every=25, verbose=0):
    """Train a compiled model for `steps` steps; the loss every `every` steps.

    Keras reports a running mean over each "epoch", so the epochs are made
    `every` steps long: each point of the curve is the mean training loss
    (and metrics) over the last `every` steps.

    Args:
        model: a compiled Keras model.
        batches: an endless dataset (`training_batches`).
        steps: training steps in all (rounded up to a multiple of `every`).
        every: steps per point of the curve (at most `steps`).

    Returns:
        A dict: `steps` (the step at the end of each point), one array per
        logged quantity (`loss`, and the compiled metrics), and `seconds`
        (wall time of the whole fit, compilation included).
    """
    every = max(1, min(every, steps))
    points = math.ceil(steps / every)
    started = time.perf_counter()
    history = model.fit(
        batches, steps_per_epoch=every, epochs=points, shuffle=False, verbose=verbose
    ).history
    curve = {name: np.asarray(values, dtype=float) for name, values in history.items()}
    curve["steps"] = every * np.arange(1, len(curve["loss"]) + 1)
    curve["seconds"] = time.perf_counter() - started
    return curve


def starting_weights(model, inputs):
    """Build `model` by calling it once on `inputs`; its weights, to `restart` from.

    Building on a call draws the same initial weights as building in `fit`
    (the same layers, created in the same order, with the same seed).
    """
    model(inputs, training=False)
    return model.get_weights()


def restart(model, weights):
    """Put a compiled model back where its training started, compiled step kept.

    Sets `weights` (from `starting_weights`) and zeroes the optimizer's state
    (its step count and Adam's moment estimates), so the next `fit_steps`
    trains as a fresh model would, from the same start, without tracing and
    compiling the training step again (for a 4 + 4-layer model on 2 CPU
    cores, XLA's compiling takes about 20 s, the 120 steps 5 s).
    """
    if model.optimizer is None or not model.optimizer.built:
        raise ValueError("restart() is for a model that has been compiled and trained")
    model.set_weights(weights)
    for variable in model.optimizer.variables:
        variable.assign(ops.zeros(variable.shape, variable.dtype))


def plot_curves(curves, quantity="loss", ax=None, title=None, logy=False):
    """Training curves: `quantity` against the step, one line per run.

    Args:
        curves: `{label: curve}` with curves from `fit_steps`; a label
            containing "pre-norm" is drawn dashed, so a 2 x 2 of norm
            placement and warm-up reads at a glance.

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, curve in curves.items():
        style = "--" if "pre-norm" in label else "-"
        ax.plot(curve["steps"], curve[quantity], style, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(quantity)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# --------------------------------------------------------------------------
# The causal mask


def _decoder_blocks(model):
    for name in ("blocks", "layers_"):
        blocks = getattr(model.decoder, name, None)
        if blocks:
            return list(blocks)
    raise AttributeError(
        f"{type(model.decoder).__name__} has no list of decoder layers named `blocks`."
    )


def _without_causal(original):
    def call(*args, use_causal_mask=False, **kwargs):
        return original(*args, **kwargs)

    return call


@contextlib.contextmanager
def causal_mask_removed(model):
    """Within the block, the decoder's self-attention ignores its causal mask.

    Every decoder layer's `self_attention` (a `MultiHeadAttention`) is
    called as the layer asks, except that `use_causal_mask=True` is
    dropped: position t sees the whole target, the word it must predict
    included, exactly as if the decoder layer had been written without the
    mask. The padding mask still applies. A training step compiled inside
    the block keeps the leak; call `model.make_train_function(force=True)`
    (done on leaving the block) before training the model again.

    Args:
        model: a Transformer whose `decoder` has a list `blocks` of layers
            with an attribute `self_attention`.
    """
    attentions = [block.self_attention for block in _decoder_blocks(model)]
    for attention in attentions:
        attention.call = _without_causal(type(attention).call.__get__(attention))
    try:
        yield model
    finally:
        for attention in attentions:
            with contextlib.suppress(AttributeError):
                del attention.call
        for name in ("train_function", "test_function", "predict_function"):
            if getattr(model, name, None) is not None:
                setattr(model, name, None)


# --------------------------------------------------------------------------
# Why sqrt(d_model)


def token_embedding(positional_embedding):
    """The `keras.layers.Embedding` inside a positional-embedding layer."""
    found = [
        layer
        for layer in positional_embedding._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Embedding)
    ]
    if len(found) != 1:
        raise ValueError(
            "Expected one keras.layers.Embedding inside "
            f"{type(positional_embedding).__name__}, found {len(found)}."
        )
    return found[0]


def embedding_norms(positional_embedding, d_model=None, vocab_size=1000, length=50):
    """Norms of a token's embedding and of a position's encoding, per vector.

    Embeds `length` tokens (ids 1, 2, ... cycled below the vocabulary size)
    at positions 0 to `length - 1` and measures the mean Euclidean norm of
    the d_model-vectors of each part of the layer's output.

    Args:
        positional_embedding: a positional-embedding layer (e.g. a trained
            model's `encoder.embedding`), or its class: then
            `positional_embedding(vocab_size, d_model)` is built fresh, with
            Keras's default initialiser (uniform in +-0.05).
        d_model: the width (a class only; a layer's own `d_model` is used).

    Returns:
        A dict: `token` (the raw embedding: ~ 0.05 sqrt(d/3) when fresh),
        `scaled_token` (times sqrt(d_model), as the layer does),
        `position` (the encoding, i.e. the output minus the scaled token:
        sqrt(d/2) for sines and cosines), and `position_share`, the part of
        the output's size that is position: |PE| / (|PE| + |scaled token|).
    """
    layer = positional_embedding
    if isinstance(positional_embedding, type):
        layer = positional_embedding(vocab_size, d_model)
    d_model = int(layer.d_model)
    embedding = token_embedding(layer)
    tokens = (1 + np.arange(length) % (embedding.input_dim - 1)).astype("int32")[None]
    output = ops.convert_to_numpy(layer(tokens))[0]
    raw = ops.convert_to_numpy(embedding(tokens))[0]
    scaled = raw * math.sqrt(d_model)
    position = output - scaled

    def norm(x):
        return float(np.linalg.norm(x, axis=-1).mean())

    result = {
        "token": norm(raw),
        "scaled_token": norm(scaled),
        "position": norm(position),
    }
    result["position_share"] = result["position"] / (
        result["position"] + result["scaled_token"]
    )
    return result


# --------------------------------------------------------------------------
# Order blindness without positions


def logits_without_source_positions(model, source, target):
    """The Transformer's logits with no positional encoding on the source.

    Runs the encoder's token embedding (times sqrt(d_model), no encoding
    added) and its layers, then the decoder and the final projection as
    `model` does, at inference. The decoder keeps its own positions.

    Args:
        model: a Transformer with `encoder` (attributes `embedding`, a
            positional-embedding layer with `d_model`, and `blocks`),
            `decoder` and `final`.
        source, target: int arrays `(B, S)` and `(B, T)`.

    Returns:
        `(context, logits)` as NumPy arrays: the encoder's output
        `(B, S, d_model)` and the logits `(B, T, vocab)`.
    """
    encoder = model.encoder
    embedding = token_embedding(encoder.embedding)
    source = np.asarray(source, dtype="int32")
    mask = embedding.compute_mask(source)
    x = embedding(source) * math.sqrt(encoder.embedding.d_model)
    for block in encoder.blocks:
        x = block(x, mask=mask, training=False)
    decoded = model.decoder(
        np.asarray(target, dtype="int32"), x, context_mask=mask, training=False
    )
    return ops.convert_to_numpy(x), ops.convert_to_numpy(model.final(decoded))


def order_blindness(model, source, target, seed=0):
    """How much shuffling the source's positions changes the model's output.

    One random permutation of the source's positions (padding included:
    padding is masked wherever it sits) is applied to every row. Without
    positional encoding, self-attention is permutation-equivariant and
    cross-attention permutation-invariant: the encoder's outputs are the
    same vectors, permuted, and the decoder's logits do not change at all.
    With the encoding, both change.

    Returns:
        A dict of largest absolute differences: `context_without` (encoder
        output of the shuffled source against the permuted encoder output,
        no positions), `logits_without` (logits, no positions),
        `logits_with` (logits of the model as it is), and the logits'
        scale `logits_scale` (largest absolute logit) to compare with.
    """
    source = np.asarray(source, dtype="int32")
    target = np.asarray(target, dtype="int32")
    order = np.random.default_rng(seed).permutation(source.shape[1])
    shuffled = source[:, order]
    context, logits = logits_without_source_positions(model, source, target)
    context_s, logits_s = logits_without_source_positions(model, shuffled, target)
    real = (shuffled != 0)[..., None]
    with_positions = ops.convert_to_numpy(model((source, target), training=False))
    with_shuffled = ops.convert_to_numpy(model((shuffled, target), training=False))
    return {
        "context_without": float(np.abs((context[:, order] - context_s) * real).max()),
        "logits_without": float(np.abs(logits - logits_s).max()),
        "logits_with": float(np.abs(with_positions - with_shuffled).max()),
        "logits_scale": float(np.abs(with_positions).max()),
    }


# --------------------------------------------------------------------------
# Warm-up


class _Rewarmed(WrappedSchedule):
    """A schedule wrapping a warm-up schedule (its config holds the wrapped one)."""

    def __init__(self, schedule):
        self.schedule = schedule
        self.warmup_steps = schedule.warmup_steps


class without_warmup(_Rewarmed):  # noqa: N801
    """A warm-up schedule started at its peak: `schedule(max(step, warmup - 1))`.

    The same learning rates as `schedule` after the warm-up, and the peak
    rate from the first step instead of a linear ramp up to it: the one
    difference an experiment on warm-up should make.

    Args:
        schedule: a schedule with attribute `warmup_steps` (the student's
            `WarmupSchedule`).
    """

    def __call__(self, step):
        step = ops.maximum(ops.cast(step, "float32"), float(self.warmup_steps - 1))
        return self.schedule(step)


class warmup_switch(_Rewarmed):  # noqa: N801
    """A warm-up schedule whose warm-up is switched on or off between runs.

    `switch.warm.assign(True)`: the rates of `schedule`; `assign(False)`: those
    of `without_warmup(schedule)`. The switch is a variable read at each
    step, so one compiled model trains both ways (see `restart`) where two
    schedules would need two compilations.

    Args:
        schedule: a schedule with attribute `warmup_steps`.
        warm: the switch's first position.
    """

    def __init__(self, schedule, warm=True):
        super().__init__(schedule)
        self.warm = keras.Variable(
            bool(warm), dtype="bool", trainable=False, name="warm"
        )

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = ops.maximum(step, float(self.warmup_steps - 1))
        return self.schedule(ops.where(self.warm, step, peak))

    def get_config(self):
        return {**super().get_config(), "warm": bool(ops.convert_to_numpy(self.warm))}


def layer_gradient_norms(model, inputs, labels, loss):
    """The gradient's norm over each encoder and decoder layer's weights, one batch.

    One forward and backward pass in training mode (no weight changes): the
    size of the first update each layer would get from plain gradient
    descent. In a freshly initialised post-norm stack these grow towards the
    output (the layers near the output get the largest gradients); in a
    pre-norm stack they are nearly flat (Xiong et al., 2020).

    Args:
        model: a Transformer whose `encoder` and `decoder` have a list
            `blocks`.
        inputs: `(source, decoder_inputs)`; labels: the decoder targets.
        loss: `loss(labels, logits)`, a scalar.

    Returns:
        `{"encoder": [norm per layer], "decoder": [norm per layer]}`, first
        layer first.
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = loss(labels, model(inputs, training=True))
    stacks = {"encoder": model.encoder.blocks, "decoder": _decoder_blocks(model)}
    weights = {
        name: [block.trainable_variables for block in blocks]
        for name, blocks in stacks.items()
    }
    flat = [w for blocks in weights.values() for block in blocks for w in block]
    gradients = iter(tape.gradient(value, flat))
    norms = {}
    for name, blocks in weights.items():
        norms[name] = []
        for block in blocks:
            squares = sum(
                float(np.sum(ops.convert_to_numpy(next(gradients)) ** 2)) for _ in block
            )
            norms[name].append(math.sqrt(squares))
    return norms


# --------------------------------------------------------------------------
# Pre-norm: in `autograder.lesson_prenorm`, which the student kit leaves out


#: Whether the pre-norm model is installed (the full kit; not the student
#: bundle, since its stacks are wired as Exercises 5 to 8 ask).
HAS_PRE_NORM = importlib.util.find_spec("autograder.lesson_prenorm") is not None


def __getattr__(name):
    if name in ("PreNormTransformer", "PreNormLayer", "PreNormStack"):
        if not HAS_PRE_NORM:
            raise AttributeError(
                f"{name} is not in the student kit: its encoder and decoder "
                "are wired as Exercises 5 to 8 ask, so it ships with the "
                "solutions. Section 13.4 shows the post-norm runs here."
            )
        from autograder import lesson_prenorm

        return getattr(lesson_prenorm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------
# Label smoothing: confidence


def confidence(model, source, decoder_inputs, decoder_targets, batch_size=500):
    """How sure the model is, teacher-forced, over the real target tokens.

    Returns:
        A dict: `max_probability` (mean over real tokens of the largest
        softmax probability), `entropy` (mean entropy of the predicted
        distribution, in nats), `accuracy` (share of real tokens whose
        argmax is the label) and `nll` (mean negative log-likelihood of the
        label, nats per token: its exponential is the perplexity).
    """
    sums = dict(max_probability=0.0, entropy=0.0, accuracy=0.0, nll=0.0)
    count = 0
    for start in range(0, len(source), batch_size):
        part = slice(start, start + batch_size)
        logits = ops.convert_to_numpy(
            model((source[part], decoder_inputs[part]), training=False)
        ).astype("float64")
        labels = np.asarray(decoder_targets[part])
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        p = np.exp(logp)
        real = labels != 0
        sums["max_probability"] += p.max(-1)[real].sum()
        sums["entropy"] += -(p * logp).sum(-1)[real].sum()
        sums["accuracy"] += (p.argmax(-1) == labels)[real].sum()
        sums["nll"] += -np.take_along_axis(logp, labels[..., None], -1)[..., 0][
            real
        ].sum()
        count += real.sum()
    return {name: float(value / count) for name, value in sums.items()}


# --------------------------------------------------------------------------
# The architecture


def draw_transformer(num_layers="N"):
    """The Transformer's architecture: both stacks, the three attentions, the masks.

    The encoder stack on the left, the decoder stack on the right, one
    layer of each drawn out (in a frame marked `x num_layers`), with the
    residual connections, where the encoder's output enters the decoder,
    and beside each attention the mask it is given.

    Returns:
        The matplotlib figure; `fig.boxes` maps each box's label to its
        patch (the tests check the parts are there).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, Rectangle

    fig, ax = plt.subplots(figsize=(11, 9.5))
    boxes = {}
    colours = {
        "attention": "#f9d9b5",
        "norm": "#f2f2b6",
        "ffn": "#c9e7f5",
        "embed": "#f4cccc",
        "out": "#d9d2e9",
    }

    def box(key, x, y, text, kind, width=2.6, height=0.55):
        patch = FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.04",
            fc=colours[kind],
            ec="black",
            lw=0.9,
        )
        ax.add_patch(patch)
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5)
        boxes[key] = patch
        return patch

    def arrow(start, end, **style):
        props = {"arrowstyle": "->", "lw": 1.0, "color": "black", **style}
        ax.annotate("", end, start, arrowprops=props)

    def residual(x, y_from, y_to, side):
        dx = 1.55 * side
        ax.plot([x, x + dx, x + dx], [y_from, y_from, y_to], color="grey", lw=1.0)
        arrow((x + dx, y_to), (x + 1.3 * side, y_to), color="grey")

    def note(x, y, text, colour="tab:red", ha="left"):
        ax.text(
            x, y, text, ha=ha, va="center", fontsize=7.5, color=colour, style="italic"
        )

    ex, dx = 2.5, 8.0  # the stacks' centres
    # ---- encoder
    box(
        "source embedding",
        ex,
        0.6,
        "source ids -> Embedding x sqrt(d) + PE",
        "embed",
        3.2,
    )
    ax.text(ex, -0.05, "source tokens  (B, S)", ha="center", fontsize=8)
    layer_y = [1.8, 2.55, 3.6, 4.35]
    box(
        "encoder self-attention",
        ex,
        layer_y[0],
        "multi-head self-attention",
        "attention",
    )
    box("encoder norm 1", ex, layer_y[1], "Add & Norm", "norm")
    box("encoder feed-forward", ex, layer_y[2], "feed-forward", "ffn")
    box("encoder norm 2", ex, layer_y[3], "Add & Norm", "norm")
    arrow((ex, 0.9), (ex, layer_y[0] - 0.3))
    for a, b in itertools.pairwise(layer_y):
        arrow((ex, a + 0.3), (ex, b - 0.3))
    residual(ex, 1.2, layer_y[1], -1)
    residual(ex, layer_y[1] + 0.45, layer_y[3], -1)
    note(
        ex - 2.15, layer_y[0] + 0.05, "Q = K = V = x\nmask: source padding", ha="right"
    )
    ax.add_patch(Rectangle((ex - 2.0, 1.25), 4.0, 3.5, fill=False, ls="--", lw=1.0))
    ax.text(ex + 2.1, 4.6, f"x {num_layers}", fontsize=10, fontweight="bold")
    arrow((ex, layer_y[3] + 0.3), (ex, 5.5))
    ax.text(ex, 5.7, "context  (B, S, d)", ha="center", fontsize=8.5, fontweight="bold")
    ax.text(ex, 6.05, "ENCODER", ha="center", fontsize=11, fontweight="bold")
    # ---- decoder
    box(
        "target embedding",
        dx,
        0.6,
        "target ids -> Embedding x sqrt(d) + PE",
        "embed",
        3.2,
    )
    ax.text(
        dx, -0.05, "[START] + target, shifted right  (B, T)", ha="center", fontsize=8
    )
    dy = [1.8, 2.55, 3.6, 4.35, 5.4, 6.15]
    box(
        "decoder self-attention",
        dx,
        dy[0],
        "masked multi-head self-attention",
        "attention",
        3.0,
    )
    box("decoder norm 1", dx, dy[1], "Add & Norm", "norm")
    box("cross-attention", dx, dy[2], "multi-head cross-attention", "attention", 3.0)
    box("decoder norm 2", dx, dy[3], "Add & Norm", "norm")
    box("decoder feed-forward", dx, dy[4], "feed-forward", "ffn")
    box("decoder norm 3", dx, dy[5], "Add & Norm", "norm")
    arrow((dx, 0.9), (dx, dy[0] - 0.3))
    for a, b in itertools.pairwise(dy):
        arrow((dx, a + 0.3), (dx, b - 0.3))
    residual(dx, 1.2, dy[1], 1)
    residual(dx, dy[1] + 0.45, dy[3], 1)
    residual(dx, dy[3] + 0.45, dy[5], 1)
    note(
        dx + 2.15,
        dy[0],
        "Q = K = V = y\nmask: target padding\nAND causal (t sees <= t)",
    )
    note(dx + 2.15, dy[2], "Q = y, K = V = context\nmask: source padding")
    ax.add_patch(Rectangle((dx - 2.0, 1.25), 4.0, 5.3, fill=False, ls="--", lw=1.0))
    ax.text(dx - 2.75, 6.4, f"{num_layers} x", fontsize=10, fontweight="bold")
    # the context enters every decoder layer's cross-attention
    ax.annotate(
        "",
        (dx - 1.5, dy[2]),
        (ex + 0.9, 5.55),
        arrowprops={
            "arrowstyle": "->",
            "lw": 1.6,
            "color": "tab:blue",
            "connectionstyle": "angle,angleA=0,angleB=90,rad=8",
        },
    )
    note(
        ex + 1.0,
        5.95,
        "to every decoder layer's cross-attention:\nits keys and values",
        "tab:blue",
    )
    box("linear", dx, 7.25, "Dense -> logits (B, T, vocab)", "out")
    box("softmax", dx, 8.0, "softmax (in the loss)", "out")
    arrow((dx, dy[5] + 0.3), (dx, 6.95))
    arrow((dx, 7.55), (dx, 7.7))
    ax.text(dx, 8.55, "next-token probabilities", ha="center", fontsize=8.5)
    ax.text(dx, 8.95, "DECODER", ha="center", fontsize=11, fontweight="bold")
    ax.set_xlim(-1.6, 12.6)
    ax.set_ylim(-0.4, 9.3)
    ax.axis("off")
    ax.set_title(
        "The Transformer (post-norm, as in the paper): grey lines are residual "
        "connections, red notes the masks",
        fontsize=10,
    )
    fig.boxes = boxes
    return fig
