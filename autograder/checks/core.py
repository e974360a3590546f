"""The checking engine behind every graded test cell.

A test cell calls one `check_*` function with the student's class or function.
The check runs a list of cases. Each case builds the student's layer, gives it
the case's weights (weight injection: no random seed or initialiser order is
ever involved) and calls it on the case's fixed inputs (`observe`). The
outputs are compared with the reference's on the positions that matter
(`decide`): in the notebook itself when a student runs the cell, and in the
grader's own process, never in the student's kernel, when a submission is
graded (`autograder.checks.sources`, `autograder.trusted`).

When a case fails the check raises `CheckFailed` whose message says what was
checked, the inputs, what was expected and what was received, and a hint. The
hint comes from *mistake variants*: the same computation with one typical
mistake built in (no mask, wrong softmax axis, ...). If the student's output
matches a variant, the message names that mistake.

`NotImplementedError` raised by an unfilled exercise passes through unchanged,
so the untouched student notebook fails for exactly that reason.
"""

import contextlib
import contextvars
import dataclasses
import functools
import re
import traceback
import warnings
from collections.abc import Sequence

import numpy as np

from autograder.checks import evidence

__all__ = [
    "Case",
    "CheckFailed",
    "Tolerance",
    "check",
    "compare",
    "current_draw",
    "decide",
    "drawing",
    "fixed_array",
    "fixed_generator",
    "fixed_literal",
    "observe",
    "run_check",
]

# Test inputs and weights are O(1), so one tolerance serves every output. It
# allows float32 everywhere (~1e-7 relative), and TF32 matmuls on recent GPUs
# (inputs rounded to 10 mantissa bits, ~5e-4 relative each), with margin; the
# mistakes the checks look for change outputs by 1e-1 or more.
DEFAULT_RTOL = 5e-3
DEFAULT_ATOL = 5e-3


class CheckFailed(AssertionError):
    """A check found the student's code wrong; the message says how."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """`|received - expected| <= atol + rtol * |expected|`, elementwise."""

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL

    def describe(self):
        return f"atol={self.atol:g} + rtol={self.rtol:g} * |expected|"


@dataclasses.dataclass
class Case:
    """One comparison: the inputs, the constructor arguments and what to run.

    Attributes:
        title: one line saying what this case checks.
        inputs: the call's array arguments, by name, in call order.
        init: constructor keyword arguments.
        call_kwargs: further keyword arguments of the call.
        valid: optional boolean arrays by output name: compare only where True.
        notes: lines describing the inputs (masks, sizes) for the message.
        weights: the values every weight gets, by the exercise's weight name.
        options: how the student's code is called (for example through a
            functional model); JSON values only.

    A case is data only, so the grader can write it to a file for the kernel
    and compute the expected outputs in another process.
    """

    title: str
    inputs: dict
    init: dict = dataclasses.field(default_factory=dict)
    call_kwargs: dict = dataclasses.field(default_factory=dict)
    valid: dict = dataclasses.field(default_factory=dict)
    notes: Sequence[str] = ()
    weights: dict = dataclasses.field(default_factory=dict)
    options: dict = dataclasses.field(default_factory=dict)


_DRAW = contextvars.ContextVar("autograder_case_draw", default=(0, 0))


def _non_negative(name, value):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"non-negative integer. Received: {name}={value!r}"
        )
    return int(value)


@contextlib.contextmanager
def drawing(draw, redraw=0):
    """Build the cases of another draw: the same kinds, other values.

    Inside `with drawing(draw):` every `fixed_array`, `fixed_generator` and
    `fixed_literal` gives the values of that draw. Draw 0 (also the value
    outside any `drawing`) gives the cases the student bundle ships; any other
    draw gives a fresh set, the same on every machine for the same `draw`,
    so a submission that memorised the shipped outputs earns nothing from
    them while grading.

    Args:
        draw: a non-negative integer.
        redraw: another try at the same draw (`judge.Spec.cases` draws a
            case again when it would not show a mistake the shipped case
            shows); 0 is the first.
    """
    token = _DRAW.set((_non_negative("draw", draw), _non_negative("redraw", redraw)))
    try:
        yield
    finally:
        _DRAW.reset(token)


def current_draw():
    """The draw the cases are being built for (0 outside any `drawing`)."""
    return _DRAW.get()[0]


def fixed_generator(seed):
    """A NumPy generator for a case builder's integers and choices.

    `seed` (a non-negative integer) names the builder's stream; at draw 0 the
    generator is `PCG64(seed)`, at any other draw `PCG64([seed, draw])` (and
    `PCG64([seed, draw, redraw])` when drawn again).
    """
    draw, redraw = _DRAW.get()
    if draw == redraw == 0:
        entropy = seed
    elif redraw == 0:
        entropy = [seed, draw]
    else:
        entropy = [seed, draw, redraw]
    return np.random.Generator(np.random.PCG64(entropy))


def fixed_array(shape, salt, scale=1.0, dtype="float64"):
    """Deterministic O(1) test values, the same on every machine and release.

    Expected outputs are always computed live from the reference, so nothing
    depends on these exact numbers; fixing them only makes messages repeatable.
    Under `drawing(draw)` the values are those of that draw.
    """
    rng = fixed_generator(1_000_003 * (salt + 1))
    return (rng.standard_normal(shape) * scale).astype(dtype)


def fixed_literal(today, sample, seed):
    """A case's literal (a size, a token id, a script): `today` at draw 0.

    At any other draw, `sample(generator)` (a value of the same kind) drawn
    again until it differs from `today`, so that no case of a fresh draw has
    the inputs, and so the outputs, of the shipped one.

    Args:
        today: the value of draw 0.
        sample: `numpy.random.Generator -> value`.
        seed: names the stream, as in `fixed_generator`.
    """
    if current_draw() == 0:
        return today
    rng = fixed_generator(seed)
    for _ in range(1000):
        value = sample(rng)
        if not _same(value, today):
            return value
    raise RuntimeError(f"no value other than {today!r} in 1000 draws")


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and np.array_equal(a, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def describe_array(name, value):
    value = np.asarray(value)
    if value.dtype == bool:
        rows = np.asarray(value, dtype=int).tolist()
        return f"{name}: bool {tuple(value.shape)} {rows}"
    dtype = "float32" if value.dtype.kind == "f" else value.dtype  # as the layer got it
    return f"{name}: {dtype} {tuple(value.shape)}"


def _as_numpy(value, what):
    """Convert a student's output to a float64 array, or explain why not."""
    if hasattr(value, "numpy") and callable(value.numpy):
        value = value.numpy()
    try:
        array = np.asarray(value)
    except Exception as error:  # pragma: no cover - exotic objects
        raise CheckFailed(
            f"{what} could not be read as an array ({type(value).__name__}: {error})."
        ) from None
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise CheckFailed(
            f"{what} should be a tensor of numbers; received a "
            f"{type(value).__name__} holding {array.dtype}."
        )
    return array.astype(np.float64)


def compare(received, expected, valid=None, tolerance=Tolerance()):
    """Compare two arrays; return None if close, else a description.

    Args:
        received: the student's array (float64).
        expected: the reference array, same shape.
        valid: optional boolean array broadcastable to `expected`: only those
            positions are compared.
        tolerance: a `Tolerance`.

    Returns:
        `None` when every compared position is within tolerance, otherwise a
        string with the largest difference and where it is.
    """
    if received.shape != expected.shape:
        return f"shape {received.shape}, expected {expected.shape}"
    if valid is None:
        valid = np.ones(expected.shape, dtype=bool)
    valid = np.broadcast_to(valid, expected.shape)
    bad_values = valid & ~np.isfinite(received)
    if bad_values.any():
        where = tuple(int(i) for i in np.argwhere(bad_values)[0])
        return f"non-finite value {received[where]} at index {where}"
    diff = np.where(valid, np.abs(received - expected), 0.0)
    allowed = tolerance.atol + tolerance.rtol * np.abs(expected)
    if (diff <= allowed).all():
        return None
    where = tuple(
        int(i) for i in np.unravel_index(np.argmax(diff - allowed), diff.shape)
    )
    return (
        f"max abs difference {diff.max():.3g} (at index {where}: received "
        f"{received[where]:.6g}, expected {expected[where]:.6g}); "
        f"tolerance {tolerance.describe()}"
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _error_text(error):
    """The student's own error message, without Keras's wrapping around it."""
    text = _ANSI.sub("", str(error)).strip()
    if text.startswith("Exception encountered when calling"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    text = text.split("Arguments received by", 1)[0].strip()
    return text


def _student_error(what, error):
    """A CheckFailed for an exception the student's code raised, with the
    shapes of the arrays the failing line works on."""
    return CheckFailed(
        f"{what} raised {type(error).__name__}: {_error_text(error)}"
        f"{_student_location(error)}{_operand_shapes(error)}{_shape_error(error)}"
        f"{_inside_part(error)}"
    )


#: The case being run (`observe`): a crash's explanation reads its sizes.
_CASE = contextvars.ContextVar("autograder_case", default=None)


def _shape_error(error):
    """`Observed:` lines explaining a shape error (`checks.crash`)."""
    from autograder.checks import crash

    case = _CASE.get()
    names = _line_names(error)
    weights, batch, sizes = [], None, set()
    if case is not None:
        weights = [(n, np.shape(v)) for n, v in case.weights.items()]
        arrays = [v for v in case.inputs.values() if np.ndim(v)]
        if arrays:
            batch = int(np.shape(arrays[0])[0])
        for value in [*case.inputs.values(), *case.call_kwargs.values()]:
            sizes.update(int(d) for d in np.shape(value))
        sizes.update(
            int(v)
            for v in case.init.values()
            if isinstance(v, int | np.integer) and not isinstance(v, bool)
        )
    try:
        lines = crash.explain(_error_text(error), names, weights, batch, sizes)
    except Exception:  # an explanation must never hide the error itself
        return ""
    return "".join(f"\nObserved: {line}" for line in lines)


def _owner(frame):
    """`LayerName` for a method's frame, `function` for a plain function's."""
    this = frame.f_locals.get("self")
    if this is not None and frame.f_code.co_name in ("call", "build", "__init__"):
        return type(this).__name__
    if this is not None:
        return f"{type(this).__name__}.{frame.f_code.co_name}"
    return frame.f_code.co_name


def _inside_part(error):
    """When the failing line is inside another part of the student's own (a
    function or layer the checked code calls: their `masked_softmax` inside
    their attention), say so: the composite cannot be judged until the part
    runs, and the part's own exercise is the one to fix first."""
    frames = [
        frame
        for frame, _ in traceback.walk_tb(error.__traceback__)
        if "site-packages" not in frame.f_code.co_filename
        and "/autograder/" not in frame.f_code.co_filename
        and not frame.f_code.co_filename.startswith("<frozen")
    ]
    if len(frames) < 2:
        return ""
    outer, inner = _owner(frames[0]), _owner(frames[-1])
    if inner == outer or inner.split(".")[0] == outer.split(".")[0]:
        return ""
    if inner.startswith("<") or outer.startswith("<"):
        return ""
    from autograder.checks.taps import _snake

    snake = _snake(inner)
    return (
        f"\nThe error is inside your `{inner}`, which `{outer}` calls: this "
        f"layer cannot be judged until `{inner}` runs on what it receives here "
        f"(see the shapes above). If check_{snake} fails too, fix that "
        "exercise first; if it passes, look at what this layer passes to it."
    )


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _operand_shapes(error):
    """`At that line: `q` (2, 3, 5), ...`: the shapes of the tensors and
    arrays the student's failing line names (locals and attributes of
    `self` that hold one), read from the frame where it failed."""
    frames = [
        (frame, line)
        for frame, line in traceback.walk_tb(error.__traceback__)
        if "site-packages" not in frame.f_code.co_filename
        and "/autograder/" not in frame.f_code.co_filename
    ]
    if not frames:
        return ""
    shapes = [f"`{name}` {dims}" for name, dims in _line_names(error)]
    return f"\nAt that line: {', '.join(shapes[:8])}." if shapes else ""


def _line_names(error):
    """`[(name, shape)]` of the tensors and arrays the student's failing line
    names (locals, and attributes of `self` that hold one)."""
    frames = [
        (frame, line)
        for frame, line in traceback.walk_tb(error.__traceback__)
        if "site-packages" not in frame.f_code.co_filename
        and "/autograder/" not in frame.f_code.co_filename
    ]
    if not frames:
        return []
    frame, lineno = frames[-1]
    import linecache

    text = linecache.getline(frame.f_code.co_filename, lineno, frame.f_globals)
    found = []
    this = frame.f_locals.get("self")
    for name in dict.fromkeys(_NAME.findall(text)):
        value = frame.f_locals.get(name)
        if value is None and this is not None and f"self.{name}" in text:
            value = getattr(this, name, None)
        shape = getattr(value, "shape", None)
        if shape is None or isinstance(value, type):
            continue
        try:
            dims = tuple(None if d is None else int(d) for d in shape)
        except (TypeError, ValueError):
            continue
        found.append((name, dims))
    return found


def check(function):
    """Decorate a `check_*` function: clean verdicts, no harness traceback.

    A `CheckFailed` or `NotImplementedError` raised anywhere inside is raised
    again, with the same message, from `autograder.checks.verdict`, outside
    any `except` block, so the student's traceback shows their test cell, one
    line of the harness and the message.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        __tracebackhide__ = True
        from autograder.checks import verdict

        try:
            with _warnings_to_stdout():
                return function(*args, **kwargs)
        except CheckFailed as failure:
            message, todo = failure.message, False
        except NotImplementedError as error:
            where = _student_location(error)
            message = (
                f"{function.__name__}: your code is not written yet: it raised "
                f"NotImplementedError{where}. Replace that line with your solution."
            )
            todo = True
        if todo:
            verdict.not_implemented(message)
        verdict.fail(message)

    return wrapper


# Keras before 3.8 passes the mask of a masked input on to the query, key and
# value projections of its own `MultiHeadAttention`, which then warn that they
# drop it: a false alarm about Keras's layer, not the student's code (Keras 3.8
# clears those masks first).
_KERAS_FALSE_ALARM = re.compile(
    r"Layer '(query|key|value)' \(of type EinsumDense\) was passed an input "
    r"with a mask attached to it"
)


@contextlib.contextmanager
def _warnings_to_stdout():
    """Print warnings raised while checking to stdout, once each.

    nbgrader gives 0 points to a graded cell that writes to stderr, which is
    where Python sends warnings (for example Keras's "does not support
    masking"). A warning is worth reading, not worth the points.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = set()
            for item in caught:
                text = f"{item.category.__name__}: {item.message}"
                if _KERAS_FALSE_ALARM.match(str(item.message)):
                    continue
                if text not in seen:
                    seen.add(text)
                    print(f"Note, a warning while checking: {text}")


def _student_location(error):
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if "site-packages" not in f.filename and "/autograder/" not in f.filename
    ]
    if not frames:
        return ""
    last = frames[-1]
    return f" (in {last.name}, line {last.lineno})"


@contextlib.contextmanager
def student_code(what):
    """Run student code: let NotImplementedError through, explain anything else."""
    __tracebackhide__ = True
    try:
        yield
    except NotImplementedError:
        raise
    except CheckFailed:
        raise
    except Exception as error:
        raise _student_error(what, error) from error


def _format_failure(check_name, index, total, case, problem, hint, evidence=None):
    """The message of a failed case: what ran, what differed, and why.

    `hint` names a known mistake the outputs match; otherwise `evidence`
    (`checks.evidence`) says what the outputs show (`Observed:`) and, only
    where that supports it, names the mistake (`Hint:`); `reminder` (the
    exercise's recipe) closes a message that names no mistake."""
    lines = [
        f"{check_name}: case {index} of {total} failed: {case.title}",
        "Inputs:",
    ]
    lines += [f"  {describe_array(name, value)}" for name, value in case.inputs.items()]
    lines += [
        f"  {describe_array(name, value)}"
        for name, value in case.call_kwargs.items()
        if isinstance(value, np.ndarray)
    ]
    if case.init:
        args = ", ".join(f"{k}={v!r}" for k, v in case.init.items())
        lines.append(f"  constructor arguments: {args}")
    lines += [f"  {note}" for note in case.notes]
    lines.append(problem)
    if hint:
        lines.append(f"Hint: {hint}")
    elif evidence is not None:
        lines += [f"Observed: {line}" for line in evidence.observed]
        lines += [f"Hint: {line}" for line in evidence.named]
        if not evidence.named and evidence.reminder:
            lines.append(f"The exercise asks for: {evidence.reminder}")
    return "\n".join(lines)


def observe(check_name, cases, probe):
    """Run the student's code on every case and read its outputs.

    Args:
        check_name: shown first in every message.
        cases: a list of `Case`.
        probe: `(case, index) -> {output name: array-like}`; runs the
            student's code, raising `CheckFailed` for problems it finds
            itself (weights, structure, an exception in the student's code).

    Returns:
        `(observations, failure)`: one `{name: float64 array}` per case that
        ran, and the `CheckFailed` that stopped the run (or None).
        `NotImplementedError` is not caught.
    """
    observations = []
    for index, case in enumerate(cases, start=1):
        token = _CASE.set(case)
        try:
            raw = probe(case, index)
            observed = {
                name: _as_numpy(value, f"Output `{name}`")
                for name, value in raw.items()
            }
        except CheckFailed as failure:
            message = _format_failure(
                check_name, index, len(cases), case, failure.message, ""
            )
            return observations, CheckFailed(message)
        finally:
            _CASE.reset(token)
        observations.append(observed)
    return observations, None


#: Outputs recorded again after a `from_config(get_config())` round trip.
ROUND_TRIP = " after from_config"


def valid_for(case, name):
    """Where an output is compared: the case's mask of that output, which
    also holds for the same output of the layer rebuilt from its config."""
    if name in case.valid:
        return case.valid[name]
    if name.endswith(ROUND_TRIP):
        return case.valid.get(name[: -len(ROUND_TRIP)])
    return None


def _matches(outputs, variant, case, tolerance):
    return bool(variant) and all(
        name in outputs
        and np.shape(outputs[name]) == np.shape(value)
        and compare(
            outputs[name],
            np.asarray(value, np.float64),
            valid_for(case, name),
            tolerance,
        )
        is None
        for name, value in variant.items()
    )


def decide(
    check_name,
    cases,
    observations,
    expectations,
    failure=None,
    generic_hint="",
    tolerance=Tolerance(),
    diagnose=None,
    wiring=None,
    notes=None,
    plain_notes=False,
):
    """Compare observations with expectations; raise `CheckFailed` at the first
    case that differs, naming the mistake its outputs match.

    This is the whole verdict. During grading it runs in the grader's own
    process, on the arrays the student's kernel recorded; in a student's
    notebook it runs in the kernel, on the visible cases only.

    Args:
        expectations: one dict per case: `expected` (`{name: array}`) and
            `variants` (`[(hint, {name: array}), ...]`, the outputs with one
            typical mistake built in).
        failure: the `CheckFailed` that stopped `observe`, raised after the
            cases before it are compared.
        diagnose: optional `(case, got, expected, wrong) -> Evidence`, the
            exercise's own diagnosis (the judge's, while grading): read when
            no known variant matches, before the general evidence.
        wiring: optional `(case, got) -> Wiring`, the judge's verdict on a
            composite layer's own wiring, its student parts taken as black
            boxes (`autograder.judge.wiring`). A case whose outputs differ
            from the reference only through a part that is wrong, the
            composite wired right, passes, with a note in `notes`.
        notes: a list the notes of such cases are appended to.
        plain_notes: notes without the case's numbers (a hidden test).

    Returns:
        The number of cases compared.
    """
    total = len(cases)
    for index, (case, got, expectation) in enumerate(
        zip(cases, observations, expectations, strict=False), start=1
    ):
        problems, passed, wrong = [], [], {}
        for name, expected in expectation["expected"].items():
            expected = np.asarray(expected, np.float64)
            if name not in got:
                problems.append(f"Expected an output `{name}` but it was missing.")
                continue
            received = np.asarray(got[name], np.float64)
            if received.shape != expected.shape:
                problems.append(
                    f"Output `{name}`: received shape {received.shape}, "
                    f"expected {expected.shape}."
                )
                wrong[name] = (received, expected)
                continue
            issue = compare(received, expected, valid_for(case, name), tolerance)
            if issue:
                problems.append(f"Output `{name}`: {issue}.")
                wrong[name] = (received, expected)
            else:
                passed.append(name)
        if not problems:
            continue
        wired = None
        if wiring is not None:
            try:
                wired = wiring(case, got)
            except Exception as error:  # a judge bug must not cost the student
                wired = None
                warnings.warn(f"wiring judge failed: {error!r}", stacklevel=1)
        if wired is not None and wired.right:
            note = wired.plain_note if plain_notes else wired.note
            if notes is not None and note not in notes:
                notes.append(note)
            continue
        hint = ""
        for variant_hint, variant in expectation["variants"]:
            if _matches(got, variant, case, tolerance):
                hint = variant_hint
                break
        found = None
        if not hint:  # not a known mistake: what do the outputs show?
            found = evidence.Evidence()
            if wired is not None:
                found.extend(wired.evidence)
            if diagnose is not None:
                try:
                    own = diagnose(case, got, expectation["expected"], list(wrong))
                except Exception as error:  # a judge bug must not hide the verdict
                    own = None
                    warnings.warn(f"diagnosis failed: {error!r}", stacklevel=1)
                if own:
                    found.extend(own)
            judged = list(found.named)  # the exercise's own diagnosis named it
            found.extend(evidence.read_outputs(passed, list(wrong)))
            for name, (received, expected) in wrong.items():
                found.extend(
                    evidence.read(
                        case,
                        name,
                        received,
                        expected,
                        valid_for(case, name),
                        tolerance,
                    )
                )
            if judged:  # the general readings add what they saw, no hint
                found.named = judged
            found.reminder = generic_hint
        raise CheckFailed(
            _format_failure(
                check_name, index, total, case, "\n".join(problems), hint, found
            )
        )
    if failure is not None:
        raise failure
    if len(observations) != total:
        raise CheckFailed(
            f"{check_name}: results for {len(observations)} of {total} cases."
        )
    return total


def run_check(check_name, which, probe, borrowing="attention"):
    """The body of every `check_*`: get the cases, run the student's code, and
    decide here (in a notebook) or record for the grader (while grading)."""
    __tracebackhide__ = True
    from autograder.checks import sources, watch
    from autograder.checks.layers import borrowed_message, collect_sublayers

    watch.install()  # in case Keras was imported after the checks
    source = sources.current()
    cases = source.cases(check_name, which)
    with collect_sublayers() as sublayers:
        observations, failure = observe(check_name, cases, probe)
    if source.grading:
        source.record(
            check_name, which, observations, failure, {"sublayers": sublayers}
        )
        if failure is not None:
            raise failure
        print(f"{check_name}: {len(cases)} cases ran; {sources.RAN_NOTE}")
        return
    borrowed = borrowed_message(check_name, sublayers, borrowing)
    if borrowed:
        raise CheckFailed(borrowed)
    try:
        count = decide(
            check_name,
            cases,
            observations,
            source.expectations(check_name, which, cases),
            failure,
            source.generic_hint(check_name),
        )
    except CheckFailed as failed:
        _RESULTS[check_name] = False
        raise CheckFailed(failed.message + _failed_parts(check_name)) from None
    _RESULTS[check_name] = True
    print(f"{check_name}: all {count} cases passed.")


#: This notebook's checks so far: `{check name: passed}`.
_RESULTS = {}


def _failed_parts(check_name):
    """A note naming the student's parts this layer called that failed their
    own check earlier in the notebook (their mistake reaches this layer)."""
    from autograder.checks import taps

    failed = [
        part
        for part in taps.LAST_PARTS
        if _RESULTS.get(f"check_{part}") is False and f"check_{part}" != check_name
    ]
    if not failed:
        return ""
    names = ", ".join(f"`{p}` (check_{p})" for p in failed)
    return (
        f"\nNote: this layer calls your {names}, which failed its own check "
        "above: fix that exercise first, its mistake reaches this one. (While "
        "grading, a layer whose own wiring is right gets its points even when "
        "a part it calls is wrong.)"
    )
