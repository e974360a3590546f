# %% [markdown]
# # Assignment 2: Self-attention and multi-head attention
#
# In Assignment 1 a decoder state looked back at the encoder's states. In this
# assignment every position of a sequence looks at every other position of the
# *same* sequence: **self-attention**, the operation the Transformer
# (Vaswani et al., *Attention Is All You Need*, 2017) is built from. You write
# it yourself, all of it, and the checks prove your `MultiHeadAttention` equal
# to Keras's own `keras.layers.MultiHeadAttention`, weight for weight. From
# Assignment 3 on we use Keras's layer knowing exactly what it computes. Keras
# may run it through a *fused kernel*: one compiled routine that does the
# scores, the softmax and the weighted sum in one pass (on a suitable GPU,
# FlashAttention) without writing the `(T, S)` weights to memory; it is
# faster, and it is skipped when you ask for the weights.
#
# **How this notebook works.**
# * Cells that say `# YOUR CODE HERE` / `raise NotImplementedError()` are yours.
#   Replace those two lines with your code; keep the names and signatures.
# * Each exercise is followed by a **check cell**. Run it: it gives your code
#   fixed inputs (and your layer fixed weights), compares the outputs with the
#   reference and, when they differ, shows the inputs, the largest difference
#   and the most likely mistake.
# * When your notebook is graded, the check cells run again, together with
#   **hidden tests** (other shapes, masks, head counts, a compiled call: a
#   model run with `jit_compile=True`, which hands the whole computation to
#   XLA, TensorFlow's compiler, to fuse and optimise; code that works only
#   step by step in Python, e.g. by reading a tensor's value, fails there).
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
#
# **Vectors are rows.** A sequence is a matrix $X$ of shape `(T, d_model)`
# (with a batch, `(B, T, d_model)`), one row per position, and a learned
# projection multiplies on the right: $x W$, with $W$ of shape
# `(d_in, d_out)`. That is how a Keras `Dense` kernel is stored and used
# (`x @ kernel`), and how every formula, shape and docstring of this notebook
# is written. Papers and lecture notes that use column vectors write $W x$
# with $W$ of shape `(d_out, d_in)`: the same map with the matrix transposed,
# since $(W x)^\top = x^\top W^\top$. The Transformer paper itself uses rows
# ($Q W_i^Q$ with $W_i^Q \in \mathbb{R}^{d_{model} \times d_k}$), so its
# formulas read here unchanged; in $Q K^\top$, entry $(i, j)$ is the dot
# product of row $i$ of $Q$ (query $i$) with row $j$ of $K$ (key $j$).

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
import time

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
from autograder.data import lookup, pronouns

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
# projections (rows times matrices, as everywhere here):
#
# $$Q = X W^Q,\qquad K = X W^K,\qquad V = X W^V,\qquad
# W^Q, W^K \in \mathbb{R}^{d_{model} \times d_k},\ W^V \in \mathbb{R}^{d_{model} \times d_v}.$$
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
# The paper (its Table 1) compares one self-attention layer with one
# recurrent and one convolutional layer (kernel width $k$) on a sequence of
# $n$ positions of width $d$:
#
# | layer | operations | sequential operations | longest path between two positions |
# |---|---|---|---|
# | self-attention | $O(n^2 d)$ | $O(1)$ | $O(1)$ |
# | recurrent | $O(n d^2)$ | $O(n)$ | $O(n)$ |
# | convolutional | $O(k\, n\, d^2)$ | $O(1)$ | $O(\log_k n)$ (dilated; $O(n/k)$ contiguous) |
#
# *Sequential operations* count the steps that must wait for the one before:
# a recurrent layer's $n$ steps run one after the other, while every position
# of an attention or convolution layer is computed at once. The *path* is how
# many layers (or steps) a signal crosses from position 1 to position $n$:
# information fades along a long path (the bottleneck of Assignment 1); a
# convolution of width $k$ reaches $k - 1$ positions further per layer, so
# it needs a stack of about $n/k$ layers, or $\log_k n$ if the layers are
# dilated (each skips more positions than the one before).
#
# The $O(n^2 d)$ of the table counts only what is new in attention: the
# scores $Q K^\top$ ($n^2 d$ multiply-adds) and the weighted sum of the values
# ($n^2 d$). The layer you wrote also **projects**: $Q$, $K$, $V$ and the
# output are four $(n, d) \times (d, d)$ products, $4 n d^2$ more. So the
# layer you time costs
#
# $$\underbrace{4 n d^2}_{\text{projections}} + \underbrace{2 n^2 d}_{\text{scores and sum}}
# \quad\text{multiply-adds per sequence},$$
#
# and the two terms are equal at $n = 2d$. Below it the projections dominate
# (the layer grows linearly in $n$, like a recurrent layer); above it the
# quadratic term does. Time your own layer against Keras's GRU and a
# convolution (`Conv1D`, $k = 3$) on this machine, then fit the formula to
# your times (each layer is wrapped in `tf.function`, which traces it once
# into a TensorFlow graph and then runs the graph without Python, so the
# times measure the arithmetic rather than Python's per-operation overhead):

# %%
if RUN_EXPERIMENTS:
    lengths = [16, 32, 64, 128, 256, 512]
    d_model = 64
    attention = MultiHeadAttention(num_heads=4, key_dim=16)
    gru = keras.layers.GRU(d_model, return_sequences=True)
    conv = keras.layers.Conv1D(d_model, 3, padding="same")
    times = la.time_layers(
        {"your self-attention": lambda x: attention(x, x), "keras GRU": gru,
         "Conv1D, k=3": conv},
        lengths,
        d_model=d_model,
    )
    cost = la.attention_cost_model(times["your self-attention"], lengths, d_model)
    la.plot_complexity(times, lengths, d_model, kernel_size=3, cost=cost)
    plt.show()
    for i, n in enumerate(lengths):
        print(f"n = {n:4d}: self-attention {times['your self-attention'][i]:7.1f} ms, "
              f"GRU {times['keras GRU'][i]:7.1f} ms, Conv1D {times['Conv1D, k=3'][i]:5.1f} ms")
    print(f"fit: {cost['overhead_ms']:.2f} ms fixed + {cost['ns_per_op']:.3f} ns per "
          f"multiply-add; the terms cross at n = 2d = {cost['crossover']}")

# %% [markdown]
# What you should see (the fastest of 7 runs, batch 8, $d = 64$; ranges
# over four runs on 2 CPU cores shared with other busy programs):
#
# | n | 16 | 64 | 128 | 256 | 512 |
# |---|---|---|---|---|---|
# | your self-attention (ms) | 0.8-1.2 | 1.1-3.3 | 2.4-4.8 | 4.7-9.4 | 14-23 |
# | GRU (ms) | 1.1-1.8 | 2.4-8.5 | 5-12 | 11-19 | 20-31 |
# | Conv1D, k = 3 (ms) | 0.6-0.8 | 0.7-1.1 | 0.8-1.0 | 0.9-2.8 | 1.6-4.0 |
#
# and a fit of about **1 ms fixed plus 0.05 ns per multiply-add** (some 20
# billion a second on two cores). Read it term by term:
#
# * up to $n \approx 64$ the **fixed cost** dominates: launching the layer's
#   twenty-odd operations takes longer than their arithmetic (0.6 ms at
#   $n = 64$); the $4 n d^2$ projections, the larger of the two terms there,
#   are hidden under it;
# * past $n = 2d = 128$ the dashed lines cross and the **quadratic term**
#   takes over: at $n = 512$ it is 80% of the arithmetic, and the time grows
#   faster than $n$ (in the limit, four times for each doubling);
# * the GRU grows linearly, some 40 to 60 microseconds a step, one step after
#   the other; the convolution is the cheapest, linear, and all at once.
#
# On a CPU, TensorFlow runs these matrix products through oneDNN (Intel's
# library of optimised CPU kernels, on by default; the environment variable
# `TF_ENABLE_ONEDNN_OPTS=0` turns it off). With two cores there is little
# parallelism to exploit, so at $n = 512$ your attention and the GRU take
# about the same time; a GPU, with thousands of cores, computes all $n$ of
# attention's positions at once, while the GRU's steps still wait for one
# another. If your numbers are far off, another program was busy: run the
# cell again (a fifth run, on the same machine at its busiest, gave 114 ms
# for attention at $n = 512$ and 47 ms for the GRU).
#
# For translation ($n \approx 30$ words, $d = 512$) the quadratic term is a
# small part of the cost ($2 n^2 d$ is $n / 2d \approx 3\%$ of $4 n d^2$): the
# projections and the feed-forward layers dominate, and self-attention wins
# over recurrence by running all positions at once (a GPU's strength) and by
# its path of length 1. The $n^2$ term matters for long inputs (documents,
# images, audio), which is why so much work goes into fused kernels and
# cheaper approximations of attention.

# %% [markdown]
# ## 6. Seeing the heads
#
# Attention is famous for pictures where a head links two words (section 7
# draws the best known one). We download no trained weights, so we train
# our own models, first on a task where a token must **find another by
# content**: a list of `letter=digit` items, then `?` and a letter; the
# answer is that letter's digit.
#
# `c=4 a=7 f=1 h=0 b=2 e=9 ? a`  $\to$ `7`
#
# The question `a` is at the end; its item `a=7` can be anywhere. One layer of
# *your* multi-head attention, an embedding and a small classifier read at the
# last position: 628 steps (4 epochs), about 15 s on two CPU cores.

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
        epochs=4 if not lesson.QUICK else 1,
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
# Expect 100% on the test lists from the third epoch on (seed 0). On this
# task the heads are **redundant**: each of the four puts 64% to 72% of its
# weight on the asked item (measured, seed 0). Several heads learn the same
# lookup; in large trained Transformers too, many heads can be removed with
# little loss (Michel et al., *Are Sixteen Heads Really Better than One?*,
# 2019). Rerun the training with `num_heads=1`: one head carries the task
# alone (measured: 100% from the third epoch, 79% of its weight on the asked
# item). With `key_dim=1` (four heads of size 1) it is no longer easy: 68%
# after four epochs, each head 25% to 41% on the item. With one number per
# query and key, the score $q k$ is largest for the largest (or smallest) $k$
# whatever the query: a head of size 1 cannot pick an arbitrary letter, only
# an extreme one, and four of them can only approximate the lookup.
#
# Here the question already says what it looks for (the letter `a` matches
# the item `a=7`), so one layer is enough. Words are harder.

# %% [markdown]
# ## 7. Self-attention on language: what is "it"?
#
# > The animal didn't cross the street because it was too **tired**.
# > The animal didn't cross the street because it was too **wide**.
#
# The same words up to "it", and "it" is the animal in one sentence and the
# street in the other: only the adjective *after* the pronoun decides, by
# meaning (animals get tired, streets are wide). This is the sentence the
# Transformer was famously drawn with. We train a small Transformer encoder,
# built from **your** `MultiHeadAttention`, to resolve "it", and look.
#
# **The data** (`autograder.data.pronouns`, dataset card in `data/README.md`):
# 20 creatures, 20 places, 12 predicates that fit only creatures (`was too
# tired`, `was limping`, ...) and 12 that fit only places (`was too wide`,
# `was flooded`, ...), in 12 templates: three take the creature first, three
# the place first, and six take the two nouns either way round.
# Sentences come in **twins**, the same sentence with a creature's predicate
# and with a place's, so the answer is never given away by the nouns, their
# order, the template or where "it" stands: each of these cues alone predicts
# the answer 50% of the time (measured on the test split, and tested). The
# **test** sentences use (noun, predicate) combinations held out of training:
# the model has seen `animal` and `was too tired`, but never together; the two
# sentences above are both held out.

# %%
if RUN_EXPERIMENTS:
    corpus = pronouns.load_pronouns("train", size=4000 if lesson.QUICK else 20000)
    held_out = pronouns.load_pronouns("test")
    classic = pronouns.classic_pair()
    for row in range(4):
        print(f"{corpus.text(row):70s} -> it = {corpus.referents[row]}")
    print(f"{len(corpus)} training and {len(held_out)} test sentences, "
          f"{len(pronouns.VOCAB)} words, at most {pronouns.MAX_LENGTH} words each")

# %% [markdown]
# **The model.** A word embedding plus a learned position embedding (a
# vector for each position 0 to 16, so that word order is visible), then two
# encoder layers, each your self-attention (4 heads of 16) followed by a
# small feed-forward layer, both with a **residual connection** (the input
# is added to the output, so a sublayer learns a correction and what came
# in passes through) and **layer normalisation** (each position's vector
# rescaled to mean 0 and variance 1, then by learned factors), as in the
# paper; Assignment 3 builds this layer in full. No dropout (the random
# zeroing of activations during training that fights over-fitting): this
# task needs none. The output at the position of "it" goes through one
# `Dense` layer to a softmax over the whole vocabulary: the model must
# **name** the noun.
#
# Why two layers? "It" comes *before* the word that decides, so in a first
# layer its query cannot know what to look for; a first layer can bring the
# predicate to "it", and a second can then look for a noun of the right
# kind. (One layer turns out to be enough too: see the end of this
# section.) Why name the noun, rather than answer "first" or "second"? The
# model then has to fetch the noun's identity from the noun's own position,
# which is what we want to see attention do. (We tried the other readouts,
# same data and training: answering "first/second" also reaches 100% on the
# test split, but the last layer's heads put at most 28% of their weight on
# the right noun, and three heads of four put more on the other noun;
# scoring the two candidate words by their embeddings reaches 100% while the
# last layer's heads put 4% on either noun and 33% to 53% on the predicate.
# Accuracy alone does not tell you where a model looks.)
#
# Expect, with seed 0 on 2 CPU cores: training accuracy near 76% after the
# first epoch and 100% after the second (626 steps of 64 sentences; 30 to
# 37 s measured on two CPU cores shared with other busy programs, 8 to 9 s
# of it for the second epoch, as the first also builds the graph),
# **100.0%** of the 2,000 held-out sentences right, on the either-order templates as on the others,
# and both classic sentences right (`animal`, `street`), though neither was
# ever seen in training. Other seeds gave the same 100.0% (seeds 1 and 2).
# If you get much less, check that your layer applies `value_mask` (the
# padding at the end of short sentences must get no weight).

# %%
if RUN_EXPERIMENTS:
    keras.utils.set_random_seed(0)
    encoder, encoder_probe = la.build_pronoun_model(
        lambda: MultiHeadAttention(num_heads=4, key_dim=16),
        len(pronouns.VOCAB),
        pronouns.MAX_LENGTH,
        d_model=64,
        num_layers=2,
    )
    encoder.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    encoder.fit(
        [pronouns.encode(corpus.sentences), corpus.pronoun],
        corpus.referent_ids,
        epochs=1 if lesson.QUICK else 2,
        batch_size=64,
        verbose=2,
    )
    seconds = time.perf_counter() - started
    accuracy = la.pronoun_accuracy(encoder, held_out)
    print(f"trained in {seconds:.0f} s; held-out combinations: "
          f"{100 * accuracy['all']:.1f}% right ({100 * accuracy['either_order']:.1f}% "
          f"on the either-order templates, {100 * accuracy['one_way']:.1f}% on the others)")
    named = np.argmax(encoder.predict([pronouns.encode(classic.sentences),
                                       classic.pronoun], verbose=0), -1)
    for row in range(2):
        print(f"{classic.text(row)}  ->  it = {pronouns.VOCAB[named[row]]}")

# %% [markdown]
# Now the picture: for each of the two sentences, each head's attention from
# "it" (a row) over the words, in the **last** layer, then in the first. The
# red box is the noun "it" refers to.

# %%
if RUN_EXPERIMENTS:
    for layer, name in ((-1, "last (second) layer"), (0, "first layer")):
        la.plot_pronoun_attention(
            la.pronoun_weights(encoder_probe, classic, layer=layer),
            classic,
            title=f'Where "it" looks, {name}',
        )
        plt.show()

# %% [markdown]
# One pair of sentences is an anecdote. Measure every head over the 2,000
# held-out sentences: the mean weight "it" puts on the right noun, on the
# other noun and on the predicate's last word, the weight on the right noun
# when "it" is a creature and when it is a place, and how often the head
# prefers the right noun to the other.

# %%
if RUN_EXPERIMENTS:
    for layer in (0, -1):
        report = la.pronoun_head_report(
            la.pronoun_weights(encoder_probe, held_out, layer=layer), held_out
        )
        print(f"layer {layer % 2 + 1}: right noun  other noun  predicate  "
              f"(right if creature / place)  prefers right")
        for h in range(len(report["right"])):
            print(f"  head {h}:   {report['right'][h]:5.2f}      {report['other'][h]:5.2f}"
                  f"      {report['predicate'][h]:5.2f}        {report['right_creature'][h]:5.2f}"
                  f" / {report['right_place'][h]:4.2f}            {100 * report['prefers_right'][h]:5.1f}%")
    best = int(np.argmax(report["right"]))
    print(f"best head of the last layer: head {best}, "
          f"{100 * report['right'][best]:.0f}% of its weight on the right noun, "
          f"{100 * report['other'][best]:.0f}% on the other")

# %% [markdown]
# **What you should see** (seed 0; other seeds share the pattern, not the
# head numbers):
#
# * **The last layer finds the noun.** In the classic pair, with "tired",
#   heads 0, 2 and 3 put 0.82, 0.93 and 0.68 of their weight on `animal`;
#   with "wide", heads 0 and 1 put 0.99 on `street`. Over the held-out set
#   the best head (head 0) puts **68%** of its weight on the right noun and
#   **4%** on the other, and prefers the right one in 94.5% of the sentences;
#   head 1 in 99.9%. (Seeds 1 and 2: best heads 54% and 71% on the right
#   noun, 8% and 6% on the other.)
# * **The heads divide the work by kind.** Head 1 puts 94% on the noun when
#   "it" is a place and 7% when it is a creature; head 2 the reverse (75%
#   and 4%), and when "it" is a place, head 2 looks at the predicate
#   instead. Unlike the lookup task, where four heads did the same thing,
#   these heads are **not** redundant: each covers a case.
# * **The first layer prepares.** No first-layer head prefers the right noun
#   (each does in exactly 50% of the sentences). Heads 0 to 2 spread their
#   weight over both nouns and the predicate (about a quarter each); head 3
#   reads the predicate when it is a creature's (`tired`: weight 1.00 on it)
#   and the place noun when the predicate is a place's (`wide`: 1.00 on
#   `street`). That is the first of the two steps: find out what kind of
#   thing "it" is, then, in the second layer, find the noun of that kind.
#
# **When a head does not do it.** Attention weights show where a head reads,
# not what the model uses, and there are many roads for information:
#
# * **another head or layer**: a head that puts nothing on the nouns may be
#   bringing the predicate, while another finds the noun; the first layer's
#   work here is exactly that;
# * **the residual**: every layer adds its attention's output to its input,
#   so what "it" gathered in the first layer is still there in the second;
#   the second layer need not repeat it;
# * **the readout**: the classifier reads the vector at "it", which holds
#   whatever all heads of all layers brought; another readout would make
#   other heads useful (the "first/second" readout above reaches 100% with
#   little weight on the nouns).
#
# So a head whose weight sits on the right word is *evidence* of what the
# model does, not an explanation of it: to show that a head matters, remove
# it (set its weights to zero, or its output) and measure the accuracy again.
# Try it: change `num_heads` or `num_layers` in the training cell. What we
# measured (seed 0, two epochs):
#
# * `num_heads=1` (one head of 64): 100% on the held-out set, and the single
#   head of the last layer puts **83%** of its weight on the right noun, 2%
#   on the other, the clearest picture of all: with one head, the only way
#   to bring the noun's identity to "it" in that layer is to look at it.
# * `num_layers=1`: 100% too, although the query of "it" cannot know the
#   predicate. The choice happens in the softmax instead: heads 1 and 3 put
#   0.92 and 0.80 on the creature when "it" is a creature and look at the
#   predicate otherwise; head 2 puts 0.81 on the place when "it" is a place;
#   head 0 splits its weight between the two nouns (0.42 and 0.42). A head
#   whose keys score "a place's predicate" above "a creature" above the
#   rest lands on the creature exactly when the predicate is not a place's:
#   the keys compete, and the winner depends on which words are there.
#
# Both answers are right and both pictures differ: what attention looks at
# depends on the architecture and the readout as much as on the task.

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
# * Cost: one layer pays $4 n d^2$ for its projections and $2 n^2 d$ for the
#   scores and the weighted sum; the second dominates only past $n = 2d$
#   (measured here: a fixed 1 ms up to $n \approx 64$, then the arithmetic;
#   the quadratic term is 80% of it at $n = 512$).
# * Self-attention on words: two layers of your attention resolve "it" in
#   held-out sentences (100.0% of 2,000, 626 training steps, seed 0). In the
#   last layer the best head puts 68% of its weight on the right noun and 4%
#   on the other; the heads split the cases by kind (one finds places, one
#   creatures), while on the lookup task four heads did the same job.
#   Attention weights are evidence of where information flows, not an
#   explanation: other heads, the residual and the readout carry it too.
#
# Next, Assignment 3: the whole Transformer, trained to translate.
