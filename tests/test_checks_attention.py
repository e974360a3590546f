"""The checks of Assignment 2: right code passes, wrong code is named.

Right code: the reference, multi-head attention written the way most
students write it (2-D weights, reshape to split heads), with Dense
sublayers, in float64 inside, and the functions written with einsum. Wrong
code: each typical mistake; the check must name it. A layer that loops
over heads, or delegates to `keras.layers.MultiHeadAttention`, is refused
with a message saying why.
"""

import keras
import pytest
from keras import ops

from autograder import checks
from autograder.checks import CheckFailed
from autograder.reference import attention as A


class StudentMHA(keras.layers.Layer):
    """2-D weights (d, h * d_k) and a reshape to split the heads."""

    MISTAKE = None

    def __init__(self, num_heads, key_dim, value_dim=None, output_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim or key_dim
        self.output_dim = output_dim
        self.supports_masking = True

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = key_shape or value_shape
        h, dk, dv = self.num_heads, self.key_dim, self.value_dim
        out = self.output_dim or query_shape[-1]
        add = self.add_weight
        self.W_q = add(name="W_q", shape=(query_shape[-1], h * dk))
        self.b_q = add(name="b_q", shape=(h * dk,), initializer="zeros")
        self.W_k = add(name="W_k", shape=(key_shape[-1], h * dk))
        self.b_k = add(name="b_k", shape=(h * dk,), initializer="zeros")
        self.W_v = add(name="W_v", shape=(value_shape[-1], h * dv))
        self.b_v = add(name="b_v", shape=(h * dv,), initializer="zeros")
        self.W_o = add(name="W_o", shape=(h * dv, out))
        self.b_o = add(name="b_o", shape=(out,), initializer="zeros")

    def _split(self, x, size):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        if self.MISTAKE == "split_wrong_axis":
            return ops.transpose(
                ops.reshape(x, (b, t, size, self.num_heads)), (0, 3, 1, 2)
            )
        return ops.transpose(ops.reshape(x, (b, t, self.num_heads, size)), (0, 2, 1, 3))

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
        key = value if key is None else key
        q = self._split(ops.matmul(query, self.W_q) + self.b_q, self.key_dim)
        k = self._split(ops.matmul(key, self.W_k) + self.b_k, self.key_dim)
        v = self._split(ops.matmul(value, self.W_v) + self.b_v, self.value_dim)
        scores = ops.matmul(q, ops.swapaxes(k, -1, -2))
        if self.MISTAKE == "scale_d_model":
            scores = scores / ops.sqrt(ops.cast(ops.shape(query)[-1], scores.dtype))
        elif self.MISTAKE != "no_scale":
            scores = scores / ops.sqrt(ops.cast(self.key_dim, scores.dtype))
        t, s = ops.shape(query)[1], ops.shape(value)[1]
        mask = ops.ones((ops.shape(query)[0], t, s), "bool")
        if query_mask is not None:
            mask = mask & ops.cast(query_mask, "bool")[:, :, None]
        if value_mask is not None:
            value_mask = ops.cast(value_mask, "bool")
            if self.MISTAKE == "inverted":
                value_mask = ~value_mask
            mask = mask & value_mask[:, None, :]
        if attention_mask is not None:
            mask = mask & ops.cast(attention_mask, "bool")
        if use_causal_mask:
            i, j = ops.arange(t)[:, None], ops.arange(s)[None, :]
            ahead = 1 if self.MISTAKE == "one_ahead" else 0
            mask = mask & (j <= i + ahead)[None]
        mask = mask[:, None]
        axis = -2 if self.MISTAKE == "wrong_axis" else -1
        if self.MISTAKE == "wrong_sign":
            weights = ops.softmax(ops.where(mask, scores, 1e9), axis=axis)
        else:
            weights = ops.softmax(ops.where(mask, scores, -1e9), axis=axis)
            weights = ops.where(mask, weights, 0.0)
        context = ops.matmul(weights, v)  # (B, h, T, dv)
        order = (
            (0, 2, 3, 1)
            if self.MISTAKE in ("merge_wrong_order", "split_wrong_axis")
            else (0, 2, 1, 3)
        )
        merged = ops.reshape(
            ops.transpose(context, order), (ops.shape(query)[0], t, -1)
        )
        output = (
            merged
            if self.MISTAKE == "no_output_projection"
            else ops.matmul(merged, self.W_o) + self.b_o
        )
        if return_attention_scores:
            return output, weights
        return output

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "output_dim": self.output_dim,
        }


def _mistake(name):
    return type(f"MHA_{name}", (StudentMHA,), {"MISTAKE": name})


class DenseMHA(StudentMHA):
    """Dense sublayers named like Keras's: query, key, value, attention_output."""

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = key_shape or value_shape
        h, dk, dv = self.num_heads, self.key_dim, self.value_dim
        out = self.output_dim or query_shape[-1]
        self.query = keras.layers.Dense(h * dk, name="query")
        self.key = keras.layers.Dense(h * dk, name="key")
        self.value = keras.layers.Dense(h * dv, name="value")
        self.attention_output = keras.layers.Dense(out, name="attention_output")
        self.query.build(query_shape)
        self.key.build(key_shape)
        self.value.build(value_shape)
        self.attention_output.build((None, h * dv))
        self.W_q, self.b_q = self.query.kernel, self.query.bias
        self.W_k, self.b_k = self.key.kernel, self.key.bias
        self.W_v, self.b_v = self.value.kernel, self.value.bias
        self.W_o, self.b_o = self.attention_output.kernel, self.attention_output.bias


class Float64Inside(StudentMHA):
    """Weights and arithmetic in float64 (Keras casts the inputs)."""

    def __init__(self, *args, **kwargs):
        kwargs["dtype"] = "float64"
        super().__init__(*args, **kwargs)


class LoopsOverHeads(StudentMHA):
    def call(self, query, value, key=None, return_attention_scores=False, **kwargs):
        self.heads = [ops.matmul(query, self.W_q) for _ in range(self.num_heads)]
        return super().call(
            query,
            value,
            key=key,
            return_attention_scores=return_attention_scores,
            **kwargs,
        )


class Borrowed(StudentMHA):
    def build(self, query_shape, value_shape, key_shape=None):
        self.inner = keras.layers.MultiHeadAttention(
            self.num_heads,
            self.key_dim,
            value_dim=self.value_dim,
            output_shape=self.output_dim,
        )

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
        return self.inner(
            query,
            value,
            key=key,
            query_mask=query_mask,
            value_mask=value_mask,
            attention_mask=attention_mask,
            use_causal_mask=use_causal_mask,
            return_attention_scores=return_attention_scores,
        )


@pytest.mark.parametrize("cases", ["visible", "hidden"])
@pytest.mark.parametrize(
    "layer", [A.MultiHeadAttention, StudentMHA, DenseMHA, Float64Inside]
)
def test_right_multi_head_attention_passes(layer, cases, capsys):
    checks.check_multi_head_attention(layer, cases=cases)
    assert "cases passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("mistake", "hint"),
    [
        ("no_scale", "not scaled"),
        ("scale_d_model", "sqrt(d_model)"),
        ("wrong_axis", "over the queries"),
        ("inverted", "mask is inverted"),
        ("wrong_sign", "+1e9 instead of -1e9"),
        ("split_wrong_axis", "split along the wrong axis"),
        ("merge_wrong_order", "merged in the wrong order"),
        ("no_output_projection", "W_o is missing"),
        ("one_ahead", "see the next one"),
    ],
)
def test_multi_head_attention_mistakes_are_named(mistake, hint):
    which = "hidden" if mistake == "one_ahead" else "visible"
    with pytest.raises(CheckFailed) as failure:
        checks.check_multi_head_attention(_mistake(mistake))
        checks.check_multi_head_attention(_mistake(mistake), cases=which)
    assert hint in str(failure.value), str(failure.value)


def test_loop_over_heads_is_refused():
    with pytest.raises(CheckFailed, match="Compute every head at once"):
        checks.check_multi_head_attention(LoopsOverHeads)


def test_keras_multi_head_attention_inside_is_borrowed():
    with pytest.raises(CheckFailed, match="delegates to a library's attention"):
        checks.check_multi_head_attention(Borrowed)


def sdpa_einsum(q, k, v, mask=None):
    scores = ops.einsum("...td,...sd->...ts", q, k) / ops.sqrt(
        ops.cast(ops.shape(q)[-1], q.dtype)
    )
    if mask is not None:
        scores = ops.where(mask, scores, -1e9)
    weights = ops.softmax(scores, axis=-1)
    if mask is not None:
        weights = ops.where(mask, weights, 0.0)
    return ops.einsum("...ts,...sd->...td", weights, v), weights


def sdpa_unscaled(q, k, v, mask=None):
    return A.scaled_dot_product_attention(
        q * ops.sqrt(ops.cast(ops.shape(q)[-1], q.dtype)), k, v, mask
    )


def sdpa_inverted(q, k, v, mask=None):
    return A.scaled_dot_product_attention(q, k, v, None if mask is None else ~mask)


@pytest.mark.parametrize("cases", ["visible", "hidden"])
@pytest.mark.parametrize("fn", [A.scaled_dot_product_attention, sdpa_einsum])
def test_right_scaled_dot_product_attention_passes(fn, cases):
    checks.check_scaled_dot_product_attention(fn, cases=cases)


@pytest.mark.parametrize(
    ("fn", "hint"), [(sdpa_unscaled, "not scaled"), (sdpa_inverted, "inverted")]
)
def test_scaled_dot_product_attention_mistakes_are_named(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        checks.check_scaled_dot_product_attention(fn)


def causal_one_ahead(length):
    return (
        ops.tril(ops.ones((length, length), "bool"), k=1)
        if False
        else (ops.arange(length)[None, :] <= ops.arange(length)[:, None] + 1)
    )


def causal_upper(length):
    return ops.arange(length)[None, :] >= ops.arange(length)[:, None]


def padding_inverted(ids, pad_id=0):
    return ops.expand_dims(ops.equal(ids, pad_id), -2)


def combined_or(ids, pad_id=0):
    return ops.logical_or(A.padding_mask(ids), A.causal_mask(ops.shape(ids)[-1]))


def padding_zero(ids, pad_id=0):
    return ops.expand_dims(ops.not_equal(ids, 0), -2)


def test_a_padding_mask_that_ignores_pad_id_is_named():
    """The hidden cases give a non-zero `pad_id` (0 is then a real token)."""
    checks.check_masks(padding_zero, A.causal_mask, A.combined_mask)
    with pytest.raises(CheckFailed, match="ignores `pad_id`"):
        checks.check_masks(padding_zero, A.causal_mask, A.combined_mask, cases="hidden")


@pytest.mark.parametrize("cases", ["visible", "hidden"])
def test_right_masks_pass(cases):
    checks.check_masks(A.padding_mask, A.causal_mask, A.combined_mask, cases=cases)


@pytest.mark.parametrize(
    ("functions", "hint"),
    [
        ((padding_inverted, A.causal_mask, A.combined_mask), "True on padding"),
        ((A.padding_mask, causal_one_ahead, A.combined_mask), "off by one"),
        ((A.padding_mask, causal_upper, A.combined_mask), "upper-triangular"),
        ((A.padding_mask, A.causal_mask, combined_or), "*either* mask"),
    ],
)
def test_mask_mistakes_are_named(functions, hint):
    with pytest.raises(CheckFailed) as failure:
        checks.check_masks(*functions)
    assert hint in str(failure.value)


LOOPS = {
    "for i in range(self.num_heads):\n            pass": True,
    "h = self.num_heads\n        parts = [i for i in range(h)]": True,
    "h, dk = self.num_heads, self.key_dim\n        i = 0\n"
    "        while i < h:\n            i += 1": True,
    "for head in self.heads:\n            pass": True,
    "parts = [p for p in ops.split(query, 2, axis=-1)]": True,
    "for extra in (query_mask, value_mask):\n            pass": False,
    "q, k, v = [x * 2 for x in (query, value, value)]": False,
    "for name in ('W_q', 'W_k'):\n            pass": False,
    "dk = self.key_dim\n        sizes = [dk for _ in range(3)]": False,
    "inner = Inner(self.num_heads)\n"
    "        for w in inner.weights:\n            pass": False,
    "n = int(self.num_heads)\n        for i in range(n):\n            pass": True,
}


@pytest.mark.parametrize(("body", "loops"), list(LOOPS.items()))
def test_only_loops_over_the_heads_are_refused(body, loops, tmp_path, monkeypatch):
    """A loop over the heads is refused; a loop over masks, projections or
    weight names is an ordinary way to write a correct layer."""
    import importlib
    import sys

    from autograder.checks import attention as checks_attention

    source = (
        "from keras import ops\n\n\n"
        "class Layer:\n"
        "    num_heads = 2\n"
        "    key_dim = 3\n\n"
        "    def call(self, query, value, query_mask=None, value_mask=None):\n"
        f"        {body}\n"
        "        return query\n"
    )
    (tmp_path / "student_loops.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("student_loops", None)
    module = importlib.import_module("student_loops")
    assert bool(checks_attention._loops_over_heads(module.Layer)) is loops
