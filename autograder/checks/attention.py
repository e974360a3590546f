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
                mask = functions[name](
                    as_tensor(case.inputs["token_ids"]), **case.call_kwargs
                )
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


def _head_counts(function, start=()):
    """`num_heads` (and `start`) and the local names assigned from it
    (`h = self.num_heads`, `h, dk = self.num_heads, self.key_dim`), to a
    fixed point."""
    counts = {"num_heads", *start}
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


def _tree(function):
    """The parsed source of a function, or None."""
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None


def _parameters(node):
    """A function definition's parameter names, in order (`self` included)."""
    arguments = node.args
    return [a.arg for a in arguments.posonlyargs + arguments.args]


def _reached(function, tree, cls):
    """The student's own functions `function` calls, with the arguments of
    each call: `self.helper(...)` (a method of `cls` written in the same
    module as `cls`) and `helper(...)` (a function of that module). Keras's
    methods and library functions are not the student's code."""
    namespace = getattr(function, "__globals__", {})
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, target, bound = node.func, None, False
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "self"
        ):
            target, bound = inspect.getattr_static(cls, func.attr, None), True
            if isinstance(target, staticmethod | classmethod):
                target, bound = target.__func__, isinstance(target, classmethod)
        elif isinstance(func, ast.Name):
            target = namespace.get(func.id)
        if (
            inspect.isfunction(target)
            and target.__module__ == cls.__module__
            and target.__name__ != "<lambda>"
        ):
            found.append((target, bound, node))
    return found


def _loops_in(tree, counts):
    """Line numbers of the loops of `tree` that go over the heads."""
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
    return lines


def _loops_over_heads(cls):
    """Loops over the heads (heads must be computed at once) in all the code
    the layer's `call` runs that the student wrote: `call` itself, the
    layer's methods it calls (`self.split_heads(x)`), and the functions of
    the student's cells it calls (`attend(q, k, v)`), however deep. A
    parameter given the head count (`self.split(x, self.num_heads)`) is a
    head count in the helper. Other loops (over the masks, over
    query/key/value) are fine.

    Returns `[(where, line)]`, `where` naming the method or function, `line`
    counted from its `def`.
    """
    call = getattr(cls, "call", None)
    if not inspect.isfunction(call):
        return []
    given = {call: set()}
    pending = [call]
    seen = {}
    while pending:
        function = pending.pop()
        tree = _tree(function)
        if tree is None:
            continue
        counts = _head_counts(tree, given[function])
        seen[function] = (tree, counts)
        for target, bound, node in _reached(function, tree, cls):
            definition = _tree(target)
            if definition is None or not definition.body:
                continue
            params = _parameters(definition.body[0])[1 if bound else 0 :]
            carried = {
                params[i]
                for i, arg in enumerate(node.args)
                if i < len(params) and _plain(arg) and _mentions(arg, counts)
            } | {
                k.arg
                for k in node.keywords
                if k.arg in params and _plain(k.value) and _mentions(k.value, counts)
            }
            if target not in given:
                given[target] = set(carried)
                pending.append(target)
            elif not carried <= given[target]:
                given[target] |= carried
                pending.append(target)
    found = []
    for function, (tree, counts) in seen.items():
        where = function.__qualname__
        found += [(where, line) for line in _loops_in(tree, counts)]
    return sorted(found, key=lambda item: (item[0] != call.__qualname__, item))


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
        from autograder.checks import taps

        taps.eagerly(lambda: layer(*tensors, **kwargs))
        return _pair(result, name)
    return call_layer(layer, args, kwargs, ["output", "weights"], name)


@check
def check_multi_head_attention(MultiHeadAttention, cases="visible"):
    """Multi-head attention, equal to `keras.layers.MultiHeadAttention`."""
    __tracebackhide__ = True
    loops = _loops_over_heads(MultiHeadAttention)
    if loops:
        where, line = loops[0]
        called = (
            ""
            if where == f"{MultiHeadAttention.__qualname__}.call"
            else f", which `{MultiHeadAttention.__name__}.call` calls,"
        )
        raise CheckFailed(
            f"check_multi_head_attention: `{where}`{called} has a loop over the "
            f"heads (line {line} of its definition). Compute every head at "
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
