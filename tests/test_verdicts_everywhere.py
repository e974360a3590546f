"""The same verdicts on float32, with oneDNN on and off, and under TF32.

A GPU multiplies float32 matrices in TF32 by default (10 mantissa bits),
and TensorFlow's oneDNN kernels reorder sums on CPU: the outputs change in
the last digits. The checks' tolerance must absorb that and still catch
every mistake, so the verdict table of `verdict_table.py` must be identical
in all three settings, each run in a fresh process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import report

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("verdict_table.py")


def _table(onednn, tf32=False):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *(["--tf32"] if tf32 else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def tables():
    return {
        "float32, oneDNN off": _table("0"),
        "float32, oneDNN on": _table("1"),
        "simulated TF32 matmuls": _table("0", tf32=True),
    }


def test_verdicts_are_identical_in_every_setting(tables):
    (first_name, first), *others = tables.items()
    rows = [f"{'check(layer, cases)':64s}  verdict"]
    rows += [f"{key:64s}  {value[:70]}" for key, value in first.items()]
    report(f"verdicts in {', '.join(tables)}: identical", "\n".join(rows))
    for name, table in others:
        different = {
            k: (first[k], table.get(k)) for k in first if first[k] != table.get(k)
        }
        assert not different, (first_name, name, different)


def test_right_code_passes_and_every_mistake_fails(tables):
    table = tables["float32, oneDNN off"]
    passing = {k for k, v in table.items() if v == "pass"}
    # Assignment 1: 7 references + 4 other right layers; Assignment 3: 11
    # references + a hand-written Add & Norm; each visible and hidden.
    assert len(passing) == 2 * (11 + 12)
    for key, verdict in table.items():
        right = any(
            name in key
            for name in (
                "(DotScore",
                "(GeneralScore",
                "(ConcatScore",
                "(masked_softmax",
                "(LuongAttention",
                "(BahdanauAttention",
                "(BahdanauDecoderStep",
                "EinsumDot",
                "TransposedGeneral",
                "DenseConcat",
                "Float64Luong",
                "(positional_encoding, ",
                "(PositionalEmbedding, ",
                "(FeedForward, ",
                "(AddNorm, ",
                "(HandNorm, ",
                "(EncoderLayer, ",
                "(DecoderLayer, ",
                "(Encoder, ",
                "(Decoder, ",
                "(Transformer, ",
                "(WarmupSchedule, ",
                "(greedy_decode, ",
            )
        )
        if right:
            assert verdict == "pass", key
