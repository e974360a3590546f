"""The exercises' own diagnosis (judge side): what a failed case shows.

See `autograder.judge.Spec.diagnose`. Registered with `@diagnoses(check)`.

Assignment 3's composite blocks (the encoder and decoder layers, the stacks
and the Transformer) are judged here on their own *wiring*: which tensor
each sublayer receives (the query, the value, the residual, the mask), in
which order the sublayers run, and how the blocks are chained. Two sources
of evidence, the first that speaks wins:

* the taps (`tap:<sublayer>#<k>:<param>` in `got`, the student's own calls
  of the sublayers named by the exercise): each argument is traced to the
  tensor it equals (the layer's input, a sublayer's output, ...), the
  student's parts taken as black boxes, and compared with the exercise's
  wiring. A part that is itself wrong does not confuse this: only where its
  output goes is read;
* without taps, the wiring is refitted: the block is recomputed (NumPy, the
  judge's formulas, the case's weights) with one connection changed at a
  time (each slot given each other tensor available there, the sublayers in
  another order, a mask on the other axis, the blocks not chained or sharing
  one set of weights), and a change that reproduces the student's output is
  named. Nothing matching, nothing is named.

A hint is given only for a connection the evidence shows; anything else is
said as `Observed:`.
"""

import itertools

import numpy as np

from autograder.checks.core import Tolerance, compare, valid_for
from autograder.checks.evidence import Evidence
from autograder.judge import diagnoses
from autograder.judge import transformer as _specs
from autograder.judge import transformer_math as M

_TOLERANCE = Tolerance()

# ------------------------------------------------------------------ common


def _taps(got):
    """`{sublayer: [{param: array}, ...]}` by call index, from `tap:` keys."""
    calls = {}
    for key, value in got.items():
        if not isinstance(key, str) or not key.startswith("tap:"):
            continue
        try:
            head, param = key[4:].rsplit(":", 1)
            name, index = head.rsplit("#", 1)
            calls.setdefault(name, {}).setdefault(int(index), {})[param] = np.asarray(
                value, np.float64
            )
        except (ValueError, TypeError):
            continue
    return {name: [by[k] for k in sorted(by)] for name, by in calls.items()}


def _out(call, index=0):
    if call is None:
        return None
    if index == 0 and "out" in call:
        return call["out"]
    return call.get(f"out{index}")


def _same(a, b):
    """The same tensor (a tap of it): equal shape and values, float32 close."""
    if a is None or b is None:
        return False
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.size == 0:
        return False
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    scale = 1.0 + float(np.max(np.abs(b)))
    return bool(np.max(np.abs(a - b)) <= 1e-4 * scale)


def _which(value, known):
    """The label of the first known tensor `value` equals, or None."""
    for label, tensor in known.items():
        if _same(value, tensor):
            return label
    return None


def _arrays(call, exclude=()):
    """A call's array arguments (not its outputs nor flags), by name."""
    return {
        p: v
        for p, v in call.items()
        if not p.startswith("out") and p not in exclude and np.ndim(v) >= 2
    }


def _flag(call, name):
    value = call.get(name)
    return None if value is None or np.ndim(value) else bool(value)


def _fits(got, outputs, case):
    """Whether `outputs` (a hypothesis) reproduces every output of `got` it
    has, within the checks' tolerance, where the case compares."""
    compared = 0
    for name, value in outputs.items():
        if name not in got:
            continue
        received = np.asarray(got[name], np.float64)
        value = np.asarray(value, np.float64)
        if received.shape != value.shape:
            return False
        if compare(received, value, valid_for(case, name), _TOLERANCE) is not None:
            return False
        compared += 1
    return compared > 0


def _refit(case, got, expected, hypotheses, what):
    """Evidence from the first hypotheses (`(hint, outputs(case))`) that
    reproduce the student's outputs where the reference does not."""
    matched = []
    for hint, build in hypotheses:
        try:
            with np.errstate(all="ignore"):
                outputs = build(case)
        except Exception:  # the connection is impossible for this case
            continue
        if not outputs or _fits(expected, outputs, case):
            continue  # the same as the reference here: shows nothing
        if _fits(got, outputs, case):
            matched.append(hint)
    hints = list(dict.fromkeys(matched))
    found = Evidence()
    if len(hints) == 1:
        found.observed.append(
            f"Your output is reproduced exactly by the {what} with one connection "
            "changed (and by no other change tried):"
        )
        found.named.append(hints[0])
    elif hints:
        found.observed.append(
            f"Your output is reproduced by the {what} with any one of these "
            "changes: " + " | ".join(hints)
        )
    return found


# --------------------------------------------------------------- the masks


def _key_mask(mask, t):
    return M.key_mask(None if mask is None else np.asarray(mask, bool), t)


def _query_mask(mask, s):
    if mask is None:
        return None
    mask = np.asarray(mask, bool)
    return np.broadcast_to(mask[:, :, None], (mask.shape[0], mask.shape[1], s))


def _causal(t, s=None):
    s = t if s is None else s
    return np.tril(np.ones((t, s), bool))[None]


def _and(*masks):
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m
    return np.asarray(out, bool)


def _effective_mask(call, t, s):
    """The (B or 1, T, S) keep-mask a Keras attention call applies (its
    `attention_mask` and `use_causal_mask`), or None for none."""
    mask = call.get("attention_mask")
    if mask is not None:
        mask = np.asarray(mask) != 0
        if mask.ndim == 2:
            mask = mask[None]
        mask = np.broadcast_to(mask, (mask.shape[0], t, s))
    if _flag(call, "use_causal_mask"):
        mask = _and(mask, _causal(t, s))
    return mask


def _describe_mask(mask, options):
    """The label of the first option `mask` equals (as a keep-mask)."""
    for label, candidate in options.items():
        if candidate is None and mask is None:
            return label
        if candidate is None or mask is None:
            if candidate is None and mask is not None and np.all(mask):
                return label
            if mask is None and np.all(candidate):
                return label
            continue
        try:
            a, b = np.broadcast_arrays(
                np.asarray(mask, bool), np.asarray(candidate, bool)
            )
        except ValueError:
            continue
        if np.array_equal(a, b):
            return label
    return None


# ------------------------------------------------------------ the residual
# stream of a block: stages (sublayer, its Add & Norm), each reading the
# previous stage's Add & Norm output.

_DESCRIBE = {
    "x": "the layer's input `x`",
    "context": "`context` (the encoder's output)",
    "self_attention": "the self-attention's output (before its Add & Norm)",
    "cross_attention": "the cross-attention's output (before its Add & Norm)",
    "ffn": "the feed-forward's output (before its Add & Norm)",
    "attention_norm": "the first Add & Norm's output",
    "self_norm": "the self-attention's Add & Norm output",
    "cross_norm": "the cross-attention's Add & Norm output",
    "ffn_norm": "the last Add & Norm's output",
}

_SAYS = {
    "self_attention": "the self-attention",
    "cross_attention": "the cross-attention",
    "ffn": "the feed-forward",
}


def _stage_input(name, call):
    """The main (residual-stream) input of a sublayer call."""
    if name == "ffn":
        arrays = _arrays(call)
        return next(iter(arrays.values()), None)
    return call.get("query")


def _tap_wiring(case, got, taps, stages, known_inputs, output_name):
    """Trace a block's taps against its stages `[(sublayer, norm), ...]`.

    Returns Evidence, or None when the taps do not cover the block."""
    if not all(s in taps and n in taps for s, n in stages):
        return None
    known = dict(known_inputs)
    for sub, norm in stages:
        known[norm] = _out(taps[norm][0])
        known[sub] = _out(taps[sub][0])
    found = Evidence()
    # Which stream each stage reads, and the order they actually run in.
    reads = {sub: _which(_stage_input(sub, taps[sub][0]), known) for sub, _ in stages}
    norm_of = dict(stages)
    order, current, seen = [], "x", set()
    while True:
        nxt = [s for s, _ in stages if reads[s] == current and s not in seen]
        if len(nxt) != 1:
            break
        order.append(nxt[0])
        seen.add(nxt[0])
        current = norm_of[nxt[0]]
    expected_order = [s for s, _ in stages]
    if len(order) == len(stages) and order != expected_order:
        found.observed.append(
            "Your sublayers run in the order "
            + ", ".join(_SAYS[s] for s in order)
            + " (each reading the Add & Norm before it)."
        )
        found.named.append(
            "The sublayers are in the wrong order: "
            + ", then ".join(_SAYS[s] for s in expected_order)
            + f"; in your layer {_SAYS[order[0]]} comes first. The "
            "self-attention first, before the cross-attention."
            if "cross_attention" in expected_order
            else "The sublayers are in the wrong order: "
            + ", then ".join(_SAYS[s] for s in expected_order)
            + "."
        )
        return found
    previous = "x"
    for sub, norm in stages:
        norm_call = taps[norm][0]
        source = reads[sub]
        if source is not None and source != previous:
            found.observed.append(
                f"`{sub}` is called on {_DESCRIBE.get(source, source)}; it should "
                f"read {_DESCRIBE.get(previous, previous)}."
            )
            if sub == "ffn":
                found.named.append(
                    f"The feed-forward reads {_DESCRIBE.get(source, source)}; its "
                    f"input is {_DESCRIBE.get(previous)} (`x = {previous}(x, "
                    "...)`, then `ffn(x)`)."
                )
            else:
                found.named.append(
                    f"The queries of {_SAYS[sub]} come from "
                    f"{_DESCRIBE.get(source, source)}; they come from "
                    f"{_DESCRIBE.get(previous)}."
                )
        # The Add & Norm: {its stage's input (the residual), the sublayer's output}.
        parts = [_which(v, known) for v in _arrays(norm_call).values()]
        if len(parts) == 2 and None not in parts:
            want = {previous, sub}
            got_set = set(parts)
            if got_set != want:
                residual = [p for p in parts if p != sub]
                if sub in got_set and residual and residual[0] != previous:
                    found.observed.append(
                        f"`{norm}` adds {_DESCRIBE.get(residual[0])} to "
                        f"{_DESCRIBE[sub]}."
                    )
                    found.named.append(
                        f"The residual of `{norm}` is {_DESCRIBE.get(residual[0])}; "
                        f"it is the input of {_SAYS[sub]}, "
                        f"{_DESCRIBE.get(previous)}: `{norm}(x, {sub}(x))`."
                    )
                elif previous in got_set and sub not in got_set:
                    other = [p for p in parts if p != previous]
                    given = _DESCRIBE.get(other[0]) if other else "its input twice"
                    found.observed.append(
                        f"`{norm}` is given {given} instead of {_DESCRIBE[sub]}."
                    )
                    found.named.append(
                        f"`{norm}` must add {_SAYS[sub]}'s output to its input: "
                        f"`{norm}(x, {sub}(x))`."
                    )
        previous = norm
    out = got.get(output_name)
    if out is not None:
        source = _which(out, known)
        if source is not None and source != previous:
            found.observed.append(
                f"The layer returns {_DESCRIBE.get(source, source)}, not "
                f"{_DESCRIBE.get(previous)}."
            )
            found.named.append(
                f"Return {_DESCRIBE.get(previous)}, the end of the residual stream."
            )
    return found


# ----------------------------------------------------------- encoder layer


def _enc_layer(x, w, p, mask, h=None, keras_mask=False):
    """The encoder layer as a program whose connections `h` can change:
    `sa.query`, `sa.value`, `sa.mask`, `an`, `ffn`, `fn`, `out`."""
    h = h or {}
    pp = f"{p}." if p else ""
    t = x.shape[1]
    masks = {
        "keys": _key_mask(mask, t),
        "none": None,
        "queries": _query_mask(mask, t),
        "both": _and(_key_mask(mask, t), _query_mask(mask, t)),
    }
    env = {"x": x}
    env["att"] = M.mha(
        env[h.get("sa.query", "x")],
        env[h.get("sa.value", "x")],
        w,
        f"{pp}self_attention",
        masks[h.get("sa.mask", "keys")],
    )[0]
    a, b = h.get("an", ("x", "att"))
    env["h1"] = M.add_norm(env[a], env[b], w, f"{pp}attention_norm")
    env["f"] = M.feed_forward(env[h.get("ffn", "h1")], w, f"{pp}ffn")
    a, b = h.get("fn", ("h1", "f"))
    env["h2"] = M.add_norm(env[a], env[b], w, f"{pp}ffn_norm")
    return env[h.get("out", "h2")]


_ENC_WORDS = {
    "x": "the layer's input `x`",
    "att": "the self-attention's output (before Add & Norm)",
    "h1": "the first Add & Norm's output",
    "f": "the feed-forward's output",
    "h2": "the last Add & Norm's output",
}

_MASK_HINTS = {
    "queries": "The padding mask masks the queries (laid out as mask[:, :, None]); "
    "it must hide the padded keys: attention_mask = mask[:, None, :] (the key "
    "axis is the last).",
    "both": "The padding mask is applied to the queries as well as the keys; "
    "only the padded keys are hidden: attention_mask = mask[:, None, :] (the key "
    "axis is the last).",
}


def _enc_layer_hypotheses(padding):
    """(hint, h) for every single connection of the encoder layer changed."""
    out = []
    if padding:
        for label in ("queries", "both"):
            out.append((_MASK_HINTS[label], {"sa.mask": label}))
    for a in ("x", "att"):
        out.append(
            (
                f"The feed-forward reads {_ENC_WORDS[a]}; its input is the "
                "first Add & Norm's output: `x = attention_norm(x, attended)`, "
                "then `ffn(x)`.",
                {"ffn": a},
            )
        )
    for residual in ("x", "att"):
        out.append(
            (
                f"The residual of the feed-forward's Add & Norm is "
                f"{_ENC_WORDS[residual]}; it is the feed-forward's own input, the "
                "first Add & Norm's output: `ffn_norm(x, ffn(x))` with the new `x`.",
                {"fn": (residual, "f")},
            )
        )
    out.append(
        (
            "The first Add & Norm adds the attention's output to itself; its "
            "residual is the layer's input: `attention_norm(x, attended)`.",
            {"an": ("att", "att")},
        )
    )
    out.append(
        (
            "The last Add & Norm is given the first one's output twice; it adds "
            "the feed-forward's output: `ffn_norm(x, ffn(x))`.",
            {"fn": ("h1", "h1")},
        )
    )
    out.append(
        (
            "The layer returns the first Add & Norm's output; the feed-forward "
            "and its Add & Norm come after it: return `ffn_norm(x, ffn(x))`.",
            {"out": "h1"},
        )
    )
    return [(hint, h) for hint, h in out if h is not None]


def _padding_mask(case):
    return _specs._padding_of(case)


@diagnoses("check_encoder_layer")
def _encoder_layer(case, got, expected, wrong):
    x = np.asarray(case.inputs["x"], np.float64)
    mask = _padding_mask(case)
    taps = _taps(got)
    found = _dropout_evidence(taps)
    if found:
        return found
    if taps:
        found = _tap_wiring(
            case,
            got,
            taps,
            [("self_attention", "attention_norm"), ("ffn", "ffn_norm")],
            {"x": x},
            "output",
        )
        if found is not None:
            t = x.shape[1]
            found.extend(
                _tap_self_mask(
                    taps,
                    mask,
                    t,
                    causal=False,
                    keras_mask=bool(case.options.get("keras_mask")),
                )
            )
            # The taps show every connection: a wiring not shown is ruled out.
            return found or None
    if "output" not in wrong:
        return None
    hypotheses = [
        (hint, _enc_builder(h)) for hint, h in _enc_layer_hypotheses(mask is not None)
    ]
    return _refit(case, got, expected, hypotheses, "encoder layer")


def _enc_builder(h):
    def build(case):
        return {
            "output": _enc_layer(
                np.asarray(case.inputs["x"], np.float64),
                case.weights,
                "",
                _padding_mask(case),
                h,
            )
        }

    return build


def _tap_self_mask(taps, mask, t, causal, keras_mask=False):
    """The self-attention's mask, from its tap."""
    found = Evidence()
    if "self_attention" not in taps:
        return found
    call = taps["self_attention"][0]
    effective = _effective_mask(call, t, t)
    keys = _key_mask(mask, t)
    cause = _causal(t) if causal else None
    options = {
        "right": _and(keys, cause),
        "queries": _and(_query_mask(mask, t), cause),
        "both": _and(keys, _query_mask(mask, t), cause),
    }
    if mask is None and not causal:
        return found
    label = _describe_mask(effective, options)
    if label in _MASK_HINTS and not (label == "both" and keras_mask):
        found.observed.append(
            "The self-attention's attention_mask hides padded queries"
            + (" as well as padded keys." if label == "both" else ", not padded keys.")
        )
        found.named.append(_MASK_HINTS[label])
    return found


# ----------------------------------------------------------- decoder layer


def _dec_layer(x, context, w, p, mask, context_mask, h=None):
    """The decoder layer as a program whose connections `h` can change;
    returns (output, scores). `order` permutes the three stages."""
    h = h or {}
    pp = f"{p}." if p else ""
    t, s = x.shape[1], context.shape[1]
    causal = _causal(t)
    self_masks = {
        "right": lambda: _and(_key_mask(mask, t), causal),
        "queries": lambda: _and(_query_mask(mask, t), causal),
        "no_padding": lambda: causal,
        "context": lambda: _and(_key_mask(context_mask, t), causal),
    }
    cross_masks = {
        "right": lambda: _key_mask(context_mask, t),
        "target": lambda: _key_mask(mask, t) if mask is not None else None,
        "causal": lambda: _and(_key_mask(context_mask, t), _causal(t, s)),
        "queries": lambda: _query_mask(context_mask, s),
    }
    env = {"x": x, "context": context}
    stream = "x"
    scores = {}
    for stage in h.get("order", ("self", "cross", "ffn")):
        if stage == "self":
            q = env[h.get("sa.query", stream)]
            v = env[h.get("sa.value", stream)]
            m = self_masks[h.get("sa.mask", "right")]()
            env["sa"], scores["self"] = M.mha(q, v, w, f"{pp}self_attention", m)
            a, b = h.get("sn", (stream, "sa"))
            env["h_self"] = M.add_norm(env[a], env[b], w, f"{pp}self_norm")
            stream = "h_self"
        elif stage == "cross":
            q = env[h.get("ca.query", stream)]
            v = env[h.get("ca.value", "context")]
            m = cross_masks[h.get("ca.mask", "right")]()
            if m is not None and m.shape[-1] != v.shape[1]:
                raise ValueError("not applicable")
            env["ca"], scores["cross"] = M.mha(q, v, w, f"{pp}cross_attention", m)
            a, b = h.get("cn", (stream, "ca"))
            env["h_cross"] = M.add_norm(env[a], env[b], w, f"{pp}cross_norm")
            stream = "h_cross"
        else:
            env["f"] = M.feed_forward(env[h.get("ffn", stream)], w, f"{pp}ffn")
            a, b = h.get("fn", (stream, "f"))
            env["h_ffn"] = M.add_norm(env[a], env[b], w, f"{pp}ffn_norm")
            stream = "h_ffn"
    return env[h.get("out", stream)], scores[h.get("scores", "cross")]


_DEC_WORDS = {
    "x": "the layer's input `x`",
    "context": "`context`",
    "sa": "the self-attention's output (before Add & Norm)",
    "h_self": "the self-attention's Add & Norm output",
    "ca": "the cross-attention's output (before Add & Norm)",
    "h_cross": "the cross-attention's Add & Norm output",
    "f": "the feed-forward's output",
}

_ORDER_WORDS = {
    "self": "self-attention",
    "cross": "cross-attention",
    "ffn": "feed-forward",
}


def _dec_layer_hypotheses(case):
    kw = case.call_kwargs
    padded, padded_context = (
        kw.get("mask") is not None,
        kw.get("context_mask") is not None,
    )
    out = []
    for order in itertools.permutations(("self", "cross", "ffn")):
        if order == ("self", "cross", "ffn"):
            continue
        said = ", ".join(_ORDER_WORDS[o] for o in order)
        out.append(
            (
                f"The sublayers are in the wrong order (yours: {said}): the "
                "self-attention first, then the cross-attention, then the "
                "feed-forward, each reading the Add & Norm before it.",
                {"order": order},
            )
        )
    out.append(
        (
            "The queries of the cross-attention come from the layer's input `x`; "
            "they come from the self-attention's Add & Norm output (the updated `x`).",
            {"ca.query": "x"},
        )
    )
    out.append(
        (
            "The cross-attention's keys and values are the self-attention's output "
            "before its Add & Norm; they are the encoder's output: "
            "cross_attention(x, context).",
            {"ca.value": "sa"},
        )
    )
    out.append(
        (
            "The cross-attention's keys and values are the layer's input `x`; they "
            "are the encoder's output: cross_attention(x, context).",
            {"ca.value": "x"},
        )
    )
    out.append(
        (
            "The cross-attention's queries and values are swapped: the queries come "
            "from the decoder (`x`), the keys and values from `context`: "
            "cross_attention(x, context).",
            {"ca.query": "context", "ca.value": "h_self"},
        )
    )
    if padded:
        out.append(
            (
                "The cross-attention is given the target's padding mask; it takes "
                "the source's: attention_mask = context_mask[:, None, :].",
                {"ca.mask": "target"},
            )
        )
        out.append(
            (
                "The self-attention's padding mask masks the queries (laid out as "
                "mask[:, :, None]); it must hide the padded keys: attention_mask = "
                "mask[:, None, :] (the key axis is the last).",
                {"sa.mask": "queries"},
            )
        )
        out.append(
            (
                "The self-attention ignores the target's padding: give it "
                "attention_mask = mask[:, None, :] with use_causal_mask=True.",
                {"sa.mask": "no_padding"},
            )
        )
    if padded_context:
        out.append(
            (
                "The self-attention is given the source's padding (context_mask); "
                "it takes the target's: attention_mask = mask[:, None, :].",
                {"sa.mask": "context"},
            )
        )
        out.append(
            (
                "The cross-attention's context mask masks the queries (laid out as "
                "context_mask[:, :, None]); it hides the source's padded keys: "
                "context_mask[:, None, :].",
                {"ca.mask": "queries"},
            )
        )
    out.append(
        (
            "The cross-attention is causal (use_causal_mask=True); only the "
            "self-attention is: every target position may read the whole source.",
            {"ca.mask": "causal"},
        )
    )
    for a in ("x", "h_self", "ca"):
        out.append(
            (
                f"The feed-forward reads {_DEC_WORDS[a]}; its input is the "
                "cross-attention's Add & Norm output.",
                {"ffn": a},
            )
        )
    for residual in ("x",):
        out.append(
            (
                f"The residual of the cross-attention's Add & Norm is "
                f"{_DEC_WORDS[residual]}; it is the cross-attention's own input, "
                "the self-attention's Add & Norm output.",
                {"cn": (residual, "ca")},
            )
        )
    for residual in ("x", "h_self"):
        out.append(
            (
                f"The residual of the feed-forward's Add & Norm is "
                f"{_DEC_WORDS[residual]}; it is the feed-forward's own input, the "
                "cross-attention's Add & Norm output.",
                {"fn": (residual, "f")},
            )
        )
    out.append(
        (
            "`scores` are the self-attention's scores (its keys are the target's "
            "positions); return the cross-attention's scores, (B, heads, T, S).",
            {"scores": "self"},
        )
    )
    return out


def _dec_builder(h):
    def build(case):
        kw = case.call_kwargs
        output, scores = _dec_layer(
            np.asarray(case.inputs["x"], np.float64),
            np.asarray(case.inputs["context"], np.float64),
            case.weights,
            "",
            kw.get("mask"),
            kw.get("context_mask"),
            h,
        )
        if kw.get("return_attention_scores"):
            return {"output": output, "scores": scores}
        return {"output": output}

    return build


def _scores_shape(case, got, expected):
    """`scores` of the wrong shape: whose attention they are."""
    found = Evidence()
    if "scores" not in got or "scores" not in expected:
        return found
    received, want = np.shape(got["scores"]), np.shape(expected["scores"])
    t, s = case.inputs["x"].shape[1], case.inputs["context"].shape[1]
    if received == want or len(received) != 4 or t == s:
        return found
    if received[:3] == want[:3] and received[3] == t:
        found.observed.append(
            f"`scores` has {t} keys, the target's length, where the cross-attention "
            f"has {s} (the source's)."
        )
        found.named.append(
            "`scores` are the self-attention's scores (its keys are the target's "
            "positions); return the cross-attention's scores, (B, heads, T, S)."
        )
    return found


@diagnoses("check_decoder_layer")
def _decoder_layer(case, got, expected, wrong):
    found = _scores_shape(case, got, expected)
    if found:
        return found
    x = np.asarray(case.inputs["x"], np.float64)
    context = np.asarray(case.inputs["context"], np.float64)
    kw = case.call_kwargs
    taps = _taps(got)
    found = _dropout_evidence(taps)
    if found:
        return found
    if taps:
        traced = _tap_wiring(
            case,
            got,
            taps,
            [
                ("self_attention", "self_norm"),
                ("cross_attention", "cross_norm"),
                ("ffn", "ffn_norm"),
            ],
            {"x": x, "context": context},
            "output",
        )
        if traced is not None:
            traced.extend(_tap_decoder_attention(taps, got, x, context, kw))
            return traced or None
    hypotheses = [(hint, _dec_builder(h)) for hint, h in _dec_layer_hypotheses(case)]
    return _refit(case, got, expected, hypotheses, "decoder layer")


def _tap_decoder_attention(taps, got, x, context, kw):
    """The decoder layer's attentions' keys, values, masks and scores."""
    found = Evidence()
    t, s = x.shape[1], context.shape[1]
    mask, context_mask = kw.get("mask"), kw.get("context_mask")
    known = {"x": x, "context": context}
    for name in ("self_norm", "cross_norm"):
        if name in taps:
            known[name] = _out(taps[name][0])
    if "cross_attention" in taps:
        call = taps["cross_attention"][0]
        value = _which(call.get("value"), known)
        query = _which(call.get("query"), known)
        if value is not None and value != "context":
            if query == "context":
                found.named.append(
                    "The cross-attention's query and value are swapped: the queries "
                    "come from the decoder, the keys and values from `context`: "
                    "cross_attention(x, context)."
                )
            else:
                found.named.append(
                    f"The cross-attention's keys and values are "
                    f"{_DESCRIBE.get(value, value)}; they are the encoder's output: "
                    "cross_attention(x, context)."
                )
        key = call.get("key")
        if (
            key is not None
            and value == "context"
            and _which(key, known) not in (None, "context")
        ):
            found.named.append(
                "The cross-attention's keys are not `context`: keys and values both "
                "come from the encoder's output."
            )
        effective = _effective_mask(call, t, s)
        options = {
            "right": _key_mask(context_mask, t),
            "target": _key_mask(mask, t) if mask is not None and s == t else "skip",
            "causal": _and(_key_mask(context_mask, t), _causal(t, s)),
        }
        options = {k: v for k, v in options.items() if not isinstance(v, str)}
        label = _describe_mask(effective, options)
        if label == "target":
            found.named.append(
                "The cross-attention is given the target's padding mask; it takes "
                "the source's: attention_mask = context_mask[:, None, :]."
            )
        elif (
            label == "causal"
            and options["causal"] is not None
            and not _same(
                options["causal"],
                options["right"]
                if options["right"] is not None
                else np.ones_like(options["causal"]),
            )
        ):
            found.named.append(
                "The cross-attention is causal (use_causal_mask=True); only the "
                "self-attention is: every target position may read the whole source."
            )
        if (
            "scores" in got
            and _out(call, 1) is not None
            and not _same(got["scores"], _out(call, 1))
            and "self_attention" in taps
            and _same(got["scores"], _out(taps["self_attention"][0], 1))
        ):
            found.named.append(
                "`scores` are the self-attention's scores; return the "
                "cross-attention's scores, (B, heads, T, S)."
            )
    if "self_attention" in taps:
        call = taps["self_attention"][0]
        effective = _effective_mask(call, t, t)
        causal = _causal(t)
        options = {
            "right": _and(_key_mask(mask, t), causal),
            "queries": _and(_query_mask(mask, t), causal),
            "both": _and(_key_mask(mask, t), _query_mask(mask, t), causal),
        }
        label = _describe_mask(effective, options) if mask is not None else None
        if label in _MASK_HINTS:
            found.named.append(_MASK_HINTS[label])
    return found


# -------------------------------------------------------------------- stacks


def _stack_hypotheses(kind, layers):
    """(hint, h) for a stack's blocks wired otherwise: `chain` (False: every
    block reads the embedding), `weights_of` (every block with one block's
    weights: one layer object in the list), `only` (one block run)."""
    out = []
    if layers > 1:
        out.append(
            (
                "The blocks are not chained: each block reads the embedding; each "
                "block reads the output of the previous block (`x = block(x, ...)` "
                "in the loop).",
                {"chain": False},
            )
        )
        for j in range(layers):
            out.append(
                (
                    "Every block has the same weights: the list holds one layer "
                    "object num_layers times (`[Layer(...)] * num_layers`); build "
                    "distinct layers: `[Layer(...) for _ in range(num_layers)]`.",
                    {"weights_of": j},
                )
            )
        out.append(
            (
                "Only the first block runs: the loop returns (or breaks) after one "
                "block; each block reads the previous block's output, and the last "
                "one's is returned.",
                {"only": [0]},
            )
        )
        out.append(
            (
                "The blocks run in reverse order: blocks[0] first, each block "
                "reading the previous block's output.",
                {"reverse": True},
            )
        )
    out.append(
        (
            "The embedding's dropout, or the embedding, is skipped: each block "
            "must read the output of the embedding.",
            None,
        )
    )
    return [(hint, h) for hint, h in out if h is not None]


def _relabel(w, layers, prefix, j):
    """The weights with every block given block j's."""
    out = dict(w)
    p = f"{prefix}." if prefix else ""
    source = f"{p}blocks.{j}."
    for key_, value in w.items():
        if key_.startswith(source):
            rest = key_[len(source) :]
            for i in range(layers):
                out[f"{p}blocks.{i}.{rest}"] = value
    return out


def _run_blocks(x, w, layers, prefix, h, block):
    p = f"{prefix}." if prefix else ""
    if "weights_of" in h:
        w = _relabel(w, layers, prefix, h["weights_of"])
    indices = list(range(layers))
    if h.get("reverse"):
        indices = indices[::-1]
    if "only" in h:
        indices = h["only"]
    embedded = x
    for i in indices:
        x = block(embedded if h.get("chain") is False else x, w, f"{p}blocks.{i}")
    return x


def _encoder_stack(tokens, w, layers, prefix="", h=None):
    h = h or {}
    p = f"{prefix}." if prefix else ""
    x, mask = M.embed(tokens, w[f"{p}embedding:embeddings"])
    out = _run_blocks(
        x, w, layers, prefix, h, lambda y, ww, pp: M.encoder_layer(y, ww, pp, mask)
    )
    return out, mask


def _decoder_stack(tokens, context, w, layers, prefix="", context_mask=None, h=None):
    h = h or {}
    p = f"{prefix}." if prefix else ""
    x, mask = M.embed(tokens, w[f"{p}embedding:embeddings"])
    return _run_blocks(
        x,
        w,
        layers,
        prefix,
        h,
        lambda y, ww, pp: M.decoder_layer(y, context, ww, pp, mask, context_mask)[0],
    )


def _tap_stack(taps, got, first_input, layers, extra):
    """A stack's chain from its taps: `embedding`, then `blocks.i`."""
    found = Evidence()
    blocks = [taps.get(f"blocks.{i}") for i in range(layers)]
    calls = [len(b) if b else 0 for b in blocks]
    if blocks[0] is not None and len(blocks[0]) == layers > 1 and not any(calls[1:]):
        found.observed.append(
            f"`blocks.0` was called {layers} times and the other blocks never."
        )
        found.named.append(
            "The list holds one layer object num_layers times (`[Layer(...)] * "
            "num_layers`): every level shares the same weights. Build distinct "
            "layers: `[Layer(...) for _ in range(num_layers)]`."
        )
        return found
    if any(b is None for b in blocks):
        missing = [i for i, b in enumerate(blocks) if b is None]
        if "blocks.0" in taps:
            found.observed.append(
                f"`blocks` {', '.join(map(str, missing))} were never called; each "
                "of the num_layers blocks runs once."
            )
        return found
    embedding = _out(taps["embedding"][0]) if "embedding" in taps else first_input
    streams = []
    for block in blocks:
        arrays = _arrays(block[0])
        streams.append(arrays.get("x", next(iter(arrays.values()), None)))
    outs = [_out(block[0]) for block in blocks]
    if embedding is not None and layers > 1:
        readers = [i for i, x in enumerate(streams) if _same(x, embedding)]
        if len(readers) > 1:
            found.observed.append(
                f"{', '.join(f'`blocks.{i}`' for i in readers)} all read the embedding."
            )
            found.named.append(
                "The blocks are not chained: each block reads the output of the "
                "previous block (`x = block(x, ...)` in the loop)."
            )
            return found
        # The order the blocks actually run in, following the stream.
        order, current = [], embedding
        while len(order) < layers:
            nxt = [
                i
                for i in range(layers)
                if i not in order and _same(streams[i], current)
            ]
            if len(nxt) != 1:
                break
            order.append(nxt[0])
            current = outs[nxt[0]]
        if len(order) == layers and order != sorted(order):
            said = ", ".join(f"blocks[{i}]" for i in order)
            reverse = order == sorted(order, reverse=True)
            found.observed.append(f"Your blocks run in the order {said}.")
            found.named.append(
                (
                    "The blocks run in reverse order"
                    if reverse
                    else "The blocks run in another order"
                )
                + f" ({said}): blocks[0] first, then blocks[1], ..., each reading "
                "the previous block's output."
            )
            return found
    for i, block in enumerate(blocks):
        call = block[0]
        for param, (want, words) in extra.items():
            value = call.get(param)
            if want is None or value is None:  # Keras may pass a Keras mask itself
                continue
            if np.shape(value) == np.shape(want) and not _same(
                np.asarray(value) != 0, np.asarray(want) != 0
            ):
                found.observed.append(
                    f"`blocks.{i}` is given a `{param}` that is not the one asked."
                )
                found.named.append(words)
                return found
    return found


def _training(taps):
    """The sublayers called with training=True (never, at inference)."""
    return [
        name
        for name, calls in taps.items()
        for call in calls
        if _flag(call, "training") is True
    ]


def _dropout_evidence(taps):
    found = Evidence()
    flagged = set(_training(taps))
    # The outermost only: a part called with training=True passes it on.
    on = sorted(n for n in flagged if not any(n.startswith(f"{o}.") for o in flagged))
    if on:
        found.observed.append(
            f"{', '.join(f'`{n}`' for n in on)} called with training=True while the "
            "check runs at inference."
        )
        found.named.append(
            "Pass `training=training` on (never `training=True`): with "
            "training=True dropout runs at inference."
        )
    return found


def _stack_builder(kind, h):
    def build(case):
        layers = case.init["num_layers"]
        tokens = np.asarray(case.inputs["tokens"])
        if kind == "encoder":
            return {"output": _encoder_stack(tokens, case.weights, layers, "", h)[0]}
        return {
            "output": _decoder_stack(
                tokens,
                np.asarray(case.inputs["context"], np.float64),
                case.weights,
                layers,
                "",
                case.call_kwargs.get("context_mask"),
                h,
            )
        }

    return build


@diagnoses("check_encoder")
def _encoder(case, got, expected, wrong):
    tokens = np.asarray(case.inputs["tokens"])
    layers = case.init["num_layers"]
    taps = _taps(got)
    found = _dropout_evidence(taps)
    if found:
        return found
    if taps:
        found = _tap_stack(
            taps,
            got,
            None,
            layers,
            {
                "mask": (
                    tokens != 0,
                    "The padding mask is not passed on to the blocks: mask = "
                    "embedding.compute_mask(tokens), then block(x, mask=mask).",
                )
            },
        )
        if found:
            return found
    if "output" not in wrong:
        return None
    hypotheses = [
        (hint, _stack_builder("encoder", h))
        for hint, h in _stack_hypotheses("encoder", layers)
    ]
    return _refit(case, got, expected, hypotheses, "encoder")


@diagnoses("check_decoder")
def _decoder(case, got, expected, wrong):
    tokens = np.asarray(case.inputs["tokens"])
    layers = case.init["num_layers"]
    taps = _taps(got)
    found = _dropout_evidence(taps)
    if found:
        return found
    if taps:
        found = _tap_stack(
            taps,
            got,
            None,
            layers,
            {
                "mask": (
                    tokens != 0,
                    "The target's padding mask is not passed on to the blocks: mask "
                    "= embedding.compute_mask(tokens), then block(x, context, "
                    "mask=mask, context_mask=context_mask).",
                ),
                "context_mask": (
                    case.call_kwargs.get("context_mask"),
                    "The context_mask given to the decoder is not passed on to the "
                    "blocks: block(x, context, mask=mask, context_mask=context_mask).",
                ),
            },
        )
        if found:
            return found
    if "output" not in wrong:
        return None
    hypotheses = [
        (hint, _stack_builder("decoder", h))
        for hint, h in _stack_hypotheses("decoder", layers)
    ]
    return _refit(case, got, expected, hypotheses, "decoder")


# ---------------------------------------------------------------- Transformer


def _transformer_program(case, h):
    w = case.weights
    layers = case.init["num_layers"]
    source = np.asarray(case.inputs["source"])
    target = np.asarray(case.inputs["target"])
    context, source_mask = _encoder_stack(
        source, w, layers, "encoder", h.get("encoder")
    )
    if h.get("context") == "embedding":
        context, _ = M.embed(source, w["encoder.embedding:embeddings"])
    context_mask = {
        "source": source_mask,
        "target": target != 0,
        "none": None,
    }[h.get("context_mask", "source")]
    x = _decoder_stack(
        target, context, w, layers, "decoder", context_mask, h.get("decoder")
    )
    return {"logits": x @ w["final:kernel"] + w["final:bias"]}


def _transformer_builder(h):
    def build(case):
        return _transformer_program(case, h)

    return build


def _transformer_hypotheses(case):
    layers = case.init["num_layers"]
    out = [
        (
            "The context mask is the target's padding; it is the source's: "
            "context_mask = encoder.compute_mask(source).",
            {"context_mask": "target"},
        ),
        (
            "The decoder's context is the source's embedding, not the encoder's "
            "output: context = encoder(source), then decoder(target, context, ...).",
            {"context": "embedding"},
        ),
    ]
    for part in ("encoder", "decoder"):
        for hint, h in _stack_hypotheses(part, layers):
            out.append((f"In the {part}: {hint}", {part: h}))
    return out


@diagnoses("check_transformer")
def _transformer(case, got, expected, wrong):
    taps = _taps(got)
    found = _dropout_evidence(taps)
    if found:
        return found
    source = np.asarray(case.inputs["source"])
    target = np.asarray(case.inputs["target"])
    if taps:
        found = Evidence()
        if "decoder" in taps:
            call = taps["decoder"][0]
            given = call.get("context_mask")
            if given is None and (source == 0).any():
                found.observed.append("The decoder is called without `context_mask`.")
            elif (
                given is not None
                and not _same(np.asarray(given) != 0, source != 0)
                and _same(np.asarray(given) != 0, target != 0)
            ):
                found.named.append(
                    "The context mask is the target's padding; it is the "
                    "source's: context_mask = encoder.compute_mask(source)."
                )
            context = call.get("context")
            if "encoder" in taps and context is not None:
                encoded = _out(taps["encoder"][0])
                if encoded is not None and not _same(context, encoded):
                    found.named.append(
                        "The decoder's context is not the encoder's output: "
                        "context = encoder(source), then decoder(target, context, ...)."
                    )
        if "final" in taps and "decoder" in taps:
            arrays = _arrays(taps["final"][0])
            read = next(iter(arrays.values()), None)
            if read is not None and not _same(read, _out(taps["decoder"][0])):
                found.named.append(
                    "The final projection does not read the decoder's output: "
                    "return final(decoder(target, context, ...))."
                )
        if found:
            return found
    found = _random_logits(got) if "logits" in wrong else None
    if found:
        return found
    if "logits" not in wrong:
        return None
    hypotheses = [
        (hint, _transformer_builder(h)) for hint, h in _transformer_hypotheses(case)
    ]
    return _refit(case, got, expected, hypotheses, "Transformer")


def _random_logits(got):
    """The same model rebuilt and given the same weights gives other logits,
    both wrong: randomness at inference."""
    found = Evidence()
    a, b = got.get("logits"), got.get("logits after from_config")
    if a is None or b is None or np.shape(a) != np.shape(b):
        return found
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return found
    gap = float(np.max(np.abs(a - b))) if a.size else 0.0
    if gap > 1e-3 * (1 + float(np.max(np.abs(a)))):
        found.observed.append(
            "The model and its copy from get_config, given the same weights and "
            f"inputs, returned logits that differ by up to {gap:.3g}: the model is "
            "random at inference."
        )
        found.named.append(
            "Dropout runs at inference: call every part with `training=training` "
            "(never `training=True`); the check calls the model with training off."
        )
    return found
