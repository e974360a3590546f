"""The exercises' own diagnosis (judge side): what a failed case shows.

See `autograder.judge.Spec.diagnose`. Registered with `@diagnoses(check)`.

Assignment 2's diagnosers recompute the exercise stage by stage with the
case's own inputs and weights (NumPy) and look for the first stage where the
student's outputs stop being consistent, by fitting small *families* of
computations to them, not by looking mistakes up in a list:

* scaled dot-product attention: the weights are fitted by
  `softmax(fill(c * q k^T), axis) [* zeroing] * post`, with the scale `c`
  any of the sizes at hand, the mask filled in any of the usual ways and the
  softmax on either axis; the output by `X v` (or `X k`) for `X` the
  returned weights, the right ones or the scores;
* masks: boolean formulas of the key padding, the query padding and
  triangles of every offset, and the shapes they come in;
* multi-head attention: the layer's pipeline (project, split, attend, merge,
  project) with one stage changed at a time (a bias left out, another input
  projected, the heads split or merged with a reshape alone or in the other
  order, another scale, a mask term dropped or broadcast on another axis,
  the output projection left out); when the check recorded the layer's call
  of the student's own `scaled_dot_product_attention` (`tap:` keys), what it
  passed and got back is compared stage by stage first.

A `named` line (a hint) is given only when every member of the family that
reproduces the student's outputs has that mistake; otherwise an `observed`
line says what was found.
"""

import math

import numpy as np

from autograder.judge import attention as _specs  # noqa: F401  (the specs first)
from autograder.judge import diagnoses
from autograder.judge.attention import combined

NEG = -1e9
_RTOL = _ATOL = 5e-3
_SDPA_TAP = "tap:scaled_dot_product_attention#"


# ----------------------------------------------------------------- helpers


def _close(a, b, valid=None):
    """`a` within the checks' tolerance of `b` where `valid` (broadcast)."""
    if a is None or b is None:
        return False
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False
    if valid is None:
        valid = np.ones(b.shape, bool)
    try:
        valid = np.broadcast_to(np.asarray(valid, bool), b.shape)
    except ValueError:
        return False
    if not valid.any():
        return False
    if not np.isfinite(a[valid]).all() or not np.isfinite(b[valid]).all():
        return False
    diff = np.abs(a - b)[valid]
    return bool((diff <= _ATOL + _RTOL * np.abs(b[valid])).all())


def _softmax(x, axis=-1):
    x = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def _attend(raw, mask, scale, fill="where", zero=True, axis=-1):
    """Weights from raw scores `q k^T`: the family the student's are fitted by.

    fill: how the mask reaches the scores: "where" (-1e9 where masked),
    "multiply" (scores times the mask), "none", "plus" (+1e9 where masked),
    "inverted" (-1e9 where allowed). zero: masked weights set to 0 after the
    softmax."""
    scores = raw * scale
    if mask is None:
        return _softmax(scores, axis)
    m = np.broadcast_to(np.asarray(mask, bool), scores.shape)
    if fill == "where":
        filled = np.where(m, scores, NEG)
    elif fill == "multiply":
        filled = scores * m
    elif fill == "plus":
        filled = np.where(m, scores, -NEG)
    elif fill == "inverted":
        filled = np.where(~m, scores, NEG)
        m = ~m
    else:
        filled = scores
    weights = _softmax(filled, axis)
    return np.where(m, weights, 0.0) if zero else weights


def _sizes(named):
    """`{size: [labels]}` from `[(label, size)]`, sizes above 1."""
    found = {}
    for label, size in named:
        size = int(size)
        if size > 1 and label not in found.setdefault(size, []):
            found[size].append(label)
    return found


def _scales(dk, sizes):
    """`[(factor, description, size or None)]`: the scale family. The right
    one (1/sqrt(d_k)) first."""
    scales = [(1 / math.sqrt(dk), "1/sqrt(d_k)", dk)]
    for size, labels in sorted(sizes.items()):
        words = " = ".join(labels)
        if size != dk:
            scales.append((1 / math.sqrt(size), f"1/sqrt({size}) ({words})", size))
        scales.append((1 / size, f"1/{size} ({words})", size))
    scales.append((1.0, "1 (no scale)", None))
    scales.append((math.sqrt(dk), f"sqrt({dk}) (multiplied, not divided)", None))
    return scales


def _agree(matches, key):
    """The one value all matches have for `key`, or a sentinel."""
    values = {repr(m[key]) for m in matches}
    return matches[0][key] if len(values) == 1 else _MIXED


_MIXED = object()


# ------------------------------------------------ scaled dot-product attention


def _sdpa_sizes(q, k, v):
    named = [("d_k, the last axis of q and k", q.shape[-1])]
    named.append(("d_v, the last axis of v", v.shape[-1]))
    if q.ndim >= 2:
        named.append(("T, the number of queries", q.shape[-2]))
        named.append(("S, the number of keys", k.shape[-2]))
    for axis in range(q.ndim - 2):
        named.append((f"axis {axis} of q", q.shape[axis]))
    return _sizes(named)


def _fit_weights(raw, mask, received, dk, sizes, post_ok=True):
    """The members of the weights family that give `received`:
    `[{scale, words, size, fill, zero, axis, post, transposed}]`."""
    received = np.asarray(received, np.float64)
    posts = [1.0]
    if post_ok and np.isfinite(received).all():
        m = (
            np.ones(raw.shape, bool)
            if mask is None
            else np.broadcast_to(np.asarray(mask, bool), raw.shape)
        )
        rows = m.any(-1)
        sums = received.sum(-1)[rows] if rows.any() else np.array([])
        if sums.size and np.ptp(sums) < 1e-3 * max(1.0, abs(sums.mean())):
            c = float(sums.mean())
            if abs(c - 1) > 0.02 and abs(c) > 1e-6:
                posts.append(c)
    fills = (
        ["where"] if mask is None else ["where", "multiply", "none", "plus", "inverted"]
    )
    zeros = [True] if mask is None else [True, False]
    sources = [(raw, False)]
    swapped = np.swapaxes(raw, -1, -2)
    if swapped.shape == received.shape and raw.shape[-1] != raw.shape[-2]:
        sources = [(swapped, True)]
    elif swapped.shape == received.shape:
        sources.append((swapped, True))
    found = []
    for source, transposed in sources:
        smask = mask
        if transposed and mask is not None:
            smask = np.swapaxes(
                np.broadcast_to(np.asarray(mask, bool), raw.shape), -1, -2
            )
        for factor, words, size in _scales(dk, sizes):
            for fill in fills:
                for zero in zeros:
                    for axis in (-1, -2):
                        base = _attend(source, smask, factor, fill, zero, axis)
                        for post in posts:
                            if _close(received, base * post):
                                found.append(
                                    {
                                        "scale": words,
                                        "size": size,
                                        "right_scale": words == "1/sqrt(d_k)",
                                        "fill": fill,
                                        "zero": zero,
                                        "axis": axis,
                                        "post": post,
                                        "transposed": transposed,
                                    }
                                )
    return found


def _describe_fit(
    found, evidence_observed, evidence_named, dk, sizes, has_mask, empty_rows
):
    """Observed and named lines from the weights family's members."""
    if not found:
        return False
    right = {
        "right_scale": True,
        "fill": "where",
        "zero": True,
        "axis": -1,
        "post": 1.0,
        "transposed": False,
    }
    parts = []
    for key, value in right.items():
        agreed = _agree(found, key)
        if agreed is _MIXED or agreed == value:
            continue
        if key == "post" and any(m["post"] == 1.0 for m in found):
            continue
        parts.append(key)
    if not parts:
        return False
    if "transposed" in parts:
        evidence_observed.append(
            "Your weights are softmax(k q^T): one row per key, not one row per "
            "query (queries, keys)."
        )
        evidence_named.append(
            "The scores are transposed: compute q k^T, "
            "`ops.matmul(q, ops.swapaxes(k, -1, -2))`, so that each row holds "
            "one query's scores over the keys."
        )
    if "post" in parts:
        c = found[0]["post"]
        near = ""
        for size in sorted({dk, *[m["size"] for m in found if m["size"]]}):
            if abs(c - 1 / math.sqrt(size)) < 0.01 / math.sqrt(size):
                near = f" = 1/sqrt({size})"
        evidence_observed.append(
            f"Every row of your weights sums to {c:.4g}{near}, not 1: they are "
            "a softmax multiplied by a constant after the softmax."
        )
        if near:
            evidence_named.append(
                "The scale 1/sqrt(d_k) is applied after the softmax: divide the "
                "scores q k^T by sqrt(d_k) before the softmax, and return the "
                "softmax itself as the weights."
            )
    if "right_scale" in parts:
        scale = _agree(found, "scale")
        if scale is not _MIXED:
            evidence_observed.append(
                f"Your weights are a softmax of q k^T times {scale}; the scale "
                f"is 1/sqrt(d_k) = 1/sqrt({dk})."
            )
            size = _agree(found, "size")
            labels = sizes.get(size, []) if size is not _MIXED else []
            if size is not _MIXED and size is not None and size != dk and labels:
                evidence_named.append(
                    f"Your scale uses {size} ({'; '.join(labels)}), not d_k = "
                    f"{dk}: d_k is the size of the last axis of q "
                    "(`ops.shape(q)[-1]`), the feature size of one query."
                )
    if "axis" in parts:
        evidence_observed.append(
            "Your weights are a softmax over the queries (axis -2), not over "
            "the keys (the last axis)."
        )
    if has_mask and "fill" in parts:
        fill = _agree(found, "fill")
        words = {
            "multiply": (
                "Your masked scores are 0 (the scores multiplied by the mask), "
                "which still gives masked keys weight.",
                "Multiplying the scores by the mask gives masked keys a score "
                "of 0, not a large negative one: use "
                "`ops.where(mask, scores, -1e9)` before the softmax.",
            ),
            "none": (
                "The mask does not reach your scores."
                + (
                    " Your masked weights are zero, but the softmax was taken "
                    "over every key, so the others do not sum to 1."
                    if _agree(found, "zero") is True
                    else ""
                ),
                "The mask is applied only after the softmax: put -1e9 in the "
                "masked scores before the softmax (and zero the masked weights "
                "after it)."
                if _agree(found, "zero") is True
                else "",
            ),
            "plus": ("Your masked scores got +1e9 (the weight goes to them).", ""),
            "inverted": ("Your mask is used inverted (True taken as masked).", ""),
        }
        if fill in words:
            evidence_observed.append(words[fill][0])
            if words[fill][1]:
                evidence_named.append(words[fill][1])
    if has_mask and "zero" in parts:
        agreed = _agree(found, "zero")
        if agreed is False and empty_rows:
            evidence_observed.append(
                "A query with no allowed key (every key masked) gets uniform "
                "weights summing to 1 from you, where its weights must be "
                "exactly zero."
            )
            evidence_named.append(
                "After the softmax, zero the masked weights "
                "(`ops.where(mask, weights, 0)`): a row with no allowed key "
                "(all masked) then gets all-zero weights, not uniform ones."
            )
    return True


@diagnoses("check_scaled_dot_product_attention")
def _sdpa(case, got, expected, wrong):
    from autograder.checks.evidence import Evidence

    found = Evidence()
    q, k, v = (np.asarray(case.inputs[n], np.float64) for n in ("q", "k", "v"))
    mask = case.inputs.get("mask")
    raw = q @ np.swapaxes(k, -1, -2)
    m = None if mask is None else np.broadcast_to(np.asarray(mask, bool), raw.shape)
    empty = None if m is None else ~m.any(-1)  # rows with no allowed key
    dk = q.shape[-1]
    sizes = _sdpa_sizes(q, k, v)
    weights = got.get("weights")
    output = got.get("output")
    # -inf: NaN exactly in the rows with no allowed key
    for name, value in (("weights", weights), ("output", output)):
        if value is None or empty is None or not empty.any():
            continue
        value = np.asarray(value, np.float64)
        if value.shape[:-1] != empty.shape or np.isfinite(value).all():
            continue
        bad = ~np.isfinite(value).all(-1)
        if (bad == empty).all():
            found.observed.append(
                f"Your `{name}` is NaN exactly in the rows whose keys are all "
                "masked (and finite elsewhere)."
            )
            found.named.append(
                "Masked scores filled with -inf make a row with no allowed key "
                "0/0 = NaN after the softmax: fill them with a large negative "
                "number (-1e9) and zero the masked weights afterwards."
            )
            return found
    # the weights: which member of the family gives them
    if weights is not None and "weights" in wrong:
        weights = np.asarray(weights, np.float64)
        fits = _fit_weights(raw, m, weights, dk, sizes)
        if (
            not _describe_fit(
                fits,
                found.observed,
                found.named,
                dk,
                sizes,
                m is not None,
                empty is not None and bool(empty.any()),
            )
            and not fits
            and weights.shape == raw.shape
        ):
            found.observed.append(
                "Your weights are not softmax(c q k^T) over either axis for any "
                "scale c tried, with the mask applied in any usual way."
            )
    # the output: what multiplies v
    if output is not None and "output" in wrong:
        found.extend(
            _sdpa_output(raw, m, q, k, v, weights, output, expected, dk, sizes)
        )
    return found


def _sdpa_output(raw, m, q, k, v, weights, output, expected, dk, sizes):
    from autograder.checks.evidence import Evidence

    found = Evidence()
    output = np.asarray(output, np.float64)
    if weights is not None:
        weights = np.asarray(weights, np.float64)
        if weights.shape == raw.shape and _close(output, weights @ v):
            if "weights" in expected and not _close(weights, expected["weights"]):
                found.observed.append(
                    "Your output is your weights times v: only the weights are wrong."
                )
            return found
    right = (
        np.asarray(expected.get("weights"), np.float64)
        if "weights" in expected
        else None
    )
    candidates = []
    for factor, words, _ in _scales(dk, sizes):
        scores = raw * factor
        candidates.append(
            (
                scores @ v,
                f"the scores q k^T times {words}, before the softmax",
                "scores",
            )
        )
        if m is not None:
            filled = np.where(m, scores, NEG)
            candidates.append(
                (filled @ v, "the masked scores, before the softmax", "scores")
            )
    if (
        right is not None
        and right.shape[-1] == k.shape[-2]
        and k.shape[-1] == output.shape[-1]
    ):
        candidates.append((right @ k, "the right weights times k (not v)", "keys"))
    if (
        weights is not None
        and weights.shape == raw.shape
        and k.shape[-1] == output.shape[-1]
    ):
        candidates.append((weights @ k, "your weights times k (not v)", "keys"))
    if right is not None and right.shape == raw.shape:
        candidates.append((right @ v, "the right weights times v", "right"))
    matched = [
        (words, kind) for value, words, kind in candidates if _close(output, value)
    ]
    if not matched:
        if weights is not None and weights.shape == raw.shape:
            found.observed.append("Your output is not your weights times v.")
        return found
    kinds = {kind for _, kind in matched}
    found.observed.append(f"Your output is {matched[0][0]}.")
    if kinds == {"scores"}:
        found.named.append(
            "The output multiplies the raw scores by v, not the weights: "
            "output = weights v, with the weights after the softmax (and the "
            "mask)."
        )
    elif kinds == {"keys"}:
        found.named.append("The output multiplies the weights by k; it is weights v.")
    elif kinds == {"right"}:
        found.observed.append(
            "The weights you return are not the ones your output is computed "
            "from: return the weights the output uses."
        )
    return found


# ------------------------------------------------------------------- masks


def _tri(n, m, offset):
    i = np.arange(n)[:, None]
    j = np.arange(m)[None, :]
    return j <= i + offset


@diagnoses("check_masks")
def _masks(case, got, expected, wrong):
    from autograder.checks.evidence import Evidence

    found = Evidence()
    function = case.options.get("function")
    mask = got.get("mask")
    if mask is None:
        return found
    mask = np.asarray(mask, np.float64)
    if not np.isin(mask, (0.0, 1.0)).all():
        return found
    mask = mask.astype(bool)
    want = np.asarray(expected["mask"]).astype(bool)
    if function == "causal_mask":
        return _causal(found, mask, want, case.call_kwargs["length"])
    ids = np.asarray(case.inputs["token_ids"])
    pad = case.call_kwargs.get("pad_id", 0)
    real = ids != pad
    if function == "padding_mask":
        return _padding(found, mask, real, ids, pad)
    if function == "combined_mask":
        return _combined(found, mask, want, real)
    return found


def _causal(found, mask, want, length):
    if (
        mask.ndim == want.ndim + 1
        and mask.shape[0] == 1
        and mask[0].shape == want.shape
    ):
        found.observed.append(
            f"Your causal_mask({length}) has a leading axis of size 1: "
            f"{mask.shape}, expected {want.shape}."
        )
        if (mask[0] == want).all():
            found.named.append(
                "causal_mask(length) is (T, T) with no batch axis: drop the "
                "extra leading axis (it broadcasts over the batch by itself)."
            )
        return found
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        return found
    n = mask.shape[0]
    if n != length:
        found.observed.append(
            f"Your causal_mask({length}) is ({n}, {n}): its size should be "
            f"the length given, {length}."
        )
        return found
    for offset in range(-n, n + 1):
        if offset == 0:
            continue
        lower = _tri(n, n, offset)
        if (mask == lower).all():
            found.observed.append(
                f"Your causal mask is True where key <= query + {offset}"
                if offset > 0
                else f"Your causal mask is True where key <= query - {-offset}"
            )
            found.observed[-1] += "; it must be True where key <= query."
            return found
    return found


def _padding(found, mask, real, ids, pad):
    if mask.shape == ids.shape:
        found.observed.append(
            f"Your padding mask has the shape of the ids {ids.shape}: the key "
            f"axis of size 1 is missing, expected {(ids.shape[0], 1, ids.shape[1])}."
        )
        if (mask == real).all():
            found.named.append(
                "padding_mask returns (B, 1, S): add the axis of size 1 before "
                "the keys (`ops.expand_dims(mask, -2)`), so it broadcasts over "
                "the queries."
            )
        return found
    if mask.shape == (ids.shape[0], 1, ids.shape[1]):
        flat = mask[:, 0]
        for candidate, words in (
            (ids > pad, "ids > pad_id"),
            (ids != 0, "ids != 0"),
            (ids == pad, "ids == pad_id"),
            (np.ones_like(real), "everywhere"),
        ):
            if (flat == candidate).all() and not (candidate == real).all():
                found.observed.append(
                    f"Your padding mask is True where {words}; a real token is "
                    "one with ids != pad_id."
                )
                break
    return found


def _combined(found, mask, want, real):
    b, s = real.shape
    if mask.shape != (b, s, s):
        return found
    keys = np.broadcast_to(real[:, None, :], (b, s, s))
    queries = np.broadcast_to(real[:, :, None], (b, s, s))
    padding = {
        "keys": keys,
        "keys and queries": keys & queries,
        "queries": queries,
        "none": np.ones((b, s, s), bool),
        "inverted": ~keys,
    }
    causal = {
        offset: np.broadcast_to(_tri(s, s, offset), (b, s, s)) for offset in (-1, 0, 1)
    }
    causal["upper"] = np.broadcast_to(~_tri(s, s, -1), (b, s, s))
    causal["none"] = np.ones((b, s, s), bool)
    matches = []
    for pname, p in padding.items():
        for cname, c in causal.items():
            for op in ("and", "or"):
                value = p & c if op == "and" else p | c
                if (value == mask).all():
                    matches.append((pname, cname, op))
    if not matches:
        return found
    pads = {m[0] for m in matches}
    causes = {m[1] for m in matches}
    ops_ = {m[2] for m in matches}
    if ops_ == {"and"} and causes == {0}:
        hides_queries = all(p in ("keys and queries", "queries") for p in pads)
        if pads == {"none"}:
            found.observed.append(
                "Your combined mask is the causal mask alone: the padding mask "
                "is missing (padded keys are allowed)."
            )
            found.named.append(
                "combined_mask is the padding mask *and* the causal mask: "
                "`ops.logical_and(padding_mask(token_ids, pad_id), "
                "causal_mask(length))`; yours is without the padding."
            )
        elif hides_queries:
            found.observed.append(
                "Your combined mask hides the padded queries too: the rows of "
                "padded positions are all False (causal rows expected there)."
            )
            found.named.append(
                "The padding mask hides only the keys (its shape (B, 1, S) "
                "broadcasts over the queries); padded queries keep their "
                "causal row."
            )
    elif ops_ == {"and"} and pads == {"keys"} and causes == {"none"}:
        found.observed.append(
            "Your combined mask is the padding mask alone: the causal mask "
            "(no future) is missing."
        )
    return found


# ------------------------------------------------------- multi-head attention


def _split(flat, h, size, mode):
    b, n = flat.shape[:2]
    if mode == "reshape":
        return flat.reshape(b, h, n, size)
    if mode == "size_first":
        return np.transpose(flat.reshape(b, n, size, h), (0, 3, 1, 2))
    return np.transpose(flat.reshape(b, n, h, size), (0, 2, 1, 3))


def _merge(context, mode):
    b, h, t, dv = context.shape
    if mode == "reshape":
        return context.reshape(b, t, h * dv)
    if mode == "size_first":
        return np.transpose(context, (0, 2, 3, 1)).reshape(b, t, h * dv)
    return np.transpose(context, (0, 2, 1, 3)).reshape(b, t, h * dv)


class _MHA:
    """The case's multi-head attention in NumPy, stage by stage, with any
    stage changed (`run(**change)`)."""

    def __init__(self, case):
        self.case = case
        self.query = np.asarray(case.inputs["query"], np.float64)
        self.value = np.asarray(case.inputs["value"], np.float64)
        key = case.inputs.get("key")
        self.key = self.value if key is None else np.asarray(key, np.float64)
        w = case.weights
        self.w = {n: np.asarray(w[n], np.float64) for n in w}
        self.h, self.dk = self.w["W_q"].shape[1], self.w["W_q"].shape[2]
        self.dv = self.w["W_v"].shape[2]
        self.mask = combined(case)
        self.b, self.t = self.query.shape[:2]
        self.s = self.value.shape[1]

    def project(
        self, which, source=None, bias=True, split="right", x=None, weight=None
    ):
        weight = weight or which
        W, bname = self.w[f"W_{weight}"], f"b_{weight}"
        if x is None:
            x = {"query": self.query, "key": self.key, "value": self.value}[source]
        if x.shape[-1] != W.shape[0]:
            return None
        flat = x @ W.reshape(W.shape[0], -1)
        if bias:
            flat = flat + self.w[bname].reshape(-1)
        size = W.shape[-1]
        return _split(flat, self.h, size, split)

    def head_mask(self, mask="right"):
        """The (B, h, T, S)-broadcastable mask of a mask change (None: none)."""
        if self.mask is None or mask == "none":
            return None
        if mask == "no_head_axis":  # (B, T, S) against (B, h, T, S)
            try:
                return np.broadcast_to(self.mask, (self.b, self.h, self.t, self.s))
            except ValueError:
                return None
        return self.mask[:, None]

    def run(
        self,
        split="right",
        merge="right",
        q_src="query",
        k_src="key",
        v_src="value",
        q_bias=True,
        k_bias=True,
        v_bias=True,
        o_bias=True,
        w_o=True,
        scale=None,
        mask="right",
        fill="where",
        axis=-1,
        post=1.0,
        q_w=None,
        k_w=None,
        v_w=None,
        o_bias_times=1.0,
    ):
        q = self.project("q", q_src, q_bias, split, weight=q_w)
        k = self.project("k", k_src, k_bias, split, weight=k_w)
        v = self.project("v", v_src, v_bias, split, weight=v_w)
        if q is None or k is None or v is None:
            return None
        if isinstance(mask, np.ndarray):
            hm = mask[:, None]
        else:
            hm = self.head_mask(mask)
            if mask == "no_head_axis" and hm is None:
                return None
        scale = 1 / math.sqrt(self.dk) if scale is None else scale
        weights = (
            _attend(q @ np.swapaxes(k, -1, -2), hm, scale, fill, True, axis) * post
        )
        context = weights @ v
        merged = _merge(context, merge)
        if not w_o:
            return merged, weights
        W_o = self.w["W_o"]
        out = merged @ W_o.reshape(-1, W_o.shape[-1])
        if o_bias:
            out = out + o_bias_times * self.w["b_o"]
        return out, weights

    def sizes(self):
        named = [
            ("key_dim", self.dk),
            ("value_dim (d_v)", self.dv),
            ("num_heads", self.h),
            ("the query's width (d_model)", self.query.shape[-1]),
            ("num_heads * key_dim", self.h * self.dk),
            ("the number of queries T", self.t),
            ("the number of keys S", self.s),
        ]
        return _sizes(named)


def _mask_terms(case):
    """`[(label, (B, T, S) mask without that term)]` and other mask
    variants: each term of the combined mask dropped, value_mask on the
    queries' axis, the causal mask aligned bottom-right."""
    kw = case.call_kwargs
    terms = []

    def rebuilt(drop=None, **extra):
        from autograder.checks.core import Case

        new_kw = {k: v for k, v in kw.items() if k != drop}
        options = dict(case.options)
        if drop == "keras_mask":
            options["keras_mask"] = False
        return combined(
            Case(title="", inputs=case.inputs, call_kwargs=new_kw, options=options)
        )

    labels = {
        "query_mask": "`query_mask` is not applied",
        "value_mask": "`value_mask` is not applied",
        "attention_mask": "`attention_mask` is not applied",
        "use_causal_mask": "the causal mask (`use_causal_mask=True`) is not applied",
    }
    for name, label in labels.items():
        if name in kw and (name != "use_causal_mask" or kw[name]):
            value = rebuilt(drop=name)
            terms.append((label, name, value))
    if case.options.get("keras_mask"):
        terms.append(
            (
                "the Keras masks of the inputs (`query_mask`, `value_mask` Keras "
                "fills in) are not applied",
                "keras_mask",
                rebuilt(drop="keras_mask"),
            )
        )
    q, v = case.inputs["query"], case.inputs["value"]
    b, t, s = q.shape[0], q.shape[1], v.shape[1]
    if "value_mask" in kw and t == s:
        base = rebuilt(drop="value_mask")
        base = np.ones((b, t, s), bool) if base is None else base
        terms.append(
            (
                "`value_mask` is applied on the queries' axis (B, S, 1), not the "
                "keys' (B, 1, S)",
                "value_mask_on_queries",
                base & np.asarray(kw["value_mask"], bool)[:, :, None],
            )
        )
    if kw.get("use_causal_mask") and t != s:
        base = rebuilt(drop="use_causal_mask")
        base = np.ones((b, t, s), bool) if base is None else base
        terms.append(
            (
                "the causal mask is aligned bottom-right (key <= query + S - T); "
                "Keras aligns it top-left (key <= query)",
                "causal_bottom_right",
                base & _tri(t, s, s - t)[None],
            )
        )
    return terms


#: The mask terms a case can have (`_mask_terms` also gives other variants).
_TERMS = ("query_mask", "value_mask", "attention_mask", "use_causal_mask", "keras_mask")

_MASK_HINTS = {
    "use_causal_mask": (
        "With `use_causal_mask=True`, combine the causal mask (key <= query) "
        "with the other masks (logical and)."
    ),
    "value_mask": (
        "`value_mask` (B, S) marks the keys: combine it as "
        "`value_mask[:, None, :]` with the other masks."
    ),
    "query_mask": (
        "`query_mask` (B, T) marks the queries: combine it as "
        "`query_mask[:, :, None]` with the other masks."
    ),
    "attention_mask": (
        "Combine `attention_mask` (B, T, S) with the other masks (logical and)."
    ),
    "value_mask_on_queries": (
        "`value_mask` marks the keys: `value_mask[:, None, :]` (B, 1, S), not "
        "`[:, :, None]`."
    ),
}

_HEAD_AXIS = (
    "The (B, T, S) mask given to the attention of (B, h, T, S) scores has no "
    "head axis, so its batch axis lines up with the heads: pass "
    "`mask[:, None]` (B, 1, T, S), the same mask for every head."
)


def _mha_changes(model):
    """`[(change, observed, hint, stage)]`: one stage changed at a time.
    stage: "weights" (changes the weights, and so the output) or "output"."""
    changes = [
        (
            {"split": "reshape"},
            "The heads are split with a reshape alone, straight from "
            "(B, T, h * d_k) to (B, h, T, d_k), without a transpose.",
            "Split the heads by reshaping to (B, T, h, d_k) and then transposing "
            "to (B, h, T, d_k) (move the head axis before T): a reshape alone "
            "mixes positions and heads.",
            "weights",
        ),
        (
            {"split": "reshape", "merge": "reshape"},
            "The heads are split and merged with a reshape alone, without a transpose.",
            "Split by reshaping to (B, T, h, d_k) then transposing to "
            "(B, h, T, d_k); merge by transposing back to (B, T, h, d_v) before "
            "the reshape: a reshape alone does not move the head axis.",
            "weights",
        ),
        (
            {"merge": "reshape"},
            "The heads are merged with a reshape alone, (B, h, T, d_v) straight "
            "to (B, T, h * d_v), without a transpose.",
            "Merge the heads by transposing (B, h, T, d_v) to (B, T, h, d_v) "
            "first, then reshaping to (B, T, h * d_v): a reshape alone mixes "
            "positions and heads.",
            "output",
        ),
        (
            {"split": "size_first"},
            "The heads are split as (B, T, d_k, h) (the head axis last), then "
            "merged in the right order.",
            "",
            "weights",
        ),
        (
            {"q_bias": False},
            "Your queries are projected without b_q.",
            "The query projection leaves out its bias b_q: q = query W_q + b_q.",
            "weights",
        ),
        (
            {"k_bias": False},
            "Your keys are projected without b_k.",
            "The key projection leaves out its bias b_k: k = key W_k + b_k.",
            "weights",
        ),
        (
            {"v_bias": False},
            "Your values are projected without b_v.",
            "The value projection leaves out its bias b_v: v = value W_v + b_v.",
            "output",
        ),
        (
            {"o_bias": False},
            "Your output projection has no b_o.",
            "The output projection leaves out its bias b_o.",
            "output",
        ),
    ]
    for which, param in (("q", "query"), ("k", "key"), ("v", "value")):
        for source in ("query", "key", "value"):
            if source == param:
                continue
            label = {"q": "queries", "k": "keys", "v": "values"}[which]
            changes.append(
                (
                    {f"{which}_src": source},
                    f"Your {label} are projected from `{source}`, not `{param}`.",
                    f"The {label} come from the `{param}` tensor: project "
                    f"`{param}` with W_{which} (you project `{source}`).",
                    "output" if which == "v" else "weights",
                )
            )
    for which in ("q", "k", "v"):
        for other in ("q", "k", "v"):
            if other == which:
                continue
            label = {"q": "queries", "k": "keys", "v": "values"}[which]
            changes.append(
                (
                    {f"{which}_w": other},
                    f"Your {label} are projected with W_{other} and b_{other}, "
                    f"not W_{which} and b_{which}.",
                    f"The {label} are projected with their own weights W_{which} "
                    f"and b_{which} (you use W_{other}).",
                    "output" if which == "v" else "weights",
                )
            )
    if model.h > 1:
        changes.append(
            (
                {"o_bias_times": float(model.h)},
                f"Your output has b_o added {model.h} times (once per head).",
                "Add the output bias b_o once, after the heads are merged and "
                "projected (yours adds it for every head before summing them).",
                "output",
            )
        )
    sizes = model.sizes()
    for factor, words, size in _scales(model.dk, sizes)[1:]:
        hint = ""
        if abs(factor - 1 / model.dk) < 1e-12:
            hint = (
                f"Your scores are divided by d_k = {model.dk}, not sqrt(d_k): "
                "scale once, by 1/sqrt(d_k) (dividing by sqrt(d_k) twice, e.g. "
                "q beforehand and again in the attention, gives this too)."
            )
        elif size is not None and size != model.dk:
            hint = (
                f"Your scale uses {size} ({'; '.join(sizes[size])}), not "
                f"key_dim = {model.dk}: d_k is the size of the last axis of q "
                "(`ops.shape(q)[-1]`) once split, the size of one query vector."
            )
        changes.append(
            (
                {"scale": factor},
                f"Your scores q k^T are scaled by {words}, not 1/sqrt(key_dim) "
                f"= 1/sqrt({model.dk}).",
                hint,
                "weights",
            )
        )
    root = 1 / math.sqrt(model.dk)
    changes.append(
        (
            {"scale": 1.0, "post": root},
            f"Your weights are softmax(q k^T) times 1/sqrt({model.dk}): the scale "
            "comes after the softmax (rows sum to "
            f"{root:.3g}).",
            "The scale 1/sqrt(d_k) is applied after the softmax: divide the "
            "scores q k^T by sqrt(d_k) before the softmax.",
            "weights",
        )
    )
    for label, name, value in _mask_terms(model.case):
        change = {"mask": "none" if value is None else value}
        changes.append(
            (
                change,
                f"Your weights are those of a mask where {label}.",
                _MASK_HINTS.get(name, ""),
                "weights",
            )
        )
    if model.mask is not None and model.b > 1:
        changes.append(
            (
                {"mask": "no_head_axis"},
                "Your weights are those of the mask broadcast without a head "
                "axis: batch item j's mask is applied to head j.",
                _HEAD_AXIS,
                "weights",
            )
        )
    dropped = [n for _, n, _ in _mask_terms(model.case) if n in _TERMS]
    if model.mask is not None and len(dropped) > 1:
        changes.append(
            (
                {"mask": "none"},
                "Your weights are those of no mask at all.",
                "",
                "weights",
            )
        )
    if model.mask is not None:
        changes.append(
            (
                {"fill": "multiply"},
                "Your masked scores are 0 (the scores multiplied by the mask), "
                "which still gives masked keys weight.",
                "Multiplying the scores by the mask gives masked keys a score "
                "of 0, not a large negative one: use "
                "`ops.where(mask, scores, -1e9)` before the softmax.",
                "weights",
            )
        )
    changes.append(
        (
            {"w_o": False, "o_bias": False},
            "Your output is the merged heads, without the output projection.",
            "",
            "output",
        )
    )
    return changes


def _unique(found):
    """The evidence without repeated lines (several stages can say the same)."""
    found.observed = list(dict.fromkeys(found.observed))
    found.named = list(dict.fromkeys(found.named))
    return found


def _valid(case, name):
    from autograder.checks.core import valid_for

    return valid_for(case, name)


@diagnoses("check_multi_head_attention")
def _mha(case, got, expected, wrong):
    from autograder.checks.evidence import Evidence

    found = Evidence()
    if not case.weights or "W_q" not in case.weights:
        return found
    model = _MHA(case)
    right = model.run()
    if right is None:
        return found
    if any(k.startswith(_SDPA_TAP) for k in got) and _mha_taps(case, model, got, found):
        return _unique(found)
    output = got.get("output")
    weights = got.get("weights")
    v_out, v_w = _valid(case, "output"), _valid(case, "weights")
    weights_ok = weights is not None and "weights" not in wrong
    if weights is not None:
        weights = np.asarray(weights, np.float64)
        if weights.shape == right[1].shape[:1] + right[1].shape[2:]:
            _averaged(found, weights, right[1], case)
    matches, weight_only = [], []
    for change, observed, hint, stage in _mha_changes(model):
        if weights_ok and stage == "weights":
            continue
        try:
            result = model.run(**change)
        except (ValueError, TypeError, FloatingPointError):
            continue
        if result is None:
            continue
        out, w = result
        w_match = weights is not None and _close(weights, w, v_w)
        o_match = output is not None and _close(output, out, v_out)
        w_same = _close(w, right[1], v_w)
        if (weights is None or w_match or (weights_ok and w_same)) and o_match:
            matches.append((observed, hint))
        elif w_match and not w_same:
            weight_only.append((observed, hint))
    _conclude(found, matches, weight_only)
    return _unique(found)


def _conclude(found, matches, weight_only):
    if matches:
        hints = {h for _, h in matches}
        if len(matches) == 1 or len({o for o, _ in matches}) == 1:
            found.observed.append(matches[0][0])
        else:
            found.observed.append(
                "Your outputs are those of any of: "
                + " / ".join(o.rstrip(".") for o, _ in matches)
                + "."
            )
        if len(hints) == 1 and "" not in hints:
            found.named.append(hints.pop())
        return
    if weight_only:
        hints = {h for _, h in weight_only}
        if len(weight_only) == 1 or len({o for o, _ in weight_only}) == 1:
            found.observed.append(
                weight_only[0][0].rstrip(".")
                + " (your weights match that; your output has a further difference)."
            )
            if len(hints) == 1 and "" not in hints:
                found.named.append(hints.pop())
        else:
            found.observed.append(
                "Your weights are those of any of: "
                + " / ".join(o.rstrip(".") for o, _ in weight_only)
                + "."
            )


def _averaged(found, weights, right, case):
    """Weights (B, T, S) where (B, h, T, S) was expected."""
    for how, value in (("averaged", right.mean(1)), ("summed", right.sum(1))):
        if _close(weights, value):
            found.observed.append(
                f"Your weights are every head's weights {how} over the heads: "
                f"{weights.shape}, expected {right.shape}."
            )
            found.named.append(
                "Return the weights of every head, (B, h, T, S), as Keras does; "
                f"not {how} over the heads."
            )
            return
    for head in range(right.shape[1]):
        if _close(weights, right[:, head]):
            found.observed.append(
                f"Your weights are head {head}'s alone: {weights.shape}, "
                f"expected {right.shape}."
            )
            return


# ------------------------------------------------------------ through taps


def _tap(got, name):
    """The argument or result `name` of the layer's last call of the
    student's scaled_dot_product_attention (the checked call comes last: a
    call made while the layer was built, before its weights were given, may
    come first)."""
    calls = [
        int(key[len(_SDPA_TAP) :].split(":", 1)[0])
        for key in got
        if key.startswith(_SDPA_TAP)
        and key[len(_SDPA_TAP) :].split(":", 1)[0].isdigit()
    ]
    if not calls:
        return None
    value = got.get(f"{_SDPA_TAP}{max(calls)}:{name}")
    return None if value is None else np.asarray(value, np.float64)


def _mha_taps(case, model, got, found):
    """What the layer passed to the student's scaled_dot_product_attention and
    got back. Returns True when that located the mistake."""
    q, k, v = _tap(got, "q"), _tap(got, "k"), _tap(got, "v")
    if q is None or k is None or v is None:
        return False
    right = {
        "q": model.project("q", "query"),
        "k": model.project("k", "key"),
        "v": model.project("v", "value"),
    }
    located = False
    for name, value in (("q", q), ("k", k), ("v", v)):
        want = right[name]
        if value.shape != want.shape:
            found.observed.append(
                f"Your layer passes `{name}` of shape {value.shape} to your "
                f"scaled_dot_product_attention; expected {want.shape} "
                "(B, h, positions, size of one head)."
            )
            located = True
            continue
        if _close(value, want):
            continue
        located = True
        _which_projection(found, model, name, value)
    mask_tap = _tap(got, "mask")
    hm = model.head_mask("right")
    valid_rows = None
    if model.mask is not None:
        valid_rows = model.mask.any(-1)[:, None, :, None]
    if hm is not None and not hm.all():
        if mask_tap is None:
            found.observed.append(
                "Your layer calls your scaled_dot_product_attention without a mask."
            )
            found.named.append(
                "Give the combined mask (B, 1, T, S) to the attention: "
                "`scaled_dot_product_attention(q, k, v, mask[:, None])`."
            )
            return True
        full = (model.b, model.h, model.t, model.s)
        try:
            passed = np.broadcast_to(mask_tap != 0, full)
        except ValueError:
            passed = None
        if passed is None or not _close(passed, np.broadcast_to(hm, full), valid_rows):
            located = True
            _which_mask(found, model, mask_tap, passed, hm, valid_rows)
    if located:
        return True
    # right inputs: is the student's attention right on them?
    out0, out1 = _tap(got, "out0"), _tap(got, "out1")
    if out0 is None or out1 is None:
        return False
    ref_w = _attend(
        right["q"] @ np.swapaxes(right["k"], -1, -2), hm, 1 / math.sqrt(model.dk)
    )
    ref_c = ref_w @ right["v"]
    v_w = np.broadcast_to(valid_rows, ref_w.shape) if valid_rows is not None else None
    v_c = np.broadcast_to(valid_rows, ref_c.shape) if valid_rows is not None else None
    if not (_close(out1, ref_w, v_w) and _close(out0, ref_c, v_c)):
        found.observed.append(
            "Your layer gives your scaled_dot_product_attention the right q, k, "
            "v and mask, and it returns a wrong result: fix that exercise "
            "first (its own check shows how)."
        )
        return True
    # right attention: the merge, the output projection, the returned weights
    output, weights = got.get("output"), got.get("weights")
    if weights is not None and not _close(np.asarray(weights, np.float64), out1, v_w):
        found.observed.append(
            "The weights your layer returns are not the weights your "
            "scaled_dot_product_attention returned to it (which are right)."
        )
        w = np.asarray(weights, np.float64)
        if w.shape == ref_w.shape[:1] + ref_w.shape[2:]:
            _averaged(found, w, ref_w, case)
    if output is not None and not _close(
        np.asarray(output, np.float64), model.run()[0], _valid(case, "output")
    ):
        found.observed.append(
            "Your attention (q, k, v, mask and its result) is right: the "
            "mistake is after it, in the merge of the heads or the output "
            "projection."
        )
        matches = []
        for merge in ("right", "reshape", "size_first"):
            for w_o, o_bias in ((True, True), (True, False), (False, False)):
                if (merge, w_o, o_bias) == ("right", True, True):
                    continue
                merged = _merge(out0, merge)
                out = merged
                if w_o:
                    W_o = model.w["W_o"]
                    if merged.shape[-1] != W_o.shape[0] * W_o.shape[1]:
                        continue
                    out = merged @ W_o.reshape(-1, W_o.shape[-1])
                    if o_bias:
                        out = out + model.w["b_o"]
                if _close(np.asarray(output, np.float64), out, _valid(case, "output")):
                    matches.append((merge, w_o, o_bias))
        residual = np.asarray(output, np.float64) - _merge(out0, "right") @ model.w[
            "W_o"
        ].reshape(-1, model.w["W_o"].shape[-1])
        b_o = model.w["b_o"]
        if not matches and float(b_o @ b_o) > 1e-12:
            c = float(np.mean(residual @ b_o) / (b_o @ b_o))
            if abs(c - 1) > 0.05 and _close(
                residual, c * np.broadcast_to(b_o, residual.shape)
            ):
                found.observed.append(
                    f"Your output is the right projection plus {c:.3g} times b_o."
                )
                if abs(c - model.h) < 0.01 * model.h:
                    found.named.append(
                        "Add the output bias b_o once, after the heads are merged "
                        f"and projected (yours adds it {model.h} times, once per head)."
                    )
        if len(matches) == 1:
            merge, w_o, o_bias = matches[0]
            if merge == "reshape":
                found.named.append(
                    "Merge the heads by transposing (B, h, T, d_v) to (B, T, h, "
                    "d_v) first, then reshaping to (B, T, h * d_v): a reshape "
                    "alone mixes positions and heads."
                )
            elif merge == "size_first":
                found.named.append(
                    "The heads are merged in the wrong order: (B, T, h, d_v) "
                    "before the reshape, heads first."
                )
            elif not w_o:
                found.named.append(
                    "The output projection W_o (and b_o) is missing after the merge."
                )
            elif not o_bias:
                found.named.append("The output projection leaves out its bias b_o.")
    return True


def _which_projection(found, model, name, value):
    which = {"q": "q", "k": "k", "v": "v"}[name]
    param = {"q": "query", "k": "key", "v": "value"}[name]
    label = {"q": "queries", "k": "keys", "v": "values"}[name]
    which_word = {"q": "query", "k": "key", "v": "value"}[name]
    right = model.project(which, param)
    candidates = []
    for split in ("right", "reshape", "size_first"):
        for source in ("query", "key", "value"):
            for bias in (True, False):
                for weight in ("q", "k", "v"):
                    if (split, source, bias, weight) == ("right", param, True, which):
                        continue
                    try:
                        x = model.project(which, source, bias, split, weight=weight)
                    except ValueError:  # a size that does not split
                        continue
                    if x is not None and x.shape == value.shape and _close(value, x):
                        candidates.append((split, source, bias, weight))
    scaled = [
        words.replace("1/sqrt(d_k)", f"1/sqrt({model.dk}), 1/sqrt(key_dim)")
        for factor, words, _ in _scales(model.dk, model.sizes())
        if _close(value, right * factor)
    ]
    if scaled and not candidates:
        found.observed.append(
            f"The `{name}` your layer passes to your attention is already scaled "
            f"(times {scaled[0]}), and the attention scales again."
        )
        found.named.append(
            "Scale once: your scaled_dot_product_attention divides by sqrt(d_k) "
            f"itself, so pass it the projected {label} unscaled."
        )
        return
    if not candidates:
        found.observed.append(
            f"The `{name}` your layer passes to your scaled_dot_product_attention "
            f"is not the projected, split {label} (B, h, positions, size of one head)."
        )
        return
    splits = {c[0] for c in candidates}
    sources = {c[1] for c in candidates}
    biases = {c[2] for c in candidates}
    if splits == {"reshape"}:
        found.observed.append(
            f"The `{name}` your layer passes to your attention is split with a "
            "reshape alone, straight to (B, h, positions, size), without a transpose."
        )
        found.named.append(
            "Split the heads by reshaping to (B, T, h, d_k) and then transposing "
            "to (B, h, T, d_k) (move the head axis before T): a reshape alone "
            "mixes positions and heads."
        )
    elif splits == {"size_first"}:
        found.observed.append(
            f"The `{name}` your layer passes to your attention is split as "
            "(B, T, size, h): the head axis taken last."
        )
    if param not in sources:
        found.observed.append(
            f"The `{name}` your layer passes to your attention is "
            f"{' or '.join(f'`{s}`' for s in sorted(sources))} projected with "
            f"W_{which}; the {label} come from `{param}`."
        )
        if len(sources) == 1:
            found.named.append(
                f"The {label} come from the `{param}` tensor: project `{param}` "
                f"with W_{which} (you project `{sources.pop()}`)."
            )
    weights_used = {c[3] for c in candidates}
    if which not in weights_used and len(weights_used) == 1:
        other = weights_used.pop()
        found.observed.append(
            f"The `{name}` your layer passes to your attention is projected with "
            f"W_{other} and b_{other}, not W_{which} and b_{which}."
        )
        found.named.append(
            f"The {label} are projected with their own weights W_{which} and "
            f"b_{which} (you use W_{other})."
        )
    if biases == {False}:
        found.observed.append(
            f"The `{name}` your layer passes to your attention lacks the bias "
            f"b_{which}."
        )
        found.named.append(
            f"The {which_word} projection leaves out its bias b_{which}: "
            f"{name} = {param} W_{which} + b_{which}."
        )


def _which_mask(found, model, mask_tap, passed, hm, valid_rows):
    full = (model.b, model.h, model.t, model.s)
    if (
        mask_tap.ndim == 3
        and model.b > 1
        and mask_tap.shape == (model.b, model.t, model.s)
    ):
        found.observed.append(
            f"Your layer passes a mask of shape {mask_tap.shape} (no head axis) to "
            f"attention scores of shape {full}."
        )
        found.named.append(_HEAD_AXIS)
        return
    if passed is None:
        found.observed.append(
            f"Your layer passes a mask of shape {mask_tap.shape} to attention "
            f"scores of shape {full}; it does not broadcast to them."
        )
        return
    for label, name, value in _mask_terms(model.case):
        if value is None:
            value = np.ones((model.b, model.t, model.s), bool)
        if _close(passed, np.broadcast_to(value[:, None], full), valid_rows):
            found.observed.append(
                f"The mask your layer passes to your attention: {label}."
            )
            if _MASK_HINTS.get(name):
                found.named.append(_MASK_HINTS[name])
            return
    found.observed.append(
        "The mask your layer passes to your attention is not the combined mask "
        "of the case."
    )
