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
# token) and False on padding, as Keras uses it.

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

TRAIN = not lesson.grading()  # False while nbgrader grades: training is skipped
print("training cells will run" if TRAIN else "grading: training cells are skipped")

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
# Each character becomes an integer id; id 0 is padding. The decoder works
# with *teacher forcing*: it receives the target shifted right by one
# (starting with `<start>`) and learns to predict the next character at every
# step.

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
# An encoder RNN reads the input $x_1 \dots x_T$ and updates its state,
# $h_i = \mathrm{GRU}(h_{i-1}, x_i)$. A decoder RNN starts from the encoder's
# **last state only**, $s_0 = h_T$, and generates the output one character at
# a time: $s_t = \mathrm{GRU}(s_{t-1}, [y_{t-1}; h_T])$,
# $p(y_t) = \mathrm{softmax}(W s_t + b)$. (Feeding $h_T$ to every step, as
# Cho et al. (2014) do, keeps the decoder from forgetting it; it is still the
# only thing the decoder knows of the input.)
#
# Everything the decoder will ever know about the input must pass through the
# fixed-size vector $h_T$ (64 numbers here): this is the **bottleneck**. One
# date fits. Two dates, the first of them read long ago, are another matter.

# %%
lesson.draw_encoder_decoder(attention=False)
plt.show()

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


def compile_and_fit(model):
    model.compile(
        optimizer=keras.optimizers.Adam(lesson.LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model.fit(
        lesson.bucketed_batches(x_train, y_in_train, y_out_train, lesson.BATCH_SIZE),
        validation_data=lesson.bucketed_batches(x_val, y_in_val, y_out_val, 512),
        epochs=lesson.EPOCHS,
        shuffle=False,  # the batches are already shuffled, every epoch
    )


# %%
if TRAIN:
    keras.utils.set_random_seed(0)
    plain = plain_encoder_decoder()
    plain_history = compile_and_fit(plain)

# %% [markdown]
# The accuracy printed during training is per character, with the true
# previous characters fed in. What matters is whole dates produced on the
# model's own: decode the test inputs greedily (feed back the most likely
# character at each step) and count a date as right only if all ten
# characters are. Then split the test dates by the length of their input.

# %%
LENGTH_EDGES = [0, 15, 25, 35, 50, 120]


def test_results(model):
    ids = lesson.greedy_decode(model, x_test, y_out_test.shape[1], start_id=1)
    predictions = [target_vocab.decode(row) for row in ids]
    return lesson.date_results(test.sources, test.targets, predictions)


if TRAIN:
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
# collapses beyond 20 to 30 words). The cure is to let the decoder **look back
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
# ## Part 3. Exercises
#
# ### Exercise 1: score functions (3 points visible, 3 hidden)
#
# Luong et al. compare three ways to score a decoder state $s_t$ (size $d_q$)
# against an encoder state $h_i$ (size $d_k$):
#
# | name | score$(s_t, h_i)$ | weights |
# |---|---|---|
# | dot | $s_t^\top h_i$ (needs $d_q = d_k$) | none |
# | general | $s_t^\top W_a h_i$ | `W_a`: $(d_k, d_q)$ |
# | concat (additive) | $v_a^\top \tanh(W_1 s_t + W_2 h_i)$ | `W_1`: $(d_q, u)$, `W_2`: $(d_k, u)$, `v_a`: $(u,)$ |
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
# by shape), no biases. Keras calls `build(query_shape, keys_shape)` with the
# shapes of the first call's arguments.

# %% nbgrader={"grade_id": "score_functions", "solution": true}
class DotScore(keras.layers.Layer):
    """Luong's dot score: `score(s_t, h_i) = s_t . h_i`."""

    def call(self, query, keys):
        """(B, Tq, d), (B, Tk, d) -> (B, Tq, Tk)."""
        ### BEGIN SOLUTION
        return ops.matmul(query, ops.swapaxes(keys, -1, -2))
        ### END SOLUTION


class GeneralScore(keras.layers.Layer):
    """Luong's general score: `score(s_t, h_i) = s_t . (W_a h_i)`."""

    def build(self, query_shape, keys_shape):
        """Create `W_a` of shape (d_k, d_q)."""
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
    """Concat (additive) score: `v_a . tanh(W_1 s_t + W_2 h_i)`."""

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
        """Everything `__init__` needs to rebuild the layer."""
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
"""GeneralScore with d_q != d_k: W_a's shape and the values."""
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
# Luong's *global attention* works on top of the decoder RNN. At every
# decoder step $t$, with decoder state $s_t$ and encoder states $H$:
#
# 1. scores with the dot score, $e_{ti} = s_t^\top h_i$, and the distribution
#    $\alpha_t = \mathrm{masked\_softmax}(e_t)$ over the real encoder steps;
# 2. the context $a_t = \sum_i \alpha_{ti} h_i$;
# 3. the **attentional state** $\tilde s_t = \tanh(W_c [a_t; s_t] + b_c)$,
#    where $[a_t; s_t]$ concatenates the context (first) and the state;
# 4. the output distribution $p(y_t) = \mathrm{softmax}(W_y \tilde s_t + b_y)$.
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
# Weights (names as given, created in `build`): `W_c` $(2d, u)$, `b_c`
# $(u,)$, `W_y` $(u, V)$, `b_y` $(V,)$, where `u = units` and
# `V = output_dim`. Initialise the biases with zeros.

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
# $$e_{ti} = w_a^\top \tanh(W_b\, s_{t-1} + W_c\, h_i) \qquad
#   \alpha_t = \mathrm{masked\_softmax}(e_t) \qquad
#   c_t = \sum_i \alpha_{ti} h_i$$
#
# This is the concat score again with other names, for **one** decoder step:
# `query` is `(B, d_s)`, `values` is `(B, T_k, d_h)`. Return the tuple
# `(context, weights)` of shapes `(B, d_h)` and `(B, T_k)`.
#
# Weights: `W_b` $(d_s, u)$, `W_c` $(d_h, u)$, `w_a` $(u,)$, no biases.
# A useful trick: $W_c h_i$ does not depend on the step, so a real decoder
# computes it once per sentence; here, simply compute it in `call`.

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
# 4. the logits $o_t = W_o s_t + b_o$ (the loss applies the softmax).
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


if TRAIN:
    keras.utils.set_random_seed(0)
    attention_model, attention_inspector = attention_encoder_decoder()
    attention_history = compile_and_fit(attention_model)
    lesson.plot_history({"plain": plain_history, "attention": attention_history})
    plt.show()

# %% [markdown]
# The learning curves show per-character accuracy with teacher forcing. Now
# whole dates, decoded greedily, by the length of their input:

# %%
if TRAIN:
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
# second date. (Try a Korean date too: the model reads it well, but
# matplotlib's default font has no Hangul glyphs to label the columns with.)

# %%
if TRAIN:
    may_3, june_21, sep_11 = datetime.date(1979, 5, 3), datetime.date(2004, 6, 21), datetime.date(2001, 9, 11)
    examples = [
        dates.format_date(may_3, "weekday-month-d-yyyy"),
        dates.format_date(may_3, "slash-m-d-yy") + " and " + dates.format_date(june_21, "d-mon-yyyy-upper"),
        dates.format_date(june_21, "spelled"),
        dates.format_date(may_3, "dots-d-m-yyyy") + " and " + dates.format_date(sep_11, "month-dth-yyyy"),
    ]
    x_examples = dates.encode_sources(examples, source_vocab)
    predicted = lesson.greedy_decode(attention_model, x_examples, y_out_test.shape[1], start_id=1)
    known = np.concatenate([np.ones((len(examples), 1), "int32"), predicted[:, :-1]], axis=1)
    attention_maps = attention_inspector.predict([x_examples, known], verbose=0)
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
# it is with an untrained step (random weights, so the output is nonsense);
# training it means running the same loop under `tf.GradientTape` with the
# true previous tokens (teacher forcing), which costs one cell call per
# output character.

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
#   previous state $s_{t-1}$ and feeds the context into the RNN.
#
# Next, in Assignment 2, the queries, keys and values all come from one
# sequence (**self-attention**), the score is the scaled dot product, and
# several attentions run side by side (**multi-head attention**): the
# building blocks of the Transformer.
