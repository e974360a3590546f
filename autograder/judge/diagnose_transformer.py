"""The exercises' own diagnosis (judge side): what a failed case shows.

See `autograder.judge.Spec.diagnose`. Registered with `@diagnoses(check)`.

Assignment 3's parts and training pieces (the positional encoding and
embedding, the feed-forward, Add & Norm, the warm-up schedule, the masked
loss and greedy decoding) are diagnosed from the structure of their formula,
not from a list of mistakes: each formula is taken apart into its pieces
(the angles' base, exponent, positions and sine/cosine layout; the
embedding's scale and the encoding's coefficient; the activation; where the
norm sits, over which axis, with which epsilon; the schedule's two terms and
how they combine; the loss's target, its probabilities and its average; the
decoder's columns row by row), each piece is given the values it can take
(a continuous one is fitted), and the student's outputs are recomputed with
the case's own inputs and weights. A piece is named only when the outputs
are reproduced with exactly that piece changed and every other as the
exercise says (and no other explanation fits as well); otherwise what is
true of the outputs is said as `Observed:`.
"""

import itertools
import math
import warnings

import numpy as np

from autograder.checks.evidence import Evidence
from autograder.judge import diagnoses
from autograder.judge import transformer as _specs
from autograder.judge import transformer_math as M

#: A hypothesis reproduces an output when it is this close to it (float32
#: arithmetic on O(1) values is ~1e-6; the checks' tolerance is 5e-3).
_TIGHT = 2e-4


def _fits(received, value, tight=_TIGHT, valid=None):
    received = np.asarray(received, np.float64)
    value = np.asarray(value, np.float64)
    if received.shape != value.shape or not np.isfinite(value).all():
        return False
    diff = np.abs(received - value)
    if valid is not None:
        diff = np.where(np.broadcast_to(valid, diff.shape), diff, 0.0)
    return bool((diff <= tight * (1.0 + np.abs(value))).all())


def _error(received, value):
    received = np.asarray(received, np.float64)
    value = np.asarray(value, np.float64)
    if received.shape != value.shape:
        return np.inf
    with np.errstate(all="ignore"):
        diff = np.abs(received - value) / (1.0 + np.abs(value))
    diff = np.where(np.isfinite(diff), diff, np.inf)
    return float(diff.max()) if diff.size else 0.0


def _safe(function):
    """A diagnoser never raises: a judge bug must not lose the verdict."""

    def run(case, got, expected, wrong):
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return function(case, got, expected, wrong)
        except Exception:
            return None

    run.__name__ = function.__name__
    run.__doc__ = function.__doc__
    return run


def _near(value, target, rel=0.02):
    return abs(value - target) <= rel * abs(target)


def _fmt(value):
    return f"{value:.4g}"


# ------------------------------------------------------- positional encoding


#: How the sines and cosines are laid out over the dimensions:
#: name -> (function of column j -> ("sin" | "cos", index of its angle)).
def _layouts(depth):
    half = depth // 2
    return {
        "interleaved": lambda j: ("sin" if j % 2 == 0 else "cos", j),
        "interleaved, cos first": lambda j: ("cos" if j % 2 == 0 else "sin", j),
        "sines then cosines": lambda j: ("sin" if j < half else "cos", 2 * (j % half)),
        "cosines then sines": lambda j: ("cos" if j < half else "sin", 2 * (j % half)),
        "sines only": lambda j: ("sin", j),
        "cosines only": lambda j: ("cos", j),
    }


#: The exponent of column j's angle, p / base^(e_j / depth), as a function of
#: the layout's index: the pair (2 (j // 2), the exercise's) or the dimension j.
_INDICES = {
    "pair": lambda k: 2 * (k // 2),
    "dimension": lambda k: k,
}

_BASES = np.exp(np.linspace(np.log(1.5), np.log(1e9), 250))


def _pe_table(length, depth, layout, index, offset, base):
    """The encoding with each piece as given (`base` may be an array: a
    leading axis of bases)."""
    base = np.asarray(base, np.float64)
    positions = np.arange(length, dtype=np.float64) + offset
    functions, exponents = [], []
    chooser = _layouts(depth)[layout]
    for j in range(depth):
        fn, k = chooser(j)
        functions.append(fn == "sin")
        exponents.append(_INDICES[index](k) / depth)
    exponents = np.asarray(exponents)
    scale = base[..., None] ** (-exponents)  # (..., depth)
    angles = positions[:, None] * scale[..., None, :]  # (..., length, depth)
    return np.where(np.asarray(functions), np.sin(angles), np.cos(angles))


def _pe_fit(received):
    """[(error, layout, index, offset, base)] of the best base of each
    structure, best first; the rows and columns read are bounded."""
    length, depth = received.shape
    rows = min(length, 12)
    half = depth // 2
    columns = sorted(
        {*range(min(depth, 16)), *range(half, min(depth, half + 16)), depth - 1}
    )
    part = received[:rows, columns]
    results = []
    for layout, index, offset in itertools.product(
        _layouts(depth), _INDICES, (0, 1, -1)
    ):
        if " then " in layout and index != "pair":
            continue  # a half's index is its pair already
        tables = _pe_table(rows, depth, layout, index, offset, _BASES)[..., columns]
        errors = np.abs(tables - part[None]).reshape(len(_BASES), -1).max(-1)
        best = int(np.argmin(errors))
        # refine the base between its neighbours
        low, high = _BASES[max(best - 1, 0)], _BASES[min(best + 1, len(_BASES) - 1)]
        fine = np.exp(np.linspace(np.log(low), np.log(high), 60))
        tables = _pe_table(rows, depth, layout, index, offset, fine)[..., columns]
        errors = np.abs(tables - part[None]).reshape(len(fine), -1).max(-1)
        best = int(np.argmin(errors))
        results.append((float(errors[best]), layout, index, offset, float(fine[best])))
    results.sort(key=lambda r: r[0])
    return results


def _base_words(base):
    """What a base other than 10000 means, as the exponent's factor."""
    r = math.log(base) / math.log(10000.0)
    if _near(r, 0.5, 0.01):
        return (
            f"the exponent is half of 2i/d (base {base:.4g} = 10000^0.5): the "
            "factor 2 of 2i/d is missing (10000^(i/d) with i the pair index), or "
            "the exponent is divided by 2 * depth. Use "
            "np.power(10000.0, 2 * (i // 2) / depth)."
        )
    if _near(r, 2.0, 0.01):
        return (
            f"the exponent is twice 2i/d (base {base:.4g} = 10000^2): the factor "
            "2 is applied twice (2 * i with i already the even dimension 2 * "
            "(j // 2)), or the depth is halved. Use 2 * (i // 2) / depth."
        )
    if _near(r, 0.75, 0.01):
        return (
            "the angles' base is 1000 instead of 10000: "
            "p / np.power(10000.0, 2 * (i // 2) / depth)."
        )
    for exact in (100.0, 1000.0, 100000.0, 1e6, 1e8):
        if _near(base, exact, 0.01):
            return (
                f"the angles' base is {exact:g}, not 10000: "
                "p / np.power(10000.0, 2 * (i // 2) / depth)."
            )
    return None


@diagnoses("check_positional_encoding")
@_safe
def _positional_encoding(case, got, expected, wrong):
    if "encoding" not in wrong or "encoding" not in got:
        return None
    received = np.asarray(got["encoding"], np.float64)
    if received.ndim != 2 or received.shape != np.shape(expected["encoding"]):
        return None
    length, depth = received.shape
    found = Evidence()
    if not np.isfinite(received).all():
        return None
    positions = np.arange(length, dtype=np.float64)[:, None]
    angles = positions / np.power(10000.0, 2 * (np.arange(depth) // 2) / depth)
    if _fits(received, angles):
        found.observed.append(
            "`encoding` equals the angles p / 10000^(2i/d) themselves."
        )
        found.named.append(
            "The sine and cosine are not applied: return np.sin(angles) at even "
            "dimensions and np.cos(angles) at odd ones."
        )
        return found
    if np.abs(received).max() > 1 + 1e-4:
        found.observed.append(
            f"`encoding` has values up to {np.abs(received).max():.4g}: a sine or a "
            "cosine is never outside [-1, 1]."
        )
        return found
    if length < 2:
        # one position: only p = 0, whose row is sin 0 = 0 and cos 0 = 1
        row = received[0]
        found.observed.append(
            "Position 0 has angle 0 in every dimension, so its row is 0 (sin 0) at "
            "even dimensions and 1 (cos 0) at odd ones; yours is "
            f"{np.round(row[:8], 3).tolist()}{' ...' if depth > 8 else ''}."
        )
        return found
    fits = _pe_fit(received)
    best = fits[0]
    if best[0] > _TIGHT * 5:
        return None
    # every structure that fits as well (a column of tiny angles is the same
    # under several)
    tied = [f for f in fits if f[0] <= max(best[0] * 3, _TIGHT)]
    pieces = []
    for _, layout, index, offset, base in tied:
        changed = []
        if layout != "interleaved":
            changed.append(("layout", layout))
        if index != "pair":
            changed.append(("index", index))
        if offset != 0:
            changed.append(("offset", offset))
        if not _near(base, 10000.0, 0.01):
            changed.append(("base", round(base, -1) if base > 100 else base))
        pieces.append(tuple(changed))
    if len(set(pieces)) != 1 or not pieces[0]:
        return None  # several explanations, or none beyond the known ones
    changed = dict(pieces[0])
    _, layout, index, offset, base = best
    described = (
        f"`encoding` is reproduced exactly with {layout} sines/cosines, the "
        f"exponent from the {index} index ("
        + ("2 * (i // 2)" if index == "pair" else "i")
        + f" / d), positions from {offset}, and base {base:.5g}"
    )
    found.observed.append(
        described + " (expected: interleaved, 2 * (i // 2) / d, "
        "positions from 0, base 10000)."
    )
    if "offset" in changed:
        found.named.append(
            f"Positions start at {offset}, not 0: row p must hold position p "
            "(positions = np.arange(length)); the first row is sin 0 = 0, cos 0 = 1 "
            "(an off by one)."
            if offset == 1
            else f"Positions are shifted by {offset}: row p must hold position p "
            "(positions = np.arange(length))."
        )
    if "index" in changed and "layout" not in changed:
        factor = math.log(base) / math.log(10000.0)
        found.named.append(
            "Each dimension has its own angle: your exponent is "
            f"{factor:.3g} * i / d with i the dimension; both members of a pair "
            "(2i, 2i + 1) share the angle p / 10000^(2i/d): use 2 * (i // 2) / d."
        )
        changed.pop("base", None)
    if "base" in changed:
        words = _base_words(base)
        found.named.append(
            words[0].upper() + words[1:]
            if words
            else f"The angles use base {base:.4g}, not 10000: "
            "p / np.power(10000.0, 2 * (i // 2) / depth)."
        )
    if "layout" in changed:
        found.named.append(
            {
                "interleaved, cos first": "Sine and cosine are swapped: sine at even "
                "dimensions, cosine at odd ones.",
                "sines then cosines": "The sines fill the first half and the cosines "
                "the second: interleave them (sine at even, cosine at odd "
                "dimensions, one angle per pair).",
                "cosines then sines": "The cosines fill the first half and the sines "
                "the second: interleave them (sine at even, cosine at odd "
                "dimensions).",
                "sines only": "Every dimension is a sine: odd dimensions are cosines "
                "(np.where(i % 2 == 0, np.sin(angles), np.cos(angles))).",
                "cosines only": "Every dimension is a cosine: even dimensions are "
                "sines (np.where(i % 2 == 0, np.sin(angles), np.cos(angles))).",
            }[layout]
        )
    return found


# ------------------------------------------------------ positional embedding


def _lstsq(columns, target):
    """Coefficients and the fitted values of `target ~ sum c_k columns[k]`."""
    design = np.stack([np.ravel(c) for c in columns], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, np.ravel(target), rcond=None)
    return coefficients, (design @ coefficients).reshape(np.shape(target))


def _scale_words(value, d):
    """How a coefficient reads against sqrt(d): (words, is it sqrt(d))."""
    for target, words in (
        (math.sqrt(d), f"sqrt(d_model) = {math.sqrt(d):.4g}"),
        (float(d), f"d_model = {d}"),
        (1.0, "1"),
        (1 / math.sqrt(d), f"1/sqrt(d_model) = {1 / math.sqrt(d):.4g}"),
        (0.0, "0"),
        (-1.0, "-1"),
        (float(d) ** 0.25, f"d_model^0.25 = {d**0.25:.4g}"),
    ):
        if (target == 0 and abs(value) < 1e-3) or (
            target != 0 and _near(value, target, 0.005)
        ):
            return words
    return None


@diagnoses("check_positional_embedding")
@_safe
def _positional_embedding(case, got, expected, wrong):
    found = Evidence()
    tokens = np.asarray(case.inputs["tokens"])
    table = np.asarray(case.weights["embeddings"], np.float64)
    d = table.shape[1]
    for name in wrong:
        if name.startswith("mask") and name in got:
            _embedding_mask(found, name, np.asarray(got[name]), tokens)
    name = "output" if "output" in wrong else None
    if name is None or name not in got:
        return found
    received = np.asarray(got[name], np.float64)
    if received.shape != (*tokens.shape, d):
        return found
    x = table[tokens]
    pe = np.broadcast_to(M.positional_encoding(tokens.shape[-1], d)[None], x.shape)
    (a, b), fitted = _lstsq([x, pe], received)
    if _fits(received, fitted):
        a_words, b_words = _scale_words(a, d), _scale_words(b, d)
        found.observed.append(
            f"`{name}` = a * Embedding(tokens) + b * positional_encoding(T, d_model) "
            f"exactly, with a = {_fmt(a)}"
            + (f" ({a_words})" if a_words else "")
            + f" and b = {_fmt(b)}"
            + (f" ({b_words})" if b_words else "")
            + f"; expected a = sqrt(d_model) = {math.sqrt(d):.4g} and b = 1."
        )
        a_right = _near(a, math.sqrt(d), 0.005)
        b_right = _near(b, 1.0, 0.005)
        if not a_right and b_right and a_words:
            if a_words.startswith("d_model ="):
                found.named.append(
                    "The embeddings are multiplied by d_model itself instead of "
                    "sqrt(d_model): `* math.sqrt(self.d_model)` (the square root)."
                )
            elif a_words.startswith("1/sqrt"):
                found.named.append(
                    "The embeddings are divided by sqrt(d_model); multiply them: "
                    "`* math.sqrt(self.d_model)`."
                )
            elif a_words.startswith("d_model^0.25"):
                found.named.append(
                    "The embeddings are multiplied by the square root of "
                    "sqrt(d_model) (a square root taken twice); the factor is "
                    "sqrt(d_model)."
                )
        elif a_right and not b_right and b_words:
            if b_words == "-1":
                found.named.append(
                    "The positional encoding is subtracted: add it, "
                    "x * sqrt(d_model) + PE[:T]."
                )
            elif b_words.startswith("sqrt"):
                found.named.append(
                    "The positional encoding is multiplied by sqrt(d_model) too: only "
                    "the token embeddings are scaled, then the encoding is added."
                )
        return found
    # the scaled embeddings are right: what is added is not the encoding?
    rest = received - math.sqrt(d) * x
    if not np.allclose(rest, rest[:1], atol=1e-4):
        real = tokens != 0
        if _fits(received, np.where(real[..., None], expected[name], 0.0)):
            found.observed.append(f"`{name}` is right on real tokens and 0 at padding.")
            found.named.append(
                "The output is zeroed at padding (multiplied by the mask): keep the "
                "embedding there; the padding travels as the Keras mask "
                "(`compute_mask`), which the attention layers read."
            )
        return found
    rest = rest[0]
    length = tokens.shape[-1]
    longer = M.positional_encoding(length + 8, d)
    for shift in range(1, 9):
        if _fits(rest, longer[shift : shift + length]):
            found.observed.append(
                f"`{name}` - sqrt(d_model) * Embedding(tokens) is the encoding of "
                f"positions {shift}..{shift + length - 1}, not 0..{length - 1}."
            )
            found.named.append(
                f"The encoding rows are shifted by {shift}: add PE[:T], the rows of "
                "positions 0 .. T - 1."
            )
            return found
    found.observed.append(
        f"`{name}` - sqrt(d_model) * Embedding(tokens) is the same for every "
        "sequence but is not positional_encoding(T, d_model) (if "
        "check_positional_encoding fails, fix that exercise first)."
    )
    return found


def _embedding_mask(found, name, received, tokens):
    real = tokens != 0
    if received.shape != real.shape:
        return
    received = received != 0
    if (received == ~real).all():
        found.observed.append(f"`{name}` is True at padding and False on real tokens.")
        found.named.append(
            "The mask is inverted: True marks a real token (tokens != 0); return "
            "the Embedding's own `compute_mask` (mask_zero=True)."
        )
    elif received.all():
        found.observed.append(f"`{name}` is True everywhere, padding included.")
        found.named.append(
            "The padding (token 0) is not masked: `Embedding(..., mask_zero=True)` "
            "and return its `compute_mask(tokens)`."
        )


# ------------------------------------------------------------- feed-forward


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "gelu": lambda z: 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0))),
    "gelu (tanh approximation)": lambda z: (
        0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))
    ),
    "identity (no activation)": lambda z: z,
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "silu (swish)": lambda z: z / (1.0 + np.exp(-z)),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
    "softplus": lambda z: np.logaddexp(0.0, z),
    "relu6": lambda z: np.clip(z, 0.0, 6.0),
    "selu": lambda z: (
        1.0507009873554805
        * np.where(z > 0, z, 1.6732632423543772 * np.expm1(np.minimum(z, 0.0)))
    ),
}


def _ffn_structures(x, w):
    """(inner activation, outer activation, output) for each structure."""
    inner = x @ w["W_1"] + w["b_1"]
    for f, g in itertools.product(_ACTIVATIONS, ("identity (no activation)", "relu")):
        hidden = _ACTIVATIONS[f](inner)
        out = hidden @ w["W_2"] + w["b_2"]
        yield f, g, _ACTIVATIONS[g](out)


@diagnoses("check_feed_forward")
@_safe
def _feed_forward(case, got, expected, wrong):
    name = next((n for n in ("output", *wrong) if n in wrong and n in got), None)
    if name is None:
        return None
    received = np.asarray(got[name], np.float64)
    x = np.asarray(case.inputs["x"], np.float64)
    w = {k: np.asarray(v, np.float64) for k, v in case.weights.items()}
    if received.shape != np.shape(expected.get(name, received)):
        return None
    found = Evidence()
    matches = [(f, g) for f, g, out in _ffn_structures(x, w) if _fits(received, out)]
    families = {(f.split()[0], g) for f, g in matches}
    if len(families) == 1:
        f, g = matches[0]
        f = f if len(matches) == 1 else f.split()[0]
        found.observed.append(
            f"`{name}` is exactly {g if g == 'relu' else ''}"
            f"{'(' if g == 'relu' else ''}{f}(x W_1 + b_1) W_2 + b_2"
            f"{')' if g == 'relu' else ''} with the case's weights."
        )
        if f != "relu":
            found.named.append(
                f"The inner layer's activation is {f}, not ReLU: "
                "Dense(dff, activation='relu'), max(0, x W_1 + b_1)."
            )
        if g == "relu":
            found.named.append(
                "The output goes through a ReLU: only the inner layer has the "
                "activation; Dense(d_model) is linear."
            )
        return found
    # the student's hidden layer, when a tap recorded it
    taps = _hidden_taps(got, (*x.shape[:-1], w["W_1"].shape[1]))
    inner = x @ w["W_1"] + w["b_1"]
    for tap in taps:
        fits = [f for f, act in _ACTIVATIONS.items() if _fits(tap, act(inner))]
        if fits == ["relu"]:
            found.observed.append(
                "Your inner layer's output is right (max(0, x W_1 + b_1)); what is "
                "computed from it is not: the outer Dense(d_model), x W_2 + b_2."
            )
            return found
        if len(fits) == 1:
            found.observed.append(
                f"Your inner layer's output is {fits[0]}(x W_1 + b_1)."
            )
            found.named.append(
                f"The inner layer's activation is {fits[0]}, not ReLU: "
                "Dense(dff, activation='relu')."
            )
            return found
    return None


def _hidden_taps(got, shape):
    found = []
    for key, value in got.items():
        tap = isinstance(key, str) and key.startswith("tap:") and key.endswith(":out")
        if tap and np.shape(value) == shape:
            found.append(np.asarray(value, np.float64))
    return found


# ---------------------------------------------------------------- Add & Norm

_EPSILONS = np.concatenate([[0.0], np.logspace(-10, 0, 51)])


def _normalise(h, axis, epsilon, center=True, ddof=0):
    """`(h - mean) / sqrt(var + eps)` over `axis` (a tuple), without the
    affine part; `epsilon` may be an array (a leading axis)."""
    mean = h.mean(axis=axis, keepdims=True) if center else 0.0
    if center:
        var = h.var(axis=axis, keepdims=True, ddof=ddof)
    else:
        var = (h**2).mean(axis=axis, keepdims=True)
    eps = np.asarray(epsilon, np.float64).reshape((-1,) + (1,) * h.ndim)
    return (h - mean)[None] / np.sqrt(var[None] + eps)


#: Where the norm sits: name -> (x, y, LN) -> output.
_PLACEMENTS = {
    "LayerNorm(x + y)": lambda x, y, ln: ln(x + y),
    "LayerNorm(x) + y": lambda x, y, ln: ln(x) + y,
    "x + LayerNorm(y)": lambda x, y, ln: x + ln(y),
    "LayerNorm(y)": lambda x, y, ln: ln(y),
    "LayerNorm(x)": lambda x, y, ln: ln(x),
    "LayerNorm(x) + LayerNorm(y)": lambda x, y, ln: ln(x) + ln(y),
    "LayerNorm(x + y) + x": lambda x, y, ln: ln(x + y) + x,
    "LayerNorm(x + y) + y": lambda x, y, ln: ln(x + y) + y,
    "LayerNorm(x - y)": lambda x, y, ln: ln(x - y),
    "LayerNorm(x * y)": lambda x, y, ln: ln(x * y),
}


def _add_norm_fits(x, y, gamma, beta, received, valid=None):
    """[(placement, axes, variant, epsilon)] reproducing `received`."""
    ndim = x.ndim
    axes_options = {
        "the last axis (features)": (ndim - 1,),
        "axis 1 (positions)": (1,),
        "axes 1 and 2 (positions and features)": tuple(range(1, ndim)),
        "axis 0 (the batch)": (0,),
    }
    variants = {
        "layer norm": {"center": True, "ddof": 0},
        "unbiased variance (n - 1)": {"center": True, "ddof": 1},
        "no mean subtracted (RMS)": {"center": False, "ddof": 0},
    }
    fits = []
    for (placement, build), (axes_name, axes), (variant, options) in itertools.product(
        _PLACEMENTS.items(), axes_options.items(), variants.items()
    ):
        if math.prod(x.shape[a] for a in axes) < 2 + options["ddof"]:
            continue

        def errors(epsilons, build=build, axes=axes, options=options):
            def ln(h):
                return _normalise(h, axes, epsilons, **options) * gamma + beta

            outputs = build(x, y, ln)  # (eps, ...)
            error = np.abs(outputs - received[None]) / (1 + np.abs(outputs))
            error = error.reshape(len(epsilons), -1).max(-1)
            return np.where(np.isfinite(error), error, np.inf)

        grid = _EPSILONS
        error = errors(grid)
        best = int(np.argmin(error))
        for _ in range(3):  # refine between the best one's neighbours
            low = grid[max(best - 1, 0)]
            high = grid[min(best + 1, len(grid) - 1)]
            grid = np.concatenate([[0.0], np.linspace(low, high, 41)])
            error = errors(grid)
            best = int(np.argmin(error))
        if error[best] <= _TIGHT:
            right = bool(errors(np.array([M.EPSILON]))[0] <= _TIGHT)
            fits.append((placement, axes_name, variant, float(grid[best]), right))
    return fits


@diagnoses("check_add_norm")
@_safe
def _add_norm(case, got, expected, wrong):
    name = "output" if "output" in wrong else None
    if name is None or name not in got:
        return None
    x = np.asarray(case.inputs["x"], np.float64)
    y = np.asarray(case.inputs["y"], np.float64)
    gamma = np.asarray(case.weights["gamma"], np.float64)
    beta = np.asarray(case.weights["beta"], np.float64)
    received = np.asarray(got[name], np.float64)
    if received.shape != x.shape:
        return None
    fits = _add_norm_fits(x, y, gamma, beta, received)
    if not fits:
        return None
    found = Evidence()
    structures = {(p, a, v) for p, a, v, _, _ in fits}
    if len(structures) != 1:
        return None
    placement, axes, variant, epsilon, right = fits[0]
    # the epsilon is told only when the output rules out 1e-5
    pinned = not right
    found.observed.append(
        f"`{name}` is exactly {placement} with the {variant} over {axes}"
        + (f" and epsilon about {epsilon:.1g}" if pinned else "")
        + " (gamma and beta the case's)."
    )
    if placement != "LayerNorm(x + y)":
        words = {
            "LayerNorm(x) + y": "The input x is normalised and then y is added: "
            "LayerNorm(x) + y. Add first, then normalise the sum: "
            "LayerNorm(x + Dropout(y)).",
            "x + LayerNorm(y)": "You normalised y and then added x (pre-norm); "
            "normalise the sum: LayerNorm(x + Dropout(y)).",
            "LayerNorm(y)": "The residual x is missing: LayerNorm(x + Dropout(y)).",
            "LayerNorm(x)": "The sublayer's output y is not added: "
            "LayerNorm(x + Dropout(y)).",
            "LayerNorm(x) + LayerNorm(y)": "x and y are normalised separately and "
            "then added; normalise the sum: LayerNorm(x + Dropout(y)).",
            "LayerNorm(x + y) + x": "The residual x is added again after the norm; "
            "the output is LayerNorm(x + Dropout(y)) alone.",
            "LayerNorm(x + y) + y": "y is added again after the norm; the output is "
            "LayerNorm(x + Dropout(y)) alone.",
            "LayerNorm(x - y)": "y is subtracted: the residual sum is x + Dropout(y).",
            "LayerNorm(x * y)": "x and y are multiplied: the residual is a sum, "
            "LayerNorm(x + Dropout(y)).",
        }
        found.named.append(words[placement])
    if axes != "the last axis (features)":
        found.named.append(
            f"The normalisation is over {axes}; layer norm normalises each "
            "position's feature vector: the feature axis, "
            "LayerNormalization(axis=-1) (the default)."
        )
    if variant == "unbiased variance (n - 1)":
        found.named.append(
            "The variance is divided by n - 1 (unbiased); layer norm uses the mean "
            "of the squared deviations (divided by n)."
        )
    elif variant == "no mean subtracted (RMS)":
        found.named.append(
            "The mean is not subtracted (an RMS norm); layer norm centres each "
            "feature vector first: (h - mean) / sqrt(var + epsilon)."
        )
    if pinned and not found.named:
        found.named.append(
            f"The epsilon is about {epsilon:.1g}, not 1e-5: "
            "LayerNormalization(epsilon=1e-5)."
        )
    return found


# ------------------------------------------------------------ warm-up schedule

#: Each piece of d_model^a * combine(s^k1, s * warmup^k2), s = step + offset,
#: and the exercise's value first.
_SCHEDULE_PIECES = {
    "d_power": (-0.5, 0.5, 0.0, -1.0, 1.0),
    "decay_power": (-0.5, 0.5, -1.0, -1.5, 1.0),
    "warmup_power": (-1.5, -0.5, -1.0, 1.5, -2.0),
    "offset": (1.0, 0.0, 2.0),
    "combine": ("minimum", "maximum"),
}


def _schedule(steps, d, warmup, d_power, decay_power, warmup_power, offset, combine):
    s = np.asarray(steps, np.float64) + offset
    with np.errstate(divide="ignore", invalid="ignore"):
        decay = np.where(s > 0, s, np.nan) ** decay_power
        decay = np.where(s > 0, decay, np.inf if decay_power < 0 else 0.0)
        rise = s * float(warmup) ** warmup_power
        rate = (
            np.minimum(decay, rise) if combine == "minimum" else np.maximum(decay, rise)
        )
    return rate * float(d) ** d_power


_SCHEDULE_WORDS = {
    "d_power": lambda v: (
        "The factor d_model^-0.5 is applied as d_model ** 0.5 (a positive power): "
        "use d_model ** -0.5 (the negative power: wider models take smaller steps)."
        if v == 0.5
        else f"The factor is d_model ** {v:g}; the schedule multiplies by "
        "d_model ** -0.5."
    ),
    "decay_power": lambda v: (
        "The decay term is sqrt(step) (step ** 0.5), not 1 / sqrt(step): use "
        "ops.rsqrt(s), step ** -0.5, the inverse square root."
        if v == 0.5
        else f"The decay term is step ** {v:g}; it is step ** -0.5 "
        "(ops.rsqrt(s), the inverse square root)."
    ),
    "warmup_power": lambda v: (
        f"The warm-up term is step * warmup ** {v:g}; it is step * warmup ** -1.5, "
        "so both terms meet at step = warmup."
    ),
    "offset": lambda v: (
        "Steps are counted from 0 (s = step): the formula counts from 1, s = step + 1."
        if v == 0.0
        else f"s = step + {v:g}; the formula uses s = step + 1."
    ),
    "combine": lambda v: (
        "The two terms are combined with ops.maximum; the rate is their minimum, "
        "ops.minimum(step ** -0.5, step * warmup ** -1.5): it rises during the "
        "warm-up, then decays."
    ),
}


def _schedule_explanations(steps, d, warmup, received):
    names = list(_SCHEDULE_PIECES)
    found = []
    for values in itertools.product(*_SCHEDULE_PIECES.values()):
        rate = _specs.SCALE * _schedule(steps, d, warmup, *values)
        if _fits(received, rate, 1e-4):
            found.append(dict(zip(names, values, strict=True)))
    return found


@diagnoses("check_warmup_schedule")
@_safe
def _warmup_schedule(case, got, expected, wrong):
    steps = np.asarray(case.inputs["steps"])
    d, warmup = case.init["d_model"], case.init["warmup_steps"]
    found = Evidence()
    name = _specs.RATE
    if name not in wrong:
        rebuilt = next((n for n in wrong if n.startswith(name)), None)
        if rebuilt and rebuilt in got:
            found.observed.append(
                "Your schedule is right, but the one rebuilt with "
                "`from_config(get_config())` gives other rates."
            )
            received = np.asarray(got[rebuilt], np.float64)
            for label, dd, ww in (
                ("warmup_steps", d, 4000),
                ("d_model", 512, warmup),
            ):
                if (dd, ww) != (d, warmup) and _fits(
                    received, _specs.SCALE * M.warmup_schedule(steps, dd, ww), 1e-4
                ):
                    found.named.append(
                        f"The rebuilt schedule uses another {label}: `get_config` "
                        "must return d_model and warmup_steps as given, and "
                        "`__init__` keep them."
                    )
        return found
    if name not in got:
        return None
    received = np.asarray(got[name], np.float64)
    if received.shape != steps.shape:
        return None
    explanations = _schedule_explanations(steps, d, warmup, received)
    right = {k: v[0] for k, v in _SCHEDULE_PIECES.items()}
    changed = [{k: v for k, v in e.items() if v != right[k]} for e in explanations]
    changed = [c for c in changed if c]
    if changed:
        pieces = set.intersection(*(set(c) for c in changed))
        found.observed.append(
            "Your rates are reproduced exactly by d_model^a * combine(s^k1, s * "
            "warmup^k2), s = step + o, with "
            + "; or ".join(
                ", ".join(
                    f"{k} {v:g}" if not isinstance(v, str) else f"{k} {v}"
                    for k, v in c.items()
                )
                for c in changed[:3]
            )
            + " (expected: a = -0.5, k1 = -0.5, k2 = -1.5, o = 1, minimum)."
        )
        for piece in pieces:
            values = {c[piece] for c in changed}
            if len(values) == 1:
                found.named.append(_SCHEDULE_WORDS[piece](values.pop()))
            elif piece == "decay_power":
                found.named.append(
                    "The decay term is wrong (it never becomes the smaller one): "
                    "it should be step ** -0.5 (ops.rsqrt(s)), "
                    "which falls below the warm-up term after the warm-up."
                )
        return found
    # where the rates differ: during the warm-up or after it
    want = np.asarray(expected[name], np.float64)
    bad = ~np.isclose(received, want, rtol=5e-3, atol=5e-3)
    before = steps + 1 < warmup
    after = steps + 1 > warmup
    if bad[before].any() and not bad[after].any():
        found.observed.append(
            "Your rates are right after the warm-up and wrong during it (step + 1 "
            "< warmup): the warm-up term s * warmup ** -1.5."
        )
    elif bad[after].any() and not bad[before].any():
        found.observed.append(
            "Your rates are right during the warm-up and wrong after it: the decay "
            "term s ** -0.5."
        )
    return found


# ------------------------------------------------------------- masked loss


def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _log_probabilities(logits):
    """How the log-probabilities may be taken: name -> (B, T, V)."""
    keras_eps = 1e-7
    normalised = logits / logits.sum(-1, keepdims=True)
    clipped = np.clip(logits, keras_eps, 1 - keras_eps)
    return {
        "from logits": _log_softmax(logits),
        "from_logits=False on logits": np.log(
            np.clip(normalised, keras_eps, 1 - keras_eps)
        ),
        # the sparse loss clips first, then normalises (through a softmax)
        "from_logits=False on logits (sparse)": np.log(
            clipped / clipped.sum(-1, keepdims=True)
        ),
        "softmax taken twice": _log_softmax(np.exp(_log_softmax(logits))),
        "log of the logits": np.log(np.clip(logits, keras_eps, None)),
    }


def _targets(labels, v, eps):
    one_hot = np.eye(v)[labels]
    return {
        "one_hot * (1 - eps) + eps / V": one_hot * (1 - eps) + eps / v,
        "one_hot * (1 - eps) + eps": one_hot * (1 - eps) + eps,
        "one_hot (no smoothing)": one_hot,
        "one_hot + eps / V": one_hot + eps / v,
        "one_hot * (1 - eps) + eps / (V - 1) on the others": one_hot * (1 - eps)
        + (1 - one_hot) * eps / (v - 1),
    }


def _reductions(per_token, real):
    count = max(real.sum(), 1)
    rows = np.maximum(real.sum(-1), 1)
    return {
        "sum over real tokens / their number": (per_token * real).sum() / count,
        "mean of each sequence's mean": ((per_token * real).sum(-1) / rows).mean(),
        "sum over real tokens / batch size": (per_token * real).sum()
        / per_token.shape[0],
        "mean over every position, padding included": per_token.mean(),
        "sum over real tokens": (per_token * real).sum(),
        "sum over real tokens / every position": (per_token * real).sum()
        / per_token.size,
    }


_LOSS_RIGHT = {
    "probabilities": "from logits",
    "target": "one_hot * (1 - eps) + eps / V",
    "average": "sum over real tokens / their number",
}

_LOSS_WORDS = {
    "probabilities": {
        "from_logits=False on logits": "The loss treats the logits as "
        "probabilities (from_logits=False): the model returns logits, so use "
        "categorical_crossentropy(..., from_logits=True).",
        "from_logits=False on logits (sparse)": "The loss treats the logits as "
        "probabilities (from_logits=False, the default): the model returns "
        "logits, so pass from_logits=True.",
        "softmax taken twice": "The softmax is applied twice (a softmax on the "
        "logits, then a loss from_logits=True): pass the logits themselves.",
        "log of the logits": "The log is taken of the logits themselves: the "
        "cross-entropy needs log_softmax(logits) (from_logits=True).",
    },
    "target": {
        "one_hot * (1 - eps) + eps": "Label smoothing adds eps to every class "
        "instead of eps / V: the smoothed target is one_hot * (1 - eps) + eps / V "
        "(spread over the V classes, so it sums to 1).",
        "one_hot (no smoothing)": "label_smoothing is ignored: the target is "
        "one_hot * (1 - eps) + eps / V.",
        "one_hot + eps / V": "The one-hot is not scaled by (1 - eps): the smoothed "
        "target one_hot * (1 - eps) + eps / V sums to 1.",
    },
    "average": {
        "mean of each sequence's mean": "The loss averages each sequence's mean "
        "(short sequences weigh more per token): sum over every real token of the "
        "batch, divided by their number.",
        "sum over real tokens / batch size": "The sum is divided by the batch size; "
        "divide by the number of real tokens.",
        "sum over real tokens / every position": "The sum over real tokens is "
        "divided by the number of every position, padding included; divide by "
        "the number of real tokens.",
    },
}


@diagnoses("check_masked_loss")
@_safe
def _masked_loss(case, got, expected, wrong):
    labels = np.asarray(case.inputs["labels"]).astype(np.int64)
    logits = np.asarray(case.inputs["logits"], np.float64)
    eps = float(case.call_kwargs.get("label_smoothing", 0.0))
    real = labels != 0
    found = Evidence()
    if "loss" in wrong and "loss" in got:
        received = float(np.asarray(got["loss"]).reshape(-1)[0])
        matches = []
        v = logits.shape[-1]
        for (p_name, log_p), (t_name, target) in itertools.product(
            _log_probabilities(logits).items(), _targets(labels, v, eps).items()
        ):
            per_token = -(target * log_p).sum(-1)
            for r_name, value in _reductions(per_token, real).items():
                if np.isfinite(value) and abs(received - value) <= 1e-4 * (
                    1 + abs(value)
                ):
                    matches.append(
                        {"probabilities": p_name, "target": t_name, "average": r_name}
                    )
        _name_pieces(found, "loss", matches)
    if "accuracy" in wrong and "accuracy" in got:
        received = float(np.asarray(got["accuracy"]).reshape(-1)[0])
        hits = logits.argmax(-1) == labels
        options = {
            "hits on real tokens / real tokens": (hits & real).sum()
            / max(real.sum(), 1),
            "hits anywhere / every position": hits.mean(),
            "hits anywhere / real tokens": hits.sum() / max(real.sum(), 1),
            "hits on real tokens / every position": (hits & real).sum() / hits.size,
        }
        fits = [k for k, value in options.items() if abs(received - value) <= 1e-5]
        if len(fits) == 1 and fits[0] != "hits on real tokens / real tokens":
            found.observed.append(f"`accuracy` is exactly {fits[0]}.")
            found.named.append(
                "masked_accuracy: count the hits on real tokens only (labels != 0) "
                "and divide by the number of real tokens."
            )
    return found


def _name_pieces(found, name, matches):
    if not matches:
        return
    if any(m == _LOSS_RIGHT for m in matches):
        return  # the exercise's formula fits too: nothing to name
    found.observed.append(
        f"`{name}` is reproduced exactly with "
        + "; or ".join(
            ", ".join(f"{k}: {v}" for k, v in m.items()) for m in matches[:3]
        )
        + "."
    )
    for piece, right in _LOSS_RIGHT.items():
        values = {m[piece] for m in matches}
        if right in values or len(values) != 1:
            continue
        value = values.pop()
        words = _LOSS_WORDS[piece].get(value)
        if words:
            found.named.append(words)


# ----------------------------------------------------------- greedy decoding

#: The pieces of the decoding loop, the exercise's value first.
_GREEDY_PIECES = {
    "steps": (0, -1),  # max_length + steps iterations
    "done": ("kept", "reassigned", "never set"),  # done |= ..., done = ..., no padding
    "end token": ("written", "replaced by 0"),
    "early stop": ("every row done", "any row done", "first row done", "never"),
}

_GREEDY_WORDS = {
    "steps": lambda v: (
        "The loop runs max_length - 1 times: one step short, one token short of "
        "max_length for a row that never ends. Use range(max_length)."
    ),
    "done": lambda v: (
        "A finished row starts again: `done = (following == end_id)` forgets the "
        "rows that ended before. A row stays done once it has produced end_id: "
        "`done |= following == end_id` (the done flag is or-ed)."
        if v == "reassigned"
        else "Rows go on after their end token: once a row has produced end_id, "
        "append 0 (padding) to it until every row is done."
    ),
    "end token": lambda v: (
        "The end token itself is replaced by 0: write the token the model chose "
        "(end_id included), then mark the row done, so padding starts at the next "
        "step (keep the end token)."
    ),
    "early stop": lambda v: (
        "Decoding goes on after every row is done: stop when done.all()."
        if v == "never"
        else "Decoding stops as soon as "
        + ("any row" if v.startswith("any") else "the first row")
        + " ends; the batch stops when every row has produced end_id "
        "(`if done.all(): break`)."
    ),
}


def _simulate(answer, rows, start_id, end_id, max_length, steps, done, end, early):
    output = np.full((rows, 1), start_id, np.int64)
    finished = np.zeros(rows, bool)
    for _ in range(max_length + steps):
        following = np.array([answer(r, output[r]) for r in range(rows)], np.int64)
        if end == "replaced by 0":
            finished |= following == end_id
            following = np.where(finished, 0, following)
        elif done == "kept":
            following = np.where(finished, 0, following)
            finished |= following == end_id
        elif done == "reassigned":
            following = np.where(finished, 0, following)
            finished = following == end_id
        else:  # never padded
            finished |= following == end_id
        output = np.concatenate([output, following[:, None]], axis=1)
        if early == "every row done" and finished.all():
            break
        if early == "any row done" and finished.any():
            break
        if early == "first row done" and finished[0]:
            break
    return output[:, 1:]


@diagnoses("check_greedy_decode")
@_safe
def _greedy_decode(case, got, expected, wrong):
    if "ids" not in wrong or "ids" not in got:
        return None
    from autograder.checks.transformer import scripted_answers

    kw = case.call_kwargs
    script = np.asarray(case.options["script"], np.int64)
    vocab = int(case.options["vocab"])
    start_id, end_id, max_length = kw["start_id"], kw["end_id"], kw["max_length"]
    answers = scripted_answers(script, vocab, start_id, end_id)

    def answer(row, prefix):
        return answers(row, prefix) % vocab

    received = np.asarray(got["ids"], np.float64)
    width = _specs.greedy_width(case)
    rows = script.shape[0]
    names = list(_GREEDY_PIECES)
    right = {k: v[0] for k, v in _GREEDY_PIECES.items()}
    matches = []
    for values in itertools.product(*_GREEDY_PIECES.values()):
        piece = dict(zip(names, values, strict=True))
        if piece["end token"] != "written" and piece["done"] != "kept":
            continue
        ids = _simulate(answer, rows, start_id, end_id, max_length, *values)
        if np.array_equal(received, _specs._pad(ids, width)):
            matches.append(piece)
    found = Evidence()
    if matches and right not in matches:
        changed = [{k: v for k, v in m.items() if v != right[k]} for m in matches]
        common = set.intersection(*(set(c) for c in changed))
        found.observed.append(
            "Your ids are exactly what the loop gives with "
            + "; or ".join(
                ", ".join(f"{k}: {v}" for k, v in c.items()) for c in changed[:3]
            )
            + "."
        )
        for piece in common:
            values = {c[piece] for c in changed}
            if len(values) == 1:
                found.named.append(_GREEDY_WORDS[piece](values.pop()))
        return found
    # row by row: the first column that differs, and what the model answered
    want = np.asarray(expected["ids"], np.float64)
    for row in range(min(rows, received.shape[0])):
        bad = np.flatnonzero(received[row] != want[row])
        if bad.size:
            column = int(bad[0])
            found.observed.append(
                f"Row {row}: the first {column} token(s) are right; column "
                f"{column} is {int(received[row, column])}, expected "
                f"{int(want[row, column])}"
                + (
                    " (the row had already produced end_id: padding 0 expected)."
                    if end_id in want[row, :column]
                    else "."
                )
            )
            break
    return found
