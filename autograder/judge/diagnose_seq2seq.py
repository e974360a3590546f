"""The exercises' own diagnosis (judge side): what a failed case shows.

See `autograder.judge.Spec.diagnose`. Registered with `@diagnoses(check)`.

Each diagnoser recomputes the exercise's formula, stage by stage, with the
case's weights (NumPy, `seq2seq_math`), over *families* of computations
rather than a list of mistakes: every activation of a family in place of
the tanh, the weight vector inside or outside it, the mask with or without
its query axis, filled with 0 or not at all, the softmax over another axis,
the context from the scores or the projected keys, the logits from the old
state... A later stage is recomputed from what the student's own earlier
stage returned (the weights they returned, the state they returned), so the
message says at which stage the output stops being consistent.

A hint names a deviation only when every computation of the families that
reproduces the student's output has that deviation (`_Fit`); otherwise the
message says only what it observed. Nothing here raises: a diagnoser that
fails returns None (`_safe`).
"""

import contextlib
import functools
import itertools
import math

import numpy as np

from autograder.checks.core import Tolerance, compare
from autograder.checks.evidence import Evidence
from autograder.judge import diagnoses
from autograder.judge import seq2seq as _specs
from autograder.judge import seq2seq_math as M

_TOL = Tolerance()
_ROUND_TRIP = " after from_config"


# ------------------------------------------------------------------ helpers


def _safe(function):
    @functools.wraps(function)
    def wrapper(case, got, expected, wrong):
        try:
            with np.errstate(all="ignore"):  # overflowing readings are dropped
                return function(case, got, expected, wrong)
        except Exception:  # a judge bug must never cost the diagnosis
            return None

    return wrapper


def _arr(value):
    return np.asarray(value, np.float64)


def _same(received, hypothesis, valid=None):
    """Whether `received` is `hypothesis` within the checks' tolerance."""
    if received is None or hypothesis is None:
        return False
    received, hypothesis = _arr(received), _arr(hypothesis)
    if received.shape != hypothesis.shape:
        return False
    if not np.isfinite(hypothesis).all():
        return False
    if valid is not None:
        try:
            np.broadcast_to(valid, hypothesis.shape)
        except ValueError:
            valid = None
    return compare(received, hypothesis, valid, _TOL) is None


def _identical(a, b):
    a, b = _arr(a), _arr(b)
    return a.shape == b.shape and np.allclose(
        a, b, rtol=1e-9, atol=1e-12, equal_nan=True
    )


class _Fit:
    """Computations of a family, each with the deviations from the exercise's
    formula it has (`{stage: deviation text}`); which reproduce an output.

    The computations are evaluated lazily, those with the fewest deviations
    first; a result already given by fewer deviations is not kept, so that a
    longer way of writing the same numbers does not count as another reading.
    Two readings with as many deviations that give the same numbers are both
    kept: the output cannot tell them apart, and `_common` names neither."""

    #: Computations with more deviations than this are not tried: a reading
    #: needs a few changes to the formula, not a rewrite.
    LIMIT = 3

    def __init__(self):
        self.pending = []
        self._entries = None

    def add(self, deviations, compute):
        if len(deviations) > self.LIMIT:
            return
        self.pending.append((dict(deviations), compute))
        self._entries = None

    def merge(self, other):
        self.pending += other.pending
        self._entries = None

    @property
    def entries(self):
        if self._entries is None:
            entries, seen = [], {}
            for deviations, compute in sorted(self.pending, key=lambda p: len(p[0])):
                try:
                    value = _arr(compute() if callable(compute) else compute)
                except Exception:  # this computation does not apply here
                    continue
                if not np.isfinite(value).all():
                    continue
                key = (value.shape, np.round(value, 9).tobytes())
                if key in seen and seen[key] < len(deviations):
                    continue  # a longer way of writing the same numbers
                seen.setdefault(key, len(deviations))
                entries.append((deviations, value))
            self._entries = entries
        return self._entries

    def matches(self, received, valid=None):
        if received is None:
            return []
        return [d for d, value in self.entries if _same(received, value, valid)]

    def readings(self, received, valid=None, right=None):
        """The deviations of every computation that reproduces `received`
        (none when the right computation does, or `received` is `right`)."""
        found = self.matches(received, valid)
        if any(not d for d in found):
            return []
        if right is not None and _same(received, right, valid):
            return []
        return found


def _common(readings):
    """The deviations every reading has, `{stage: text}` (empty when the
    readings disagree, or there are none)."""
    if not readings:
        return {}
    common = dict(readings[0])
    for reading in readings[1:]:
        common = {k: v for k, v in common.items() if reading.get(k) == v}
    return common


def _name(evidence, readings, what, observed_line=None):
    """Name the deviations every reading of `what` has; True if named."""
    common = _common(readings)
    if not common:
        return False
    if observed_line:
        evidence.observed.append(observed_line)
    for stage in sorted(common):
        text = common[stage]
        if text and text not in evidence.named:
            evidence.named.append(text)
    return True


def _got(got, name):
    value = got.get(name)
    return None if value is None else _arr(value)


def _taps(got, part):
    """The recorded calls of `part`: [{param: array}] in call order."""
    calls = {}
    prefix = f"tap:{part}#"
    for key, value in got.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        index, _, param = rest.partition(":")
        try:
            calls.setdefault(int(index), {})[param] = _arr(value)
        except ValueError:
            continue
    return [calls[k] for k in sorted(calls)]


def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


#: name -> f, the activations a tanh could have been replaced with.
ACTIVATIONS = {
    "tanh": np.tanh,
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": M.sigmoid,
    "gelu": _gelu,
    "silu": lambda x: x * M.sigmoid(x),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "exp": np.exp,
}


def _activation_text(name, formula):
    if name == "identity":
        return (
            f"The tanh is missing: your output matches {formula.format(f='')} "
            f"with no activation; it is {formula.format(f='tanh')}."
        )
    return (
        f"The activation is not tanh: your output matches {formula.format(f=name)}; "
        f"it is {formula.format(f='tanh')}."
    )


def _round_trip(case, got, expected, wrong):
    """Only the layer rebuilt from its config differs."""
    main = [n for n in expected if not n.endswith(_ROUND_TRIP)]
    rebuilt = [n for n in wrong if n.endswith(_ROUND_TRIP)]
    if not rebuilt or any(n in wrong for n in main):
        return None
    args = ", ".join(f"`{k}`" for k in case.init) or "its arguments"
    return Evidence(
        observed=[
            "Your layer's own outputs are right, but the layer rebuilt with "
            "`from_config(get_config())` gives other outputs."
        ],
        named=[
            f"`get_config()` does not return what `__init__` needs: return "
            f"{args} (with `super().get_config()`)."
        ],
    )


def _swapped_outputs(got, expected, order):
    """Two outputs returned in each other's place."""
    main = [n for n in order if n in expected and n in got]
    for a, b in itertools.combinations(main, 2):
        if _same(got[a], expected[b]) and _same(got[b], expected[a]):
            return Evidence(
                observed=[f"Your `{a}` is the expected `{b}`, and the reverse."],
                named=[
                    f"The outputs are returned in the wrong order: return "
                    f"{', '.join(order)}, in that order."
                ],
            )
    return None


def _constant_along(value, axis):
    """Whether `value` does not change along `axis` (and the axis has > 1)."""
    value = _arr(value)
    if value.ndim == 0 or value.shape[axis] < 2 or not np.isfinite(value).all():
        return False
    first = np.take(value, [0], axis=axis)
    scale = max(float(np.abs(value).max()), 1e-6)
    return bool(np.all(np.abs(value - first) <= 1e-4 * scale + 1e-7))


# ------------------------------------------------------------------ scores

_SCORE_FORMULA = {
    "check_dot_score": "s_t . h_i",
    "check_general_score": "s_t . (h_i W_a)",
    "check_concat_score": "tanh(s_t W_1 + h_i W_2) . v_a",
}

#: elementwise functions applied to the right scores, and what they say.
_ON_SCORES = [
    (
        lambda s: M.softmax(s, -1),
        "Your scores went through a softmax over the keys: a score function "
        "returns the raw scores; the softmax comes later (masked_softmax).",
    ),
    (
        lambda s: M.softmax(s, -2),
        "Your scores went through a softmax over the queries: a score function "
        "returns the raw scores, before any softmax.",
    ),
    (np.tanh, "Your scores went through a tanh: return them as they are."),
    (M.sigmoid, "Your scores went through a sigmoid: return them as they are."),
    (np.exp, "Your scores went through exp: return them as they are."),
]


def _scores_generic(case, got, expected, fit):
    """What every score function's output can show."""
    evidence = Evidence()
    received = _got(got, "scores")
    right = _arr(expected["scores"])
    if received is None:
        return evidence
    # the right formula with a function applied to the result
    for function, text in _ON_SCORES:
        fit.add({"after": text}, lambda function=function: function(right))
        fit.add(
            {"after": text, "T": _TRANSPOSED_TEXT},
            lambda function=function: np.swapaxes(function(right), -1, -2),
        )
    readings = fit.readings(received, right=right)
    if _name(evidence, readings, "scores"):
        evidence.observed.insert(
            0,
            "Your scores are reproduced by the formula computed with the "
            "change(s) below, with the case's weights.",
        )
        return evidence
    if received.shape == right.shape and received.ndim == 3:
        if _constant_along(received, -1) and not _constant_along(right, -1):
            evidence.observed.append(
                "Your scores are the same for every key (along the last axis): "
                "they do not depend on the keys."
            )
        elif _constant_along(received, -2) and not _constant_along(right, -2):
            evidence.observed.append(
                "Your scores are the same for every query (along axis 1): they "
                "do not depend on the queries."
            )
    return evidence


def _transposed(value):
    return np.swapaxes(value, -1, -2)


def _reshaped(value):
    """What `ops.reshape` to the transposed shape gives: the same numbers in
    their order, not the transpose."""
    shape = (*value.shape[:-2], value.shape[-1], value.shape[-2])
    return np.reshape(value, shape)


_RESHAPED = (
    "The keys are reshaped to (..., d, T_k) instead of transposed: `reshape` "
    "keeps the numbers in their order, it does not move axes. Use "
    "`ops.swapaxes(keys, -1, -2)`."
)


_TRANSPOSED_TEXT = (
    "Your scores are transposed: (batch, keys, queries) instead of "
    "(batch, queries, keys)."
)


def _with_transposed(fit, deviations, compute):
    fit.add(deviations, compute)
    fit.add({**deviations, "T": _TRANSPOSED_TEXT}, lambda: _transposed(compute()))


def _scalings(fit, right, sizes, score):
    """The score divided or multiplied by a size of the case or its root."""
    for size, label in sizes.items():
        if size < 2:
            continue
        for value, words in ((math.sqrt(size), f"sqrt({size})"), (size, f"{size}")):
            for op, verb in ((np.divide, "divided"), (np.multiply, "multiplied")):
                text = (
                    f"Your scores are {verb} by {words} ({label} = {size}): "
                    f"{score} is not scaled."
                )
                if verb == "divided" and words.startswith("sqrt"):
                    text += " (Dividing by sqrt(d) is the Transformer's scaling.)"
                _with_transposed(
                    fit,
                    {"scale": text},
                    lambda op=op, value=value: op(right(), value),
                )


@diagnoses("check_dot_score")
@_safe
def _dot_score(case, got, expected, wrong):
    q, k = _arr(case.inputs["query"]), _arr(case.inputs["keys"])
    fit = _Fit()
    _with_transposed(fit, {}, lambda: q @ _transposed(k))
    _scalings(
        fit,
        lambda: q @ _transposed(k),
        {q.shape[-1]: "d"},
        "Luong's dot score s_t . h_i",
    )
    _with_transposed(fit, {"reshape": _RESHAPED}, lambda: q @ _reshaped(k))
    _with_transposed(
        fit,
        {
            "keys": "Your scores use the queries twice (q . q): the score of "
            "query t and key i is s_t . h_i, the query times the key."
        },
        lambda: q @ _transposed(q),
    )
    _with_transposed(
        fit,
        {
            "queries": "Your scores use the keys twice (h . h): the score of "
            "query t and key i is s_t . h_i, the query times the key."
        },
        lambda: k @ _transposed(k),
    )
    evidence = _scores_generic(case, got, expected, fit)
    return evidence.extend(_round_trip(case, got, expected, wrong) or Evidence())


@diagnoses("check_general_score")
@_safe
def _general_score(case, got, expected, wrong):
    q, k = _arr(case.inputs["query"]), _arr(case.inputs["keys"])
    W = _arr(case.weights["W_a"])  # (d_k, d_q)
    fit = _Fit()
    right = lambda: q @ _transposed(k @ W)  # noqa: E731
    _with_transposed(fit, {}, right)
    _scalings(
        fit,
        right,
        {q.shape[-1]: "d_q", k.shape[-1]: "d_k"},
        "Luong's general score s_t . (h_i W_a)",
    )
    unused = (
        "`W_a` is not used: your scores are the dot score s_t . h_i; the general "
        "score is s_t . (h_i W_a) (`ops.matmul(keys, W_a)` first)."
    )
    _with_transposed(fit, {"W_a": unused}, lambda: q @ _transposed(k))
    _with_transposed(
        fit,
        {"reshape": _RESHAPED.replace("The keys are", "h W_a is")},
        lambda: q @ _reshaped(k @ W),
    )
    twice = (
        "`W_a` is applied twice (to the keys and to the queries); the general "
        "score is s_t . (h_i W_a), `W_a` once, on the keys."
    )
    _with_transposed(fit, {"W_a": twice}, lambda: (q @ W.T) @ _transposed(k @ W))
    evidence = _scores_generic(case, got, expected, fit)
    return evidence.extend(_round_trip(case, got, expected, wrong) or Evidence())


_CONCAT = "{f}(s_t W_1 + h_i W_2) . v_a"


@diagnoses("check_concat_score")
@_safe
def _concat_score(case, got, expected, wrong):
    q, k = _arr(case.inputs["query"]), _arr(case.inputs["keys"])
    W1, W2, v = (_arr(case.weights[n]) for n in ("W_1", "W_2", "v_a"))
    fit = _Fit()

    def parts(W_q, W_k):
        return (q @ W_q)[..., :, None, :], (k @ W_k)[..., None, :, :]

    combines = [
        ({}, lambda a, b: a + b),
        (
            {
                "combine": "s_t W_1 and h_i W_2 are multiplied; the concat "
                "score adds them: tanh(s_t W_1 + h_i W_2)."
            },
            lambda a, b: a * b,
        ),
    ]
    placements = [
        ("after", lambda f, a, b, c: (f(c(a, b)) * v).sum(-1)),
        ("inside", lambda f, a, b, c: f(c(a, b) * v).sum(-1)),
        ("none", lambda f, a, b, c: f(c(a, b)).sum(-1)),
        ("outside", lambda f, a, b, c: f((c(a, b) * v).sum(-1))),
        ("separate", lambda f, a, b, c: ((f(a) + f(b)) * v).sum(-1)),
        ("mean", lambda f, a, b, c: (f(c(a, b)) * v).mean(-1)),
        ("keys", lambda f, a, b, c: (f(c(a, b)) * v).sum(-2)),
        ("queries", lambda f, a, b, c: (f(c(a, b)) * v).sum(-3)),
    ]
    place_text = {
        "after": "",
        "inside": "`v_a` is applied inside the tanh: your output matches "
        "sum(tanh((s_t W_1 + h_i W_2) * v_a)); multiply tanh(...) by `v_a` "
        "outside the tanh, then sum over the units.",
        "none": "`v_a` is not used: your scores sum the tanh units without "
        "weighting them by `v_a` (tanh(...) . v_a).",
        "outside": "The tanh is applied after the sum over the units: your "
        "output matches tanh((s_t W_1 + h_i W_2) . v_a); the tanh comes first, "
        "on each unit, and tanh(...) . v_a after it.",
        "separate": "The tanh is applied to s_t W_1 and h_i W_2 separately: "
        "add them first, then one tanh: tanh(s_t W_1 + h_i W_2).",
        "mean": "Your scores average the units (`ops.mean`) where tanh(...) . v_a "
        "sums them (`ops.sum(..., axis=-1)`).",
        "keys": "Your scores sum over the keys (axis -2) where tanh(...) . v_a "
        "sums over the units, the last axis: `ops.sum(..., axis=-1)`.",
        "queries": "Your scores sum over the queries (axis -3) where "
        "tanh(...) . v_a sums over the units, the last axis: "
        "`ops.sum(..., axis=-1)`.",
    }
    swaps = [({}, (W1, W2))]
    if q.shape[-1] == k.shape[-1]:
        swaps.append(
            (
                {
                    "W": "`W_1` and `W_2` are swapped: `W_1` projects the query "
                    "s_t, `W_2` the keys h_i."
                },
                (W2, W1),
            )
        )
    for swap, (Wq, Wk) in swaps:
        a, b = parts(Wq, Wk)
        for (combine, c), (name, f), (place, score) in itertools.product(
            combines, ACTIVATIONS.items(), placements
        ):
            deviations = {**swap, **combine}
            if name != "tanh":
                deviations["act"] = _activation_text(name, _CONCAT)
            if place != "after":
                deviations["v"] = place_text[place]
            _with_transposed(
                fit,
                deviations,
                lambda f=f, score=score, c=c, a=a, b=b: score(f, a, b, c),
            )
    evidence = _scores_generic(case, got, expected, fit)
    return evidence.extend(_round_trip(case, got, expected, wrong) or Evidence())


# ----------------------------------------------------------- masked softmax

_FILL_ZERO = (
    "Your padded scores are 0 (the scores multiplied by the mask): a score of 0 "
    "still gets weight exp(0) in the softmax. Fill padded scores with a large "
    "negative number (-1e9) with `ops.where(mask, scores, -1e9)` instead of "
    "multiplying."
)
_SMALL_FILLS = (-1.0, -10.0, -100.0, -1000.0, -1e4)
_FILL_SMALL = (
    "Your padded scores are filled with {c:g}, which is not negative enough: "
    "where the real scores are lower, the padded keys still get weight. Fill "
    "with a large negative number (-1e9)."
)
_FILL_NONE = (
    "The softmax runs over every key and the padded weights are zeroed only "
    "afterwards, so the real keys' weights no longer sum to 1. Fill the padded "
    "scores with a large negative number (-1e9) before the softmax."
)
_NO_ZERO = (
    "Where every key is padding your weights are 1/keys. Padded keys must get "
    "exactly zero weight even then: zero them after the softmax with "
    "`ops.where(mask, weights, 0)`."
)
_MASK_AS_GIVEN = (
    "The (batch, keys) mask is used without a query axis: broadcasting lines "
    "it up with the last two axes of the scores, so mask row b masks query b. "
    "Add the query axis first: `ops.expand_dims(mask, -2)` gives "
    "(batch, 1, keys)."
)
_MASK_ON_QUERIES = (
    "The mask got its new axis last, (batch, keys, 1): it masks the queries, not "
    "the keys. Add the query axis with `ops.expand_dims(mask, -2)`: "
    "(batch, 1, keys)."
)
_MASK_FULL_EXPANDED = (
    "A full (batch, queries, keys) mask got a new axis too; add the query axis "
    "only to a (batch, keys) mask, one axis fewer than the scores."
)
_INVERTED = (
    "Your mask is inverted: True means 'may attend' (a real token), False "
    "means padding."
)
_NO_MASK = "The mask is not applied: padded keys got weight."
_AXIS_BATCH = (
    "The softmax runs over axis 0 (the batch); it runs over the encoder steps, "
    "the last axis: `ops.softmax(..., axis=-1)`."
)
_AXIS = (
    "The softmax runs over axis -2 (the queries); it runs over the keys, the "
    "last axis: `ops.softmax(..., axis=-1)`."
)


def _masks(mask, scores):
    """(deviations, mask as the student's code could have shaped it)."""
    mask = np.asarray(mask, bool)
    try:
        options = [({}, M.key_mask(mask, scores))]
    except ValueError:  # scores of another shape than the mask's
        return []
    options.append(({"mask": _INVERTED}, ~M.key_mask(mask, scores)))
    if mask.ndim == scores.ndim - 1:
        for text, shaped in (
            (_MASK_AS_GIVEN, mask),
            (_MASK_ON_QUERIES, mask[..., None]),
        ):
            try:
                options.append(({"mask": text}, np.broadcast_to(shaped, scores.shape)))
            except ValueError:
                continue
    return options


def _softmax_family(fit, scores, mask, base=None):
    """The masked softmax of `scores`, with the deviations it could have."""
    base = dict(base or {})
    other = _AXIS if scores.ndim > 2 else _AXIS_BATCH
    for axis, axis_dev in ((-1, {}), (-2, {"axis": other})):
        if mask is None:
            fit.add({**base, **axis_dev}, lambda axis=axis: M.softmax(scores, axis))
            continue
        for mask_dev, m in _masks(mask, scores):
            fills = [
                (M.NEG, {}),
                (0.0, {"fill": _FILL_ZERO}),
                (None, {"fill": _FILL_NONE}),
            ]
            fills += [(c, {"fill": _FILL_SMALL.format(c=c)}) for c in _SMALL_FILLS]
            for fill, fill_dev in fills:
                for zero, zero_dev in ((True, {}), (False, {"zero": _NO_ZERO})):
                    if fill is None and not zero:
                        continue  # that is no mask at all, below

                    def compute(m=m, fill=fill, zero=zero, axis=axis):
                        filled = scores if fill is None else np.where(m, scores, fill)
                        weights = M.softmax(filled, axis)
                        return np.where(m, weights, 0.0) if zero else weights

                    fit.add(
                        {**base, **axis_dev, **mask_dev, **fill_dev, **zero_dev},
                        compute,
                    )
        fit.add(
            {**base, **axis_dev, "mask": _NO_MASK},
            lambda axis=axis: M.softmax(scores, axis),
        )
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.ndim == scores.ndim:  # a full mask expanded anyway
            for axis in (-2, 1):
                m = np.expand_dims(mask, axis)
                fit.add(
                    {**base, "mask": _MASK_FULL_EXPANDED},
                    lambda m=m: np.where(m, M.softmax(np.where(m, scores, M.NEG)), 0.0),
                )


def _all_masked_rows(mask, scores):
    if mask is None:
        return np.zeros(scores.shape[:-1], bool)
    return ~M.key_mask(mask, scores).any(-1)


def _non_finite_weights(evidence, received, scores, mask):
    """NaN or inf weights: where, and why."""
    bad = ~np.isfinite(received)
    if not bad.any() or received.shape != scores.shape:
        return False
    rows = bad.any(-1)
    empty = _all_masked_rows(mask, scores)
    large = np.abs(scores).max(-1) > 80.0
    if (rows & ~empty).any() and large[rows & ~empty].all():
        evidence.observed.append(
            "Your weights are NaN or inf in rows whose scores are large (up to "
            f"{float(np.abs(scores).max()):.3g}): exp of such a score overflows "
            "(float32 past about 88)."
        )
        evidence.named.append(
            "exp(scores) overflows: subtract the max of each row before exp "
            "(`ops.softmax` does it for you, stably)."
        )
        return True
    if rows.any() and not (rows & ~empty).any():
        evidence.observed.append(
            "Your weights are NaN only in the rows where every key is padding."
        )
        evidence.named.append(
            "In a row whose keys are all padding the sum you divide by is 0 "
            "(0/0 = NaN): with -inf filling, or with exp(scores) * mask divided "
            "by its sum. Fill padded scores with a large negative number (-1e9), "
            "take `ops.softmax`, then zero the padded weights."
        )
        return True
    return False


@diagnoses("check_masked_softmax")
@_safe
def _masked_softmax(case, got, expected, wrong):
    evidence = Evidence()
    scores = _arr(case.inputs["scores"])
    mask = case.inputs.get("mask")
    if "gradient" in expected:
        received = _got(got, "gradient")
        if received is None:
            return None
        bad = ~np.isfinite(received)
        if bad.all():
            evidence.observed.append(
                "The gradient with respect to the scores is NaN everywhere, or "
                "there is none (the scores do not reach the loss through Keras "
                "ops: converted to NumPy, or a branch with no gradient)."
            )
        elif bad.any():
            evidence.observed.append(
                "The gradient is NaN or inf at some positions, although the "
                "forward weights may be finite."
            )
            evidence.named.append(
                "A NaN or inf inside the computation (an -inf fill, a 0/0, "
                "log(0)) poisons the gradient even where `ops.where` discards it "
                "afterwards: fill padded scores with a large finite negative "
                "number (-1e9), not -inf."
            )
        return evidence
    received = _got(got, "weights")
    if received is None:
        return None
    if _non_finite_weights(evidence, received, scores, mask):
        return evidence
    fit = _Fit()
    _softmax_family(fit, scores, mask)
    if _name(evidence, fit.readings(received, right=_arr(expected["weights"])), "w"):
        evidence.observed.insert(
            0,
            "Your weights are reproduced by the masked softmax computed with the "
            "change(s) below.",
        )
    return evidence


# ------------------------------------------------------------------- Luong


def _softmax_taps(evidence, got, part="masked_softmax"):
    """The student's own masked_softmax, as this layer called it: is it the
    part that is wrong?"""
    for call in _taps(got, part):
        scores, out = call.get("scores"), call.get("out")
        if scores is None or out is None:
            continue
        mask = call.get("mask")
        if mask is not None and mask.ndim == 0:
            mask = None
        try:
            right = M.masked_softmax(scores, None if mask is None else mask > 0.5)
        except Exception:
            continue
        if not _same(out, right):
            evidence.observed.append(
                "Your `masked_softmax` returned wrong weights for the scores and "
                "mask this layer passed to it."
            )
            evidence.named.append(
                "Fix `masked_softmax` (Exercise 2) first: this layer's weights "
                "come from it."
            )
            return True
    return False


def _luong_weights_fit(case):
    q, values = _arr(case.inputs["query"]), _arr(case.inputs["values"])
    mask = case.call_kwargs.get("values_mask")
    fit = _Fit()
    scores = q @ _transposed(values)
    _softmax_family(fit, scores, mask)
    d = q.shape[-1]
    _softmax_family(
        fit,
        scores / math.sqrt(d),
        mask,
        {
            "scale": f"Your scores are divided by sqrt({d}): Luong's dot score "
            "is not scaled."
        },
    )
    with contextlib.suppress(ValueError):  # another shape than the mask's
        _softmax_family(
            fit,
            q @ _reshaped(values),
            mask,
            {"reshape": _RESHAPED.replace("keys", "values")},
        )
    if mask is not None:
        _softmax_family(
            fit,
            values @ _transposed(q),
            None,
            {"T": "Your scores are transposed (keys x queries)."},
        )
    return fit, scores


_OUTPUTS = {
    "softmax": None,
    "steps": "The output softmax runs over axis 1 (the decoder steps); it is "
    "over the vocabulary, the last axis: `ops.softmax(logits, axis=-1)`.",
    "batch": "The output softmax runs over axis 0 (the batch); it is over the "
    "vocabulary, the last axis.",
    "logits": "You return logits: the output is softmax(s~_t W_y + b_y), "
    "probabilities.",
    "log": "You return log-probabilities (log_softmax): the output is "
    "softmax(s~_t W_y + b_y).",
    "sigmoid": "The output uses a sigmoid; it is softmax(s~_t W_y + b_y) over "
    "the vocabulary.",
}


def _luong_output(kind, logits):
    if kind == "softmax":
        return M.softmax(logits, -1)
    if kind == "steps":
        return M.softmax(logits, 1)
    if kind == "batch":
        return M.softmax(logits, 0)
    if kind == "logits":
        return logits
    if kind == "log":
        shifted = logits - logits.max(-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return M.sigmoid(logits)


def _luong_probs_fit(case, weights, scores):
    """probs from given attention weights, with deviations downstream."""
    q, values = _arr(case.inputs["query"]), _arr(case.inputs["values"])
    W_c, b_c, W_y, b_y = (_arr(case.weights[n]) for n in ("W_c", "b_c", "W_y", "b_y"))
    fit = _Fit()
    sources = [({}, weights)]
    sources.append(
        (
            {
                "context": "Your context averages the values with the raw scores, "
                "not the attention weights: a_t = weights @ values, after the "
                "softmax."
            },
            scores,
        )
    )
    orders = [
        ({}, lambda c: np.concatenate([c, q], -1)),
        (
            {
                "order": "The concatenation is in the wrong order: it is "
                "[a_t; s_t], the context first, then the decoder state."
            },
            lambda c: np.concatenate([q, c], -1),
        ),
    ]
    bias_c = [
        ({}, b_c),
        ({"b_c": "The bias `b_c` is missing: s~_t = tanh([a_t; s_t] W_c + b_c)."}, 0.0),
        (
            {
                "b_c": "The bias `b_c` is added after the tanh; it goes inside: "
                "s~_t = tanh([a_t; s_t] W_c + b_c)."
            },
            "outside",
        ),
    ]
    bias_y = [
        ({}, b_y),
        ({"b_y": "The bias `b_y` is missing: softmax(s~_t W_y + b_y)."}, 0.0),
    ]
    formula = "s~_t = {f}([a_t; s_t] W_c + b_c)"
    combos = itertools.product(
        sources, orders, bias_c, ACTIVATIONS.items(), bias_y, _OUTPUTS.items()
    )
    for (src, w), (order, join), (bc, bcv), (name, f), (by, byv), (out, text) in combos:
        deviations = {**src, **order, **bc, **by}
        if name != "tanh":
            deviations["act"] = _activation_text(name, formula)
        if text:
            deviations["out"] = text
        n_dev = len(deviations)
        if n_dev > 2:
            continue

        def compute(w=w, join=join, bcv=bcv, f=f, byv=byv, out=out):
            if isinstance(bcv, str):  # the bias after the activation
                attentional = f(join(w @ values) @ W_c) + b_c
            else:
                attentional = f(join(w @ values) @ W_c + bcv)
            return _luong_output(out, attentional @ W_y + byv)

        fit.add(deviations, compute)
    return fit


@diagnoses("check_luong_attention")
@_safe
def _luong(case, got, expected, wrong):
    swapped = _swapped_outputs(got, expected, ("probs", "weights"))
    if swapped:
        return swapped
    evidence = Evidence()
    weights = _got(got, "weights")
    right_weights = _arr(expected["weights"])
    fit, scores = _luong_weights_fit(case)
    weights_right = _same(weights, right_weights)
    if not weights_right and weights is not None:
        if not _softmax_taps(evidence, got):
            readings = fit.readings(weights, right=right_weights)
            if _name(evidence, readings, "weights"):
                evidence.observed.insert(
                    0,
                    "Your attention weights are reproduced by the scores and "
                    "masked softmax with the change(s) below.",
                )
        mask = case.call_kwargs.get("values_mask")
        if (
            case.options.get("keras_mask")
            and mask is not None
            and _same(weights, M.softmax(scores))
        ):
            evidence.observed.append(
                "With the padding given as a Keras mask (a Masking layer), your "
                "weights are those of no mask at all."
            )
            evidence.named.append(
                "The Keras mask did not reach your softmax: Keras passes the "
                "Masking layer's mask to a call argument named `values_mask` "
                "(the input's name + `_mask`), and the layer must set "
                "`self.supports_masking = True`."
            )
    # the stages after the weights, from the student's own weights
    for name in ("probs", PLAIN):
        received = _got(got, name)
        if received is None or name not in wrong or weights is None:
            continue
        if weights.shape != right_weights.shape:
            break
        downstream = _luong_probs_fit(case, weights, scores)
        readings = downstream.readings(received)
        if not weights_right and any(not d for d in downstream.matches(received)):
            evidence.observed.append(
                f"`{name}` is what the rest of the formula makes of the weights "
                "you return: the output stage is right; the weights are not."
            )
            break
        if _name(evidence, readings, name):
            evidence.observed.insert(
                0,
                f"`{name}` is reproduced from your own attention weights by the "
                "formula with the change(s) below.",
            )
        break
    if not any(n in wrong for n in ("probs", "weights")) and PLAIN in wrong:
        evidence.observed.append(
            "With `return_attention_scores=True` your output is right; "
            "without it, it is not."
        )
        evidence.named.append(
            "`return_attention_scores` must not change the computation: "
            "without it return `probs` alone, the same tensor."
        )
    return evidence.extend(_round_trip(case, got, expected, wrong) or Evidence())


PLAIN = _specs.PLAIN


# ---------------------------------------------------------------- Bahdanau

_BAHDANAU = "{f}(s W_b + h W_c) . w_a"


def _bahdanau_weights_fit(query, values, mask, W_b, W_c, w_a, base=None):
    fit = _Fit()
    base = dict(base or {})
    projections = [({}, (W_b, W_c))]
    if query.shape[-1] == values.shape[-1]:
        projections.append(
            (
                {
                    "W": "`W_b` and `W_c` are swapped: `W_b` projects the state "
                    "s_{t-1}, `W_c` the encoder states h."
                },
                (W_c, W_b),
            )
        )
    placements = [
        ("after", lambda f, pre: (f(pre) * w_a).sum(-1)),
        ("inside", lambda f, pre: f(pre * w_a).sum(-1)),
        ("none", lambda f, pre: f(pre).sum(-1)),
        ("outside", lambda f, pre: f((pre * w_a).sum(-1))),
        ("steps", lambda f, pre: (f(pre) * w_a).sum(-2)),
    ]
    place_text = {
        "inside": "`w_a` is applied inside the tanh: weight tanh(...) by `w_a` "
        "outside it, then sum over the units.",
        "none": "The scores sum the tanh units without weighting them by `w_a`.",
        "outside": "The tanh is applied after the sum over the units; it comes "
        "first, on each unit: tanh(s W_b + h W_c) . w_a.",
        "steps": "Your scores sum over the encoder steps (axis -2) where "
        "tanh(...) . w_a sums over the units, the last axis: "
        "`ops.sum(..., axis=-1)`.",
    }
    for (proj, (Wq, Wk)), (name, f), (place, score) in itertools.product(
        projections, ACTIVATIONS.items(), placements
    ):
        deviations = {**base, **proj}
        if name != "tanh":
            deviations["act"] = _activation_text(name, _BAHDANAU)
        if place != "after":
            deviations["v"] = place_text[place]
        if len(deviations) - len(base) > 2:
            continue
        try:
            pre = (query @ Wq)[..., None, :] + values @ Wk
            scores = score(f, pre)
        except Exception:
            continue
        _softmax_family(fit, scores, mask, deviations)
    return fit


def _context_fit(weights, values, W_c, scores=None):
    """The context from the given weights, and ways of getting it wrong."""
    fit = _Fit()
    fit.add({}, lambda: (weights[..., None] * values).sum(-2))
    fit.add(
        {
            "ctx": "Your context sums over the features (axis=-1) instead of "
            "over the encoder steps: c = sum_i alpha_i h_i, `axis=-2`."
        },
        lambda: (weights[..., None] * values).sum(-1),
    )
    fit.add(
        {
            "ctx": "Your context averages the projected keys h W_c, not the "
            "encoder states themselves: c = sum_i alpha_i h_i."
        },
        lambda: (weights[..., None] * (values @ W_c)).sum(-2),
    )
    fit.add(
        {
            "ctx": "Your context is the mean over the encoder steps (`ops.mean`) "
            "of alpha_i h_i; it is their sum over axis -2."
        },
        lambda: (weights[..., None] * values).mean(-2),
    )
    fit.add(
        {
            "ctx": "Your context is not summed over the encoder steps: "
            "c = sum_i alpha_i h_i, `ops.sum(..., axis=-2)`."
        },
        lambda: weights[..., None] * values,
    )
    if weights.ndim == 2:
        fit.add(
            {
                "ctx": "`ops.matmul` of the (batch, steps) weights with the "
                "(batch, steps, features) values treats the weights as one "
                "matrix and pairs every batch item with every other: sum over "
                "the encoder steps instead, "
                "`ops.sum(ops.expand_dims(weights, -1) * values, axis=-2)`."
            },
            lambda: np.matmul(weights, values),
        )
    if scores is not None:
        fit.add(
            {
                "ctx": "Your context averages the encoder states with the raw "
                "scores, not the attention weights (after the softmax)."
            },
            lambda: (scores[..., None] * values).sum(-2),
        )
    return fit


@diagnoses("check_bahdanau_attention")
@_safe
def _bahdanau(case, got, expected, wrong):
    swapped = _swapped_outputs(got, expected, ("context", "weights"))
    if swapped:
        return swapped
    evidence = Evidence()
    query, values = _arr(case.inputs["query"]), _arr(case.inputs["values"])
    mask = case.call_kwargs.get("values_mask")
    W_b, W_c, w_a = (_arr(case.weights[n]) for n in ("W_b", "W_c", "w_a"))
    weights, right_weights = _got(got, "weights"), _arr(expected["weights"])
    weights_right = _same(weights, right_weights)
    if weights is not None and not weights_right and not _softmax_taps(evidence, got):
        fit = _bahdanau_weights_fit(query, values, mask, W_b, W_c, w_a)
        if _name(evidence, fit.readings(weights, right=right_weights), "w"):
            evidence.observed.insert(
                0,
                "Your attention weights are reproduced by the formula with "
                "the change(s) below.",
            )
    context = _got(got, "context")
    if (
        context is not None
        and "context" in wrong
        and weights is not None
        and weights.shape == right_weights.shape
    ):
        pre = (query @ W_b)[..., None, :] + values @ W_c
        scores = (np.tanh(pre) * w_a).sum(-1)
        fit = _context_fit(weights, values, W_c, scores)
        matches = fit.matches(context)
        if matches and not weights_right and any(not d for d in matches):
            evidence.observed.append(
                "Your context is sum_i alpha_i h_i of the weights you "
                "return: the context is right; the weights are not."
            )
        elif _name(evidence, fit.readings(context), "context"):
            evidence.observed.insert(
                0,
                "Your context is reproduced from your own weights with the "
                "change below.",
            )
    return evidence.extend(_round_trip(case, got, expected, wrong) or Evidence())


# --------------------------------------------------- Bahdanau decoder step


def _step_parts(case):
    w = {n: _arr(v) for n, v in case.weights.items()}
    tokens = np.asarray(case.inputs["tokens"]).astype(int)
    state, values = _arr(case.inputs["state"]), _arr(case.inputs["values"])
    mask = case.call_kwargs.get("values_mask")
    return w, tokens, state, values, mask


def _cell(w, inputs, h):
    return M.gru_cell(inputs, h, w["kernel"], w["recurrent_kernel"], w["bias"])


_OLD_STATE = (
    "The state you return is the old state s_{t-1} (the `state` argument): "
    "return the new state s_t that the GRU cell computed."
)


@diagnoses("check_bahdanau_decoder_step")
@_safe
def _decoder_step(case, got, expected, wrong):
    swapped = _swapped_outputs(got, expected, ("logits", "state", "weights"))
    if swapped:
        return swapped
    evidence = Evidence()
    w, tokens, state, values, mask = _step_parts(case)
    x = w["embeddings"][tokens]
    weights, right_weights = _got(got, "weights"), _arr(expected["weights"])
    new_state, right_state = _got(got, "state"), _arr(expected["state"])
    logits = _got(got, "logits")
    weights_right = _same(weights, right_weights)
    # 1. the attention weights: which query, which mask
    if weights is not None and not weights_right and not _attention_taps(evidence, got):
        fit = _Fit()
        for query, dev in (
            (state, {}),
            (
                np.zeros_like(state),
                {
                    "query": "Your attention ignores the decoder state: it "
                    "attends with s_{t-1}, the `state` argument, as the query."
                },
            ),
        ):
            fit.merge(
                _bahdanau_weights_fit(
                    query, values, mask, w["W_b"], w["W_c"], w["w_a"], dev
                )
            )
        if _name(evidence, fit.readings(weights, right=right_weights), "w"):
            evidence.observed.insert(
                0,
                "Your attention weights are reproduced by the attention "
                "with the change(s) below.",
            )
    # 2. the state, from the student's own weights
    use = (
        weights
        if weights is not None and weights.shape == right_weights.shape
        else right_weights
    )
    context = (use[..., None] * values).sum(-2)
    if new_state is not None and "state" in wrong:
        fit = _Fit()
        fit.add({}, lambda: _cell(w, np.concatenate([x, context], -1), state))
        fit.add({"state": _OLD_STATE}, state)
        fit.add(
            {
                "cell": "The cell input is in the wrong order: it is [x_t; c_t], "
                "the embedding first, then the context."
            },
            lambda: _cell(w, np.concatenate([context, x], -1), state),
        )
        fit.add(
            {
                "cell": "The GRU cell starts from zeros: pass the previous state "
                "s_{t-1} (the `state` argument) to the cell."
            },
            lambda: _cell(w, np.concatenate([x, context], -1), np.zeros_like(state)),
        )
        if logits is not None:
            fit.add(
                {
                    "state": "The state you return is the logits' input after "
                    "the output layer; return the GRU's new state s_t."
                },
                logits,
            )
        matches = fit.matches(new_state)
        if matches and any(not d for d in matches) and not weights_right:
            evidence.observed.append(
                "Your new state is what the GRU cell makes of [x_t; c_t] with the "
                "weights you return: the cell is right; the attention is not."
            )
        elif _name(evidence, fit.readings(new_state, right=right_state), "state"):
            evidence.observed.insert(
                0, "Your new state is reproduced by the step with the change below."
            )
    # 3. the logits, from the student's own state
    if logits is not None and "logits" in wrong:
        W_o, b_o = w["output_kernel"], w["output_bias"]
        source = (
            new_state
            if new_state is not None and new_state.shape == right_state.shape
            else right_state
        )
        fit = _Fit()
        fit.add({}, lambda: source @ W_o + b_o)
        fit.add({}, lambda: right_state @ W_o + b_o)
        fit.add(
            {
                "logits": "The logits come from s_{t-1}: compute them from the new "
                "state s_t the cell returns."
            },
            lambda: state @ W_o + b_o,
        )
        fit.add(
            {
                "logits": "You return probabilities: the step returns logits "
                "(the loss applies the softmax)."
            },
            lambda: M.softmax(source @ W_o + b_o),
        )
        fit.add(
            {"logits": "The output layer's bias is missing from the logits."},
            lambda: source @ W_o,
        )
        fit.add(
            {
                "logits": "The logits go through a tanh; the output layer is a "
                "plain Dense (no activation)."
            },
            lambda: np.tanh(source @ W_o + b_o),
        )
        matches = fit.matches(logits)
        if matches and any(not d for d in matches) and "state" in wrong:
            evidence.observed.append(
                "Your logits are the output layer applied to the state you return: "
                "the output stage is right."
            )
        else:
            _name(evidence, fit.readings(logits, right=_arr(expected["logits"])), "l")
    return evidence.extend(_round_trip(case, got, expected, wrong) or Evidence())


def _attention_taps(evidence, got):
    """The step's own attention sublayer, as it was called: with the right
    query, values and mask? and did it compute right?"""
    for call in _taps(got, "attention"):
        out = call.get("out1")
        query, values = call.get("query"), call.get("values")
        if out is None or query is None or values is None:
            continue
        return False  # the wiring judge reads these; nothing more said here
    return False
