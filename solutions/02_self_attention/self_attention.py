# %% [markdown]
# # Assignment 2: Self-attention and multi-head attention
#
# In Assignment 1 a decoder state looked back at the encoder's states. In this
# assignment every position of a sequence looks at every other position of the
# *same* sequence: **self-attention**, the operation the Transformer
# (Vaswani et al., *Attention Is All You Need*, 2017) is built from. You write
# it yourself, all of it, and the checks prove your `MultiHeadAttention` equal
# to Keras's own `keras.layers.MultiHeadAttention`, weight for weight. From
# Assignment 3 on we use Keras's layer (and its fused fast path) knowing
# exactly what it computes.
#
# **How this notebook works.**
# * Cells that say `# YOUR CODE HERE` / `raise NotImplementedError()` are yours.
#   Replace those two lines with your code; keep the names and signatures.
# * Each exercise is followed by a **check cell**. Run it: it gives your code
#   fixed inputs (and your layer fixed weights), compares the outputs with the
#   reference and, when they differ, shows the inputs, the largest difference
#   and the most likely mistake.
# * When your notebook is graded, the check cells run again, together with
#   **hidden tests** (other shapes, masks, head counts, a compiled call).
# * While grading, the check cells only *record* what your code outputs; the
#   grader compares those outputs with the reference in its own process, and
#   reads (without running) every cell you wrote. A graded answer must be
#   ordinary Keras code: it may import only `numpy`, `keras`, `tensorflow`,
#   `math`, `matplotlib`, the standard helpers (`functools`, `itertools`,
#   `collections`, `copy`, `json`, ...) and `autograder.lesson*`; it must
#   not call `exec`, `eval`, `open`, `globals` or `get_ipython`, use
#   `setattr` on anything but its own objects (`setattr(self, f"head_{i}",
#   ...)` is fine), reassign anything of an imported module or any
#   `__dunder__` attribute, rebind a name the notebook imported or a `check_`
#   function at the top level of a cell, or define `__array__`. Shell
#   commands and magics: `!pip install NAME`, `!nvidia-smi`, `%time`,
#   `%timeit`, `%%capture` and a few more harmless ones. Such code fails the
#   **integrity check** of every test after it. An answer built on
#   `keras.layers.MultiHeadAttention`, `Attention` or
#   `keras.ops.dot_product_attention` scores 0 for that exercise (your own
#   class `MultiHeadAttention` is the exercise).
# * The experiments (timing, training) are skipped while grading.
#
# **Conventions, the whole course.** Shapes: `B` batch, `T` query positions,
# `S` key/value positions, `h` heads, `d_k`, `d_v` the size of one head,
# `d_model` the model's width. A **mask is True where attention is allowed**
# (a real token, a position in the past), as Keras uses it.

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

from autograder import lesson_attention as la
from autograder.checks import (
    check_masks,
    check_multi_head_attention,
    check_scaled_dot_product_attention,
)
from autograder.data import lookup

RUN_EXPERIMENTS = not lesson.grading()  # skipped while nbgrader grades
keras.utils.set_random_seed(0)

# %% [markdown]
# ## 1. From seq2seq attention to self-attention
#
# Attention takes **queries**, **keys** and **values**. Each query scores every
# key, the scores become weights with a softmax, and the answer is the
# weighted average of the values:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V$$
#
# In Assignment 1 the query was the decoder's state and the keys and values were
# the encoder's states. In **self-attention** queries, keys and values all come
# from the same sequence $X$ (one row per position), through three learned
# projections:
#
# $$Q = X W^Q,\qquad K = X W^K,\qquad V = X W^V.$$
#
# Position $i$'s output is a mixture of every position's value, weighted by how
# well $i$'s query matches each key. Nothing is sequential: all positions are
# computed at once, as one matrix product.
#
# A Transformer uses attention three ways:
#
# | | queries from | keys and values from | mask |
# |---|---|---|---|
# | encoder self-attention | the source | the source | padding of the source |
# | masked decoder self-attention | the target so far | the target so far | padding **and** the future (causal) |
# | encoder-decoder (cross) attention | the decoder | the encoder's output | padding of the source |
#
# ### Why divide by $\sqrt{d_k}$?
#
# If the entries of $q$ and $k$ are independent with variance 1, then
# $q \cdot k = \sum_{i=1}^{d_k} q_i k_i$ has variance $d_k$. With $d_k = 512$
# scores are spread over about $\pm 45$; the softmax of such numbers is one
# weight near 1 and the rest near 0, and its gradient vanishes. Dividing by
# $\sqrt{d_k}$ brings the variance back to 1, whatever the head size:

# %%
la.plot_scaling()
plt.show()

# %% [markdown]
# ## 2. Exercise: scaled dot-product attention
#
# Write `scaled_dot_product_attention(q, k, v, mask=None)` returning
# `(output, weights)`:
#
# * `q` is `(..., T, d_k)`, `k` is `(..., S, d_k)`, `v` is `(..., S, d_v)`, with
#   **any number of leading axes** (none, a batch, a batch and heads, ...);
# * `weights = softmax(q k^T / sqrt(d_k))` over the **last** axis (the keys),
#   shape `(..., T, S)`; `output = weights v`, shape `(..., T, d_v)`;
# * `mask` (optional) is boolean and broadcasts to `(..., T, S)`: where it is
#   False the weight must be exactly 0. Put a large negative number (`-1e9`,
#   not `-inf`, which turns a fully masked row into NaN) in the masked scores
#   before the softmax and zero the masked weights after it, so that a query
#   with nothing to attend to gets all-zero weights.
#
# `ops.matmul` multiplies the last two axes and broadcasts the leading ones;
# `ops.swapaxes(k, -1, -2)` transposes the last two.

# %% nbgrader={"grade_id": "scaled_dot_product_attention", "solution": true}
def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k)) v; returns (output, weights)."""
    ### BEGIN SOLUTION
    d_k = ops.cast(ops.shape(q)[-1], q.dtype)
    scores = ops.matmul(q, ops.swapaxes(k, -1, -2)) / ops.sqrt(d_k)
    if mask is None:
        weights = ops.softmax(scores, axis=-1)
    else:
        mask = ops.broadcast_to(ops.cast(mask, "bool"), ops.shape(scores))
        weights = ops.softmax(ops.where(mask, scores, -1e9), axis=-1)
        weights = ops.where(mask, weights, ops.zeros_like(weights))
    return ops.matmul(weights, v), weights
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_scaled_dot_product_attention", "points": 1}
"""scaled_dot_product_attention: (B, T, d), (B, h, T, d) with padding, a causal mask."""
check_scaled_dot_product_attention(scaled_dot_product_attention)

# %% nbgrader={"grade_id": "hidden_scaled_dot_product_attention", "points": 1}
"""scaled_dot_product_attention: no batch axis with a (1, S) mask, d_k = 64 with a (B, T, S) mask, three leading axes (hidden)."""
### BEGIN HIDDEN TESTS
check_scaled_dot_product_attention(scaled_dot_product_attention, cases="hidden")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Exercise: masks
#
# Two masks, and their combination, each **True where attention is allowed**:
#
# * `padding_mask(token_ids, pad_id=0)`: `(B, 1, S)`, True on real tokens.
#   The middle axis of size 1 broadcasts over the queries: *every* query
#   ignores the padded *keys*. (Masking queries instead would leave padded keys
#   in everyone's average.)
# * `causal_mask(length)`: `(T, T)`, True where key position $\le$ query
#   position: a position sees itself and the past, never the future.
# * `combined_mask(token_ids, pad_id=0)`: `(B, T, T)`, both at once (the
#   decoder's self-attention mask): allowed only where *both* allow it.
#
# Mixing conventions (True = masked in one place, True = allowed in another) is
# the classic bug of Transformer code: the decoder then sees the token it must
# predict, training accuracy climbs to nearly 100%, and generation is garbage.
# Off by one is as bad: `key <= query + 1` lets each position read the next
# token. The checks catch both.

# %% nbgrader={"grade_id": "masks", "solution": true}
def padding_mask(token_ids, pad_id=0):
    """(B, S) ids -> (B, 1, S) bool, True on real tokens."""
    ### BEGIN SOLUTION
    return ops.expand_dims(ops.not_equal(token_ids, pad_id), -2)
    ### END SOLUTION


def causal_mask(length):
    """(T, T) bool, True where key position <= query position."""
    ### BEGIN SOLUTION
    return ops.greater_equal(ops.arange(length)[:, None], ops.arange(length)[None, :])
    ### END SOLUTION


def combined_mask(token_ids, pad_id=0):
    """(B, T, T) bool: padding of the keys and no future."""
    ### BEGIN SOLUTION
    length = ops.shape(token_ids)[-1]
    return ops.logical_and(padding_mask(token_ids, pad_id), causal_mask(length))
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_masks", "points": 1}
"""Masks for token ids [[5, 3, 9, 0, 0], [7, 1, 4, 2, 8]] and causal_mask(4)."""
check_masks(padding_mask, causal_mask, combined_mask)

# %% nbgrader={"grade_id": "hidden_masks", "points": 1}
"""Masks: an all-padding sequence and pad_id=9, causal_mask(1) and causal_mask(6) (hidden)."""
### BEGIN HIDDEN TESTS
check_masks(padding_mask, causal_mask, combined_mask, cases="hidden")
### END HIDDEN TESTS

# %% [markdown]
# The decoder's mask for the ids `[[5, 3, 9, 0, 0]]`, drawn (dark = may attend):

# %%
if RUN_EXPERIMENTS:
    ids = np.array([[5, 3, 9, 0, 0]])
    la.plot_masks(
        {
            "padding_mask (broadcast)": np.broadcast_to(padding_mask(ids)[0], (5, 5)),
            "causal_mask(5)": causal_mask(5),
            "combined_mask": combined_mask(ids)[0],
        }
    )
    plt.show()

# %% [markdown]
# ## 4. Exercise: multi-head attention
#
# One attention can only average one way. **Multi-head attention** runs $h$
# attentions side by side, each in its own learned subspace of size
# $d_k = d_{model} / h$ (here `key_dim`), and mixes their results:
#
# $$\mathrm{head}_i = \mathrm{Attention}(Q W_i^Q, K W_i^K, V W_i^V), \qquad
# \mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h)\, W^O$$
#
# The heads are **not** computed in a loop. Project once with all heads'
# weights, reshape the last axis into heads, and let one batched matmul run
# over the head axis:
#
# ```
# query (B, T, d_model) --W_q--> (B, T, h*d_k) --reshape--> (B, T, h, d_k) --transpose--> (B, h, T, d_k)
# value (B, S, d_v_in)  --W_k--> keys   (B, h, S, d_k)
#                       --W_v--> values (B, h, S, d_v)
# scaled_dot_product_attention over (B, h, ...)  ->  context (B, h, T, d_v), weights (B, h, T, S)
# context --transpose--> (B, T, h, d_v) --reshape--> (B, T, h*d_v) --W_o--> (B, T, output_dim)
# ```
#
# Write `MultiHeadAttention(num_heads, key_dim, value_dim=None,
# output_dim=None)` as a Keras layer whose `call` follows Keras's:
# `call(query, value, key=None, query_mask=None, value_mask=None,
# attention_mask=None, use_causal_mask=False, return_attention_scores=False)`.
#
# * `key` defaults to `value`; `value_dim` defaults to `key_dim`;
#   `output_dim` defaults to the query's last dimension.
# * Weights, **with these names** (the checks give your layer known weights by
#   name): `W_q`, `W_k`, `W_v`, `W_o` and biases `b_q`, `b_k`, `b_v`, `b_o`.
#   Either Keras's layout, `W_q` `(d_model, h, d_k)`, `b_q` `(h, d_k)`, `W_o`
#   `(h, d_v, output_dim)`, or the heads merged, `W_q` `(d_model, h * d_k)`,
#   `b_q` `(h * d_k,)`, `W_o` `(h * d_v, output_dim)`: the same numbers, if you
#   split with `reshape(..., h, d_k)` (heads first).
# * Masks, all combined with a logical *and* into one `(B, T, S)` mask, then
#   given to every head: `query_mask` `(B, T)` and `value_mask` `(B, S)` (Keras
#   fills them from the inputs' Keras masks, e.g. after an
#   `Embedding(mask_zero=True)`), `attention_mask` `(B, T, S)`, and the causal
#   mask when `use_causal_mask`.
# * Return the output, and with `return_attention_scores=True` also the
#   weights `(B, h, T, S)`.
# * `get_config` returns the constructor's arguments; set
#   `self.supports_masking = True`.

# %% nbgrader={"grade_id": "multi_head_attention", "solution": true}
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, every head at once."""

    def __init__(self, num_heads, key_dim, value_dim=None, output_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim or key_dim
        self.output_dim = output_dim
        self.supports_masking = True

    def build(self, query_shape, value_shape, key_shape=None):
        ### BEGIN SOLUTION
        key_shape = value_shape if key_shape is None else key_shape
        h, dk, dv = self.num_heads, self.key_dim, self.value_dim
        out = self.output_dim or query_shape[-1]

        def weight(name, shape, init="glorot_uniform"):
            return self.add_weight(name=name, shape=shape, initializer=init)

        self.W_q = weight("W_q", (query_shape[-1], h, dk))
        self.W_k = weight("W_k", (key_shape[-1], h, dk))
        self.W_v = weight("W_v", (value_shape[-1], h, dv))
        self.W_o = weight("W_o", (h, dv, out))
        self.b_q = weight("b_q", (h, dk), "zeros")
        self.b_k = weight("b_k", (h, dk), "zeros")
        self.b_v = weight("b_v", (h, dv), "zeros")
        self.b_o = weight("b_o", (out,), "zeros")
        ### END SOLUTION

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
    ):
        ### BEGIN SOLUTION
        key = value if key is None else key
        # (B, T, d) x (d, h, k) -> (B, h, T, k): project and split in one einsum
        q = ops.einsum("btd,dhk->bhtk", query, self.W_q) + self.b_q[:, None]
        k = ops.einsum("bsd,dhk->bhsk", key, self.W_k) + self.b_k[:, None]
        v = ops.einsum("bsd,dhk->bhsk", value, self.W_v) + self.b_v[:, None]
        t, s = ops.shape(query)[1], ops.shape(value)[1]
        mask = ops.ones((ops.shape(query)[0], t, s), "bool")
        if query_mask is not None:
            mask = ops.logical_and(mask, ops.cast(query_mask, "bool")[:, :, None])
        if value_mask is not None:
            mask = ops.logical_and(mask, ops.cast(value_mask, "bool")[:, None, :])
        if attention_mask is not None:
            mask = ops.logical_and(mask, ops.cast(attention_mask, "bool"))
        if use_causal_mask:
            future = ops.greater_equal(ops.arange(t)[:, None], ops.arange(s)[None, :])
            mask = ops.logical_and(mask, future[None])
        context, weights = scaled_dot_product_attention(q, k, v, mask[:, None])
        output = ops.einsum("bhtv,hvo->bto", context, self.W_o) + self.b_o
        if return_attention_scores:
            return output, weights
        return output
        ### END SOLUTION

    def compute_mask(self, inputs, previous_mask=None):
        return previous_mask  # the query's padding carries on

    def get_config(self):
        ### BEGIN SOLUTION
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "output_dim": self.output_dim,
        }
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_multi_head_attention", "points": 2}
"""MultiHeadAttention against keras.layers.MultiHeadAttention: self-, cross-, causal, attention_mask, Keras masks."""
check_multi_head_attention(MultiHeadAttention)

# %% nbgrader={"grade_id": "hidden_multi_head_attention", "points": 2}
"""MultiHeadAttention: 4 heads with value_dim and output_dim, padding + causal, a separate key with query_mask and causal cross-attention, jit_compile (hidden)."""
### BEGIN HIDDEN TESTS
check_multi_head_attention(MultiHeadAttention, cases="hidden")
### END HIDDEN TESTS

# %% [markdown]
# Your layer *is* Keras's layer. Copy its weights into
# `keras.layers.MultiHeadAttention` and compare, on a causal self-attention:

# %%
if RUN_EXPERIMENTS:
    x = np.random.default_rng(1).standard_normal((2, 6, 16)).astype("float32")
    mine = MultiHeadAttention(num_heads=4, key_dim=4)
    ours = mine(x, x, use_causal_mask=True)
    twin = la.keras_twin(mine, x, x)
    theirs = twin(x, x, use_causal_mask=True)
    print(f"largest difference from keras.layers.MultiHeadAttention: "
          f"{float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs)))):.2e}")

# %% [markdown]
# ## 5. Why self-attention? Measured, not recited
#
# The paper compares one self-attention layer with one recurrent layer on a
# sequence of $n$ positions of width $d$:
#
# | layer | operations | sequential operations | longest path between two positions |
# |---|---|---|---|
# | self-attention | $O(n^2 d)$ | $O(1)$ | $O(1)$ |
# | recurrent | $O(n d^2)$ | $O(n)$ | $O(n)$ |
#
# Self-attention does more arithmetic when $n > d$, but all of it at once; a
# recurrent layer does its $n$ steps one after the other, and information from
# position 1 reaches position $n$ through $n - 1$ steps (where it fades: the
# bottleneck of Assignment 1). Time your own layer against Keras's GRU on this
# machine:

# %%
if RUN_EXPERIMENTS:
    lengths = [16, 32, 64, 128, 256, 512]
    d_model = 64
    attention = MultiHeadAttention(num_heads=4, key_dim=16)
    gru = keras.layers.GRU(d_model, return_sequences=True)
    times = la.time_layers(
        {"your self-attention": lambda x: attention(x, x), "keras GRU": gru},
        lengths,
        d_model=d_model,
    )
    la.plot_complexity(times, lengths, d_model)
    plt.show()
    rows = zip(lengths, times["your self-attention"], times["keras GRU"], strict=True)
    for n, a, r in rows:
        print(f"n = {n:4d}: self-attention {a:7.1f} ms, GRU {r:7.1f} ms")

# %% [markdown]
# On a CPU the GRU's steps are cheap, but there are $n$ of them in a row; the
# attention layer's cost grows as $n^2$ yet stays one parallel operation,
# which is what a GPU is built for. The crossover of the arithmetic is at
# $n = d$; for the sentence lengths of translation ($n \approx 30$,
# $d = 512$) self-attention is the cheaper of the two even in operations.

# %% [markdown]
# ## 6. Seeing the heads
#
# The famous picture, where a head links "it" to "the animal" in *The animal
# didn't cross the street because it was too tired*, needs a trained
# Transformer, and we download no weights. So we train a tiny one, on a task
# where a token must **find another by content**: a list of `letter=digit`
# items, then `?` and a letter; the answer is that letter's digit.
#
# `c=4 a=7 f=1 h=0 b=2 e=9 ? a`  $\to$ `7`
#
# The question `a` is at the end; its item `a=7` can be anywhere. One layer of
# *your* multi-head attention, an embedding and a small classifier read at the
# last position: about a minute on two CPU cores.

# %%
task = lookup.make_lookup(20000, items=6, seed=0)
test = lookup.make_lookup(2000, items=6, seed=1)
print(" ".join(task.describe(0)), "->", task.answers[0])

# %%
if RUN_EXPERIMENTS:
    keras.utils.set_random_seed(0)
    heads = MultiHeadAttention(num_heads=4, key_dim=8)
    model, probe = la.build_lookup_model(heads, task.vocab_size, d_model=32)
    la.plot_heads(
        probe(test.tokens[:1])[0], test.describe(0), title="before training"
    )
    plt.show()
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        task.tokens,
        task.answers,
        validation_data=(test.tokens, test.answers),
        epochs=8 if not lesson.QUICK else 1,
        batch_size=128,
        verbose=2,
    )
    lesson.plot_history({"lookup": history})
    plt.show()

# %% [markdown]
# Before training every head spread its weight evenly. Now look at each head's
# attention from the question (the last position) to every token: which heads
# find the item with the asked letter? Then measure it over the whole test
# set: the share of each head's weight that lands on the asked item.

# %%
if RUN_EXPERIMENTS:
    for row in range(2):
        weights = probe(test.tokens[row : row + 1])[0]
        predicted = int(np.argmax(model(test.tokens[row : row + 1])[0]))
        la.plot_heads(
            weights,
            test.describe(row),
            title=f"after training: answer {test.answers[row]}, predicted {predicted}",
        )
        plt.show()
    weights = np.asarray(probe(test.tokens))[:, :, -1, :]  # (B, heads, T)
    for head in range(weights.shape[1]):
        share = la.share_on_asked_item(weights[:, head], test)
        print(f"head {head}: {100 * share:5.1f}% of its weight on the asked item")

# %% [markdown]
# On a task this easy, several heads learn the same lookup: heads are
# redundant, which is also why a trained Transformer keeps most of its quality
# when some heads are pruned. Rerun the training with `num_heads=1` and see one
# head carry the task alone, or with `key_dim=1` and see how small a head can
# still be when its only job is to match one letter.

# %% [markdown]
# ## Summary
#
# * Self-attention: queries, keys and values from one sequence, all positions
#   at once; scaled by $1/\sqrt{d_k}$ so the softmax does not saturate.
# * Masks are True where attention is allowed; the decoder combines padding
#   and causal masks with a logical *and*; an off-by-one or inverted causal
#   mask leaks the future.
# * Multi-head attention splits the width into heads, computes them in one
#   batched product, and merges them through $W^O$. Yours equals Keras's.
#
# Next, Assignment 3: the whole Transformer, trained to translate.
