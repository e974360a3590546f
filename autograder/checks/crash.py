"""What a crash in the student's code shows: read from the failing operation.

When the student's code raises on shapes (TensorFlow's "Incompatible
shapes: [2,3] vs. [2,5,3]", "Matrix size-incompatible: In[0]: [2,3,4],
In[1]: [2,6,5]", "must have compatible batch dimensions"), the shapes of
the two operands and of the names on the failing line (`core._operand_shapes`)
say more than the error does:

* an element-wise operation (`+`, `*`, `ops.where`, `&`, `==`) lines the two
  shapes up from the right; when inserting one size-1 axis into one operand,
  or moving its size-1 axis, makes them broadcast, the missing axis is named
  with the `ops.expand_dims` that adds it;
* an element-wise product of two tensors that differ on one axis only pairs
  position i with position i: pairing every row with every row is a matrix
  product;
* an operand as long as the other on every axis but one, where it is longer,
  is to be sliced;
* a matrix product's inner sizes must agree; an operand that is the full
  reverse of a name's shape came from `ops.transpose` without axes (it
  reverses every axis, the batch axis too);
* a matrix product with one of the case's weights that does not fit, where
  another weight of the case would, names the weight that fits.

Each line says what is true of the shapes; a fix is suggested only where the
shapes admit exactly that one.
"""

import re

__all__ = ["explain"]

_SHAPES = re.compile(r"(?<![A-Za-z0-9_])\[([0-9, ]*)\]")
_OP = re.compile(r"\[Op:([A-Za-z0-9]+)\]")
_ELEMENTWISE = {
    "Mul": "*",
    "AddV2": "+",
    "Add": "+",
    "Sub": "-",
    "RealDiv": "/",
    "SelectV2": "ops.where",
    "Select": "ops.where",
    "LogicalAnd": "&",
    "LogicalOr": "|",
    "Equal": "==",
    "NotEqual": "!=",
    "Maximum": "ops.maximum",
    "Minimum": "ops.minimum",
}
_MATMUL = {"MatMul", "BatchMatMulV2", "BatchMatMul", "BatchMatMulV3"}


def _shapes_in(text):
    found = []
    for match in _SHAPES.finditer(text):
        inside = match.group(1).strip()
        if not inside:
            found.append(())
            continue
        try:
            found.append(tuple(int(x) for x in inside.split(",") if x.strip()))
        except ValueError:
            continue
    return found


def _broadcast(a, b):
    """The broadcast shape of `a` and `b`, or None."""
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    result = []
    for x, y in zip(a, b, strict=True):
        if x != y and 1 not in (x, y):
            return None
        result.append(max(x, y))
    return tuple(result)


def _name_of(shape, names):
    for name, value in names:
        if tuple(value) == tuple(shape):
            return f"`{name}`"
    return None


def _index(position, rank):
    """An axis as a negative index (`-2`), as the exercises write it."""
    return position - rank


def _fixes(a, b):
    """`(which, kind, position, new shape, result)`: one size-1 axis added to
    an operand (or its size-1 axis moved) that makes the two broadcast."""
    fixes = []
    for which, (small, other) in enumerate(((a, b), (b, a))):
        base = list(small)
        candidates = []
        if len(small) <= len(other):
            for p in range(len(base) + 1):
                candidates.append(("add", p, tuple([*base[:p], 1, *base[p:]])))
        if 1 in small and len(small) == len(other):
            i = small.index(1)
            rest = base[:i] + base[i + 1 :]
            for p in range(len(base)):
                moved = tuple([*rest[:p], 1, *rest[p:]])
                if moved != tuple(small):
                    candidates.append(("move", p, moved))
        for kind, p, shape in candidates:
            result = _broadcast(shape, other)
            if result is not None and len(result) == len(shape):
                fixes.append((which, kind, p, shape, result))
    return fixes


def _plausible(result, batch, sizes):
    """A broadcast result made of the case's own sizes, the batch axis first
    and nowhere else (unless another size equals it)."""
    if sizes and any(d not in sizes and d != 1 for d in result):
        return False
    if batch is None:
        return True
    if result[0] != batch:
        return False
    others = sizes - {batch} if sizes else set()
    return not (batch in result[1:] and batch not in others)


def _underlying(shape, names):
    """`(name, shape)` of a name whose shape is `shape` without its size-1
    axis (the tensor the operand was made from), or None."""
    for name, value in names:
        value = tuple(value)
        if len(value) + 1 == len(shape) and 1 in shape:
            i = list(shape).index(1)
            if tuple(shape[:i]) + tuple(shape[i + 1 :]) == value:
                return name, value
    return None


def _missing_axis(a, b, names, batch, sizes=frozenset()):
    """Name the size-1 axis that makes the operands broadcast, when the
    shapes admit one (keeping the batch axis first)."""
    fixes = [f for f in _fixes(a, b) if _plausible(f[4], batch, sizes)]
    if not fixes:
        return None
    which = {f[0] for f in fixes}
    results = {f[4] for f in fixes}
    if len(which) != 1 or len(results) != 1:
        return None
    which, kind, _, _, result = fixes[0]
    small, other = (a, b)[which], (b, a)[which]
    name = _name_of(small, names)
    if name is None and kind == "move" and _underlying(small, names):
        base_name, base_shape = _underlying(small, names)
        name = f"`{base_name}` {tuple(base_shape)}, made into"
        bare = base_name
    else:
        name = name or "the operand"
        bare = name.strip("`") if name != "the operand" else "x"
    positions = sorted({_index(f[2], len(f[3])) for f in fixes})
    if kind == "add":
        lead = (
            f"{name} {tuple(small)} has an axis missing to broadcast against "
            f"{tuple(other)}"
        )
    else:
        lead = (
            f"{name} {tuple(small)}, has its size-1 axis in the wrong place to "
            f"broadcast against {tuple(other)}"
        )
    if len(positions) == 1:
        p = positions[0]
        shape = fixes[0][3]
        if kind == "add":
            how = f"`ops.expand_dims({bare}, {p})` gives {tuple(shape)}"
        else:
            how = (
                f"the size-1 axis belongs at position {p}, {tuple(shape)} "
                f"(`ops.expand_dims({bare}, {p})` of the tensor without it)"
            )
        keys = (
            " (a mask of keys, the same for every query)"
            if p == -2 and len(shape) >= 3 and _is_mask_name(bare)
            else ""
        )
        return f"{lead}: {how}{keys}, which broadcasts to {result}."
    if kind == "add" and positions[-2:] == [-2, -1]:
        return (
            f"{lead}: it needs a size-1 axis. `ops.expand_dims({bare}, -2)` makes "
            "a mask of keys (the same for every query, True where a key may be "
            f"attended to); `ops.expand_dims({bare}, -1)` would mask queries. "
            f"Either broadcasts to {result}."
        )
    return None


def _is_mask_name(name):
    return "mask" in name.lower()


def _batch_size_where_not(a, b, batch, sizes):
    """An axis where one operand has the batch size and the other a size
    that is not 1: a size read from the batch axis?"""
    if batch is None or (sizes and len([d for d in sizes if d == batch]) > 1):
        return None
    rank = max(len(a), len(b))
    pa = (1,) * (rank - len(a)) + tuple(a)
    pb = (1,) * (rank - len(b)) + tuple(b)
    for i in range(1, rank):
        x, y = pa[i], pb[i]
        if x != y and 1 not in (x, y) and batch in (x, y):
            other = y if x == batch else x
            return (
                f"On axis {i - rank} one operand has {batch}, the batch size, "
                f"where the other has {other}: a size read from the batch axis? "
                f"(`ops.shape(x)[0]` is the batch size; a sequence length is "
                "`ops.shape(x)[-1]` of the token ids, or `[1]`.)"
            )
    return None


def _reduced_over(a, b, names):
    """An operand that is a name's shape with one axis (not the last) taken
    away, where the other operand has the shape that taking the last axis
    away gives: a reduction (argmax, sum, mean) over the wrong axis."""
    for name, value in names:
        value = tuple(value)
        if len(value) != len(a) + 1 or len(a) != len(b):
            continue
        last = value[:-1]
        for shape, other in ((tuple(a), tuple(b)), (tuple(b), tuple(a))):
            if other != last:
                continue
            axes = [
                i for i in range(len(value) - 1) if value[:i] + value[i + 1 :] == shape
            ]
            if len(axes) == 1:
                axis = axes[0] - len(value)
                return (
                    f"{shape} is `{name}` {value} with axis {axis} reduced away "
                    f"(an argmax, sum or mean over axis {axis}); over the last "
                    f"axis (`axis=-1`) it would give {other}, the other operand."
                )
    return None


def _elementwise(op, a, b, names, batch, sizes=frozenset()):
    symbol = _ELEMENTWISE[op]
    lines = [
        f"An element-wise `{symbol}` lines the two shapes up from the right and "
        f"needs equal sizes, or 1, on every axis: {tuple(a)} and {tuple(b)} do "
        "not broadcast."
    ]
    fix = _missing_axis(a, b, names, batch, sizes)
    if fix:
        lines.append(fix)
        return lines
    wrong_size = _batch_size_where_not(a, b, batch, sizes)
    if wrong_size:
        lines.append(wrong_size)
        return lines
    reduced = _reduced_over(a, b, names)
    if reduced:
        lines.append(reduced)
        return lines
    if len(a) == len(b):
        differ = [
            i
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            if x != y and 1 not in (x, y)
        ]
        if len(differ) == 1:
            i = differ[0]
            longer, shorter = (a, b) if a[i] > b[i] else (b, a)
            lname = _name_of(longer, names) or f"the operand {list(longer)}"
            sname = _name_of(shorter, names) or f"the operand {list(shorter)}"
            if op == "Mul" and longer[i] > 1 and shorter[i] > 1:
                lines.append(
                    f"{sname} and {lname} differ only on axis {i} "
                    f"({shorter[i]} and {longer[i]}): an element-wise product "
                    "pairs position i of one with position i of the other; to "
                    "pair every row of one with every row of the other, take a "
                    "matrix product (`ops.matmul`) instead."
                )
            elif longer[i] > shorter[i] > 1 and (not sizes or longer[i] not in sizes):
                lines.append(
                    f"{lname} is longer on axis {i} ({longer[i]}) than {sname} "
                    f"({shorter[i]}): if it holds more positions than this input "
                    f"has, slice it to the input's length (its first "
                    f"{shorter[i]}, `[:{shorter[i]}]` on that axis)."
                )
    return lines


def _matmul(op, a, b, names, weights, sizes=frozenset()):
    lines = []
    if len(a) >= 2 and len(b) >= 2 and a[-1] != b[-2]:
        swapped_a = (*a[:-2], a[-1], a[-2])
        swapped_b = (*b[:-2], b[-1], b[-2])
        for which, shape, fits in (
            ("first", a, swapped_a[-1] == b[-2]),
            ("second", b, a[-1] == swapped_b[-2]),
        ):
            if fits and len(shape) >= 2 and shape[-1] != shape[-2]:
                name = _name_of(shape, names) or f"the {which} operand"
                lines.append(
                    f"{name} {tuple(shape)} would fit with its last two axes "
                    "swapped: is it transposed (rows and columns the other "
                    "way round)?"
                )
        for w_name, w_shape in weights:
            w_shape = tuple(w_shape)
            if len(w_shape) == 2 and set(w_shape) == {a[-1], b[-2]}:
                lines.append(
                    f"The weight `{w_name}` {w_shape} maps one of these sizes to "
                    f"the other ({a[-1]} and {b[-2]}): is `{w_name}` applied "
                    "where the formula applies it?"
                )
    if len(a) >= 2 and len(b) >= 2 and a[-1] != b[-2]:
        lines.append(
            f"A matrix product needs the last axis of the first operand to equal "
            f"the second-to-last of the second: {tuple(a)} @ {tuple(b)} pairs "
            f"{a[-1]} with {b[-2]}."
        )
    elif len(a) > 2 and len(b) > 2 and a[:-2] != b[:-2]:
        lines.append(
            f"A batched matrix product needs the same leading (batch) axes: "
            f"{tuple(a)} @ {tuple(b)} has {tuple(a[:-2])} against {tuple(b[:-2])}."
        )
    for operand in (a, b):
        for name, value in names:
            value = tuple(value)
            if len(value) > 2 and tuple(reversed(value)) == tuple(operand):
                lines.append(
                    f"{tuple(operand)} is `{name}` {value} with every axis "
                    "reversed: `ops.transpose(x)` without `axes` reverses every "
                    "axis, the batch axis included; to swap only the last two "
                    "axes use `ops.swapaxes(x, -1, -2)`."
                )
    for w_name, w_shape in weights:
        w_shape = tuple(w_shape)
        if len(w_shape) != 2 or w_shape != tuple(b[-2:]) or a[-1] == b[-2]:
            continue
        if b[-2] % a[-1] == 0 and b[-2] // a[-1] >= 2:
            k = b[-2] // a[-1]
            for name, value in names:
                value = tuple(value)
                doubled = [
                    i
                    for i, d in enumerate(value[:-1])
                    if i > 0 and d % k == 0 and d // k in sizes
                ]
                if value and value[-1] == a[-1] and doubled:
                    i = doubled[0]
                    lines.append(
                        f"`{w_name}` {w_shape} takes {b[-2]} = {k} x {a[-1]} "
                        f"features, but `{name}` {value} has {a[-1]} features and "
                        f"{value[i]} = {k} x {value[i] // k} on axis {i}: the "
                        f"pieces were concatenated along axis {i}, not along the "
                        "features (`axis=-1`)."
                    )
        fits = [n for n, s in weights if len(s) == 2 and s[0] == a[-1] and n != w_name]
        if len(fits) == 1:
            lines.append(
                f"The second operand is the weight `{w_name}` {w_shape}, which "
                f"does not fit a first operand of last axis {a[-1]}; "
                f"`{fits[0]}` does: are `{w_name}` and `{fits[0]}` swapped?"
            )
    lines = list(dict.fromkeys(lines))  # both operands may give one line
    rules = [x for x in lines if x.startswith("A ")]
    return rules + [x for x in lines if x not in rules]


def explain(error_text, names, weights=(), batch=None, sizes=frozenset()):
    """Lines explaining a shape error, or [].

    Args:
        error_text: the error's message.
        names: `[(name, shape)]` of the names on the failing line.
        weights: `[(name, shape)]` of the case's weights.
        batch: the case's batch size: a fix keeps it the first axis.
        sizes: the sizes of the case's inputs and constructor arguments: a
            fix broadcasts to these only.
    """
    op = _OP.search(error_text)
    op = op.group(1) if op else ""
    shapes = _shapes_in(error_text.split("[Op:")[0])
    if len(shapes) < 2:
        return []
    if op in ("SelectV2", "Select") and len(shapes) >= 3:
        condition, then = shapes[0], shapes[1]
        a, b = condition, then
    else:
        a, b = shapes[0], shapes[1]
    try:
        if op in _ELEMENTWISE:
            return _elementwise(op, a, b, names, batch, set(sizes))
        if op in _MATMUL:
            return _matmul(op, a, b, names, weights, set(sizes))
    except Exception:  # an explanation must never hide the error itself
        return []
    return []
