"""The reference MultiHeadAttention against keras.layers.MultiHeadAttention.

One forward and backward pass (self-attention, causal, batch 8, d_model 128,
8 heads of 16), eagerly and under `tf.function(jit_compile=True)`, at a few
sequence lengths. Both layers are timed alternately in the same run; the
figure is the ratio of medians (goal: reference <= 1.2x Keras).

    python benchmarks/mha_speed.py [--repeats 15]
"""

import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from autograder.reference.attention import MultiHeadAttention

LENGTHS = (16, 64, 256, 512)


def step_function(layer, compiled):
    def step(x):
        with tf.GradientTape() as tape:
            y = layer(x, x, use_causal_mask=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, layer.trainable_variables)

    return tf.function(step, jit_compile=True) if compiled else step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("forward + backward, batch 8, d_model 128, 8 heads x 16, causal")
    print(f"{'n':>5} {'mode':>9} {'reference ms':>13} {'keras ms':>9} {'ratio':>6}")
    worst = 0.0
    for n in LENGTHS:
        x = tf.constant(rng.standard_normal((8, n, 128)).astype("float32"))
        for compiled in (False, True):
            ours = MultiHeadAttention(8, 16)
            theirs = keras.layers.MultiHeadAttention(8, 16)
            steps = {
                "reference": step_function(ours, compiled),
                "keras": step_function(theirs, compiled),
            }
            for step in steps.values():
                step(x)  # build, trace, compile
            times = {name: [] for name in steps}
            for _ in range(args.repeats):
                for name, step in steps.items():  # alternate: same machine load
                    started = time.perf_counter()
                    grads = step(x)
                    _ = [g.numpy() for g in grads]
                    times[name].append(time.perf_counter() - started)
            ref = statistics.median(times["reference"]) * 1000
            ker = statistics.median(times["keras"]) * 1000
            worst = max(worst, ref / ker)
            mode = "jit" if compiled else "eager"
            print(f"{n:5d} {mode:>9} {ref:13.2f} {ker:9.2f} {ref / ker:6.2f}")
    print(f"worst ratio: {worst:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
