"""Checks for Assignment 2 (self-attention and multi-head attention).

How each exercise is called; the cases, the expected outputs (from
`keras.layers.MultiHeadAttention` itself) and the mistakes are in
`autograder.judge.attention`.
"""

import ast
import inspect
import textwrap

import numpy as np

from autograder.checks.core import CheckFailed, check, run_check, student_code
from autograder.checks.layers import LayerProbe, as_tensor, call_layer

__all__ = [
    "check_masks",
    "check_multi_head_attention",
    "check_scaled_dot_product_attention",
]


def _pair(result, what):
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise CheckFailed(
            f"{what} should return a tuple (output, weights); it returned "
            f"{type(result).__name__}."
        )
    return {"output": result[0], "weights": result[1]}


@check
def check_scaled_dot_product_attention(scaled_dot_product_attention, cases="visible"):
    """`softmax(q k^T / sqrt(d_k)) v` for any leading axes, with a mask."""
    __tracebackhide__ = True

    def probe(case, index):
        args = [as_tensor(case.inputs[n]) for n in ("q", "k", "v")]
        with student_code("`scaled_dot_product_attention`"):
            if "mask" in case.inputs:
                result = scaled_dot_product_attention(
                    *args, mask=as_tensor(case.inputs["mask"])
                )
            else:
                result = scaled_dot_product_attention(*args)
        return _pair(result, "`scaled_dot_product_attention`")

    run_check("check_scaled_dot_product_attention", cases, probe)


@check
def check_masks(padding_mask, causal_mask, combined_mask, cases="visible"):
    """The padding mask, the causal (look-ahead) mask and both together."""
    __tracebackhide__ = True
    import keras

    functions = {
        "padding_mask": padding_mask,
        "causal_mask": causal_mask,
        "combined_mask": combined_mask,
    }

    def probe(case, index):
        name = case.options["function"]
        with student_code(f"`{name}`"):
            if name == "causal_mask":
                mask = causal_mask(case.call_kwargs["length"])
            else:
                mask = functions[name](as_tensor(case.inputs["token_ids"]))
            mask = keras.ops.convert_to_numpy(mask)
        if mask.dtype != bool:
            raise CheckFailed(
                f"`{name}` returned {mask.dtype} values; a mask is boolean "
                "(True where attention is allowed)."
            )
        return {"mask": mask.astype(np.float64)}

    run_check("check_masks", cases, probe)


def _mentions(node, names):
    """Whether an expression uses one of `names` (as a name or attribute)."""
    return any(
        (isinstance(n, ast.Name) and n.id in names)
        or (isinstance(n, ast.Attribute) and n.attr in names)
        for n in ast.walk(node)
    )


_SPLITS = frozenset({"split", "unstack", "array_split"})


def _over_heads(node, counts):
    """Whether a loop's iterable walks the heads: it uses the head count, or
    splits or unstacks a tensor, or is a collection named after heads."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Call):
            func = inner.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else getattr(func, "id", "")
            )
            if name in _SPLITS:
                return True
        if isinstance(inner, ast.Attribute | ast.Name):
            label = inner.attr if isinstance(inner, ast.Attribute) else inner.id
            if "head" in label.lower() and label not in ("num_heads",):
                return True
    return _mentions(node, counts)


_COUNTING = frozenset({"int", "len", "abs", "max", "min"})


def _plain(value):
    """Whether an expression is arithmetic on names (`self.num_heads // 2`,
    `int(h)`): what carries a count. A layer built from the head count
    (`MultiHeadAttention(self.num_heads, ...)`) is not a count."""
    if value is None:
        return False
    for node in ast.walk(value):
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _COUNTING
        ):
            return False
        if isinstance(node, ast.Lambda | ast.comprehension):
            return False
    return True


def _head_counts(function):
    """`num_heads` and the local names assigned from it (`h = self.num_heads`,
    `h, dk = self.num_heads, self.key_dim`), to a fixed point."""
    counts = {"num_heads"}
    changed = True
    while changed:
        changed = False
        for node in ast.walk(function):
            if not isinstance(node, ast.Assign | ast.AnnAssign):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            pairs = []
            for target in targets:
                if (
                    isinstance(target, ast.Tuple)
                    and isinstance(node.value, ast.Tuple)
                    and len(target.elts) == len(node.value.elts)
                ):
                    pairs += zip(target.elts, node.value.elts, strict=True)
                else:
                    pairs.append((target, node.value))
            for target, value in pairs:
                if not (_plain(value) and _mentions(value, counts)):
                    continue
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and name.id not in counts:
                        counts.add(name.id)
                        changed = True
    return counts


def _loops_over_heads(cls):
    """Line numbers of loops in `call` that go over the heads (heads must be
    computed at once). Other loops (over the masks, over query/key/value)
    are fine."""
    try:
        source = textwrap.dedent(inspect.getsource(cls.call))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return []
    counts = _head_counts(tree)
    comprehensions = ast.ListComp | ast.GeneratorExp | ast.DictComp | ast.SetComp
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.For):
            found = _over_heads(node.iter, counts)
        elif isinstance(node, ast.While):
            found = _mentions(node.test, counts)
        elif isinstance(node, comprehensions):
            found = any(_over_heads(g.iter, counts) for g in node.generators)
        else:
            found = False
        if found:
            lines.append(node.lineno)
    return sorted(lines)


def _mha_call(layer, case, kwargs):
    """Plainly, through a functional model with Keras masks, or compiled."""
    import keras
    import tensorflow as tf

    args = [case.inputs["query"], case.inputs["value"]]
    if "key" in case.inputs:
        kwargs = {**kwargs, "key": as_tensor(case.inputs["key"])}
    name = f"`{type(layer).__name__}`"
    if case.options.get("keras_mask"):
        q_in = keras.Input(shape=(None, args[0].shape[-1]))
        v_in = keras.Input(shape=(None, args[1].shape[-1]))
        with student_code(f"{name} called on symbolic Keras tensors"):
            symbolic = layer(
                keras.layers.Masking(0.0)(q_in),
                keras.layers.Masking(0.0)(v_in),
                return_attention_scores=True,
            )
            model = keras.Model([q_in, v_in], symbolic)
        with student_code(f"the functional model around {name}"):
            output, weights = model([a.astype(np.float32) for a in args])
        return {"output": output, "weights": weights}
    if case.options.get("compile"):
        tensors = [as_tensor(a) for a in args]

        @tf.function(jit_compile=True)
        def compiled(query, value):
            return layer(query, value, **kwargs)

        with student_code(f"{name} under tf.function(jit_compile=True)"):
            result = compiled(*tensors)
        return _pair(result, name)
    return call_layer(layer, args, kwargs, ["output", "weights"], name)


@check
def check_multi_head_attention(MultiHeadAttention, cases="visible"):
    """Multi-head attention, equal to `keras.layers.MultiHeadAttention`."""
    __tracebackhide__ = True
    loops = _loops_over_heads(MultiHeadAttention)
    if loops:
        raise CheckFailed(
            f"check_multi_head_attention: `{MultiHeadAttention.__name__}.call` "
            f"has a loop (line {loops[0]} of the method). Compute every head at "
            "once: split into (B, h, T, d_k) and let matmul or einsum run over "
            "the head axis, as a GPU does in one kernel."
        )
    aliases = {
        "W_q": ("query/kernel",),
        "b_q": ("query/bias",),
        "W_k": ("key/kernel",),
        "b_k": ("key/bias",),
        "W_v": ("value/kernel",),
        "b_v": ("value/bias",),
        "W_o": ("attention_output/kernel", "output/kernel"),
        "b_o": ("attention_output/bias", "output/bias"),
    }
    run_check(
        "check_multi_head_attention",
        cases,
        LayerProbe(
            MultiHeadAttention,
            ["output", "weights"],
            round_trip=["num_heads", "key_dim"],
            call=_mha_call,
            aliases=aliases,
        ),
    )
