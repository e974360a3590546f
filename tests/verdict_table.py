"""Print the verdict of every check on a catalog of layers, as JSON.

    python tests/verdict_table.py [--tf32]

The catalog is the one of `test_checks_seq2seq.py` (the reference layers,
right code written differently: einsum, a transposed weight, Dense
sublayers, float64; and each typical mistake) and Assignment 3's from
`test_checks_transformer.py` (the reference Transformer parts, a
hand-written layer norm, a pre-norm encoder layer, a decoder without its
causal mask, a schedule one step behind). A verdict is "pass", or the
failing case and the hint (numbers left out: they differ in the last
digits between precisions, the verdict must not). `--tf32` rounds the
float32 inputs of every Keras matmul and einsum to TF32's 10 mantissa
bits, as an Ampere or newer GPU computes by default. The oneDNN setting is
taken from `TF_ENABLE_ONEDNN_OPTS`, as TensorFlow reads it.
"""

import contextlib
import importlib.util
import json
import re
import sys
from pathlib import Path


def _load(filename, name):
    sys.path.insert(0, str(Path(__file__).parent))  # for `conftest`
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _catalog():
    module = _load("test_checks_seq2seq.py", "catalog")
    entries = [(check, layer) for check, layer in module.ALL]
    entries += [
        (module.checks.check_dot_score, module.EinsumDot),
        (module.checks.check_general_score, module.TransposedGeneral),
        (module.checks.check_concat_score, module.DenseConcat),
        (module.checks.check_luong_attention, module.Float64Luong),
    ]
    entries += [(check, broken) for check, broken, _ in module.MISTAKES]
    transformer = _load("test_checks_transformer.py", "catalog_transformer")
    right, wrong = transformer.catalog()
    return module, entries + right + wrong


def _verdict(check, layer, cases):
    from autograder.checks import CheckFailed

    try:
        check(layer, cases=cases)
    except CheckFailed as failure:
        text = str(failure)
        case = re.search(r"case \d+ of \d+", text)
        hint = re.search(r"^Hint: (.*)$", text, re.M)
        detail = hint.group(1) if hint else text.splitlines()[-1]
        detail = re.sub(r"-?\d+\.\d+(e[-+]?\d+)?", "#", detail)
        return f"fail {case.group(0) if case else ''}: {detail}"
    return "pass"


def main():
    module, entries = _catalog()
    if "--tf32" in sys.argv:
        import keras
        import keras.src.ops as src_ops

        matmul, einsum = src_ops.matmul, src_ops.einsum

        def rounded_matmul(a, b):
            return matmul(module.round_tf32(a), module.round_tf32(b))

        def rounded_einsum(subscripts, *operands, **kwargs):
            return einsum(subscripts, *map(module.round_tf32, operands), **kwargs)

        for target in (keras.ops, src_ops):
            target.matmul = rounded_matmul
            target.einsum = rounded_einsum
    table = {}
    with contextlib.redirect_stdout(sys.stderr):  # the checks' own lines
        for check, layer in entries:
            for cases in ("visible", "hidden"):
                key = f"{check.__name__}({layer.__name__}, {cases})"
                table[key] = _verdict(check, layer, cases)
    print(json.dumps(table, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
