"""What recording a composite's calls of its parts costs (`checks.taps`).

Runs the visible cases of the composite checks (Luong, multi-head attention,
the encoder layer, the encoder, the Transformer) on the solutions' layers in
this process, alternately with taps on and with taps off (a recorder that
records nothing), and prints the median seconds of each and their ratio,
measured in this run; also the size of the recorded arrays per case.

    python benchmarks/taps_overhead.py [--runs 5]
"""

import argparse
import ast
import contextlib
import math
import statistics
import sys
import time
import types
from pathlib import Path

import keras
import numpy as np
from keras import ops

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {
    "01_attention_seq2seq/attention_seq2seq.py": [
        ("seq2seq", "check_luong_attention", "LuongAttention"),
    ],
    "02_self_attention/self_attention.py": [
        ("attention", "check_multi_head_attention", "MultiHeadAttention"),
    ],
    "03_transformer/transformer.py": [
        ("transformer", "check_encoder_layer", "EncoderLayer"),
        ("transformer", "check_encoder", "Encoder"),
        ("transformer", "check_transformer", "Transformer"),
    ],
}


def solution_module(path):
    """The solution's functions and classes in a fresh module (a notebook)."""
    text = (ROOT / "solutions" / path).read_text(encoding="utf-8")
    tree = ast.parse(text)
    code = "\n\n".join(
        ast.get_source_segment(text, node)
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
    )
    module = types.ModuleType(f"solution_{abs(hash(path))}")
    sys.modules[module.__name__] = module
    module.__dict__.update(
        keras=keras, ops=ops, np=np, math=math, contextlib=contextlib
    )
    exec(compile(code, module.__name__, "exec"), module.__dict__)
    return module


class _Record:
    grading = True

    def __init__(self):
        from autograder import judge

        self.judge = judge
        self.sizes = []

    def cases(self, check_name, which):
        return self.judge.spec(check_name).cases(which)

    def record(self, check_name, which, observations, failure, evidence):
        for observed in observations:
            self.sizes.append(
                sum(
                    np.asarray(v).nbytes
                    for k, v in observed.items()
                    if k.startswith("tap:")
                )
            )


@contextlib.contextmanager
def _no_taps():
    from autograder.checks import taps

    @contextlib.contextmanager
    def nothing(*args, **kwargs):
        yield types.SimpleNamespace(arrays={})

    saved = taps.recording
    taps.recording = nothing
    try:
        yield
    finally:
        taps.recording = saved


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import importlib

    from autograder.checks import sources

    jobs = []
    for path, checks in CHECKS.items():
        module = solution_module(path)
        for checks_module, check_name, cls in checks:
            check = getattr(
                importlib.import_module(f"autograder.checks.{checks_module}"),
                check_name,
            )
            jobs.append((check_name, check.__wrapped__, getattr(module, cls)))
    record = _Record()
    sources.current = lambda: record
    times = {"on": [], "off": []}

    def run_all():
        started = time.perf_counter()
        for _, check, cls in jobs:
            check(cls, cases="visible")
        return time.perf_counter() - started

    run_all()  # warm-up: imports, first traces
    for _ in range(args.runs):
        times["on"].append(run_all())
        with _no_taps():
            times["off"].append(run_all())
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    sizes = [s for s in record.sizes if s]
    print(f"checks: {', '.join(name for name, _, _ in jobs)} (visible cases)")
    print(f"median seconds with taps {on:.2f}, without {off:.2f}: x{on / off:.3f}")
    print(
        f"recorded per case: median {statistics.median(sizes) / 1024:.1f} KiB, "
        f"largest {max(sizes) / 1024:.1f} KiB ({len(sizes)} cases)"
    )


if __name__ == "__main__":
    main()
