"""The reference Transformer's training step against keras-hub's layers.

Both models have the same size and parameter count (printed): the
reference `Transformer` (4 layers, d_model 128, 8 heads, dff 512, the
vocabulary sizes of the Spanish-English benchmark) and a model of the same
shape built from `keras.layers.Embedding` (times sqrt(d_model)) plus
`keras_hub.layers.SinePositionEncoding`, `TransformerEncoder` and
`TransformerDecoder` (post-norm, relu, layer_norm_epsilon 1e-5) and a Dense
projection. Each is compiled as the benchmark trains it (Adam, masked
label-smoothed loss, default `model.compile`: graph mode, no XLA) and timed
with `train_on_batch` on the same padded batches, alternately in the same
run, after a warm-up; the figure is the ratio of medians (goal: reference
<= 1.2x keras-hub).

    python benchmarks/transformer_speed.py [--repeats 20] [--quick]
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as translation_bleu.py

import argparse
import math
import statistics
import time

import keras
import keras_hub
import numpy as np

from autograder.reference import transformer as T

LAYERS, D_MODEL, HEADS, DFF, DROPOUT = 4, 128, 8, 512, 0.1
SOURCE_VOCAB, TARGET_VOCAB = 6353, 4507  # spa-eng WordPieces (8000 asked)
SHAPES = ((64, 12, 12), (64, 24, 24))  # (batch, source, target) lengths


class HubTransformer(keras.Model):
    """The reference Transformer's shape, built from keras-hub's layers."""

    def __init__(self, num_layers, d_model, num_heads, dff, input_vocab, target_vocab):
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.source_embedding = keras.layers.Embedding(input_vocab, d_model)
        self.target_embedding = keras.layers.Embedding(target_vocab, d_model)
        self.positions = keras_hub.layers.SinePositionEncoding(max_wavelength=10000)
        self.source_dropout = keras.layers.Dropout(DROPOUT)
        self.target_dropout = keras.layers.Dropout(DROPOUT)
        settings = dict(
            intermediate_dim=dff,
            num_heads=num_heads,
            dropout=DROPOUT,
            activation="relu",
            layer_norm_epsilon=1e-5,
            normalize_first=False,
        )
        self.encoders = [
            keras_hub.layers.TransformerEncoder(**settings) for _ in range(num_layers)
        ]
        self.decoders = [
            keras_hub.layers.TransformerDecoder(**settings) for _ in range(num_layers)
        ]
        self.final = keras.layers.Dense(target_vocab)

    def _embed(self, tokens, embedding, dropout, training):
        x = embedding(tokens) * self.scale
        return dropout(x + self.positions(x), training=training)

    def call(self, inputs, training=None):
        source, target = inputs
        source_mask, target_mask = source != 0, target != 0
        x = self._embed(source, self.source_embedding, self.source_dropout, training)
        for layer in self.encoders:
            x = layer(x, padding_mask=source_mask, training=training)
        y = self._embed(target, self.target_embedding, self.target_dropout, training)
        for layer in self.decoders:
            y = layer(
                y,
                x,
                decoder_padding_mask=target_mask,
                encoder_padding_mask=source_mask,
                training=training,
            )
        return self.final(y)


def batch(rng, size, source_length, target_length):
    """Random ids, each row padded after a random length (at least half)."""

    def ids(vocab, length):
        tokens = rng.integers(4, vocab, (size, length)).astype("int32")
        for row, n in enumerate(rng.integers(length // 2, length + 1, size)):
            tokens[row, n:] = 0
        return tokens

    source = ids(SOURCE_VOCAB, source_length)
    target = ids(TARGET_VOCAB, target_length + 1)
    return (source, target[:, :-1]), target[:, 1:]


def compiled(model):
    model.compile(
        keras.optimizers.Adam(T.WarmupSchedule(D_MODEL, 1000), beta_2=0.98),
        loss=T.masked_loss(label_smoothing=0.1),
    )
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 repeats")
    args = parser.parse_args()
    repeats = 5 if args.quick else args.repeats
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    shape = (LAYERS, D_MODEL, HEADS, DFF, SOURCE_VOCAB, TARGET_VOCAB)
    models = {
        "reference": compiled(T.Transformer(*shape, dropout=DROPOUT)),
        "keras-hub": compiled(HubTransformer(*shape)),
    }
    print(
        f"train step (train_on_batch), {LAYERS} layers, d_model {D_MODEL}, "
        f"{HEADS} heads, dff {DFF}, vocabularies {SOURCE_VOCAB} / {TARGET_VOCAB}, "
        f"median of {repeats}, alternating"
    )
    batches = [batch(rng, *shape) for shape in SHAPES]
    for data in batches:
        for model in models.values():
            for _ in range(3):  # build, trace, warm up
                model.train_on_batch(*data)
    counts = {name: model.count_params() for name, model in models.items()}
    print(
        "parameters: "
        + ", ".join(f"{name} {n:,}" for name, n in counts.items())
        + (" (equal)" if len(set(counts.values())) == 1 else " (DIFFERENT)")
    )
    print(f"{'batch x S x T':>14} {'reference ms':>13} {'keras-hub ms':>13} ratio")
    worst = 0.0
    for (size, s, t), data in zip(SHAPES, batches, strict=True):
        times = {name: [] for name in models}
        for _ in range(repeats):
            for name, model in models.items():  # alternate: same machine load
                started = time.perf_counter()
                model.train_on_batch(*data)
                times[name].append(time.perf_counter() - started)
        ref = statistics.median(times["reference"]) * 1000
        hub = statistics.median(times["keras-hub"]) * 1000
        worst = max(worst, ref / hub)
        label = f"{size} x {s} x {t}"
        print(f"{label:>14} {ref:13.1f} {hub:13.1f} {ref / hub:5.2f}")
    print(f"worst ratio reference / keras-hub: {worst:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
