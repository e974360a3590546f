"""What a wrong output shows: a diagnosis read from the output itself.

A check knows some typical mistakes by name (the judge's variants: the same
computation with one mistake built in). A mistake outside that list still
leaves marks on what the student's code returned, and those marks need no
list: a shape that is a permutation of the expected one, values that are
the expected ones times a constant, weights that sum to 1 over the wrong
axis, weight where the expected weight is exactly 0, NaN where every key is
masked, errors confined to a few positions of one axis.

`read(case, name, received, expected, valid)` returns `Evidence`: what was
*observed* (always true of the arrays, never a guess) and, only where the
observation supports it, the mistake it *names*. A named mistake is never
one the observation rules out: every rule below says what it saw, and names
a mistake only when that mistake produces exactly what it saw.

Both the student's notebook (visible cases) and the grader (every case) use
it, from `core.decide`, on the same arrays, so a student reads the same
diagnosis while working and in the feedback.
"""

import dataclasses
import itertools
import math

import numpy as np

__all__ = ["Evidence", "read", "read_outputs"]

#: Relative closeness for "the factor is about sqrt(d)" and the like.
_NEAR = 0.01


@dataclasses.dataclass
class Evidence:
    """What one output (or the outputs together) showed."""

    observed: list = dataclasses.field(default_factory=list)
    named: list = dataclasses.field(default_factory=list)
    #: The exercise's recipe, said when no mistake is named.
    reminder: str = ""

    def __bool__(self):
        return bool(self.observed or self.named)

    def extend(self, other):
        self.observed += [o for o in other.observed if o not in self.observed]
        self.named += [n for n in other.named if n not in self.named]
        return self


def read(case, name, received, expected, valid=None, tolerance=None):
    """The evidence in one output that differs from the expected one.

    Args:
        case: the `Case` (its inputs and constructor arguments give the
            sizes a factor or a shape is compared with).
        name: the output's name, for the messages.
        received, expected: float64 arrays.
        valid: where the output is compared (None: everywhere).
        tolerance: a `core.Tolerance`.
    """
    from autograder.checks.core import Tolerance

    tolerance = tolerance or Tolerance()
    received = np.asarray(received, np.float64)
    expected = np.asarray(expected, np.float64)
    evidence = Evidence()
    if received.shape != expected.shape:
        return _shape(evidence, case, name, received, expected)
    mask = (
        np.ones(expected.shape, bool)
        if valid is None
        else np.broadcast_to(np.asarray(valid, bool), expected.shape)
    )
    if not np.isfinite(received[mask]).all():
        return _non_finite(evidence, name, received, expected, mask)
    close = _closeness(tolerance)
    for rule in (_swapped, _factor, _offset):
        if rule(evidence, case, name, received, expected, mask, close):
            return evidence
    if _is_distribution(expected, mask):
        _distribution(evidence, name, received, expected, mask, close)
    _where(evidence, name, received, expected, mask, close)
    return evidence


def read_outputs(passed, failed):
    """Evidence from the outputs together: which were right and which not.

    Args:
        passed, failed: the names of the outputs that matched and those that
            did not, in one case.
    """
    evidence = Evidence()
    weights = [n for n in passed if "weight" in n]
    if weights and failed:
        evidence.observed.append(
            f"`{weights[0]}` is right but {_names(failed)} not: the attention "
            "itself is right; what is computed from the weights is not (what "
            "they multiply, the concatenation, or the layers after)."
        )
    wrong_weights = [n for n in failed if "weight" in n]
    others = [n for n in passed if "weight" not in n]
    if wrong_weights and others:
        evidence.observed.append(
            f"{_names(others)} right but `{wrong_weights[0]}` not: the output "
            "is computed from the right weights; return those same weights."
        )
    return evidence


# ------------------------------------------------------------------ shapes


def _sizes(case):
    """Named sizes a wrong axis can be compared with: the constructor's
    integer arguments and each input's axes."""
    named = {}
    for key, value in (case.init or {}).items():
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            named.setdefault(value, f"{key}={value}")
    for key, value in (case.inputs or {}).items():
        shape = np.shape(value)
        if len(shape) >= 2 and shape[-1] > 1:
            named.setdefault(shape[-1], f"the last axis of `{key}` ({shape[-1]})")
    return named


def _shape(evidence, case, name, received, expected):
    got, want = received.shape, expected.shape
    if len(got) == len(want) and sorted(got) == sorted(want):
        axes = [i for i in range(len(want)) if got[i] != want[i]]
        evidence.observed.append(
            f"`{name}` has the expected axes in another order: received {got}, "
            f"expected {want} (axes {', '.join(map(str, axes))} moved)."
        )
        evidence.named.append(
            "A transpose is missing or one too many (for the last two axes: "
            "`ops.swapaxes(x, -1, -2)`; `reshape` does not move axes)."
        )
    elif len(got) == len(want) + 1 and _dot_batches(got, want) and not _ones(got):
        evidence.observed.append(
            f"`{name}` has {len(got)} axes {got} where {len(want)} {want} were "
            "expected, with the batch axis twice."
        )
        evidence.named.append(
            "A product paired every batch item with every other one: `ops.dot` "
            "(like `np.dot` and `tensordot`) does, and so does `ops.matmul` of "
            "a tensor without the batch axis (or with it in another place) "
            "against a batched one. Multiply batch by batch: both operands "
            "with the batch axis first, as `ops.matmul` of (B, n, k) and "
            "(B, k, m)."
        )
    elif len(got) == len(want) + 1 and _without_ones(got) == _without_ones(want):
        axis = next(i for i in range(len(got)) if got[:i] + got[i + 1 :] == want)
        evidence.observed.append(
            f"`{name}` has an extra axis of size 1 at position {axis}: received "
            f"{got}, expected {want}."
        )
        evidence.named.append(
            "An `expand_dims` or `keepdims=True` too many, or a `squeeze` missing."
        )
    elif len(got) + 1 == len(want):
        evidence.observed.append(
            f"`{name}` has one axis too few: received {got}, expected {want} "
            "(an axis was summed, averaged or squeezed away)."
        )
    elif len(got) == len(want):
        sizes = _sizes(case)
        for axis, (g, w) in enumerate(zip(got, want, strict=True)):
            if g == w:
                continue
            line = f"`{name}`: axis {axis} has size {g}, expected {w}"
            if w in sizes and g in sizes:
                line += f" ({sizes[w]}), not {sizes[g]}"
            evidence.observed.append(line + ".")
    return evidence


def _without_ones(shape):
    return tuple(s for s in shape if s != 1)


def _ones(shape):
    """Whether the shape has an axis of size 1 (which could be anything)."""
    return 1 in shape


def _dot_batches(got, want):
    """`ops.dot(a, b)` of (B, T, D) and (B, D, S) gives (B, T, B, S)."""
    batch = want[0]
    return batch > 1 and any(
        got[:i] + got[i + 1 :] == want and got[i] == batch and i > 0
        for i in range(len(got))
    )


# ------------------------------------------------------------------ values


def _closeness(tolerance):
    def close(a, b, mask):
        diff = np.abs(a - b)
        allowed = tolerance.atol + tolerance.rtol * np.abs(b)
        return bool((diff[mask] <= allowed[mask]).all())

    return close


def _swapped(evidence, case, name, received, expected, mask, close):
    """Values transposed between two axes of the same size."""
    if not mask.all():
        return False
    for i, j in itertools.combinations(range(expected.ndim), 2):
        if expected.shape[i] != expected.shape[j] or expected.shape[i] < 2:
            continue
        if close(received, np.swapaxes(expected, i, j), mask):
            evidence.observed.append(
                f"`{name}` is the expected output with axes {i} and {j} swapped "
                "(they have the same size, so the shape could not show it)."
            )
            evidence.named.append(
                "A transpose is missing or one too many: check which axis is "
                "the queries' and which the keys'."
            )
            return True
    return False


def _factor(evidence, case, name, received, expected, mask, close):
    """received = c * expected, for one constant c != 1."""
    e, r = expected[mask], received[mask]
    energy = float(np.dot(e, e))
    if energy < 1e-12:
        return False
    c = float(np.dot(r, e)) / energy
    if abs(c - 1) < 0.02 or not close(received, c * expected, mask):
        return False
    evidence.observed.append(
        f"`{name}` is the expected output times {c:.4g} at every position."
    )
    for value, words, mistake in _constants(case):
        if abs(c - value) <= _NEAR * abs(value):
            evidence.observed[-1] = evidence.observed[-1][:-1] + f" ({words})."
            if mistake:
                evidence.named.append(mistake)
            break
    return True


def _constants(case):
    """(value, how it reads, the mistake it names) for a factor's candidates."""
    found = []
    for size, label in sorted(_sizes(case).items()):
        root = math.sqrt(size)
        found += [
            (
                root,
                f"sqrt({size}), {label}",
                f"A division by sqrt({size}) is missing (or it multiplies "
                "instead of dividing).",
            ),
            (
                1 / root,
                f"1/sqrt({size}), {label}",
                f"Divided by sqrt({size}) once too often, or where the exercise "
                "does not scale.",
            ),
            (float(size), f"{size}, {label}", ""),
            (1 / size, f"1/{size}, {label}", ""),
        ]
    found += [
        (2.0, "2", "Something is added twice (a residual, a bias, a term)."),
        (0.5, "1/2", ""),
        (-1.0, "-1", "The sign is flipped."),
    ]
    return found


def _offset(evidence, case, name, received, expected, mask, close):
    """received = expected + c, for one constant c != 0."""
    shift = float(np.mean(received[mask] - expected[mask]))
    if abs(shift) < 1e-3 or not close(received, expected + shift, mask):
        return False
    evidence.observed.append(
        f"`{name}` is the expected output plus {shift:.4g} at every position "
        "(a constant added)."
    )
    return True


def _is_distribution(expected, mask):
    """Whether the expected output is a probability over its last axis."""
    if expected.ndim < 1 or expected.shape[-1] < 2 or not mask.all():
        return False
    sums = expected.sum(axis=-1)
    return bool((expected >= -1e-7).all() and np.allclose(sums, 1, atol=1e-4))


def _distribution(evidence, name, received, expected, mask, close):
    """Weights (a softmax over the last axis) that came out wrong."""
    sums = received.sum(axis=-1)
    if not ((received >= -1e-6).all() and np.allclose(sums, 1, atol=1e-3)):
        other = [
            axis
            for axis in range(received.ndim - 1)
            if received.shape[axis] > 1
            and (received >= -1e-6).all()
            and np.allclose(received.sum(axis=axis), 1, atol=1e-3)
        ]
        if other:
            evidence.observed.append(
                f"`{name}` sums to 1 over axis {other[0]}, not over the last "
                f"axis (rows sum to {sums.min():.3g}..{sums.max():.3g})."
            )
            evidence.named.append(
                f"The softmax is taken over axis {other[0]}; it belongs on the "
                "last axis (the keys): `ops.softmax(scores, axis=-1)`."
            )
            return
        outside = (received < -1e-6).any() or (received > 1 + 1e-6).any()
        evidence.observed.append(
            f"`{name}` does not sum to 1 over the last axis (sums "
            f"{sums.min():.3g}..{sums.max():.3g})"
            + (", and has values outside [0, 1]." if outside else ".")
        )
        if outside:
            evidence.named.append(
                "These are not softmax weights: the scores (before the softmax) "
                "seem to be returned, or the softmax is missing."
            )
        return
    zero = expected <= 1e-9
    if zero.any() and (~zero).any():
        leaked = zero & (received > 1e-4)
        starved = ~zero & (received <= 1e-9)
        if leaked.any() and starved.any():
            share = float(received[zero].sum() / max(received.sum(), 1e-12))
            if share > 0.5:
                evidence.observed.append(
                    f"`{name}` puts {share:.0%} of the weight on positions whose "
                    "expected weight is 0 (masked) and none on some that should "
                    "have weight."
                )
                evidence.named.append(
                    "The mask seems inverted: True marks a position to keep "
                    "(attend to), False one to hide."
                )
                return
        if leaked.any():
            rows = int(leaked.reshape(-1, leaked.shape[-1]).any(-1).sum())
            evidence.observed.append(
                f"`{name}` gives weight (up to {received[leaked].max():.3g}) to "
                f"positions whose expected weight is exactly 0, in {rows} row(s): "
                "masked keys or future positions."
            )
            evidence.named.append(
                "A mask (padding or causal) does not reach the softmax on those "
                "positions: check that each mask is applied, and on which axis "
                "it broadcasts."
            )
            return
    flat_e = expected.reshape(-1, expected.shape[-1])
    flat_r = received.reshape(-1, received.shape[-1])
    uniform = np.all(np.abs(flat_e - flat_e[:, :1]) < 1e-7, axis=-1)
    wrong = ~np.all(np.abs(flat_r - flat_e) <= 5e-3 + 5e-3 * np.abs(flat_e), axis=-1)
    if uniform.any() and wrong.any() and not (wrong & ~uniform).any():
        evidence.observed.append(
            f"`{name}` is right except in the rows where every key is masked, "
            "whose expected weights are uniform (the softmax of equal scores)."
        )
        evidence.named.append(
            "Fill masked scores with a large negative number and take the "
            "softmax of every row; a row with every key masked then gets "
            "uniform weights."
        )


def _non_finite(evidence, name, received, expected, mask):
    bad = mask & ~np.isfinite(received)
    evidence.observed.append(
        f"`{name}` has {int(bad.sum())} non-finite value(s) (NaN or inf)."
    )
    if expected.ndim >= 1 and expected.shape[-1] > 1:
        flat_e = expected.reshape(-1, expected.shape[-1])
        flat_bad = bad.reshape(-1, bad.shape[-1]).any(-1)
        uniform = np.all(np.abs(flat_e - flat_e[:, :1]) < 1e-7, axis=-1)
        if (
            flat_bad.any()
            and uniform[flat_bad].all()
            and _is_distribution(expected, mask)
        ):
            evidence.named.append(
                "NaN in rows where every key is masked: filling masked scores "
                "with -inf makes such a row 0/0; use a large negative number "
                "(e.g. -1e9) instead."
            )
    return evidence


def _where(evidence, name, received, expected, mask, close):
    """The positions that differ, when they are confined to some indices of
    an axis (the first step right and the others wrong, one batch item...)."""
    wrong = mask & ~np.isclose(received, expected, rtol=5e-3, atol=5e-3)
    if not wrong.any() or wrong.ndim < 2:
        return
    for axis in range(1, wrong.ndim):
        size = wrong.shape[axis]
        if size < 2:
            continue
        other = tuple(a for a in range(wrong.ndim) if a != axis)
        bad = np.flatnonzero(wrong.any(axis=other))
        if 0 < len(bad) < size:
            shown = ", ".join(map(str, bad[:6])) + (", ..." if len(bad) > 6 else "")
            evidence.observed.append(
                f"`{name}` differs only at index {shown} of axis {axis} (of "
                f"{size}); the other {size - len(bad)} are right."
            )
            return


def _names(names):
    quoted = [f"`{n}`" for n in names]
    return quoted[0] + " is" if len(quoted) == 1 else ", ".join(quoted) + " are"
