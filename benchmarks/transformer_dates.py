"""The reference Transformer on the date task: accuracy within a time budget.

Trains a small Transformer (2 layers, d_model 64, 4 heads, dff 128) with
the warm-up schedule on 20,000 training dates, epoch by epoch until the
budget (default 180 s, the goal for Assignment 3) is spent, then decodes
the 2,000 test dates greedily and prints the exact-match rate (goal >= 99%).

    python benchmarks/transformer_dates.py [--budget 180]
"""

import argparse
import time

import keras
import numpy as np

from autograder.data import dates
from autograder.reference import transformer as T


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    src_vocab, tgt_vocab = dates.CharVocab.for_sources(), dates.CharVocab.for_targets()
    train, test = dates.load_dates("train", 20000), dates.load_dates("test")
    x = dates.encode_sources(train.sources, src_vocab)
    decoder_in, decoder_out = dates.encode_targets(train.targets, tgt_vocab)
    model = T.Transformer(2, 64, 4, 128, len(src_vocab), len(tgt_vocab), dropout=0.1)
    model.compile(
        keras.optimizers.Adam(
            T.WarmupSchedule(64, warmup_steps=400), beta_2=0.98, epsilon=1e-9
        ),
        loss=T.masked_loss(label_smoothing=0.1),
        metrics=[T.masked_accuracy],
    )
    started, epochs = time.perf_counter(), 0
    while time.perf_counter() - started < args.budget:
        model.fit((x, decoder_in), decoder_out, batch_size=128, epochs=1, verbose=0)
        epochs += 1
    trained = time.perf_counter() - started
    source = dates.encode_sources(test.sources, src_vocab)
    decoded = T.greedy_decode(
        model, source, tgt_vocab.START_ID, tgt_vocab.END_ID, dates.TARGET_LENGTH + 1
    )
    predictions = [tgt_vocab.decode(row) for row in decoded]
    exact = np.mean([p == t for p, t in zip(predictions, test.targets, strict=True)])
    params = model.count_params()
    print(
        f"date task: {epochs} epochs in {trained:.0f} s (budget {args.budget:.0f} s), "
        f"{params:,} parameters; test exact match {100 * exact:.2f}% "
        f"of {len(test.targets)} dates (goal >= 99%)"
    )


if __name__ == "__main__":
    main()
