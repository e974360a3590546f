"""One mistake, one exercise: a composite layer judged on its own wiring.

A composite exercise builds on the student's own parts: Luong and Bahdanau
attention on their `masked_softmax`, the decoder step on their
`BahdanauAttention`, multi-head attention on their
`scaled_dot_product_attention`, the encoder and decoder layers on their
`FeedForward` and `AddNorm`, the stacks on their embedding and layers, the
Transformer on their stacks. A bug in a part would otherwise fail every
composite above it, and their messages would point at the composite.

The check records each call the composite makes to a part (`checks.taps`).
The judge then *replays* the exercise's formula (the judge's NumPy math,
the same the cases are drawn with) with every part replaced by a look-up:
the part's output is what the student's part returned when the student's
composite called it with the inputs the formula gives it. Three outcomes:

* every part received what the formula gives it, and the composite's
  outputs are what the formula makes of what the parts returned: the
  composite is wired right. If its outputs still differ from the reference,
  the difference comes from a part that is wrong (its output differs from
  the reference part's on those very inputs): the case passes, with a note
  naming the part and its exercise, to be fixed first;
* a part never received what the formula gives it: the composite is wired
  wrong there; the message says which part, what it received instead and
  how that differs (`checks.evidence` on the nearest call's input);
* the parts received the right inputs but the outputs are not what the
  formula makes of their results: the composite's own code after the parts
  is wrong, and the message says so (and names a part that is also wrong).

No part's output is trusted for the verdict: a composite is accepted only
when its outputs equal the exercise's wiring applied to whatever its parts
returned, which is the composite's exercise done right. A call made with
`training=True` never matches (dropout on at inference is the composite's
mistake, not the part's).
"""

import contextlib
import dataclasses
import threading

import numpy as np

from autograder.checks import evidence as E
from autograder.checks.core import ROUND_TRIP, Tolerance, valid_for
from autograder.checks.taps import split

__all__ = ["Wiring", "judge"]

_LOCK = threading.RLock()


@dataclasses.dataclass
class Wiring:
    """The wiring verdict of one case."""

    right: bool
    note: str = ""
    evidence: E.Evidence = dataclasses.field(default_factory=E.Evidence)
    #: the note without numbers of the case (for a hidden test)
    plain_note: str = ""


@dataclasses.dataclass
class Part:
    """A student part, as the judge's formula calls it.

    Attributes:
        function: the name of the math module's function that stands for it.
        taps: the tap names it may be recorded under (a callable
            `(args) -> [names]`, or None for any tap).
        inputs: `(args, kwargs) -> {parameter: array or None}`, what the
            formula gives the part, by the exercise's parameter names (in
            the order of the exercise's signature).
        output: `(tap call, args) -> value`, the formula's value from the
            recorded call (`out`, `out0`, ...).
        reference: `(args, kwargs) -> value` of the reference part, to tell
            whether the student's part is wrong on those inputs.
        label: how the message names it (`masked_softmax` (Exercise 4)).
        masks: parameters compared as masks (None = no mask = all True).
    """

    function: str
    taps: object
    inputs: object
    output: object
    label: str
    masks: tuple = ("mask",)
    #: optional `(call, wanted) -> bool` instead of equal inputs
    match: object = None


class _Unmatched(Exception):
    def __init__(self, part, wanted, calls):
        super().__init__(part.label)
        self.part, self.wanted, self.calls = part, wanted, calls


def _as_mask(value, like):
    if value is None:
        return None
    value = np.asarray(value) != 0
    while value.ndim < like.ndim:
        value = np.expand_dims(value, -2)
    return value


def _same_mask(got, want):
    """Masks equal where both apply (a `(B, S)` key mask is `(B, 1, S)`)."""
    if want is None:
        return got is None or bool(np.all(np.asarray(got) != 0))
    if got is None:
        return bool(np.all(np.asarray(want) != 0))
    want = np.asarray(want) != 0
    got = np.asarray(got) != 0
    if got.ndim < want.ndim:
        got = _as_mask(got, want)
    elif want.ndim < got.ndim:
        want = _as_mask(want, got)
    try:
        shape = np.broadcast_shapes(got.shape, want.shape)
    except ValueError:
        return False
    return bool(
        np.array_equal(np.broadcast_to(got, shape), np.broadcast_to(want, shape))
    )


def _close(got, want, valid=None):
    """Equal within the checks' tolerance where `valid`; NaN equals NaN (a
    part's NaN carried through is the part's, not the wiring's)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return False
    tolerance = Tolerance()
    same = np.isclose(
        got, want, rtol=tolerance.rtol, atol=tolerance.atol, equal_nan=True
    )
    if valid is not None:
        same = same | ~np.broadcast_to(np.asarray(valid, bool), same.shape)
    return bool(same.all())


def _arguments(call, names):
    """The recorded call's arguments by the exercise's names: by name when the
    student kept it, else by position among the arguments recorded."""
    recorded = [(k, v) for k, v in call.items() if not k.startswith("out")]
    found = {}
    for index, name in enumerate(names):
        if name in call:
            found[name] = call[name]
        elif index < len(recorded) and recorded[index][0] not in names:
            found[name] = recorded[index][1]
    return found


def _rows(valid, shape):
    """The case's valid positions `(B, T)` as a mask for an intermediate
    tensor whose leading axes are `(B, T)` (a position-wise layer's input or
    output): padded positions never reach a valid one, so they are not
    compared. None when the shapes do not line up."""
    if valid is None:
        return None
    valid = np.asarray(valid, bool)
    while valid.ndim > 2 and valid.shape[-1] == 1:
        valid = valid[..., 0]
    if valid.ndim != 2 or len(shape) < 2 or tuple(shape[:2]) != valid.shape:
        return None
    return valid.reshape(valid.shape + (1,) * (len(shape) - 2))


def _matches(part, call, wanted, valid=None):
    if part.match is not None:
        return part.match(call, wanted)
    if call.get("training") is not None and float(call["training"]) != 0:
        return False
    got = _arguments(call, list(wanted))
    for name, want in wanted.items():
        value = got.get(name)
        if name in part.masks:
            if not _same_mask(value, want):
                return False
        elif want is None:
            if value is not None:
                return False
        elif value is None or not _close(value, want, _rows(valid, np.shape(want))):
            return False
    return True


class _Replay:
    """Stands in for the parts while the formula runs; notes what it saw."""

    def __init__(self, composite, taps, valid=None):
        self.composite = composite
        self.taps = taps
        self.valid = valid  # the case's valid positions (B, T), or None
        self.wrong_parts = []  # (label, how)
        self.used = 0

    def function(self, part, reference):
        def replay(*args, **kwargs):
            wanted = part.inputs(args, kwargs)
            names = part.taps(args) if callable(part.taps) else None
            candidates = [
                (name, call)
                for name, calls in self.taps.items()
                if names is None or name in names
                for call in calls
            ]
            for _, call in reversed(candidates):
                if _matches(part, call, wanted, self.valid):
                    self.used += 1
                    value = part.output(call, args)
                    right = reference(*args, **kwargs)
                    if not _same_value(value, right, self.valid):
                        how = _difference(value, right)
                        if (part.label, how) not in self.wrong_parts:
                            self.wrong_parts.append((part.label, how))
                    return value
            raise _Unmatched(part, wanted, [c for _, c in candidates])

        return replay


def _same_value(got, want, valid=None):
    if isinstance(want, tuple | list):
        return all(_same_value(g, w, valid) for g, w in zip(got, want, strict=True))
    if isinstance(want, dict):
        return all(_same_value(got[k], w, valid) for k, w in want.items())
    if want is None or got is None:
        return want is None and got is None
    if np.asarray(want).dtype == bool:  # a mask: its padded positions matter
        return _close(got, want)
    return _close(got, want, _rows(valid, np.shape(want)))


def _difference(got, want):
    if isinstance(want, tuple | list):
        for g, w in zip(got, want, strict=True):
            if not _same_value(g, w):
                return _difference(g, w)
        return ""
    if isinstance(want, dict):
        for k, w in want.items():
            if not _same_value(got[k], w):
                return _difference(got[k], w)
        return ""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return f"it returned shape {got.shape} where {want.shape} was expected"
    if not np.isfinite(got).all() and np.isfinite(want).all():
        return "it returned NaN or inf where the reference part has numbers"
    return f"it returned values off by up to {float(np.max(np.abs(got - want))):.3g}"


@dataclasses.dataclass
class Composite:
    module: object  # the math module whose functions the parts replace
    parts: list
    formula: object  # `case -> {output: array}`, the judge's formula
    name: str = "your layer"


@contextlib.contextmanager
def _replacing(module, replacements):
    with _LOCK:
        saved = {name: getattr(module, name) for name in replacements}
        for name, function in replacements.items():
            setattr(module, name, function)
        try:
            yield
        finally:
            for name, function in saved.items():
                setattr(module, name, function)


def _base(name):
    """The formula's output an output name stands for: `probs` for `probs
    after from_config` or `probs (return_attention_scores=False)`."""
    if name.endswith(ROUND_TRIP):
        name = name[: -len(ROUND_TRIP)]
    return name.split(" (", 1)[0]


def _judge_case(composite, case, got):
    outputs, taps = split(got)
    if not taps:
        return None
    valid = next(
        (np.asarray(v) for k, v in case.valid.items() if not k.endswith(ROUND_TRIP)),
        None,
    )
    replay = _Replay(composite, taps, valid)
    replacements = {
        part.function: replay.function(part, getattr(composite.module, part.function))
        for part in composite.parts
    }
    try:
        with _replacing(composite.module, replacements):
            rewired = composite.formula(case)
    except _Unmatched as unmatched:
        return _unmatched(composite, unmatched)
    if replay.used == 0:
        return None
    differing = []
    for name, received in outputs.items():
        if name.endswith(ROUND_TRIP) and replay.wrong_parts:
            # the rebuilt layer's own calls were not recorded: with a part
            # that is wrong (random, even) they cannot be replayed
            continue
        base = _base(name)
        if base not in rewired:
            continue
        if not _close(received, rewired[base], valid_for(case, name)):
            differing.append(name)
    if differing:
        found = E.Evidence()
        found.observed.append(
            f"Your {composite.name} gave each of its parts what the exercise "
            "gives it, but "
            + ", ".join(f"`{n}`" for n in differing[:3])
            + " is not what the exercise builds from what the parts returned: "
            "the mistake is in your code after those calls, not in the parts."
        )
        for label, how in replay.wrong_parts:
            found.observed.append(
                f"Your {label} is also wrong on what it received ({how}): fix it too."
            )
        return Wiring(False, evidence=found)
    if not replay.wrong_parts:
        return None  # right through and through: nothing to say

    def note(names):
        return (
            f"{composite.name} is wired right: it calls its parts as the "
            "exercise says and builds its result from what they return. Its "
            f"outputs differ from the reference only because of {names}. This "
            "test gives its points; fix that exercise first, and this layer "
            "will be right too."
        )

    labels = list(dict.fromkeys(label for label, _ in replay.wrong_parts))
    return Wiring(
        True,
        note=note(
            "; ".join(f"your {label} ({how})" for label, how in replay.wrong_parts)
        ),
        plain_note=note("; ".join(f"your {label}" for label in labels)),
    )


def _unmatched(composite, unmatched):
    part, wanted, calls = unmatched.part, unmatched.wanted, unmatched.calls
    found = E.Evidence()
    if not calls:
        found.observed.append(
            f"Your {composite.name} never called {part.label}: the exercise "
            "builds it on that part (call it; do not copy its code here)."
        )
        return Wiring(False, evidence=found)
    trained = [
        c for c in calls if c.get("training") is not None and float(c["training"]) != 0
    ]
    if trained:
        found.named.append(
            f"Your {composite.name} calls {part.label} with `training=True`: pass "
            "`training=training` on, so that dropout is off at inference."
        )
        return Wiring(False, evidence=found)
    call = calls[-1] if len(calls) == 1 else _nearest(part, calls, wanted)
    got = _arguments(call, list(wanted))
    for name, want in wanted.items():
        value = got.get(name)
        if name in part.masks:
            if _same_mask(value, want):
                continue
            if want is not None and value is None:
                found.observed.append(
                    f"Your {composite.name} calls {part.label} without its "
                    f"`{name}`: the padding must reach it."
                )
            elif want is None:
                found.observed.append(
                    f"Your {composite.name} gives {part.label} a `{name}` that "
                    "masks positions where the exercise masks none."
                )
            else:
                found.observed.append(
                    f"Your {composite.name} gives {part.label} a `{name}` that "
                    "is not the one the exercise gives it (True on the real "
                    "tokens it may attend to)."
                )
            continue
        if want is None or (value is not None and _close(value, want)):
            continue
        if value is None:
            found.observed.append(
                f"Your {composite.name} calls {part.label} without `{name}`."
            )
            continue
        first = (
            f"Your {composite.name} calls {part.label} with a `{name}` that is "
            "not the one the exercise gives it"
        )
        read = E.read(
            _Sizes(want),
            f"{part.label}'s `{name}`",
            value,
            np.asarray(want, np.float64),
        )
        if read:
            found.observed.append(first + ":")
            found.extend(read)
        else:
            found.observed.append(first + ".")
        break
    if not found:
        found.observed.append(
            f"Your {composite.name} never calls {part.label} with what the "
            "exercise gives it."
        )
    return Wiring(False, evidence=found)


class _Sizes:
    """A stand-in case for `evidence.read`: sizes from the array itself."""

    def __init__(self, value):
        self.inputs = {"value": np.asarray(value)}
        self.init = {}
        self.call_kwargs = {}


def _nearest(part, calls, wanted):
    def distance(call):
        got = _arguments(call, list(wanted))
        total = 0.0
        for name, want in wanted.items():
            value = got.get(name)
            if want is None or value is None or name in part.masks:
                total += 0 if (want is None) == (value is None) else 1
                continue
            if np.shape(value) != np.shape(want):
                total += 10
            else:
                total += float(np.mean(np.abs(np.asarray(value) - np.asarray(want))))
        return total

    return min(calls, key=distance)


def _out_mask(call, tokens):
    """The Keras mask the part's output carried (all True when none): the
    stack after it reads its mask from there."""
    mask = call.get("out_mask")
    if mask is None:
        return np.ones(np.shape(tokens), bool)
    return np.asarray(mask) != 0


# ------------------------------------------------------------ the composites


def _composites():
    from autograder import judge
    from autograder.judge import attention_math as A
    from autograder.judge import seq2seq_math as S
    from autograder.judge import transformer_math as T

    softmax_part = Part(
        function="masked_softmax",
        taps=lambda args: ["masked_softmax"],
        inputs=lambda a, k: {
            "scores": a[0],
            "mask": a[1] if len(a) > 1 else k.get("mask"),
        },
        output=lambda call, a: call["out"],
        label="`masked_softmax` (its own exercise, check_masked_softmax)",
    )
    bahdanau_part = Part(
        function="bahdanau",
        taps=None,
        inputs=lambda a, k: {"query": a[0], "values": a[1], "values_mask": a[2]},
        output=lambda call, a: {"context": call["out0"], "weights": call["out1"]},
        label="`BahdanauAttention` (its own exercise, check_bahdanau_attention)",
        masks=("values_mask",),
    )
    sdpa_part = Part(
        function="sdpa",
        taps=lambda args: ["scaled_dot_product_attention"],
        inputs=lambda a, k: {
            "q": a[0],
            "k": a[1],
            "v": a[2],
            "mask": a[3] if len(a) > 3 else None,
        },
        output=lambda call, a: (call["out0"], call["out1"]),
        label="`scaled_dot_product_attention` (its own exercise, "
        "check_scaled_dot_product_attention)",
    )

    def prefixed(index):
        return lambda args: [args[index]]

    ffn_part = Part(
        function="feed_forward",
        taps=prefixed(2),
        inputs=lambda a, k: {"x": a[0]},
        output=lambda call, a: call["out"],
        label="`FeedForward` (its own exercise, check_feed_forward)",
    )
    add_norm_part = Part(
        function="add_norm",
        taps=prefixed(3),
        inputs=lambda a, k: {"x": a[0], "y": a[1]},
        output=lambda call, a: call["out"],
        label="`AddNorm` (its own exercise, check_add_norm)",
    )
    embed_part = Part(
        function="embed",
        taps=None,
        inputs=lambda a, k: {"tokens": a[0]},
        output=lambda call, a: (call["out"], _out_mask(call, a[0])),
        label="`PositionalEmbedding` (its own exercise, check_positional_embedding)",
    )
    encoder_layer_part = Part(
        function="encoder_layer",
        taps=prefixed(2),
        inputs=lambda a, k: {"x": a[0], "mask": a[3] if len(a) > 3 else k.get("mask")},
        output=lambda call, a: call["out"],
        label="`EncoderLayer` (its own exercise, check_encoder_layer)",
    )
    decoder_layer_part = Part(
        function="decoder_layer",
        taps=prefixed(3),
        inputs=lambda a, k: {
            "x": a[0],
            "context": a[1],
            "mask": a[4] if len(a) > 4 else k.get("mask"),
            "context_mask": a[5] if len(a) > 5 else k.get("context_mask"),
        },
        output=lambda call, a: (call.get("out0", call.get("out")), None),
        label="`DecoderLayer` (its own exercise, check_decoder_layer)",
        masks=("mask", "context_mask"),
    )
    encoder_part = Part(
        function="encoder",
        taps=lambda args: [args[3]],
        inputs=lambda a, k: {"tokens": a[0]},
        output=lambda call, a: (call["out"], _out_mask(call, a[0])),
        label="`Encoder` (its own exercise, check_encoder)",
    )
    decoder_part = Part(
        function="decoder",
        taps=lambda args: [args[4]],
        inputs=lambda a, k: {
            "tokens": a[0],
            "context": a[1],
            "context_mask": a[5] if len(a) > 5 else k.get("context_mask"),
        },
        output=lambda call, a: call["out"],
        label="`Decoder` (its own exercise, check_decoder)",
        masks=("context_mask",),
    )

    def longer_encoding(call, wanted):
        """An encoding made once for `max_length` positions and sliced."""
        got = _arguments(call, list(wanted))
        length, depth = got.get("length"), got.get("depth")
        out = call.get("out")
        if length is None or depth is None or out is None or np.ndim(out) != 2:
            return False
        return (
            int(depth) == int(wanted["depth"])
            and int(length) >= int(wanted["length"])
            and np.shape(out)[0] >= int(wanted["length"])
        )

    encoding_part = Part(
        function="positional_encoding",
        taps=lambda args: ["positional_encoding"],
        inputs=lambda a, k: {"length": a[0], "depth": a[1]},
        output=lambda call, a: np.asarray(call["out"])[: int(a[0])],
        label="`positional_encoding` (its own exercise, check_positional_encoding)",
        match=longer_encoding,
    )

    def formula(check):
        return judge.spec(check).formula

    return {
        "check_luong_attention": Composite(
            S, [softmax_part], formula("check_luong_attention"), "`LuongAttention`"
        ),
        "check_bahdanau_attention": Composite(
            S,
            [softmax_part],
            formula("check_bahdanau_attention"),
            "`BahdanauAttention`",
        ),
        "check_bahdanau_decoder_step": Composite(
            S,
            [bahdanau_part],
            formula("check_bahdanau_decoder_step"),
            "`BahdanauDecoderStep`",
        ),
        "check_multi_head_attention": Composite(
            A,
            [sdpa_part],
            formula("check_multi_head_attention"),
            "`MultiHeadAttention`",
        ),
        "check_positional_embedding": Composite(
            T,
            [encoding_part],
            formula("check_positional_embedding"),
            "`PositionalEmbedding`",
        ),
        "check_encoder_layer": Composite(
            T,
            [ffn_part, add_norm_part],
            formula("check_encoder_layer"),
            "`EncoderLayer`",
        ),
        "check_decoder_layer": Composite(
            T,
            [ffn_part, add_norm_part],
            formula("check_decoder_layer"),
            "`DecoderLayer`",
        ),
        "check_encoder": Composite(
            T, [embed_part, encoder_layer_part], formula("check_encoder"), "`Encoder`"
        ),
        "check_decoder": Composite(
            T, [embed_part, decoder_layer_part], formula("check_decoder"), "`Decoder`"
        ),
        "check_transformer": Composite(
            T,
            [encoder_part, decoder_part],
            formula("check_transformer"),
            "`Transformer`",
        ),
    }


_TABLE = {}


def judge(check_name):
    """The wiring judge of a composite check, `(case, got) -> Wiring | None`,
    or None when the check is not a composite's."""
    if not _TABLE:
        _TABLE.update(_composites())
    composite = _TABLE.get(check_name)
    if composite is None:
        return None
    return lambda case, got: _judge_case(composite, case, got)
