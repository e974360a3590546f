"""This kit's Transformer against the keras.io recipe, on the same split and budget.

The peer is the recipe of keras.io's "English-to-Spanish translation with a
sequence-to-sequence Transformer" (F. Chollet, 2021; from *Deep Learning with
Python*, 2nd ed., chapter 11), rewritten here from its description, not
copied, and run Spanish -> English on this kit's split:

* tokenisation: whole words, `keras.layers.TextVectorization` with 15,000
  words per language, sequences of 20 tokens (the target 21, for the shift),
  lower case, punctuation stripped (`string.punctuation` plus `¿`; the
  target side keeps `[` and `]` for its `[start]` / `[end]` markers);
* model: one encoder and one decoder layer, post-norm, embedding width 256,
  feed-forward width 2048, 8 heads whose key width is the embedding width
  (256 per head, Keras's `MultiHeadAttention(num_heads=8, key_dim=256)`),
  learnt position embeddings, dropout 0.5 before the softmax output;
* training: RMSprop at its default rate, sparse cross-entropy over the
  real tokens, batches of 64 pairs padded to 20 tokens, shuffled.

The kit's model is the one Assignment 3's notebook trains (2 layers,
d_model 128, 8 heads, dff 512, dropout 0.1, WordPiece vocabularies of 8,000,
Adam with the warm-up schedule, label smoothing 0.1, length-bucketed batches
of 64). Each trains for the same budget (default 1200 s, 20 minutes) on the
same training pairs; then both translate the same 2,000 test pairs greedily
and are scored with sacrebleu (corpus BLEU, 13a, lower-cased). The peer
writes no punctuation, so BLEU is also printed with punctuation removed from
every translation and reference (`--` column), which is the fairer number
for the peer; the kit's model must be at least as high on both.

One full run on 2 CPU cores (Python 3.11, TensorFlow 2.21): the kit 48.73
BLEU (46.58 without punctuation) after 10,480 steps; the recipe 17.63
(24.32) after 1,276 steps of its 19,187,125-parameter model; 22 s and 84 s
to translate the 2,000 test pairs.

Takes about 2 x budget + 5 minutes. On a shared machine, run it niced:

    KIT_DATA_MIRROR=../shared/data nice -n 10 python benchmarks/peer_translation.py
    python benchmarks/peer_translation.py --budget 30 --test-limit 200   # smoke run
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # before TensorFlow loads

import argparse
import re
import string
import sys
import time

import keras
import numpy as np
from keras import ops

from autograder import lesson_transformer as L
from autograder.data import translation
from autograder.reference import transformer as T

#: The recipe's sizes.
PEER = dict(
    vocab=15000, length=20, batch=64, embed=256, dense=2048, heads=8, dropout=0.5
)
#: What the recipe strips: ASCII punctuation and `¿`, but not the brackets
#: of its `[start]` / `[end]` markers.
STRIP = "".join(c for c in string.punctuation + "¿" if c not in "[]")
_STRIP_PATTERN = "[" + re.escape(STRIP) + "]"


def standardize(texts):
    """The recipe's standardisation: lower case, its punctuation removed."""
    import tensorflow as tf

    return tf.strings.regex_replace(tf.strings.lower(texts), _STRIP_PATTERN, "")


def vectorizers(sources, targets, vocab=PEER["vocab"], length=PEER["length"]):
    """Word-level `TextVectorization`s adapted on the training sentences.

    The targets are wrapped as `"[start] ... [end]"` before adapting; the
    target vectoriser returns `length + 1` tokens (input and shifted output).
    """
    source = keras.layers.TextVectorization(
        max_tokens=vocab, output_sequence_length=length, standardize=standardize
    )
    target = keras.layers.TextVectorization(
        max_tokens=vocab, output_sequence_length=length + 1, standardize=standardize
    )
    source.adapt(list(sources))
    target.adapt(wrap(targets))
    return source, target


def wrap(targets):
    return [f"[start] {t} [end]" for t in targets]


def peer_dataset(sources, targets, source_vec, target_vec, batch=64, seed=0):
    """`((encoder_inputs, decoder_inputs), decoder_targets)` batches, shuffled."""
    import tensorflow as tf

    x = source_vec(list(sources))
    y = target_vec(wrap(targets))
    data = tf.data.Dataset.from_tensor_slices(((x, y[:, :-1]), y[:, 1:]))
    return data.shuffle(2048, seed=seed).batch(batch).prefetch(4)


class PeerEmbedding(keras.layers.Layer):
    """Token embedding plus a learnt embedding of each position."""

    def __init__(self, length, vocab, width, **kwargs):
        super().__init__(**kwargs)
        self.tokens = keras.layers.Embedding(vocab, width)
        self.positions = keras.layers.Embedding(length, width)

    def call(self, ids):
        where = ops.arange(ops.shape(ids)[-1])
        return self.tokens(ids) + self.positions(where)[None]


class PeerEncoder(keras.layers.Layer):
    """Self-attention and a ReLU feed-forward, each with Add & Norm."""

    def __init__(self, width, dense, heads, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(heads, key_dim=width)
        self.ffn = keras.Sequential(
            [keras.layers.Dense(dense, activation="relu"), keras.layers.Dense(width)]
        )
        self.norm1 = keras.layers.LayerNormalization()
        self.norm2 = keras.layers.LayerNormalization()

    def call(self, x, padding):
        x = self.norm1(x + self.attention(x, x, attention_mask=padding[:, None, :]))
        return self.norm2(x + self.ffn(x))


class PeerDecoder(keras.layers.Layer):
    """Causal self-attention, cross-attention and feed-forward, post-norm."""

    def __init__(self, width, dense, heads, **kwargs):
        super().__init__(**kwargs)
        self.self_attention = keras.layers.MultiHeadAttention(heads, key_dim=width)
        self.cross_attention = keras.layers.MultiHeadAttention(heads, key_dim=width)
        self.ffn = keras.Sequential(
            [keras.layers.Dense(dense, activation="relu"), keras.layers.Dense(width)]
        )
        self.norms = [keras.layers.LayerNormalization() for _ in range(3)]

    def call(self, x, context, source_padding):
        x = self.norms[0](x + self.self_attention(x, x, use_causal_mask=True))
        mask = source_padding[:, None, :]
        x = self.norms[1](x + self.cross_attention(x, context, attention_mask=mask))
        return self.norms[2](x + self.ffn(x))


def peer_model(source_vocab, target_vocab, sizes=PEER):
    """The recipe's model: `(source_ids, decoder_inputs)` -> probabilities."""
    source = keras.Input((None,), dtype="int64")
    known = keras.Input((None,), dtype="int64")
    padding = ops.not_equal(source, 0)
    width, dense, heads = sizes["embed"], sizes["dense"], sizes["heads"]
    x = PeerEmbedding(sizes["length"], source_vocab, width)(source)
    context = PeerEncoder(width, dense, heads)(x, padding)
    y = PeerEmbedding(sizes["length"], target_vocab, width)(known)
    y = PeerDecoder(width, dense, heads)(y, context, padding)
    y = keras.layers.Dropout(sizes["dropout"])(y)
    out = keras.layers.Dense(target_vocab, activation="softmax")(y)
    return keras.Model((source, known), out, name="keras_io_recipe")


def peer_translate(model, sentences, source_vec, target_vec, length=PEER["length"]):
    """Greedy decoding, batched, up to `length` words, as plain text."""
    import tensorflow as tf

    vocab = np.array(target_vec.get_vocabulary())
    start = int(np.flatnonzero(vocab == "[start]")[0])
    end = int(np.flatnonzero(vocab == "[end]")[0])

    @tf.function(reduce_retracing=True, autograph=False)
    def following(source, known):
        return tf.argmax(model((source, known), training=False)[:, -1], axis=-1)

    out = []
    for begin in range(0, len(sentences), 256):
        source = source_vec(list(sentences[begin : begin + 256]))
        tokens = np.full((len(source), 1), start, dtype="int64")
        done = np.zeros(len(source), dtype=bool)
        for _ in range(length):
            best = following(source, tokens).numpy()
            best = np.where(done, 0, best)
            tokens = np.concatenate([tokens, best[:, None]], axis=1)
            done |= best == end
            if done.all():
                break
        for row in tokens[:, 1:].tolist():
            stop = row.index(end) if end in row else len(row)
            out.append(" ".join(vocab[i] for i in row[:stop] if i != 0))
    return out


def no_punctuation(texts):
    """Lower case, punctuation removed, spaces normalised (the peer's output form)."""
    table = str.maketrans("", "", string.punctuation + "¿¡")
    return [" ".join(t.lower().translate(table).split()) for t in texts]


def train_peer(train, budget, seed=0):
    keras.utils.set_random_seed(seed)
    source_vec, target_vec = vectorizers(*train)
    data = peer_dataset(*train, source_vec, target_vec, PEER["batch"], seed)
    model = peer_model(source_vec.vocabulary_size(), target_vec.vocabulary_size())
    model.compile(
        "rmsprop",
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=0),
        metrics=["accuracy"],
    )
    clock = L.TimeBudget(budget)
    model.fit(data, epochs=10_000, verbose=0, shuffle=False, callbacks=[clock])
    return model, source_vec, target_vec, clock


def train_kit(data, budget, seed=0):
    keras.utils.set_random_seed(seed)
    model = T.Transformer(
        2, 128, 8, 512, data.source_vocab_size, data.target_vocab_size, dropout=0.1
    )
    model.compile(
        keras.optimizers.Adam(T.WarmupSchedule(128, 1000), beta_2=0.98, epsilon=1e-9),
        loss=T.masked_loss(label_smoothing=0.1),
        metrics=[T.masked_accuracy],
    )
    clock = L.TimeBudget(budget)
    batches = data.batches("train", 64, seed=seed)
    model.fit(batches, epochs=10_000, verbose=0, shuffle=False, callbacks=[clock])
    return model, clock


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1200.0, help="seconds each")
    parser.add_argument("--test-limit", type=int, default=None, help="test pairs")
    args = parser.parse_args()
    try:
        data = L.TranslationData("spa-eng", 8000, 8000, test=2000, validation=2000)
    except translation.DataUnavailable as error:
        sys.exit(f"peer_translation: the corpus is unavailable.\n{error}")
    pairs = translation.load_pairs("spa-eng")
    train, _, test = translation.split_pairs(pairs, 2000, 2000, 0)
    assert list(test[0]) == data.test.sources  # the same split for both
    sources, references = data.test.sources, data.test.targets
    if args.test_limit:
        sources, references = sources[: args.test_limit], references[: args.test_limit]
    rows = []

    model, clock = train_kit(data, args.budget)
    started = time.perf_counter()
    kit = data.translate(model, sources, decode=T.fast_greedy_decoder(model))
    rows.append(("this kit", model, clock, kit, time.perf_counter() - started))

    peer, source_vec, target_vec, clock = train_peer(train, args.budget)
    started = time.perf_counter()
    theirs = peer_translate(peer, sources, source_vec, target_vec)
    rows.append(("keras.io recipe", peer, clock, theirs, time.perf_counter() - started))

    plain_refs = no_punctuation(references)
    print(
        f"spa-eng, Spanish -> English: {len(train[0]):,} training pairs, "
        f"{len(sources):,} test pairs; budget {args.budget:.0f} s each"
    )
    print(f"{'model':<16} {'params':>11} {'steps':>7} {'BLEU':>6} {'BLEU--':>7}")
    for name, net, clock, hypotheses, decoding in rows:
        score = L.bleu(hypotheses, references).score
        plain = L.bleu(no_punctuation(hypotheses), plain_refs).score
        print(
            f"{name:<16} {net.count_params():>11,} {clock.batches:>7,} "
            f"{score:>6.2f} {plain:>7.2f}   ({clock.seconds_used:.0f} s training, "
            f"{decoding:.0f} s decoding)"
        )
    print("BLEU: sacrebleu corpus BLEU, 13a, lower-cased; BLEU--: punctuation removed")
    for i in range(3):
        print(f"  {sources[i]}\n    kit:  {kit[i]}\n    peer: {theirs[i]}")


if __name__ == "__main__":
    main()
