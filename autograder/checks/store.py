"""Cases, expectations and recorded outputs as `.npz` files.

Three kinds of file cross the boundary between the grader and the student's
kernel, and between the instructor's package and the student's:

* cases: inputs, weights and call options (written by the grader, read by
  the kernel);
* records: the outputs the student's code gave on those cases (made by the
  kernel's check and handed to the grader as the test cell's output, never
  as a file the kernel could rewrite later: `autograder.checks.sources`);
* expectations: the reference outputs and mistake variants of the visible
  cases (shipped in the student package, so a student's notebook can check
  itself without the reference code).

Only arrays and one JSON string are stored, and files are read with
`allow_pickle=False`: a file cannot carry code or objects.
"""

import io
import json
import os
import tempfile

import numpy as np

from autograder.checks.core import Case

__all__ = [
    "load_cases",
    "load_expectations",
    "load_record",
    "record_bytes",
    "save_cases",
    "save_expectations",
]

_META = "__meta__"


def _bytes(arrays, meta):
    arrays = dict(arrays)
    arrays[_META] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _write(path, arrays, meta, mode=0o600):
    """Write atomically: a reader never sees half a file."""
    data = _bytes(arrays, meta)
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read(source):
    """Arrays and meta of an `.npz` file (a path, or its bytes)."""
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    with np.load(source, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != _META}
        meta = json.loads(str(data[_META]))
    return arrays, meta


def _split_kwargs(kwargs):
    arrays = {k: v for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    plain = {k: v for k, v in kwargs.items() if k not in arrays}
    return arrays, plain


def _case_arrays(prefix, case):
    arrays = {}
    kw_arrays, _ = _split_kwargs(case.call_kwargs)
    for group, values in (
        ("in", case.inputs),
        ("kw", kw_arrays),
        ("w", case.weights),
        ("valid", case.valid),
    ):
        for name, value in values.items():
            arrays[f"{prefix}.{group}.{name}"] = np.asarray(value)
    return arrays


def _case_meta(case):
    kw_arrays, plain = _split_kwargs(case.call_kwargs)
    return {
        "title": case.title,
        "inputs": list(case.inputs),
        "kw_arrays": list(kw_arrays),
        "kwargs": plain,
        "weights": list(case.weights),
        "valid": list(case.valid),
        "init": case.init,
        "notes": list(case.notes),
        "options": case.options,
    }


def _case_from(prefix, meta, arrays):
    def group(name, keys):
        return {k: arrays[f"{prefix}.{name}.{k}"] for k in keys}

    kwargs = dict(meta["kwargs"])
    kwargs.update(group("kw", meta["kw_arrays"]))
    return Case(
        title=meta["title"],
        inputs=group("in", meta["inputs"]),
        init=meta["init"],
        call_kwargs=kwargs,
        valid=group("valid", meta["valid"]),
        notes=tuple(meta["notes"]),
        weights=group("w", meta["weights"]),
        options=meta["options"],
    )


def save_cases(path, cases, nonce="", mode=0o600):
    """Write the cases of one check call. `nonce`: the grader's token for
    this test cell, which the record must carry back (`load_record`)."""
    arrays = {}
    for i, case in enumerate(cases):
        arrays.update(_case_arrays(f"c{i}", case))
    meta = {"cases": [_case_meta(c) for c in cases], "nonce": nonce}
    _write(path, arrays, meta, mode)


def load_cases(path, with_nonce=False):
    arrays, meta = _read(path)
    cases = [_case_from(f"c{i}", m, arrays) for i, m in enumerate(meta["cases"])]
    return (cases, str(meta.get("nonce", ""))) if with_nonce else cases


def save_expectations(path, cases, expectations, generic_hint):
    """Cases with their expected outputs and mistake variants."""
    arrays = {}
    metas = []
    for i, (case, expectation) in enumerate(zip(cases, expectations, strict=True)):
        arrays.update(_case_arrays(f"c{i}", case))
        for name, value in expectation["expected"].items():
            arrays[f"e{i}.{name}"] = np.asarray(value, np.float64)
        hints = []
        for j, (hint, variant) in enumerate(expectation["variants"]):
            hints.append([hint, list(variant)])
            for name, value in variant.items():
                arrays[f"v{i}.{j}.{name}"] = np.asarray(value, np.float64)
        metas.append(
            {
                "case": _case_meta(case),
                "expected": list(expectation["expected"]),
                "variants": hints,
            }
        )
    _write(path, arrays, {"cases": metas, "generic_hint": generic_hint})


def load_expectations(path):
    """Return `(cases, expectations, generic_hint)`."""
    arrays, meta = _read(path)
    cases, expectations = [], []
    for i, m in enumerate(meta["cases"]):
        cases.append(_case_from(f"c{i}", m["case"], arrays))
        expectations.append(
            {
                "expected": {n: arrays[f"e{i}.{n}"] for n in m["expected"]},
                "variants": [
                    (hint, {n: arrays[f"v{i}.{j}.{n}"] for n in names})
                    for j, (hint, names) in enumerate(m["variants"])
                ],
            }
        )
    return cases, expectations, meta["generic_hint"]


def record_bytes(check_name, which, observations, failure, extra):
    """A record (the outputs of the student's code on a check's cases) as the
    bytes of an `.npz` file."""
    arrays = {}
    for i, observed in enumerate(observations):
        for name, value in observed.items():
            arrays[f"o{i}.{name}"] = np.asarray(value, np.float64)
    meta = {
        "check": check_name,
        "which": which,
        "outputs": [list(o) for o in observations],
        "failure": None if failure is None else str(failure),
        **extra,
    }
    return _bytes(arrays, meta)


def load_record(source):
    """Return `(observations, meta)` from a record file or its bytes; raise
    ValueError if it is not one."""
    try:
        arrays, meta = _read(source)
        observations = [
            {name: arrays[f"o{i}.{name}"] for name in names}
            for i, names in enumerate(meta["outputs"])
        ]
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"unreadable record: {type(error).__name__}: {str(error)[:200]}"
        ) from None
    for observed in observations:
        for value in observed.values():
            if value.dtype != np.float64:
                raise ValueError("a recorded output is not float64")
    return observations, meta
