"""Diagnosis of Assignment 2 (`judge.diagnose_attention`): scaled dot-product
attention, the masks and multi-head attention name the student's mistake
from the structure of the computation, not from a list of mistakes.

* Through the real checks and `decide` (as the grader decides), students'
  code with mistakes that are in neither the judge's variants nor the
  mistake catalog (written after the diagnosers, held out from their
  tuning) is each named, and every hint the diagnosers give is absent from
  the messages of the other mistakes.
* Directly, from hand-made outputs and taps (`tap:<name>#<k>:<param>`): what
  the layer passed to the student's own `scaled_dot_product_attention` names
  the stage that went wrong, and a right stage is never blamed.
"""

import re
import sys
import types
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import judge
from autograder.checks import attention as C
from autograder.checks import core
from autograder.checks.core import CheckFailed
from autograder.judge import attention as J
from autograder.judge import diagnose_attention as D
from autograder.pipeline import apply_patch

NOTEBOOK = (
    Path(__file__).resolve().parent.parent
    / "solutions"
    / "02_self_attention"
    / "self_attention.ipynb"
)
CELLS = ("scaled_dot_product_attention", "masks", "multi_head_attention")


def student(*patches):
    """The solution's cells with `(cell, old, new)` patches, run as a
    student's notebook module (so the checks' taps see its functions)."""
    import keras
    from keras import ops

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell, old, new in patches:
        apply_patch(notebook, {"cell": cell, "old": old, "new": new}, "held-out")
    sources = {
        c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in notebook.cells
    }
    module = types.ModuleType("held_out_student")
    sys.modules[module.__name__] = module
    module.__dict__.update(keras=keras, ops=ops, np=np)
    for cell in CELLS:
        source = re.sub(r"### (BEGIN|END) SOLUTION", "", sources[cell])
        exec(compile(source, f"<{cell}>", "exec"), module.__dict__)
    return module


def _run(check, module, cases):
    if check == "sdpa":
        C.check_scaled_dot_product_attention(
            module.scaled_dot_product_attention, cases=cases
        )
    elif check == "masks":
        C.check_masks(
            module.padding_mask, module.causal_mask, module.combined_mask, cases=cases
        )
    else:
        C.check_multi_head_attention(module.MultiHeadAttention, cases=cases)


SDPA, MASKS, MHA = (
    "scaled_dot_product_attention",
    "masks",
    "multi_head_attention",
)
_SCORES = "scores = ops.matmul(q, ops.swapaxes(k, -1, -2)) / ops.sqrt(d_k)"
_K = 'k = ops.einsum("bsd,dhk->bhsk", key, self.W_k) + self.b_k[:, None]'
_Q = 'q = ops.einsum("btd,dhk->bhtk", query, self.W_q) + self.b_q[:, None]'
_OUT = 'output = ops.einsum("bhtv,hvo->bto", context, self.W_o) + self.b_o'

#: Held-out mistakes (none is a judge variant or in mistakes.toml):
#: name -> (patches, check, cell, words one of which a message naming it uses)
HELD_OUT = {
    "sdpa-scale-multiplied": (
        [(SDPA, _SCORES, _SCORES.replace("/ ops.sqrt", "* ops.sqrt"))],
        "sdpa",
        "visible",
        ["multiplied, not divided"],
    ),
    "sdpa-mask-after-softmax": (
        [
            (
                SDPA,
                "weights = ops.softmax(ops.where(mask, scores, -1e9), axis=-1)",
                "weights = ops.softmax(scores, axis=-1)",
            )
        ],
        "sdpa",
        "visible",
        ["only after the softmax", "before the softmax"],
    ),
    "combined-mask-pads-queries-instead": (
        [
            (
                MASKS,
                "return ops.logical_and(padding_mask(token_ids, pad_id), "
                "causal_mask(length))",
                "return ops.logical_and(ops.swapaxes(padding_mask(token_ids, "
                "pad_id), -1, -2), causal_mask(length))",
            )
        ],
        "masks",
        "visible",
        ["padded queries", "only the keys"],
    ),
    "causal-mask-length-plus-one": (
        [
            (
                MASKS,
                "ops.arange(length)[:, None], ops.arange(length)[None, :]",
                "ops.arange(length + 1)[:, None], ops.arange(length + 1)[None, :]",
            )
        ],
        "masks",
        "visible",
        ["the length given"],
    ),
    "mha-keys-with-query-weights": (
        [(MHA, _K, _K.replace("W_k", "W_q").replace("b_k", "b_q"))],
        "mha",
        "visible",
        ["w_k and b_k (you use w_q)"],
    ),
    "mha-output-bias-per-head": (
        [
            (
                MHA,
                _OUT,
                'output = ops.sum(ops.einsum("bhtv,hvo->bhto", context, self.W_o)'
                " + self.b_o, axis=1)",
            )
        ],
        "mha",
        "visible",
        ["b_o once"],
    ),
    "mha-attention-mask-ignored": (
        [
            (
                MHA,
                'mask = ops.logical_and(mask, ops.cast(attention_mask, "bool"))',
                "pass",
            )
        ],
        "mha",
        "visible",
        ["`attention_mask` is not applied"],
    ),
    "mha-query-scaled-twice": (
        [
            (
                MHA,
                _Q,
                f"q = ({_Q[4:]}) / ops.sqrt(ops.cast(self.key_dim, query.dtype))",
            )
        ],
        "mha",
        "visible",
        ["scale once"],
    ),
}

#: Each hint the diagnosers give (a phrase of it) -> the mistakes it names.
HINTS = {
    "multiplying the scores by the mask": set(),
    "applied only after the softmax": {"sdpa-mask-after-softmax"},
    "applied after the softmax: divide": set(),
    "hides only the keys": {"combined-mask-pads-queries-instead"},
    "yours is without the padding": set(),
    "no batch axis": set(),
    "(b, 1, s): add the axis": set(),
    "their own weights w_k": {"mha-keys-with-query-weights"},
    "b_o once": {"mha-output-bias-per-head"},
    "combine `attention_mask`": {"mha-attention-mask-ignored"},
    "scale once": {"mha-query-scaled-twice"},
    "has no head axis": set(),
    "reshape alone mixes": set(),
    "leaves out its bias": set(),
    "raw scores by v": set(),
    "-inf make a row": set(),
    "zero the masked weights (": set(),
    "your scale uses": set(),
}

_MESSAGES = {}


@pytest.fixture
def graded(monkeypatch):
    """`name -> message` of a held-out mistake, decided with the judge's
    diagnosis (each graded once per session)."""
    original = core.decide

    def decide(name, cases, observations, expectations, failure=None, hint="", **_):
        return original(
            name,
            cases,
            observations,
            expectations,
            failure,
            hint,
            diagnose=judge.spec(name).diagnose,
        )

    monkeypatch.setattr(core, "decide", decide)

    def message(name):
        if name not in _MESSAGES:
            patches, check, cases, _ = HELD_OUT[name]
            with pytest.raises(CheckFailed) as failure:
                _run(check, student(*patches), cases)
            _MESSAGES[name] = str(failure.value)
        return _MESSAGES[name]

    return message


def said(message):
    """What a message says about the mistake: its Observed and Hint lines."""
    return "\n".join(
        line for line in message.splitlines() if line.startswith(("Observed:", "Hint:"))
    ).lower()


def hints(message):
    return "\n".join(
        line for line in message.splitlines() if line.startswith("Hint:")
    ).lower()


@pytest.mark.parametrize("name", list(HELD_OUT))
def test_a_held_out_mistake_is_named(graded, name):
    text = said(graded(name))
    assert any(w.lower() in text for w in HELD_OUT[name][3]), graded(name)


@pytest.mark.parametrize("name", list(HELD_OUT))
def test_no_hint_names_another_mistake(graded, name):
    """Each of the diagnosers' hints appears only for the mistake it names."""
    given = hints(graded(name))
    for phrase, owners in HINTS.items():
        if name not in owners:
            assert phrase not in given, (phrase, graded(name))


def test_the_solution_still_passes():
    module = student()
    for check in ("sdpa", "masks", "mha"):
        _run(check, module, "visible")


# ------------------------------------------------- from hand-made outputs


def _sdpa_case(mask=None):
    rng = np.random.default_rng(3)
    inputs = {
        "q": rng.standard_normal((2, 3, 4)),
        "k": rng.standard_normal((2, 5, 4)),
        "v": rng.standard_normal((2, 5, 6)),
    }
    if mask is not None:
        inputs["mask"] = np.asarray(mask, bool)
    return core.Case("a case", inputs)


def _sdpa_expected(case):
    i = case.inputs
    from autograder.judge import attention_math as M

    output, weights = M.sdpa(i["q"], i["k"], i["v"], i.get("mask"))
    return {"output": output, "weights": weights}


def _diagnose(check, case, got, expected):
    wrong = [
        n
        for n in expected
        if np.shape(got.get(n)) != np.shape(expected[n])
        or not np.allclose(got[n], expected[n], atol=5e-3, rtol=5e-3)
    ]
    return judge.spec(check).diagnose(case, got, expected, wrong)


def test_sdpa_scale_by_another_size_is_named_with_that_size():
    case = _sdpa_case()
    i = case.inputs
    from autograder.judge import attention_math as M

    weights = M.softmax(i["q"] @ np.swapaxes(i["k"], -1, -2) / np.sqrt(6))
    got = {"output": weights @ i["v"], "weights": weights}
    found = _diagnose(
        "check_scaled_dot_product_attention", case, got, _sdpa_expected(case)
    )
    assert any("uses 6 (d_v" in n for n in found.named), found
    # the right weights with a wrong output never blame the scale
    right = _sdpa_expected(case)
    got = {"output": right["output"] * 1.5, "weights": right["weights"]}
    found = _diagnose("check_scaled_dot_product_attention", case, got, right)
    assert not any("scale" in n for n in found.named), found


def test_a_nan_row_is_named_only_where_every_key_is_masked():
    mask = np.array([[[1, 1, 0, 0, 0]] * 3, [[1, 1, 1, 1, 1], [0] * 5, [1] * 5]])
    case = _sdpa_case(mask)
    right = _sdpa_expected(case)
    got = {k: v.copy() for k, v in right.items()}
    got["weights"][1, 1] = np.nan
    got["output"][1, 1] = np.nan
    found = _diagnose("check_scaled_dot_product_attention", case, got, right)
    assert any("-inf" in n for n in found.named), found
    got = {k: v.copy() for k, v in right.items()}
    got["weights"][0, 0] = np.nan  # a row with allowed keys: not -inf's mark
    found = _diagnose("check_scaled_dot_product_attention", case, got, right)
    assert not any("-inf" in n for n in found.named), found


def _mha_case():
    return J._mha_visible()[1]  # cross-attention with a value_mask, B = h = 2


def _tap_got(case, q=None, k=None, v=None, mask=None):
    model = D._MHA(case)
    right_q = model.project("q", "query")
    right_k = model.project("k", "key")
    right_v = model.project("v", "value")
    q = right_q if q is None else q
    k = right_k if k is None else k
    v = right_v if v is None else v
    mask = model.mask[:, None] if mask is None else mask
    weights = D._attend(
        q @ np.swapaxes(k, -1, -2),
        np.broadcast_to(mask, (model.b, model.h, model.t, model.s)),
        1 / np.sqrt(model.dk),
    )
    context = weights @ v
    W_o = model.w["W_o"]
    output = (
        D._merge(context, "right") @ W_o.reshape(-1, W_o.shape[-1]) + model.w["b_o"]
    )
    got = {"output": output, "weights": weights}
    # a call made while building (other weights) comes first, then the checked one
    for index, values in enumerate(
        ({"q": q * 0 + 1, "k": k, "v": v}, {"q": q, "k": k, "v": v})
    ):
        prefix = f"tap:scaled_dot_product_attention#{index}:"
        got.update({prefix + n: a for n, a in values.items()})
        got[prefix + "mask"] = mask.astype(float)
        got[prefix + "out0"] = context
        got[prefix + "out1"] = weights
    return got


def test_taps_name_the_mask_without_a_head_axis_and_nothing_when_right():
    case = _mha_case()
    expected = J._mha_variant(None)(case)
    model = D._MHA(case)
    got = _tap_got(case, mask=model.mask)  # (B, T, S): no head axis
    found = _diagnose("check_multi_head_attention", case, got, expected)
    assert any("has no head axis" in n for n in found.named), found
    got = _tap_got(case)
    found = _diagnose("check_multi_head_attention", case, got, expected)
    assert not found.named, found


def test_taps_name_a_projection_with_another_part_s_weights():
    case = _mha_case()
    expected = J._mha_variant(None)(case)
    model = D._MHA(case)
    got = _tap_got(case, k=model.project("k", "key", weight="v"))
    found = _diagnose("check_multi_head_attention", case, got, expected)
    assert any("their own weights W_k" in n for n in found.named), found
    assert not any("head axis" in n or "bias" in n for n in found.named), found
