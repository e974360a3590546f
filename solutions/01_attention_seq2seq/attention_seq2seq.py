# %% [markdown]
# # Assignment 1: Attention in sequence-to-sequence models
#
# In this assignment you build, in Keras 3, the two attention mechanisms that
# made neural machine translation work, and train one of them:
#
# * **Luong** (dot-product) attention, from *Effective Approaches to
#   Attention-based Neural Machine Translation* (Luong, Pham and Manning, 2015);
# * **Bahdanau** (additive) attention, from *Neural Machine Translation by
#   Jointly Learning to Align and Translate* (Bahdanau, Cho and Bengio, 2015).
#
# The task is small enough to train on a laptop CPU in a couple of minutes and
# hard enough to need attention: turning dates written by people
# (`"Thursday, May 3, 1979"`, `"5/3/79"`, `"1979년 5월 3일"`) into ISO dates
# (`"1979-05-03"`).
#
# **How this notebook works.**
# * Cells that say `# YOUR CODE HERE` / `raise NotImplementedError()` are yours.
#   Replace those two lines with your code; keep the names and signatures.
# * Each exercise is followed by a **check cell** (`check_...(YourLayer)`). Run
#   it: it builds your layer, gives it the same weights as a reference
#   solution, and compares the outputs on fixed inputs. When something is off
#   it tells you what was checked, the inputs, what it expected and what it
#   received, and names the most likely mistake.
# * When your notebook is graded, the check cells run again, together with
#   **hidden tests**: the same checks on other shapes, masks and batch sizes.
#   Code that passes the visible checks *because it is right* passes those too.
# * Training cells are skipped while grading, so they never cost you points.
#   Don't delete or edit the check cells: they are restored before grading.
# * While grading, the check cells only *record* what your layers output; the
#   grader compares those outputs with the reference in its own process, where
#   your code never runs. It also reads (without running) every cell you
#   wrote. A graded answer must be ordinary Keras code: it may import only
#   `numpy`, `keras`, `tensorflow`, `math`, `matplotlib`, the standard
#   helpers (`functools`, `itertools`, `collections`, `copy`, `json`, ...)
#   and `autograder.lesson`/`autograder.data`; it must not call `exec`,
#   `eval`, `open`, `globals` or `get_ipython`, use `setattr` on anything but
#   its own objects, reassign anything of an imported module
#   (`np.allclose = ...`) or any `__dunder__` attribute, rebind a name the
#   notebook imported or a `check_` function at the top level of a cell
#   (inside your functions and methods any name is fine), or define
#   `__array__`. Shell commands and magics: `!pip install NAME`,
#   `!nvidia-smi`, `!ls`, `%time`, `%timeit`, `%%capture`, `%matplotlib`,
#   `%load_ext autoreload` and a few more harmless ones. Such code fails the
#   **integrity check** of every test after it (0 points, and the feedback
#   says where). Building an attention exercise on `keras.layers.Attention`,
#   `AdditiveAttention`, `MultiHeadAttention` or
#   `keras.ops.dot_product_attention` scores 0 for that exercise: here you
#   write attention yourself (your own methods may have any name).
#
# **Conventions used everywhere in this course.** Shapes are written
# `(B, T_q, T_k, d)`: batch, query (decoder) steps, key (encoder) steps,
# features. A **mask is True where a position may be attended to** (a real
# token) and False on padding, as Keras uses it. **Vectors are rows** and a
# linear map is written $x W$ with a weight of shape `(d_in, d_out)`, as
# Keras stores a kernel; the papers write columns and $W x$. Part 2 says how
# the two map onto each other, once, and every formula here follows it.

# %%
try:  # first: keeps TensorFlow's log lines out of your cells
    from autograder import lesson
except ModuleNotFoundError as missing:
    if missing.name != "autograder":
        raise
    raise ModuleNotFoundError(
        "The course kit is not installed here. Run this in a new cell, then this cell again:\n"
        "%pip install attention_course_kit_student-0.1.0-py3-none-any.whl   (upload that file from your instructor beside this notebook first)"
    ) from None

lesson.show_versions()

# %%
import keras
import matplotlib.pyplot as plt
import numpy as np
from keras import ops

from autograder import lesson_seq2seq
from autograder.checks import (
    check_bahdanau_attention,
    check_bahdanau_decoder_step,
    check_concat_score,
    check_dot_score,
    check_general_score,
    check_luong_attention,
    check_masked_softmax,
)
from autograder.data import dates

RUN_EXPERIMENTS = not lesson.grading()  # False while nbgrader grades: training is skipped
print("training cells will run" if RUN_EXPERIMENTS else "grading: training cells are skipped")

# %% [markdown]
# ## Part 1. The task, and the bottleneck of a plain encoder-decoder
#
# ### 1.1 The data
#
# `autograder.data.dates` generates the dataset deterministically (no
# download): 19 *format families* of the same calendar dates, between
# 1950 and 2049. A calendar date belongs to exactly one split, so no date
# of the test split was seen in training, in any format. Let us look at one
# date written every way:

# %%
import datetime

day = datetime.date(1979, 5, 3)
for family in dates.FAMILIES:
    print(f"{family:>28}  {dates.format_date(day, family)}")

# %% [markdown]
# A date carries the same eight digits however it is written, long or
# short. To see what a fixed-size memory can and cannot do, we need inputs
# whose *information* grows with their length. So an input holds **one date,
# or two joined by "and"** (`"1 may 2044 and 22-DEC-1978"` ->
# `"2044-05-01 1978-12-22"`): the second kind carries twice as much.
#
# Each character becomes an integer id; id 0 is **padding**, the filler that
# makes the inputs of a batch equally long. An **embedding** layer turns each
# id into a learned vector (`keras.layers.Embedding`).
#
# The decoder is trained with **teacher forcing**: at every step it receives
# the *true* previous character (the target shifted right by one, starting
# with `<start>`), not its own previous guess, and learns to predict the next
# character. All steps of a target can then be trained at once. At test time
# there is no true previous character: the model feeds back its own
# predictions, one step at a time (decoding, below).

# %%
source_vocab = dates.CharVocab.for_sources()
target_vocab = dates.CharVocab.for_targets()
train = dates.load_date_lists("train", size=lesson.TRAIN_DATES, seed=1)
validation = dates.load_date_lists("validation", seed=2)
test = dates.load_date_lists("test", seed=3)


def encode(split):
    sources = dates.encode_sources(split.sources, source_vocab)
    decoder_inputs, decoder_targets = dates.encode_targets(split.targets, target_vocab)
    return sources, decoder_inputs, decoder_targets


x_train, y_in_train, y_out_train = encode(train)
x_val, y_in_val, y_out_val = encode(validation)
x_test, y_in_test, y_out_test = encode(test)
test_dates = sum(t.count(" ") + 1 for t in test.targets)
print(f"{len(train)} training inputs, {len(validation)} validation, {len(test)} test ({test_dates} test dates)")
print(f"source vocabulary {len(source_vocab)}, target vocabulary {len(target_vocab)}")
for source, target in list(zip(train.sources, train.targets, strict=True))[:6]:
    print(f"{source!r:>58} -> {target}")

# %% [markdown]
# ### 1.2 The plain encoder-decoder
#
# An encoder RNN (recurrent neural network) reads the input $x_1 \dots x_T$
# and updates its state, $h_i = \mathrm{GRU}(h_{i-1}, x_i)$. A **GRU** (gated
# recurrent unit, Cho et al. 2014) is an RNN cell with two gates: an *update*
# gate that decides how much of the old state to keep and a *reset* gate that
# decides how much of it to use when proposing the new one. A decoder RNN
# starts from the encoder's **last state only**, $s_0 = h_T$, and generates
# the output one character at a time:
# $s_t = \mathrm{GRU}(s_{t-1}, [y_{t-1}; h_T])$ (the embedding of the
# previous character concatenated with $h_T$),
# $p(y_t) = \mathrm{softmax}(s_t W + b)$. (Feeding $h_T$ to every step, as
# Cho et al. (2014) do, keeps the decoder from forgetting it; it is still the
# only thing the decoder knows of the input.)
#
# Everything the decoder will ever know about the input must pass through the
# fixed-size vector $h_T$ (64 numbers here): this is the **bottleneck**. One
# date fits. Two dates, the first of them read long ago, are another matter.

# %%
lesson.draw_encoder_decoder(attention=False)
plt.show()

# %% [markdown]
# **Training, in the words used below.** The loss is the cross-entropy of
# the true next character under the model's distribution (Keras's
# `sparse_categorical_crossentropy`: the targets are ids, not one-hot
# vectors), averaged over the real (unpadded) characters. **Adam** lowers it
# by gradient descent with a step size adapted to each weight. An **epoch**
# is one pass over the training inputs, in **batches** of 128; the batches
# are *bucketed* (inputs of similar length together, so little padding is
# processed). After every epoch the model is scored on the **validation**
# split, dates it never trains on: a training accuracy far above the
# validation accuracy would mean it memorises instead of learning the rule.

# %%
UNITS = 64


class RepeatOverSteps(keras.layers.Layer):
    """Copy a vector to every step of a sequence: (B, d), (B, T, e) -> (B, T, d)."""

    def call(self, vector, steps):
        return ops.repeat(ops.expand_dims(vector, 1), ops.shape(steps)[1], axis=1)

    def compute_mask(self, inputs, previous_mask=None):
        return None


def plain_encoder_decoder():
    sources = keras.Input(shape=(None,), dtype="int32", name="sources")
    decoder_inputs = keras.Input(shape=(None,), dtype="int32", name="decoder_inputs")
    x = keras.layers.Embedding(len(source_vocab), 32, mask_zero=True)(sources)
    _, h_last = keras.layers.GRU(UNITS, return_state=True)(x)  # (B, units): all we keep
    y = keras.layers.Embedding(len(target_vocab), 16, mask_zero=True)(decoder_inputs)
    y = keras.layers.Concatenate()([y, RepeatOverSteps()(h_last, y)])  # [y_{t-1}; h_T]
    s = keras.layers.GRU(UNITS, return_sequences=True)(y, initial_state=h_last)
    probs = keras.layers.Dense(len(target_vocab), activation="softmax")(s)
    return keras.Model([sources, decoder_inputs], probs, name="plain")


def compile_and_fit(model, epochs=lesson.EPOCHS):
    model.compile(
        optimizer=keras.optimizers.Adam(lesson.LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model.fit(
        lesson.bucketed_batches(x_train, y_in_train, y_out_train, lesson.BATCH_SIZE),
        validation_data=lesson.bucketed_batches(x_val, y_in_val, y_out_val, 512),
        epochs=epochs,
        shuffle=False,  # the batches are already shuffled, every epoch
    )


# %%
if RUN_EXPERIMENTS:
    keras.utils.set_random_seed(0)
    plain = plain_encoder_decoder()
    plain_history = compile_and_fit(plain)

# %% [markdown]
# The accuracy printed during training is **per character**, with the true
# previous characters fed in (teacher forcing). What matters is whole dates
# produced on the model's own: decode the test inputs **greedily** (feed back
# the most likely character at each step, never revisiting a choice) and
# count a date as right only if all ten characters are: the **exact match**,
# the share of test dates produced exactly. Then split the test dates by the
# length of their input.

# %%
LENGTH_EDGES = [0, 15, 25, 35, 50, 120]


def test_results(model):
    ids = lesson.greedy_decode(model, x_test, y_out_test.shape[1], start_id=1)
    predictions = [target_vocab.decode(row) for row in ids]
    return lesson.date_results(test.sources, test.targets, predictions)


if RUN_EXPERIMENTS:
    test_lengths, plain_correct = test_results(plain)
    print(f"plain encoder-decoder: {plain_correct.mean():.1%} of {len(plain_correct)} test dates exactly right")
    lesson.plot_accuracy_by_length(
        {"plain encoder-decoder": lesson.accuracy_by_length(test_lengths, plain_correct, LENGTH_EDGES)}
    )
    plt.show()

# %% [markdown]
# The curve falls as inputs grow. Short inputs, single dates, come out right;
# long ones, mostly pairs of dates, do not: one vector of 64 numbers, written
# at the end of the input, does not hold two dates. Bahdanau et al. saw
# exactly this in translation (their Figure 2: the BLEU of the plain model
# collapses beyond 20 to 30 words; BLEU, the usual score of machine
# translation, measures from 0 to 100 how many of the output's word sequences
# also appear in a human translation; Assignment 3 computes it). The cure is to let the decoder **look back
# at every encoder state** $h_1 \dots h_T$ at each step, and choose where to
# look. That is attention.
#
# ## Part 2. Attention: a query, keys and values
#
# At decoder step $t$, attention takes
# * a **query**: what the decoder is looking for, its state $s_t$;
# * **keys** $h_1 \dots h_T$: what each input position offers for matching;
# * **values**: what is read out; in seq2seq attention the values *are* the
#   keys, the encoder states.
#
# and computes, in three steps,
#
# $$e_{ti} = \mathrm{score}(s_t, h_i) \qquad
#   \alpha_{ti} = \frac{\exp(e_{ti})}{\sum_{j} \exp(e_{tj})} \qquad
#   a_t = \sum_i \alpha_{ti}\, h_i$$
#
# the **scores** (how well each key matches the query), the **attention
# distribution** $\alpha_t$ (a softmax: positive weights that sum to 1), and the
# **context vector** $a_t$, the weighted average of the values. Because the
# decoder can put nearly all its weight on one position, nothing has to be
# squeezed through a single vector any more.
#
# A tiny example with numbers: one query, three keys.

# %%
keys = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
values = np.array([[10.0, 0.0], [0.0, 10.0], [5.0, 5.0]])
query = np.array([2.0, 0.1])

scores = keys @ query  # one dot product per key
weights = np.exp(scores) / np.exp(scores).sum()
context = weights @ values
print("scores ", scores.round(3))
print("weights", weights.round(3), "sum", weights.sum())
print("context", context.round(3))

fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
axes[0].bar(["key 1", "key 2", "key 3"], scores, color="tab:gray")
axes[0].set_title("scores $e_i = q \\cdot k_i$")
axes[1].bar(["key 1", "key 2", "key 3"], weights, color="tab:blue")
axes[1].set_title("weights $\\alpha = \\mathrm{softmax}(e)$")
plt.tight_layout()
plt.show()

# %% [markdown]
# The query points along the first axis, so the first key wins most of the
# weight and the context is close to the first value.
#
# ### Rows, columns and Keras kernels: the convention of this notebook
#
# The papers (Bahdanau's, Luong's, and most lecture notes) write a vector as
# a **column** and a linear map as $W x$: their $W$ has one row per output
# feature, shape $(d_\text{out}, d_\text{in})$. Keras, NumPy and this
# notebook write a vector as a **row** (a batch of vectors is a matrix with
# one row per example, the features on the last axis) and a linear map as
# $x W$: the kernel of a `Dense` layer, or a weight from `add_weight`, has
# shape $(d_\text{in}, d_\text{out})$. It is the same map, with our kernel the
# paper's matrix transposed:
#
# $$(W_\text{paper}\, x)^\top = x^\top W_\text{paper}^\top = x\, W
#   \qquad\text{with}\qquad W = W_\text{paper}^\top .$$
#
# Every formula below is written as it is computed, with rows: $x W$ is
# `ops.matmul(x, W)` (it acts on the last axis, whatever the batch axes in
# front), a dot product of two rows is $s\, h^\top$ (the papers'
# $s^\top h$), and every weight's shape is the Keras kernel's
# $(d_\text{in}, d_\text{out})$. The papers' formulas of this assignment,
# translated:
#
# | the papers (columns) | this notebook (rows) | our weight |
# |---|---|---|
# | $W x + b$ | $x W + b$ | $(d_\text{in}, d_\text{out})$ |
# | $s_t^\top h_i$ | $s_t h_i^\top$ | none |
# | $s_t^\top W_a h_i$, $W_a$: $(d_q, d_k)$ | $s_t\,(h_i W_a)^\top$ | `W_a`: $(d_k, d_q)$ |
# | $v_a^\top \tanh(W_1 s_t + W_2 h_i)$ | $\tanh(s_t W_1 + h_i W_2)\, v_a$ | `W_1`: $(d_q, u)$, `W_2`: $(d_k, u)$ |
# | $\tanh(W_c [c_t; h_t])$ (Luong) | $\tanh([a_t; s_t]\, W_c + b_c)$ | `W_c`: $(2d, u)$ |
#
# In the general score, our kernel $W_a$ maps a key into the query's space
# ($h_i W_a$ has $d_q$ features) and the score is its dot product with the
# query; the paper's $W_a$ is the transpose of ours.
#
# **Either orientation is accepted.** If you prefer the papers' way round,
# create the weight as $(d_\text{out}, d_\text{in})$ and compute
# `ops.matmul(x, ops.transpose(W))`, or create `W_a` as $(d_q, d_k)$ and
# compute $s_t W_a h_i^\top$. What must agree is the shape you create and the
# product you compute. The checks read which orientation your layer creates
# from its shape and give the weight its values that way round; when the
# matrix is square ($d_q = d_k$, where both orientations have the same
# shape) they read it from your layer built for a case where the sizes
# differ. A passing check prints which orientation it found. A layer that
# creates one orientation and computes with the other crashes where the sizes
# differ, and where the matrix is square it computes the formula with the
# weight transposed: the check says so.
#
# ## Part 3. Exercises
#
# ### Exercise 1: score functions (3 points visible, 3 hidden)
#
# Luong et al. compare three ways to score a decoder state $s_t$ (a row of
# size $d_q$) against an encoder state $h_i$ (a row of size $d_k$), written
# here with rows and Keras kernels (see the convention above):
#
# | name | score$(s_t, h_i)$ | weights |
# |---|---|---|
# | dot | $s_t h_i^\top$ (needs $d_q = d_k$) | none |
# | general | $s_t\,(h_i W_a)^\top$ | `W_a`: $(d_k, d_q)$ |
# | concat (additive) | $\tanh(s_t W_1 + h_i W_2)\, v_a$ | `W_1`: $(d_q, u)$, `W_2`: $(d_k, u)$, `v_a`: $(u,)$ |
#
# (The papers' $s_t^\top W_a h_i$ is the same general score with their
# $W_a$, $(d_q, d_k)$, the transpose of ours: you may create either, as long
# as you compute with the one you create.) The concat score is a small
# one-hidden-layer network on the pair: $u$ hidden units, a tanh, and $v_a$
# weighting the units into one number. Bahdanau et al. introduced it and
# call it the *alignment model*; it is also called **additive** attention,
# because query and key are added, where dot and general are
# *multiplicative*.
#
# Write each as a Keras layer whose `call(query, keys)` takes a batch of
# queries `(B, T_q, d_q)` and keys `(B, T_k, d_k)` and returns **all** the
# scores at once, shape `(B, T_q, T_k)`: row $t$ holds query $t$'s score
# against every key. No Python loops: use `ops.matmul`, and broadcasting for
# concat (`(B, T_q, 1, u) + (B, 1, T_k, u)`).
#
# Keras conventions: create weights in `build` with
# `self.add_weight(name=..., shape=..., initializer="glorot_uniform")`, using
# exactly the names in the table (the checks find your weights by name, then
# by shape), no biases. (Glorot, or Xavier, uniform draws each weight from a
# range scaled by the matrix's two sizes, so that activations neither grow
# nor shrink from layer to layer; it is Keras's default for kernels.) Keras
# calls `build(query_shape, keys_shape)` with the shapes of the first call's
# arguments.

# %% nbgrader={"grade_id": "score_functions", "solution": true}
class DotScore(keras.layers.Layer):
    """Luong's dot score: `score(s_t, h_i) = s_t . h_i`."""

    def call(self, query, keys):
        """(B, Tq, d), (B, Tk, d) -> (B, Tq, Tk)."""
        ### BEGIN SOLUTION
        return ops.matmul(query, ops.swapaxes(keys, -1, -2))
        ### END SOLUTION


class GeneralScore(keras.layers.Layer):
    """Luong's general score: `score(s_t, h_i) = s_t (h_i W_a)^T`."""

    def build(self, query_shape, keys_shape):
        """Create the kernel `W_a` of shape (d_k, d_q) (or the papers' (d_q, d_k))."""
        ### BEGIN SOLUTION
        self.W_a = self.add_weight(
            name="W_a", shape=(keys_shape[-1], query_shape[-1]), initializer="glorot_uniform"
        )
        ### END SOLUTION

    def call(self, query, keys):
        """(B, Tq, d_q), (B, Tk, d_k) -> (B, Tq, Tk)."""
        ### BEGIN SOLUTION
        projected = ops.matmul(keys, self.W_a)  # (B, Tk, d_q)
        return ops.matmul(query, ops.swapaxes(projected, -1, -2))
        ### END SOLUTION


class ConcatScore(keras.layers.Layer):
    """Concat (additive) score: `tanh(s_t W_1 + h_i W_2) v_a`."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, query_shape, keys_shape):
        """Create `W_1` (d_q, units), `W_2` (d_k, units) and `v_a` (units,)."""
        ### BEGIN SOLUTION
        init = "glorot_uniform"
        self.W_1 = self.add_weight(name="W_1", shape=(query_shape[-1], self.units), initializer=init)
        self.W_2 = self.add_weight(name="W_2", shape=(keys_shape[-1], self.units), initializer=init)
        self.v_a = self.add_weight(name="v_a", shape=(self.units,), initializer=init)
        ### END SOLUTION

    def call(self, query, keys):
        """(B, Tq, d_q), (B, Tk, d_k) -> (B, Tq, Tk)."""
        ### BEGIN SOLUTION
        q = ops.expand_dims(ops.matmul(query, self.W_1), -2)  # (B, Tq, 1, u)
        k = ops.expand_dims(ops.matmul(keys, self.W_2), -3)  # (B, 1, Tk, u)
        return ops.sum(ops.tanh(q + k) * self.v_a, axis=-1)  # (B, Tq, Tk)
        ### END SOLUTION

    def get_config(self):
        """Everything `__init__` needs to rebuild the layer (Keras saves a layer
        as this dictionary and rebuilds it with `from_config`; the check does)."""
        ### BEGIN SOLUTION
        return {**super().get_config(), "units": self.units}
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_dot_score", "points": 1}
"""DotScore on two batches: shape (B, Tq, Tk) and values."""
check_dot_score(DotScore)

# %% nbgrader={"grade_id": "hidden_dot_score", "points": 1}
"""DotScore on other shapes and batch sizes (hidden)."""
### BEGIN HIDDEN TESTS
check_dot_score(DotScore, cases="hidden")
### END HIDDEN TESTS

# %% nbgrader={"grade_id": "test_general_score", "points": 1}
"""GeneralScore with d_q != d_k and with d_q == d_k: W_a's shape and the values."""
check_general_score(GeneralScore)

# %% nbgrader={"grade_id": "hidden_general_score", "points": 1}
"""GeneralScore on other shapes and batch sizes (hidden)."""
### BEGIN HIDDEN TESTS
check_general_score(GeneralScore, cases="hidden")
### END HIDDEN TESTS

# %% nbgrader={"grade_id": "test_concat_score", "points": 1}
"""ConcatScore: weights W_1, W_2, v_a, values, and the get_config round trip."""
check_concat_score(ConcatScore)

# %% nbgrader={"grade_id": "hidden_concat_score", "points": 1}
"""ConcatScore on other shapes and batch sizes (hidden)."""
### BEGIN HIDDEN TESTS
check_concat_score(ConcatScore, cases="hidden")
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2: a softmax that ignores padding (1 point visible, 1 hidden)
#
# Sequences in a batch have different lengths, so they are padded to the
# longest with id 0. The padded encoder steps are not part of the input: they
# must get **exactly zero** attention weight. Given scores `(..., T_q, T_k)`
# and a mask that is True on real keys,
#
# $$\alpha_{ti} = \frac{m_i \exp(e_{ti})}{\sum_j m_j \exp(e_{tj})}$$
#
# The usual way: replace the scores of padded keys by a large negative number
# (so that `exp` makes them 0), take the softmax over the **last** axis, then
# set the padded weights to exactly 0.
#
# Two traps:
# * `-inf` instead of a large finite number: when *every* key of a row is
#   padding (it happens, for example for an empty input), the softmax computes
#   0/0 = NaN, and the NaN spreads into the loss and every weight.
# * such an all-padding row must come out as all zeros, not NaN and not
#   uniform weights.
#
# The mask may be `(B, T_k)`, one padding mask per sequence (the same for all
# queries: insert a query axis with `ops.expand_dims(mask, -2)`), or already
# have the scores' rank. Use `ops.where`, `ops.softmax`, `ops.full_like`.

# %% nbgrader={"grade_id": "masked_softmax", "solution": true}
def masked_softmax(scores, mask=None):
    """Softmax over the last axis; keys where `mask` is False get weight 0.

    Args:
        scores: `(..., Tq, Tk)` float tensor.
        mask: optional bool tensor, True on real keys: `(B, Tk)` or the
            shape of `scores`.

    Returns:
        Weights of the shape of `scores`; all-padding rows are all zeros.
    """
    ### BEGIN SOLUTION
    if mask is None:
        return ops.softmax(scores, axis=-1)
    mask = ops.cast(mask, "bool")
    if len(mask.shape) == len(scores.shape) - 1:
        mask = ops.expand_dims(mask, -2)
    filled = ops.where(mask, scores, ops.full_like(scores, -1e9))
    weights = ops.softmax(filled, axis=-1)
    return ops.where(mask, weights, ops.zeros_like(weights))
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_masked_softmax", "points": 1}
"""masked_softmax: no mask, a padding mask, and an all-padding row."""
check_masked_softmax(masked_softmax)

# %% nbgrader={"grade_id": "hidden_masked_softmax", "points": 1}
"""masked_softmax: full masks, other batch sizes, large scores, finite gradients (hidden)."""
### BEGIN HIDDEN TESTS
check_masked_softmax(masked_softmax, cases="hidden")
### END HIDDEN TESTS

# %% [markdown]
# What your masked softmax does, in a picture: three sequences of five keys,
# the last two of the second sequence and all of the third are padding.

# %%
demo_scores = np.array([[[2.0, 1.0, 0.5, 0.0, -1.0]], [[2.0, 1.0, 0.5, 3.0, 3.0]], [[1.0, 1.0, 1.0, 1.0, 1.0]]])
demo_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)
demo_weights = ops.convert_to_numpy(masked_softmax(demo_scores, demo_mask))[:, 0]
fig, ax = plt.subplots(figsize=(5, 2))
ax.imshow(demo_weights, cmap="viridis", vmin=0, vmax=1)
for (row, col), value in np.ndenumerate(demo_weights):
    ax.text(col, row, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.5 else "black")
ax.set_yticks(range(3), labels=["no padding", "2 padded keys", "all padding"])
ax.set_xticks(range(5), labels=[f"key {i + 1}" for i in range(5)])
plt.show()

# %% [markdown]
# ### Exercise 3: Luong attention (2 points visible, 1 hidden)
#
# Luong's *global attention* works on top of the decoder RNN. **Global**
# means that every step attends over *all* the encoder states; Luong et al.
# also propose *local* attention, which first predicts a position $p_t$ in
# the input and attends only to a window of states around it (cheaper on
# long inputs). We use global attention. At every decoder step $t$, with
# decoder state $s_t$ and encoder states $H$ (rows, as everywhere):
#
# 1. scores with the dot score, $e_{ti} = s_t h_i^\top$, and the distribution
#    $\alpha_t = \mathrm{masked\_softmax}(e_t)$ over the real encoder steps;
# 2. the context $a_t = \sum_i \alpha_{ti} h_i$;
# 3. the **attentional state** $\tilde s_t = \tanh([a_t; s_t]\, W_c + b_c)$,
#    where $[a_t; s_t]$ concatenates the context (first) and the state along
#    the features, a row of $2d$ numbers;
# 4. the output distribution $p(y_t) = \mathrm{softmax}(\tilde s_t W_y + b_y)$.
#
# **Why context first?** Luong et al. write $\tanh(W_c[c_t; h_t])$: their
# $c_t$ is our context $a_t$ and their $h_t$ our state $s_t$ (we keep $h$ for
# the encoder). For a model trained from scratch the order makes no
# difference: the weights learn either way. For a layer *given* its weights
# (the checks give yours the reference's, and a saved model gives its own)
# it does: $[a_t; s_t]\, W_c = a_t W_c^{(1)} + s_t W_c^{(2)}$, where
# $W_c^{(1)}$ is the first $d$ rows of the kernel and $W_c^{(2)}$ the last
# $d$. Swapping the order multiplies the context by the rows meant for the
# state, a different function. The checks follow the paper's order, and name
# the swap when they see it.
#
# Because the query $s_t$ comes out of the decoder RNN, attention never feeds
# back into the recurrence, so with teacher forcing **all decoder steps are
# computed at once**: `query` is `(B, T_q, d)`, and every line above is one
# matrix product over the whole sequence.
#
# **Masks in Keras.** `Embedding(mask_zero=True)` attaches a padding mask to
# its output, and the encoder GRU passes it on. Keras hands a layer the mask
# of an argument `x` through the call argument named `x_mask`. Name your
# argument `values_mask` and the encoder's mask reaches you by itself; set
# `self.supports_masking = True` so that Keras passes the decoder's mask on
# to the loss.
#
# Weights (names as given, created in `build`, Keras kernels): `W_c`
# $(2d, u)$, `b_c` $(u,)$, `W_y` $(u, V)$, `b_y` $(V,)$, where `u = units`
# and `V = output_dim`. Initialise the biases with zeros.

# %% nbgrader={"grade_id": "luong_attention", "solution": true}
class LuongAttention(keras.layers.Layer):
    """Luong's global (dot) attention, attentional state and output distribution.

    Call arguments:
        query: decoder states `(B, Tq, d)`.
        values: encoder states `(B, Tk, d)`.
        values_mask: optional bool `(B, Tk)`, True on real encoder steps.
        return_attention_scores: also return the weights `(B, Tq, Tk)`.

    Returns:
        `(B, Tq, output_dim)` probabilities, and the weights if asked.
    """

    def __init__(self, units, output_dim, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.output_dim = output_dim
        self.supports_masking = True

    def build(self, query_shape, values_shape):
        ### BEGIN SOLUTION
        init = "glorot_uniform"
        both = query_shape[-1] + values_shape[-1]
        self.W_c = self.add_weight(name="W_c", shape=(both, self.units), initializer=init)
        self.b_c = self.add_weight(name="b_c", shape=(self.units,), initializer="zeros")
        self.W_y = self.add_weight(name="W_y", shape=(self.units, self.output_dim), initializer=init)
        self.b_y = self.add_weight(name="b_y", shape=(self.output_dim,), initializer="zeros")
        ### END SOLUTION

    def call(self, query, values, values_mask=None, return_attention_scores=False):
        ### BEGIN SOLUTION
        scores = ops.matmul(query, ops.swapaxes(values, -1, -2))  # (B, Tq, Tk)
        weights = masked_softmax(scores, values_mask)  # (B, Tq, Tk)
        context = ops.matmul(weights, values)  # (B, Tq, d)
        both = ops.concatenate([context, query], axis=-1)  # (B, Tq, 2d)
        attentional = ops.tanh(ops.matmul(both, self.W_c) + self.b_c)  # (B, Tq, u)
        probs = ops.softmax(ops.matmul(attentional, self.W_y) + self.b_y)  # (B, Tq, V)
        if return_attention_scores:
            return probs, weights
        return probs
        ### END SOLUTION

    def compute_mask(self, inputs, previous_mask=None):
        return previous_mask  # the decoder's padding mask still applies

    def get_config(self):
        ### BEGIN SOLUTION
        return {**super().get_config(), "units": self.units, "output_dim": self.output_dim}
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_luong_attention", "points": 2}
"""LuongAttention: without padding, with `values_mask`, and with a Keras mask in a functional model."""
check_luong_attention(LuongAttention)

# %% nbgrader={"grade_id": "hidden_luong_attention", "points": 1}
"""LuongAttention on other batch sizes, lengths and masks (hidden)."""
### BEGIN HIDDEN TESTS
check_luong_attention(LuongAttention, cases="hidden")
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 4: Bahdanau attention (2 points visible, 1 hidden)
#
# Bahdanau's decoder uses attention *inside* the recurrence: the context
# vector is an input of the RNN cell that computes $s_t$. So the query can
# only be the **previous** state $s_{t-1}$:
#
# $$e_{ti} = \tanh(s_{t-1} W_b + h_i W_c)\, w_a \qquad
#   \alpha_t = \mathrm{masked\_softmax}(e_t) \qquad
#   c_t = \sum_i \alpha_{ti} h_i$$
#
# (the paper: $e_{ti} = v_a^\top \tanh(W_a s_{i-1} + U_a h_j)$, with column
# vectors). This is the concat score again with other names, for **one**
# decoder step: `query` is `(B, d_s)`, `values` is `(B, T_k, d_h)`. Return
# the tuple `(context, weights)` of shapes `(B, d_h)` and `(B, T_k)`.
#
# Weights (Keras kernels, or the papers' transposes): `W_b` $(d_s, u)$,
# `W_c` $(d_h, u)$, `w_a` $(u,)$, no biases. A useful trick: $h_i W_c$ does
# not depend on the step, so a real decoder computes it once per sentence;
# here, simply compute it in `call`.

# %% nbgrader={"grade_id": "bahdanau_attention", "solution": true}
class BahdanauAttention(keras.layers.Layer):
    """Bahdanau's additive attention for one decoder step (query = s_{t-1})."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.supports_masking = True

    def build(self, query_shape, values_shape):
        ### BEGIN SOLUTION
        init = "glorot_uniform"
        self.W_b = self.add_weight(name="W_b", shape=(query_shape[-1], self.units), initializer=init)
        self.W_c = self.add_weight(name="W_c", shape=(values_shape[-1], self.units), initializer=init)
        self.w_a = self.add_weight(name="w_a", shape=(self.units,), initializer=init)
        ### END SOLUTION

    def call(self, query, values, values_mask=None):
        """(B, d_s), (B, Tk, d_h) -> context (B, d_h), weights (B, Tk)."""
        ### BEGIN SOLUTION
        q = ops.expand_dims(ops.matmul(query, self.W_b), -2)  # (B, 1, u)
        k = ops.matmul(values, self.W_c)  # (B, Tk, u)
        scores = ops.sum(ops.tanh(q + k) * self.w_a, axis=-1)  # (B, Tk)
        weights = masked_softmax(scores, values_mask)  # (B, Tk)
        context = ops.sum(ops.expand_dims(weights, -1) * values, axis=-2)  # (B, d_h)
        return context, weights
        ### END SOLUTION

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "units": self.units}


# %% nbgrader={"grade_id": "test_bahdanau_attention", "points": 2}
"""BahdanauAttention: context and weights, with and without padding."""
check_bahdanau_attention(BahdanauAttention)

# %% nbgrader={"grade_id": "hidden_bahdanau_attention", "points": 1}
"""BahdanauAttention with an all-padding sequence and a long encoder (hidden)."""
### BEGIN HIDDEN TESTS
check_bahdanau_attention(BahdanauAttention, cases="hidden")
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 5: one step of Bahdanau's decoder (2 points visible, 1 hidden)
#
# Put the pieces together. One decoder step receives the previous output
# token $y_{t-1}$, the previous state $s_{t-1}$ and the encoder states $H$:
#
# 1. $x_t = E[y_{t-1}]$, the embedding of the previous token;
# 2. $c_t, \alpha_t = \mathrm{attention}(s_{t-1}, H)$: attend with the
#    **previous** state;
# 3. $s_t = \mathrm{GRU}(s_{t-1}, [x_t; c_t])$: the cell reads the embedding
#    (first) **concatenated with the context**;
# 4. the **logits** $o_t = s_t W_o + b_o$: one unnormalised score per
#    character of the vocabulary; the softmax that turns them into
#    probabilities is left to the loss (`from_logits=True`), which computes
#    it more stably.
#
# **Why $[x_t; c_t]$ in this order?** Bahdanau et al. (their Appendix A)
# feed the cell $W E y_{i-1} + C c_i$: one matrix for the embedding of the
# previous word, one for the context. A `GRUCell` has one input kernel, of
# shape $(E + d_h, 3 \cdot \text{units})$ (the 3 gates' kernels side by
# side); multiplying it by $[x_t; c_t]$ is exactly the paper's sum, with the
# first $E$ rows playing $W$ on the embedding and the last $d_h$ rows
# playing $C$ on the context. Written in the paper's order, embedding first,
# the kernel's rows are in that order too; with the checks' given weights,
# $[c_t; x_t]$ would multiply the context by rows meant for the embedding
# (the sizes add up the same, so nothing crashes), and the checks name that
# swap.
#
# ```
#   y_{t-1} --Embedding--> x_t ---------------.
#                                              [x_t; c_t] --GRUCell--> s_t --Dense--> logits
#   s_{t-1} --BahdanauAttention(., H)--> c_t --'   ^
#      '-------------------------------------------'
# ```
#
# Use Keras sublayers, created in `build`: `keras.layers.Embedding`, your
# `BahdanauAttention`, `keras.layers.GRUCell(units)` (default settings) and
# `keras.layers.Dense(vocab_size)`. A `GRUCell` is called as
# `new_state, _ = cell(inputs, state)`. Return `(logits, new_state, weights)`.

# %% nbgrader={"grade_id": "bahdanau_decoder_step", "solution": true}
class BahdanauDecoderStep(keras.layers.Layer):
    """One step of Bahdanau's attention decoder."""

    def __init__(self, vocab_size, embedding_dim, units, attention_units, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.attention_units = attention_units
        self.supports_masking = True

    def build(self, tokens_shape, state_shape, values_shape):
        ### BEGIN SOLUTION
        self.embedding = keras.layers.Embedding(self.vocab_size, self.embedding_dim)
        self.embedding.build(tokens_shape)
        self.attention = BahdanauAttention(self.attention_units)
        self.attention.build(state_shape, values_shape)
        self.cell = keras.layers.GRUCell(self.units)
        self.cell.build((tokens_shape[0], self.embedding_dim + values_shape[-1]))
        self.output_layer = keras.layers.Dense(self.vocab_size)
        self.output_layer.build((tokens_shape[0], self.units))
        ### END SOLUTION

    def call(self, tokens, state, values, values_mask=None):
        """(B,), (B, units), (B, Tk, d_h) -> logits (B, V), state (B, units), weights (B, Tk)."""
        ### BEGIN SOLUTION
        x = self.embedding(tokens)  # (B, E)
        context, weights = self.attention(state, values, values_mask=values_mask)
        new_state, _ = self.cell(ops.concatenate([x, context], axis=-1), state)
        return self.output_layer(new_state), new_state, weights
        ### END SOLUTION

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def get_config(self):
        config = {
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "attention_units": self.attention_units,
        }
        return {**super().get_config(), **config}


# %% nbgrader={"grade_id": "test_bahdanau_decoder_step", "points": 2}
"""BahdanauDecoderStep: logits, new state and attention weights of one step."""
check_bahdanau_decoder_step(BahdanauDecoderStep)

# %% nbgrader={"grade_id": "hidden_bahdanau_decoder_step", "points": 1}
"""BahdanauDecoderStep on other batch sizes, encoder lengths and masks (hidden)."""
### BEGIN HIDDEN TESTS
check_bahdanau_decoder_step(BahdanauDecoderStep, cases="hidden")
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4. Training with attention
#
# Now the same encoder-decoder as in Part 1, with **your** `LuongAttention`
# on top of the decoder, and without the copies of $h_T$: the encoder returns
# all its states $H$ (with their padding mask, from `mask_zero=True`), the
# decoder starts from the last one as before, and at every step attends over
# all of them. Both models train on the same batches for the same number of
# epochs.

# %%
lesson.draw_encoder_decoder(attention=True)
plt.show()


# %%
def attention_encoder_decoder():
    sources = keras.Input(shape=(None,), dtype="int32", name="sources")
    decoder_inputs = keras.Input(shape=(None,), dtype="int32", name="decoder_inputs")
    x = keras.layers.Embedding(len(source_vocab), 32, mask_zero=True)(sources)
    H, h_last = keras.layers.GRU(UNITS, return_sequences=True, return_state=True)(x)  # (B, Tk, units)
    y = keras.layers.Embedding(len(target_vocab), 16, mask_zero=True)(decoder_inputs)
    s = keras.layers.GRU(UNITS, return_sequences=True)(y, initial_state=h_last)  # (B, Tq, units)
    probs, weights = LuongAttention(UNITS, len(target_vocab))(s, H, return_attention_scores=True)
    model = keras.Model([sources, decoder_inputs], probs, name="attention")
    inspector = keras.Model([sources, decoder_inputs], weights, name="attention_weights")
    return model, inspector


if RUN_EXPERIMENTS:
    keras.utils.set_random_seed(0)
    attention_model, attention_inspector = attention_encoder_decoder()
    attention_history = compile_and_fit(attention_model)
    lesson.plot_history({"plain": plain_history, "attention": attention_history})
    plt.show()

# %% [markdown]
# The learning curves show per-character accuracy with teacher forcing. Now
# whole dates, decoded greedily, by the length of their input:

# %%
if RUN_EXPERIMENTS:
    _, attention_correct = test_results(attention_model)
    print(f"with attention: {attention_correct.mean():.2%} of {len(attention_correct)} test dates "
          f"exactly right (plain: {plain_correct.mean():.2%})")
    lesson.plot_accuracy_by_length({
        "plain encoder-decoder": lesson.accuracy_by_length(test_lengths, plain_correct, LENGTH_EDGES),
        "with Luong attention": lesson.accuracy_by_length(test_lengths, attention_correct, LENGTH_EDGES),
    })
    plt.show()

# %% [markdown]
# With attention the accuracy no longer depends on the input's length: the
# decoder reads the characters it needs, wherever they are, instead of
# remembering them.
#
# ### Where does the model look?
#
# Each row of a heatmap is one output character, each column an input
# character; the colour is the attention weight $\alpha_{ti}$. Read a row:
# while writing a month the model looks at the month's name or number; while
# writing a year, at the year. Notice the two-digit year, the spelled-out
# date, and how in a pair of dates the second half of the output looks at the
# second date. The last example is a Korean date, `1979년 5월 3일`: the year
# comes first, each number followed by its unit (년 year, 월 month, 일 day),
# so while writing the year the model looks at the start of the input, while
# writing the month at 5 and 월, and while writing the day at 3 and 일. (The labels need a font with
# Hangul glyphs; `autograder.lesson` picks one when it is installed, and
# without one they show as boxes.)

# %%
if RUN_EXPERIMENTS:
    may_3, june_21, sep_11 = datetime.date(1979, 5, 3), datetime.date(2004, 6, 21), datetime.date(2001, 9, 11)
    examples = [
        dates.format_date(may_3, "weekday-month-d-yyyy"),
        dates.format_date(may_3, "slash-m-d-yy") + " and " + dates.format_date(june_21, "d-mon-yyyy-upper"),
        dates.format_date(june_21, "spelled"),
        dates.format_date(may_3, "dots-d-m-yyyy") + " and " + dates.format_date(sep_11, "month-dth-yyyy"),
        dates.format_date(may_3, "korean"),
    ]
    x_examples = dates.encode_sources(examples, source_vocab)
    predicted, attention_maps = lesson_seq2seq.decode_with_attention(
        attention_model, attention_inspector, x_examples, y_out_test.shape[1]
    )
    fig, axes = plt.subplots(len(examples), 1, figsize=(10, 3.4 * len(examples)))
    for ax, text, ids, weights in zip(axes, examples, predicted, attention_maps, strict=True):
        output = target_vocab.decode(ids)
        lesson.plot_attention(weights[: len(output) + 1, : len(text)], text, output + "⏎", ax=ax,
                              title=f"{text!r} -> {output!r}")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Part 5. Bahdanau's decoder, one step at a time
#
# Your `BahdanauDecoderStep` cannot be run over a whole sequence at once: each
# step needs the state the previous step produced. Generation is a loop. Here
# it is with an untrained step (random weights, so the output is nonsense).

# %%
encoder = keras.Sequential([
    keras.layers.Embedding(len(source_vocab), 32, mask_zero=True),
    keras.layers.GRU(UNITS, return_sequences=True),
])
step = BahdanauDecoderStep(len(target_vocab), 16, UNITS, attention_units=32)

batch = x_test[:3]
H = encoder(batch)  # (3, Tk, units), with its padding mask attached
state = ops.zeros((3, UNITS))
tokens = ops.ones((3,), dtype="int32")  # <start>
outputs, alphas = [], []
for _ in range(10):
    logits, state, alpha = step(tokens, state, H, values_mask=batch != 0)
    tokens = ops.cast(ops.argmax(logits, axis=-1), "int32")
    outputs.append(tokens)
    alphas.append(alpha)
print("untrained outputs:", [target_vocab.decode(ids) for ids in ops.convert_to_numpy(ops.stack(outputs, 1))])
print("attention weights per step:", tuple(ops.stack(alphas, 1).shape), "(B, steps, Tk)")

# %% [markdown]
# ### Training Bahdanau's decoder, and Luong's against it
#
# Training runs the same loop with the *true* previous characters (teacher
# forcing) over every step of the target, inside the model:
# `lesson_seq2seq.StepDecoder` calls your `BahdanauDecoderStep` once per
# output character (a `tf.scan` over the time axis, so `model.fit` can
# differentiate through the whole loop). The encoder is the Luong model's
# (the same embedding and GRU, the decoder starting from the last encoder
# state), and the data, batches, optimiser and learning rate are the same;
# only the decoder differs. Luong's model ran its decoder GRU over the whole
# target in one call and attended afterwards; here every step waits for the
# previous one, so an epoch costs more, and the model trains for
# `BAHDANAU_EPOCHS` epochs to stay within a minute.

# %%
BAHDANAU_EPOCHS = 1 if lesson.QUICK else 5

if RUN_EXPERIMENTS:
    keras.utils.set_random_seed(0)
    bahdanau_step = BahdanauDecoderStep(len(target_vocab), 16, UNITS, attention_units=32)
    bahdanau_model, bahdanau_inspector, bahdanau_encoder = lesson_seq2seq.bahdanau_encoder_decoder(
        bahdanau_step, len(source_vocab), UNITS
    )
    bahdanau_history = compile_and_fit(bahdanau_model, epochs=BAHDANAU_EPOCHS)
    # decoding runs your step on its own predictions, carrying its state
    ids, _ = lesson_seq2seq.step_greedy_decode(bahdanau_encoder, bahdanau_step, x_test, y_out_test.shape[1])
    _, bahdanau_correct = lesson.date_results(test.sources, test.targets, [target_vocab.decode(r) for r in ids])
    luong_at_same_epoch = attention_history.history["val_accuracy"][BAHDANAU_EPOCHS - 1]
    print(f"Bahdanau after {BAHDANAU_EPOCHS} epochs: {bahdanau_correct.mean():.2%} of "
          f"{len(bahdanau_correct)} test dates exactly right")
    print(f"validation accuracy per character after {BAHDANAU_EPOCHS} epochs: Bahdanau "
          f"{bahdanau_history.history['val_accuracy'][-1]:.2%}, Luong {luong_at_same_epoch:.2%}")
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    lesson.plot_history({"Luong": attention_history, "Bahdanau": bahdanau_history}, ax=axes[0])
    axes[0].set_title("learning curves")
    lesson.plot_accuracy_by_length({
        "Luong": lesson.accuracy_by_length(test_lengths, attention_correct, LENGTH_EDGES),
        f"Bahdanau ({BAHDANAU_EPOCHS} epochs)": lesson.accuracy_by_length(
            test_lengths, bahdanau_correct, LENGTH_EDGES
        ),
    }, ax=axes[1])
    plt.tight_layout()
    plt.show()

# %% [markdown]
# **What to expect** (measured on 2 shared CPU cores, `BAHDANAU_EPOCHS = 5`).
# Epoch for epoch the two models learn alike: validation accuracy per
# character 72.9%, 96.3%, 98.1%, 99.6%, 99.76% for Bahdanau against 88.5%,
# 97.8%, 98.8%, 99.3%, 99.75% for Luong; Bahdanau starts slower and has
# caught up by epoch 5. But an epoch of Bahdanau's model costs about twice
# the computation of Luong's (26 s of CPU time for two epochs against 14 s):
# its ~22 decoder steps each wait for the previous one, with the attention
# inside the loop, where Luong's decoder GRU runs first and the attention
# then covers all steps in a few matrix products. In the same minute it
# trains half as many epochs: **96.85% of the 2,000 test dates exactly
# right after 5 epochs** (97.35% after 6; the same in every run we made),
# against Luong's 98.2% to 99.55% after 10 (its last epochs differ from run
# to run: TensorFlow's multithreaded CPU kernels do not add in a fixed
# order, and a small difference grows over epochs) and the plain model's
# 66.2%. The right-hand plot shows where the
# difference lies: on inputs up to 35 characters both are above 99%; on the
# longest ones, pairs of long dates, Bahdanau's model falls to about 93%
# (35 to 50 characters) and 68% (50 and more) after 5 epochs, where Luong's
# stays at 99%. Its attention there is still diffuse (the heatmaps below):
# with the previous state as its query it must decide where to look before
# it has read the character it just wrote. One more epoch brings it to
# 97.35% overall.
#
# If your Bahdanau model stays near the plain model's accuracy, its
# attention does not reach the decoder: check that the step attends with
# the *previous* state and feeds $[x_t; c_t]$ to the cell (the checks above
# test one step; here a mistake compounds over 22). A curve that dips for
# an epoch and recovers is Adam at this learning rate (Luong's validation
# accuracy fell from 99.9% to 99.3% at epoch 9 in one of our runs), not a
# bug.
#
# Where does each model look? The same input, one heatmap per model. A row
# of Bahdanau's map is the attention computed *before* the character of
# that row is written, with the previous state $s_{t-1}$ as the query; a row
# of Luong's is computed after the decoder RNN has read the previous
# character, with $s_t$.

# %%
if RUN_EXPERIMENTS:
    text = "5/3/79 and 21-JUN-2004"  # the pair of dates of Part 4
    x_text = dates.encode_sources([text], source_vocab)
    decoded = {
        "Luong": lesson_seq2seq.decode_with_attention(
            attention_model, attention_inspector, x_text, y_out_test.shape[1]
        ),
        "Bahdanau": lesson_seq2seq.step_greedy_decode(
            bahdanau_encoder, bahdanau_step, x_text, y_out_test.shape[1]
        ),
    }
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.6))
    for ax, (name, (ids, maps)) in zip(axes, decoded.items(), strict=True):
        output = target_vocab.decode(ids[0])
        lesson.plot_attention(maps[0][: len(output) + 1, : len(text)], text, output + "⏎", ax=ax,
                              title=f"{name}: {output!r}")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Summary
#
# * A plain encoder-decoder passes the whole input through one vector, and
#   its accuracy falls as inputs get longer.
# * Attention scores the decoder's query against every encoder state, turns
#   the scores into a distribution with a (masked) softmax, and reads a
#   context vector as the weighted average: the decoder chooses where to look
#   at every step.
# * Luong attention queries with the current state $s_t$ after the RNN (so it
#   trains over a whole sequence at once); Bahdanau attention queries with the
#   previous state $s_{t-1}$ and feeds the context into the RNN, one step at a
#   time. Trained on the same dates, it learns as fast per epoch (99.76%
#   validation accuracy per character after 5 epochs, Luong 99.75%) but each
#   epoch costs twice as much: 96.85% exact match after 5 epochs against
#   Luong's 98.2% to 99.55% after 10.
# * The papers write columns and $W x$; Keras writes rows and $x W$ with a
#   kernel $(d_\text{in}, d_\text{out})$, the papers' matrix transposed.
#   Either works if the shape you create and the product you compute agree.
#
# Next, in Assignment 2, the queries, keys and values all come from one
# sequence (**self-attention**), the score is the scaled dot product, and
# several attentions run side by side (**multi-head attention**): the
# building blocks of the Transformer.
