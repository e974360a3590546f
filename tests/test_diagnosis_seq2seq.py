"""Diagnosis of Assignment 1's exercises (`judge.diagnose_seq2seq`): the
formula recomputed over families of computations names the student's
mistake, and a hint names a mistake only when every computation that
reproduces the output has it.

* Through the real checks and `decide` (as the grader decides, with the
  judge's diagnosis), students' code with mistakes that are *not* in the
  mistake catalog (`solutions/01_attention_seq2seq/mistakes.toml`) nor among
  the judge's known variants, written after the diagnosers and held out from
  their tuning, is named; and no message carries the hint of another
  mistake.
* From outputs computed here with NumPy, each family's hint is given for its
  own deviation and not for the others (fast: no Keras).
"""

import numpy as np
import pytest
from keras import ops

from autograder import judge
from autograder.checks import core
from autograder.checks import seq2seq as C
from autograder.checks.core import CheckFailed
from autograder.judge import diagnose_seq2seq as D
from autograder.judge import seq2seq_math as M
from autograder.judge import wiring
from autograder.reference import seq2seq as R


@pytest.fixture(scope="module")
def graded():
    """`check(code) -> message`, decided with the judge's diagnosis."""
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
            wiring=wiring.judge(name),
        )

    core.decide = decide
    messages = {}

    def run(check, code, cases="visible"):
        key = (check.__name__, code, cases)
        if key not in messages:
            try:
                check(code, cases=cases)
                messages[key] = ""
            except CheckFailed as failure:
                messages[key] = str(failure)
        return messages[key]

    try:
        yield run
    finally:
        core.decide = original


def hints(message):
    return " ".join(
        line for line in message.splitlines() if line.startswith("Hint:")
    ).lower()


# ------------------------------------------------ held-out students' mistakes


class ConcatSigmoid(R.ConcatScore):
    """A sigmoid where the concat score has its tanh."""

    def call(self, query, keys):
        q = ops.expand_dims(ops.matmul(query, self.W_1), -2)
        k = ops.expand_dims(ops.matmul(keys, self.W_2), -3)
        return ops.sum(ops.sigmoid(q + k) * self.v_a, axis=-1)


class ConcatTanhEach(R.ConcatScore):
    """tanh(W_1 s) + tanh(W_2 h): one tanh per projection."""

    def call(self, query, keys):
        q = ops.expand_dims(ops.tanh(ops.matmul(query, self.W_1)), -2)
        k = ops.expand_dims(ops.tanh(ops.matmul(keys, self.W_2)), -3)
        return ops.sum((q + k) * self.v_a, axis=-1)


class ConcatMeanUnits(R.ConcatScore):
    """Averages the weighted units instead of summing them."""

    def call(self, query, keys):
        q = ops.expand_dims(ops.matmul(query, self.W_1), -2)
        k = ops.expand_dims(ops.matmul(keys, self.W_2), -3)
        return ops.mean(ops.tanh(q + k) * self.v_a, axis=-1)


def softmax_fill_zero(scores, mask=None):
    """Padded scores replaced by 0 (not a large negative number)."""
    if mask is None:
        return ops.softmax(scores, axis=-1)
    mask = ops.cast(mask, "bool")
    if len(mask.shape) == len(scores.shape) - 1:
        mask = ops.expand_dims(mask, -2)
    weights = ops.softmax(ops.where(mask, scores, 0.0), axis=-1)
    return ops.where(mask, weights, 0.0)


class LuongLogSoftmax(R.LuongAttention):
    """Returns log-probabilities: `ops.log_softmax` for the output."""

    def call(self, query, values, values_mask=None, return_attention_scores=False):
        scores = ops.matmul(query, ops.swapaxes(values, -1, -2))
        weights = R.masked_softmax(scores, values_mask)
        context = ops.matmul(weights, values)
        both = ops.concatenate([context, query], axis=-1)
        attentional = ops.tanh(ops.matmul(both, self.W_c) + self.b_c)
        probs = ops.log_softmax(ops.matmul(attentional, self.W_y) + self.b_y)
        return (probs, weights) if return_attention_scores else probs


class LuongReluState(R.LuongAttention):
    """A ReLU for the attentional state s~_t."""

    def call(self, query, values, values_mask=None, return_attention_scores=False):
        scores = ops.matmul(query, ops.swapaxes(values, -1, -2))
        weights = R.masked_softmax(scores, values_mask)
        context = ops.matmul(weights, values)
        both = ops.concatenate([context, query], axis=-1)
        attentional = ops.relu(ops.matmul(both, self.W_c) + self.b_c)
        probs = ops.softmax(ops.matmul(attentional, self.W_y) + self.b_y)
        return (probs, weights) if return_attention_scores else probs


class BahdanauMeanContext(R.BahdanauAttention):
    """The context averages alpha_i h_i over the steps (`ops.mean`)."""

    def call(self, query, values, values_mask=None):
        q = ops.expand_dims(ops.matmul(query, self.W_b), -2)
        k = ops.matmul(values, self.W_c)
        scores = ops.sum(ops.tanh(q + k) * self.w_a, axis=-1)
        weights = R.masked_softmax(scores, values_mask)
        return ops.mean(ops.expand_dims(weights, -1) * values, axis=-2), weights


class BahdanauWaInside(R.BahdanauAttention):
    """w_a multiplies inside the tanh."""

    def call(self, query, values, values_mask=None):
        q = ops.expand_dims(ops.matmul(query, self.W_b), -2)
        k = ops.matmul(values, self.W_c)
        scores = ops.sum(ops.tanh((q + k) * self.w_a), axis=-1)
        weights = R.masked_softmax(scores, values_mask)
        return ops.sum(ops.expand_dims(weights, -1) * values, axis=-2), weights


class BahdanauMaskAfter(R.BahdanauAttention):
    """Its own softmax: a plain softmax, padded weights zeroed afterwards."""

    def call(self, query, values, values_mask=None):
        q = ops.expand_dims(ops.matmul(query, self.W_b), -2)
        k = ops.matmul(values, self.W_c)
        weights = ops.softmax(ops.sum(ops.tanh(q + k) * self.w_a, axis=-1))
        if values_mask is not None:
            weights = ops.where(values_mask, weights, 0.0)
        return ops.sum(ops.expand_dims(weights, -1) * values, axis=-2), weights


class StepCellFromZeros(R.BahdanauDecoderStep):
    """The GRU cell starts from zeros instead of s_{t-1}."""

    def call(self, tokens, state, values, values_mask=None):
        x = self.embedding(tokens)
        context, weights = self.attention(state, values, values_mask=values_mask)
        new_state, _ = self.cell(
            ops.concatenate([x, context], axis=-1), ops.zeros_like(state)
        )
        return self.output_layer(new_state), new_state, weights


#: name -> (check, code, cases, words one of which its hint must contain, and
#: no other mistake's hint)
HELD_OUT = {
    "concat sigmoid": (C.check_concat_score, ConcatSigmoid, "visible", ["sigmoid("]),
    "concat tanh each": (
        C.check_concat_score,
        ConcatTanhEach,
        "visible",
        ["separately"],
    ),
    "concat mean": (
        C.check_concat_score,
        ConcatMeanUnits,
        "visible",
        ["average the units"],
    ),
    "softmax fill 0": (
        C.check_masked_softmax,
        softmax_fill_zero,
        "visible",
        ["multiplied by the mask"],
    ),
    "luong log_softmax": (
        C.check_luong_attention,
        LuongLogSoftmax,
        "visible",
        ["log-probabilities"],
    ),
    "luong relu": (C.check_luong_attention, LuongReluState, "visible", ["relu("]),
    "bahdanau mean context": (
        C.check_bahdanau_attention,
        BahdanauMeanContext,
        "visible",
        ["mean over the encoder steps"],
    ),
    "bahdanau w_a inside": (
        C.check_bahdanau_attention,
        BahdanauWaInside,
        "visible",
        ["inside the tanh"],
    ),
    "bahdanau mask after": (
        C.check_bahdanau_attention,
        BahdanauMaskAfter,
        "visible",
        ["zeroed only afterwards"],
    ),
    "step cell from zeros": (
        C.check_bahdanau_decoder_step,
        StepCellFromZeros,
        "visible",
        ["starts from zeros"],
    ),
}


@pytest.mark.parametrize("name", list(HELD_OUT))
def test_a_held_out_mistake_is_named(graded, name):
    check, code, cases, words = HELD_OUT[name]
    message = graded(check, code, cases)
    assert message, f"{name} passed its check"
    assert any(w in hints(message) for w in words), message


@pytest.mark.parametrize("name", list(HELD_OUT))
def test_no_held_out_message_has_another_mistakes_hint(graded, name):
    """Each hint is given for its own mistake only."""
    check, code, cases, _ = HELD_OUT[name]
    message = hints(graded(check, code, cases))
    for other, (_, _, _, words) in HELD_OUT.items():
        if other != name:
            assert not any(w in message for w in words), (name, other, message)


def test_the_solution_passes_with_the_diagnosers_loaded(graded):
    assert graded(C.check_concat_score, R.ConcatScore) == ""
    assert graded(C.check_bahdanau_attention, R.BahdanauAttention) == ""


# ------------------------------------------ each family, from NumPy outputs


def diagnose(check_name, case, outputs):
    """What the judge's diagnosis says of `outputs` for `case`."""
    spec = judge.spec(check_name)
    expected = spec.formula(case)
    wrong = [
        n
        for n in expected
        if core.compare(
            np.asarray(outputs[n], np.float64),
            np.asarray(expected[n], np.float64),
        )
        is not None
    ]
    found = spec.diagnose(case, outputs, expected, wrong)
    return " ".join(found.named).lower(), " ".join(found.observed).lower()


def concat(case, f=np.tanh, inside=False, combine=np.add, reduce=np.sum):
    q, k = case.inputs["query"], case.inputs["keys"]
    W1, W2, v = (case.weights[n] for n in ("W_1", "W_2", "v_a"))
    pre = combine((q @ W1)[..., :, None, :], (k @ W2)[..., None, :, :])
    return {"scores": reduce(f(pre * v) if inside else f(pre) * v, axis=-1)}


CONCAT = {
    "relu": (dict(f=lambda x: np.maximum(x, 0)), "relu("),
    "identity": (dict(f=lambda x: x), "tanh is missing"),
    "inside": (dict(inside=True), "inside the tanh"),
    "multiplied": (dict(combine=np.multiply), "multiplied"),
    "mean": (dict(reduce=np.mean), "average the units"),
}


@pytest.mark.parametrize("name", list(CONCAT))
def test_concat_families(name):
    case = judge.spec("check_concat_score").cases("visible")[0]
    named, _ = diagnose("check_concat_score", case, concat(case, **CONCAT[name][0]))
    assert CONCAT[name][1] in named, named
    for other, (_, words) in CONCAT.items():
        if other != name:
            assert words not in named, (name, other, named)


def test_scores_through_a_softmax_and_the_dot_score_scaled():
    spec = judge.spec("check_dot_score")
    case = spec.cases("visible")[0]
    right = spec.formula(case)["scores"]
    named, _ = diagnose("check_dot_score", case, {"scores": M.softmax(right)})
    assert "softmax over the keys" in named and "sqrt" not in named
    d = case.inputs["query"].shape[-1]
    named, _ = diagnose("check_dot_score", case, {"scores": right / np.sqrt(d)})
    assert f"sqrt({d})" in named and "softmax" not in named


def test_general_score_without_its_weight():
    """Hidden shapes are all d_q != d_k; a square case shows `W_a` unused."""
    spec = judge.spec("check_general_score")
    case = spec.cases("visible")[0]
    q = case.inputs["query"]
    case.inputs["keys"] = np.random.default_rng(0).standard_normal((2, 5, q.shape[-1]))
    case.weights["W_a"] = np.random.default_rng(1).standard_normal((q.shape[-1],) * 2)
    outputs = {"scores": q @ np.swapaxes(case.inputs["keys"], -1, -2)}
    named, _ = diagnose("check_general_score", case, outputs)
    assert "`w_a` is not used" in named and "sqrt" not in named


SOFTMAX = {
    "fill 0": ({"fill": 0.0}, "multiplied by the mask"),
    "after only": ({"fill": None}, "zeroed only afterwards"),
    "no query axis": ({"as_given": True}, "without a query axis"),
    "not zeroed": ({"zero": False}, "1/keys"),
}


def softmax(case, fill=M.NEG, zero=True, as_given=False):
    scores, mask = case.inputs["scores"], np.asarray(case.inputs["mask"], bool)
    m = np.broadcast_to(mask, scores.shape) if as_given else M.key_mask(mask, scores)
    weights = M.softmax(scores if fill is None else np.where(m, scores, fill))
    return {"weights": np.where(m, weights, 0.0) if zero else weights}


@pytest.mark.parametrize("name", list(SOFTMAX))
def test_masked_softmax_families(name):
    # the visible case with an all-padding row and Tq == batch (2, 2, 3)
    case = judge.spec("check_masked_softmax").cases("visible")[2]
    kwargs, words = SOFTMAX[name]
    named, _ = diagnose("check_masked_softmax", case, softmax(case, **kwargs))
    assert words in named, named
    for other, (_, other_words) in SOFTMAX.items():
        if other != name:
            assert other_words not in named, (name, other, named)


def test_nan_rows_say_0_over_0_or_overflow():
    spec = judge.spec("check_masked_softmax")
    empty = spec.cases("visible")[2]  # a row whose keys are all padding
    scores, mask = empty.inputs["scores"], empty.inputs["mask"]
    e = np.exp(scores) * M.key_mask(mask, scores)
    with np.errstate(invalid="ignore"):
        named, _ = diagnose(
            "check_masked_softmax", empty, {"weights": e / e.sum(-1, keepdims=True)}
        )
    assert "0/0" in named and "overflow" not in named
    large = spec.cases("hidden")[2]  # scores in the hundreds
    scores, mask = large.inputs["scores"], large.inputs["mask"]
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(scores.astype(np.float32)) * M.key_mask(mask, scores)
        outputs = {"weights": e / e.sum(-1, keepdims=True)}
    named, _ = diagnose("check_masked_softmax", large, outputs)
    assert "overflow" in named and "0/0" not in named


def test_luong_downstream_stages_read_from_the_students_weights():
    spec = judge.spec("check_luong_attention")
    case = spec.cases("visible")[1]
    right = spec.formula(case)
    q, v = case.inputs["query"], case.inputs["values"]
    W_c, b_c, W_y, b_y = case.weights.values()
    weights = right["weights"]
    pre = np.concatenate([weights @ v, q], -1) @ W_c
    no_bias = M.softmax(np.tanh(pre) @ W_y + b_y)
    outputs = {**right, "probs": no_bias, D.PLAIN: no_bias}
    named, _ = diagnose("check_luong_attention", case, outputs)
    assert "`b_c` is missing" in named and "context" not in named
    # wrong weights, the rest right for them: the output stage is not blamed
    uniform = np.where(weights > 0, 1.0, 0.0)
    uniform /= uniform.sum(-1, keepdims=True)
    probs = M.softmax(
        np.tanh(np.concatenate([uniform @ v, q], -1) @ W_c + b_c) @ W_y + b_y
    )
    outputs = {"weights": uniform, "probs": probs, D.PLAIN: probs}
    named, observed = diagnose("check_luong_attention", case, outputs)
    assert "output stage is right" in observed and not named, (named, observed)


def test_a_wrong_masked_softmax_seen_through_taps_is_blamed():
    spec = judge.spec("check_luong_attention")
    case = spec.cases("visible")[1]
    right = spec.formula(case)
    q, v = case.inputs["query"], case.inputs["values"]
    scores = q @ np.swapaxes(v, -1, -2)
    broken = np.exp(scores) / 3.0  # not a softmax at all
    outputs = {
        **right,
        "weights": broken,
        "tap:masked_softmax#0:scores": scores,
        "tap:masked_softmax#0:mask": case.call_kwargs["values_mask"].astype(float),
        "tap:masked_softmax#0:out": broken,
    }
    named, _ = diagnose("check_luong_attention", case, outputs)
    assert "fix `masked_softmax`" in named


def test_decoder_step_logits_and_state():
    spec = judge.spec("check_bahdanau_decoder_step")
    case = spec.cases("visible")[0]
    right = spec.formula(case)
    W_o = case.weights["output_kernel"]
    state = case.inputs["state"]
    outputs = {**right, "state": state}
    named, _ = diagnose("check_bahdanau_decoder_step", case, outputs)
    assert "old state" in named and "logits come from" not in named
    outputs = {**right, "logits": right["state"] @ W_o}
    named, _ = diagnose("check_bahdanau_decoder_step", case, outputs)
    assert "bias is missing" in named and "old state" not in named


def test_a_diagnoser_never_raises():
    spec = judge.spec("check_luong_attention")
    case = spec.cases("visible")[0]
    found = spec.diagnose(case, {"probs": np.zeros(3)}, spec.formula(case), ["probs"])
    assert not found.named


def test_a_diagnosis_writes_no_warnings():
    """Readings that overflow are dropped silently (nothing on stderr)."""
    import warnings

    spec = judge.spec("check_luong_attention")
    case = spec.cases("visible")[0]
    right = spec.formula(case)
    huge = {**right, "probs": right["probs"] * 1e6, D.PLAIN: right["probs"] * 1e6}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec.diagnose(case, huge, right, ["probs", D.PLAIN])
        concat_spec = judge.spec("check_concat_score")
        concat_case = concat_spec.cases("visible")[0]
        concat_spec.diagnose(
            concat_case,
            {"scores": np.full((2, 3, 5), 1e30)},
            concat_spec.formula(concat_case),
            ["scores"],
        )


# ------------------------------- every hint, and none for another deviation


def _case(check_name, which="visible", index=0):
    return judge.spec(check_name).cases(which)[index]


def _square_general():
    case = _case("check_general_score")
    rng = np.random.default_rng(3)
    d = case.inputs["query"].shape[-1]
    case.inputs["keys"] = rng.standard_normal((2, 5, d))
    case.weights["W_a"] = rng.standard_normal((d, d)) / np.sqrt(d)
    return case


def _general(case, twice=False, use=True, factor=1.0):
    q, k, W = case.inputs["query"], case.inputs["keys"], case.weights["W_a"]
    keys = k @ W if use else k
    query = q @ W.T if twice else q
    return {"scores": query @ np.swapaxes(keys, -1, -2) * factor}


def _concat_sum(case, axis):
    q, k = case.inputs["query"], case.inputs["keys"]
    W1, W2, v = (case.weights[n] for n in ("W_1", "W_2", "v_a"))
    pre = (q @ W1)[..., :, None, :] + (k @ W2)[..., None, :, :]
    return {"scores": (np.tanh(pre) * v).sum(axis)}


def _concat_other(case, kind):
    q, k = case.inputs["query"], case.inputs["keys"]
    W1, W2, v = (case.weights[n] for n in ("W_1", "W_2", "v_a"))
    a, b = (q @ W1)[..., :, None, :], (k @ W2)[..., None, :, :]
    if kind == "separate":
        return {"scores": ((np.tanh(a) + np.tanh(b)) * v).sum(-1)}
    return {"scores": np.tanh(((a + b) * v).sum(-1))}  # "outside"


def _luong(case, weights=None, order=False, bias="in", act=np.tanh, out="softmax"):
    q, values = case.inputs["query"], case.inputs["values"]
    W_c, b_c, W_y, b_y = (case.weights[n] for n in ("W_c", "b_c", "W_y", "b_y"))
    right = judge.spec("check_luong_attention").formula(case)
    w = right["weights"] if weights is None else weights
    parts = [q, w @ values] if order else [w @ values, q]
    pre = np.concatenate(parts, -1) @ W_c
    state = act(pre + b_c) if bias == "in" else act(pre) + (b_c if bias == "out" else 0)
    logits = state @ W_y + b_y
    probs = {
        "softmax": lambda: M.softmax(logits),
        "steps": lambda: M.softmax(logits, 1),
        "log": lambda: np.log(M.softmax(logits)),
    }[out]()
    return {**right, "weights": w, "probs": probs, D.PLAIN: probs}


def _bahdanau(case, context=None, weights=None):
    right = judge.spec("check_bahdanau_attention").formula(case)
    w = right["weights"] if weights is None else weights(case)
    v = case.inputs["values"]
    c = (w[..., None] * v).sum(-2) if context is None else context(case, w, v)
    return {"context": c, "weights": w}


def _bahdanau_scores(case, f=np.tanh, inside=False):
    q, v = case.inputs["query"], case.inputs["values"]
    W_b, W_c, w_a = (case.weights[n] for n in ("W_b", "W_c", "w_a"))
    pre = (q @ W_b)[..., None, :] + v @ W_c
    return (f(pre * w_a) if inside else f(pre) * w_a).sum(-1)


def _step(case, state=None, logits=None):
    right = judge.spec("check_bahdanau_decoder_step").formula(case)
    W_o, b_o = case.weights["output_kernel"], case.weights["output_bias"]
    s = right["state"] if state is None else state(case, right)
    out = s @ W_o + b_o if logits is None else logits(case, right, W_o, b_o)
    return {**right, "state": s, "logits": out}


def _step_zero_cell(case, right):
    w = case.weights
    x = w["embeddings"][case.inputs["tokens"]]
    c = (right["weights"][..., None] * case.inputs["values"]).sum(-2)
    h = np.zeros_like(case.inputs["state"])
    return M.gru_cell(
        np.concatenate([x, c], -1),
        h,
        *(w[n] for n in ("kernel", "recurrent_kernel", "bias")),
    )


_SOFT = "check_masked_softmax"
_LUONG = "check_luong_attention"
_BAHD = "check_bahdanau_attention"
_STEP = "check_bahdanau_decoder_step"

#: name -> (check, case, outputs(case), the phrase its hint has and no other
#: deviation's hint of the same check has)
EVERY = {
    "dot softmaxed": (
        "check_dot_score",
        lambda: _case("check_dot_score"),
        lambda c: {
            "scores": M.softmax(M.dot_score(c.inputs["query"], c.inputs["keys"]))
        },
        "softmax over the keys",
    ),
    "dot times d": (
        "check_dot_score",
        lambda: _case("check_dot_score"),
        lambda c: {"scores": M.dot_score(c.inputs["query"], c.inputs["keys"]) * 4},
        "multiplied by 4",
    ),
    "dot over sqrt d": (
        "check_dot_score",
        lambda: _case("check_dot_score"),
        lambda c: {"scores": M.dot_score(c.inputs["query"], c.inputs["keys"]) / 2},
        "divided by sqrt(4)",
    ),
    "dot keys reshaped": (
        "check_dot_score",
        lambda: _case("check_dot_score"),
        lambda c: {
            "scores": c.inputs["query"]
            @ c.inputs["keys"].reshape(2, c.inputs["keys"].shape[-1], -1)
        },
        "reshaped",
    ),
    "general unused": (
        "check_general_score",
        _square_general,
        lambda c: _general(c, use=False),
        "`w_a` is not used",
    ),
    "general twice": (
        "check_general_score",
        _square_general,
        lambda c: _general(c, twice=True),
        "applied twice",
    ),
    "general over d_k": (
        "check_general_score",
        lambda: _case("check_general_score"),
        lambda c: _general(c, factor=1 / 6),
        "divided by 6",
    ),
    **{
        f"concat {name}": (
            "check_concat_score",
            lambda: _case("check_concat_score"),
            lambda c, kw=kw: concat(c, **kw),
            words,
        )
        for name, (kw, words) in CONCAT.items()
    },
    "concat sum over keys": (
        "check_concat_score",
        lambda: _case("check_concat_score"),
        lambda c: _concat_sum(c, -2),
        "sum over the keys",
    ),
    "concat separate": (
        "check_concat_score",
        lambda: _case("check_concat_score"),
        lambda c: _concat_other(c, "separate"),
        "separately",
    ),
    "concat tanh outside": (
        "check_concat_score",
        lambda: _case("check_concat_score"),
        lambda c: _concat_other(c, "outside"),
        "after the sum",
    ),
    **{
        f"softmax {name}": (
            _SOFT,
            lambda: _case(_SOFT, index=2),
            lambda c, kw=kw: softmax(c, **kw),
            words,
        )
        for name, (kw, words) in SOFTMAX.items()
    },
    "softmax fill -1": (
        _SOFT,
        lambda: _case(_SOFT, index=1),
        lambda c: softmax(c, fill=-1.0),
        "filled with -1,",
    ),
    "softmax full mask expanded": (
        _SOFT,
        lambda: _case(_SOFT, "hidden", 0),
        lambda c: {
            "weights": np.where(
                c.inputs["mask"][:, None],
                M.softmax(
                    np.where(c.inputs["mask"][:, None], c.inputs["scores"], M.NEG)
                ),
                0.0,
            )
        },
        "full (batch, queries, keys) mask",
    ),
    "luong b_c outside": (
        _LUONG,
        lambda: _case(_LUONG, index=1),
        lambda c: _luong(c, bias="out"),
        "after the tanh",
    ),
    "luong b_c missing": (
        _LUONG,
        lambda: _case(_LUONG, index=1),
        lambda c: _luong(c, bias="none"),
        "`b_c` is missing",
    ),
    "luong log": (
        _LUONG,
        lambda: _case(_LUONG, index=1),
        lambda c: _luong(c, out="log"),
        "log-probabilities",
    ),
    "luong steps": (
        _LUONG,
        lambda: _case(_LUONG, index=1),
        lambda c: _luong(c, out="steps"),
        "axis 1 (the decoder steps)",
    ),
    "luong sigmoid state": (
        _LUONG,
        lambda: _case(_LUONG, index=1),
        lambda c: _luong(c, act=M.sigmoid),
        "sigmoid(",
    ),
    "luong context from scores": (
        _LUONG,
        lambda: _case(_LUONG, index=0),
        lambda c: {
            **_luong(c, weights=M.dot_score(c.inputs["query"], c.inputs["values"])),
            "weights": judge.spec(_LUONG).formula(c)["weights"],
        },
        "raw scores",
    ),
    "luong keras mask lost": (
        _LUONG,
        lambda: _case(_LUONG, index=2),
        lambda c: _luong(
            c, weights=M.softmax(M.dot_score(c.inputs["query"], c.inputs["values"]))
        ),
        "keras mask did not reach",
    ),
    "bahdanau context over features": (
        _BAHD,
        lambda: _case(_BAHD, index=1),
        lambda c: _bahdanau(c, context=lambda c, w, v: (w[..., None] * v).sum(-1)),
        "over the features",
    ),
    "bahdanau context projected": (
        _BAHD,
        lambda: _case(_BAHD, index=1),
        lambda c: _bahdanau(
            c, context=lambda c, w, v: (w[..., None] * (v @ c.weights["W_c"])).sum(-2)
        ),
        "projected keys",
    ),
    "bahdanau context matmul": (
        _BAHD,
        lambda: _case(_BAHD, index=1),
        lambda c: _bahdanau(c, context=lambda c, w, v: np.matmul(w, v)),
        "treats the weights as one matrix",
    ),
    "bahdanau context not summed": (
        _BAHD,
        lambda: _case(_BAHD, index=1),
        lambda c: _bahdanau(c, context=lambda c, w, v: w[..., None] * v),
        "not summed over the encoder steps",
    ),
    "bahdanau relu": (
        _BAHD,
        lambda: _case(_BAHD, index=1),
        lambda c: _bahdanau(
            c,
            weights=lambda c: np.where(
                c.call_kwargs["values_mask"],
                M.softmax(
                    np.where(
                        c.call_kwargs["values_mask"],
                        _bahdanau_scores(c, f=lambda x: np.maximum(x, 0)),
                        M.NEG,
                    )
                ),
                0.0,
            ),
        ),
        "relu(",
    ),
    "bahdanau w_a inside": (
        _BAHD,
        lambda: _case(_BAHD, index=0),
        lambda c: _bahdanau(
            c, weights=lambda c: M.softmax(_bahdanau_scores(c, inside=True))
        ),
        "inside the tanh",
    ),
    "step old state": (
        _STEP,
        lambda: _case(_STEP),
        lambda c: _step(c, state=lambda c, r: c.inputs["state"]),
        "old state",
    ),
    "step cell from zeros": (
        _STEP,
        lambda: _case(_STEP),
        lambda c: _step(c, state=_step_zero_cell),
        "starts from zeros",
    ),
    "step logits without bias": (
        _STEP,
        lambda: _case(_STEP),
        lambda c: _step(c, logits=lambda c, r, W, b: r["state"] @ W),
        "bias is missing",
    ),
    "step logits through tanh": (
        _STEP,
        lambda: _case(_STEP),
        lambda c: _step(c, logits=lambda c, r, W, b: np.tanh(r["state"] @ W + b)),
        "go through a tanh",
    ),
}


@pytest.fixture(scope="module")
def every():
    """name -> what the judge's diagnosis names for it (lower case)."""
    named = {}
    for name, (check, build, outputs, _) in EVERY.items():
        case = build()
        named[name] = diagnose(check, case, outputs(case))[0]
    return named


@pytest.mark.parametrize("name", list(EVERY))
def test_every_hint_for_its_own_deviation_only(every, name):
    check, _, _, words = EVERY[name]
    assert words in every[name], (name, every[name])
    for other, (other_check, _, _, other_words) in EVERY.items():
        if other != name and other_check == check:
            assert other_words not in every[name], (name, other, every[name])


def test_a_layer_whose_config_forgets_an_argument_is_told_so():
    spec = judge.spec("check_concat_score")
    case = spec.cases("visible")[0]
    expected = spec.expectations([case])[0]["expected"]
    rebuilt = next(n for n in expected if n.endswith(" after from_config"))
    got = {**expected, rebuilt: expected[rebuilt] * 0.5}
    named = " ".join(spec.diagnose(case, got, expected, [rebuilt]).named)
    assert "get_config()" in named
    got = {**expected, "scores": expected["scores"] * 0.5}
    named = " ".join(spec.diagnose(case, got, expected, ["scores"]).named)
    assert "get_config()" not in named


def test_outputs_returned_in_each_others_place():
    spec = judge.spec("check_bahdanau_decoder_step")
    case = spec.cases("visible")[0]
    right = spec.formula(case)
    got = {**right, "logits": right["state"], "state": right["logits"]}
    named = " ".join(spec.diagnose(case, got, right, ["logits", "state"]).named)
    assert "wrong order: return logits, state, weights" in named
    got = {**right, "state": case.inputs["state"]}  # another mistake
    named = " ".join(spec.diagnose(case, got, right, ["state"]).named)
    assert "wrong order" not in named
