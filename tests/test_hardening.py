"""The grading unit, attacked: every defect class of the hardening issue.

One batch of Assignment 1 submissions is graded through the real pipeline
(sandbox, nbgrader, trusted verdicts). Beside a correct "victim" graded
before and after them, each hostile submission tries one class of attack
on the grader; the attacks are written to work against the layout the kit
had before it was hardened (kernel working in nbgrader's autograded
folder, cases and records in a `.kit` folder it owned, one socket folder
for every grader), so each test below failed there:

* links planted by the kernel that the grader (root) would follow: the
  gradebook overwritten or copied into feedback, its mode changed, another
  student's files and the grader's logs deleted;
* test cases rewritten by the kernel so that a wrong answer matches;
* a directory, a dangling link and a FIFO planted where the grader cleaned
  up, which made nbgrader fail (0 points, no feedback);
* a kernel that dies in one exercise (here `os._exit` reached without an
  import: the scan cannot tell it from a native crash);
* borrowing with a computed name, and a record forged after the check sent
  it;
* hidden inputs printed into the feedback, and `.kit/cases/*--hidden.npz`
  copied into every feedback folder;
* an answer that memorises the visible cases' shipped expected outputs;
* a batch with no gradable submission;
* two graders at once on one machine.

The catalogs `solutions/<assignment>/integrity.toml` hold the same classes
for every assignment (`tests/test_integrity.py`).
"""

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import judge, sandbox
from autograder.cli import grade_folder
from autograder.pipeline import Course, Sample

pytestmark = pytest.mark.slow

ASSIGNMENT = "01_attention_seq2seq"
NOTEBOOK = "attention_seq2seq.ipynb"
CONFINED = "private files" in sandbox.describe()

# How attack code reaches `os` and `threading` without an import the scan
# would flag (modules Keras itself imported; any determined student finds
# them).
PRELUDE = """
import keras.src.backend.config as _config
import keras.src.backend.common.global_state as _state
_os = getattr(_config, "o" + "s")
_env = getattr(_os, "envi" + "ron")
_json = getattr(_config, "js" + "on")
_threading = getattr(_state, "thread" + "ing")
_pause = _threading.Event().wait
"""

LINKS = (
    PRELUDE
    + """
def _plant_links():
    here = _os.getcwd()
    grading = _env.get("KIT_GRADING_DIR") or _os.path.abspath(
        _os.path.join(here, "..", "..", "..")
    )
    gradebook = _os.path.join(grading, "gradebook.db")
    victim = _os.path.join(grading, "autograded", "victim", "01_attention_seq2seq")
    for name, target in [
        ("gradebook-copy.db", gradebook),  # copied into the feedback?
        ("zz-mode", gradebook),  # chmod-ed by nbgrader?
        ("logs-link", _os.path.join(grading, "logs")),
    ]:
        try:
            _os.symlink(target, _os.path.join(here, name))
        except OSError:
            pass
    try:  # the autograded notebook, written back by nbgrader as root
        _os.unlink(_os.path.join(here, "attention_seq2seq.ipynb"))
        _os.symlink(gradebook, _os.path.join(here, "attention_seq2seq.ipynb"))
    except OSError:
        pass
    kit = _env.get("KIT_GRADING_CASES", "")
    for name, target in [("records", victim), ("cases", _os.path.join(grading, "logs"))]:
        path = _os.path.join(kit, name)
        try:
            if not _os.path.islink(path):
                _os.rename(path, path + "-moved")
                _os.symlink(target, path)
        except OSError:
            pass


def _keep_planting():
    for _ in range(20000):
        _plant_links()
        _pause(0.02)


_plant_links()
_threading.Thread(target=_keep_planting, daemon=True).start()
"""
)

JUNK = (
    PRELUDE
    + """
_folders = [_os.getcwd()]
_kit = _env.get("KIT_GRADING_CASES", "")
_folders += [_kit, _os.path.join(_kit, "records"), _os.path.join(_kit, "cases")]
try:  # the kernel's socket folder, from its connection file
    _handle = _os.open("/tmp/kernel.json", _os.O_RDONLY)
    _folders.append(_os.path.dirname(_json.loads(_os.read(_handle, 65536))["ip"]))
except (OSError, ValueError, KeyError):
    pass
for _folder in _folders:
    for _make in (
        lambda p: _os.mkdir(p),
        lambda p: _os.symlink("/nonexistent/dangling", p),
        lambda p: _os.mkfifo(p),
    ):
        for _i in range(3):
            try:
                _make(_os.path.join(_folder, f"zz-junk-{_i}-{id(_make)}"))
            except OSError:
                pass
    try:
        _os.makedirs(_os.path.join(_folder, "zz-deep", "a", "b", "c"))
    except OSError:
        pass
"""
)

SHIFT_CASES = (
    PRELUDE
    + '''
_shifted = set()


def _shift_hidden_dot_cases():
    """Scale the hidden dot-score queries by sqrt(d), once: a score divided
    by sqrt(d) then equals the unscaled one the grader expects."""
    kit = _env.get("KIT_GRADING_CASES", "")
    for folder in (_os.path.join(kit, "cases"), kit):
        path = _os.path.join(folder, "check_dot_score--hidden.npz")
        if path in _shifted:
            continue
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            for key in list(arrays):
                if key.endswith(".in.query"):
                    arrays[key] = arrays[key] * np.sqrt(arrays[key].shape[-1])
            tmp = path + ".tmp.npz"
            np.savez(tmp, **arrays)
            _os.replace(tmp, path)
            _shifted.add(path)
        except OSError:
            pass
'''
)

FORGE = (
    PRELUDE
    + '''
def _forge(path):
    """The record without the evidence of borrowing."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = _json.loads(str(arrays["__meta__"]))
    meta["sublayers"] = []
    arrays["__meta__"] = np.array(_json.dumps(meta))
    return arrays


def _keep_forging():
    kit = _env.get("KIT_GRADING_CASES", "")
    records = _os.path.join(kit, "records")
    seen = {}
    for _ in range(2_000_000):
        try:  # the layout before: rewrite the record file once it is written
            for name in _os.listdir(records):
                path = _os.path.join(records, name)
                stamp = _os.stat(path).st_mtime_ns
                if "luong" in name and name.endswith(".npz") and seen.get(name) != stamp:
                    np.savez(path + ".f.npz", **_forge(path))
                    _os.replace(path + ".f.npz", path)
                    seen[name] = _os.stat(path).st_mtime_ns
        except (OSError, ValueError, KeyError):
            pass
        try:  # the layout now: send a record of its own beside the check's
            for name in _os.listdir(kit):
                if "luong" in name and name.endswith(".npz") and name not in seen:
                    seen[name] = 1
                    check, which = name[:-4].split("--")
                    display(
                        {
                            "application/vnd.kit.record+json": {
                                "check": check,
                                "which": which,
                                "npz": "",
                            }
                        },
                        raw=True,
                    )
        except (OSError, ValueError):
            pass
        _pause(0.0005)
'''
)


def _solution(course, patches=()):
    return course.make_submission(
        ASSIGNMENT, Sample("x", "", "solution", list(patches), {})
    )


def _insert_before(grade_id, source):
    return {"cell": grade_id, "insert_before": source}


def _memorised_masked_softmax():
    """masked_softmax that returns the shipped expected outputs of the visible
    cases (as a student who pasted them from the bundle would) and zeros
    otherwise."""
    spec = judge.spec("check_masked_softmax")
    cases = spec.cases("visible")
    table = [
        (
            np.asarray(case.inputs["scores"]).tolist(),
            np.asarray(expected["expected"]["weights"]).tolist(),
        )
        for case, expected in zip(cases, spec.expectations(cases), strict=True)
    ]
    return (
        f"SHIPPED = {table!r}\n\n\n"
        "def masked_softmax(scores, mask=None):\n"
        "    if not hasattr(scores, 'numpy'):  # traced by Keras\n"
        "        return ops.zeros_like(scores)\n"
        "    given = np.asarray(scores)\n"
        "    for inputs, outputs in SHIPPED:\n"
        "        if np.shape(inputs) == given.shape and np.allclose(inputs, given):\n"
        "            return ops.convert_to_tensor(np.asarray(outputs, 'float32'))\n"
        "    return ops.zeros_like(scores)\n"
    )


def submissions(course):
    """name -> (notebook, expected scores)."""
    full = course.exercises(ASSIGNMENT)
    out = {"victim": (_solution(course), dict(full))}
    out["links"] = (
        _solution(course, [_insert_before("test_dot_score", LINKS)]),
        dict(full),
    )
    out["junk"] = (
        _solution(course, [_insert_before("bahdanau_decoder_step", JUNK)]),
        dict(full),
    )
    out["crash-in-test"] = (
        _solution(
            course,
            [
                {
                    "cell": "luong_attention",
                    "old": "        scores = ops.matmul(query, ops.swapaxes(values, -1, -2))"
                    "  # (B, Tq, Tk)\n",
                    "new": "        getattr(keras.src.backend.config, 'o' + 's')._exit(1)\n",
                }
            ],
        ),
        {**full, "luong_attention": 0},
    )
    out["shift-cases"] = (
        _solution(
            course,
            [
                _insert_before("score_functions", SHIFT_CASES),
                {
                    "cell": "score_functions",
                    "old": "        return ops.matmul(query, ops.swapaxes(keys, -1, -2))\n",
                    "new": "        _shift_hidden_dot_cases()\n"
                    "        d = ops.cast(ops.shape(query)[-1], query.dtype)\n"
                    "        return ops.matmul(query, ops.swapaxes(keys, -1, -2))"
                    " / ops.sqrt(d)\n",
                },
            ],
        ),
        {**full, "dot_score": 0},
    )
    borrowed_call = (
        "        context, weights = getattr(keras.layers, 'Atten' + 'tion')()(\n"
        "            [query, values], mask=[None, values_mask],"
        " return_attention_scores=True\n"
        "        )\n"
    )
    solution_attention = (
        "        scores = ops.matmul(query, ops.swapaxes(values, -1, -2))  # (B, Tq, Tk)\n"
        "        weights = masked_softmax(scores, values_mask)  # (B, Tq, Tk)\n"
        "        context = ops.matmul(weights, values)  # (B, Tq, d)\n"
    )
    out["borrowed-computed-name"] = (
        _solution(
            course,
            [
                {
                    "cell": "luong_attention",
                    "old": solution_attention,
                    "new": borrowed_call,
                }
            ],
        ),
        {**full, "luong_attention": 0},
    )
    out["forged-record"] = (
        _solution(
            course,
            [
                _insert_before(
                    "test_luong_attention",
                    FORGE
                    + "\n_threading.Thread(target=_keep_forging, daemon=True).start()\n",
                ),
                {
                    "cell": "luong_attention",
                    "old": solution_attention,
                    "new": "        context, weights = self.att(\n"
                    "            [query, values], mask=[None, values_mask],"
                    " return_attention_scores=True\n"
                    "        )\n",
                },
                {
                    "cell": "luong_attention",
                    "old": '        init = "glorot_uniform"\n',
                    "new": '        init = "glorot_uniform"\n'
                    "        self.att = getattr(keras.layers, 'Atten' + 'tion')()\n",
                },
            ],
        ),
        {**full, "luong_attention": 0},
    )
    out["prints-inputs"] = (
        _solution(
            course,
            [
                {
                    "cell": "masked_softmax",
                    "old": "    if mask is None:\n        return ops.softmax(scores, axis=-1)\n",
                    "new": "    if hasattr(scores, 'numpy'):  # not while Keras traces it\n"
                    "        print('SCORES', np.asarray(scores).round(6).tolist())\n"
                    "    if mask is None:\n        return ops.softmax(scores, axis=-1)\n",
                }
            ],
        ),
        dict(full),
    )
    memorised = _solution(course)
    for cell in memorised.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "masked_softmax":
            cell.source = _memorised_masked_softmax()
    # Luong, Bahdanau and the decoder step call masked_softmax and are wired
    # right on it: they keep their points (one mistake, one exercise), as they
    # would on an honest wrong softmax; the memorised table earns nothing.
    out["memorised"] = (memorised, {**full, "masked_softmax": 0})
    out["victim-after"] = (_solution(course), dict(full))
    return out


def _tree(folder):
    """path -> (mode, sha256) of every file under `folder`, links as such."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            info = path.lstat()
            digest = ""
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(folder))] = (stat.filemode(info.st_mode), digest)
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("hardening")
    course = Course(grading_dir=scratch / "grading")
    paths, expected = {}, {}
    for name, (notebook, scores) in submissions(course).items():
        paths[name] = scratch / f"{name}.ipynb"
        nbformat.write(notebook, paths[name])
        expected[name] = scores
    snapshots = {}

    def log(line):
        if line.startswith("  graded victim:"):
            grading = course.grading_dir
            snapshots["victim"] = _tree(grading / "autograded" / "victim")
            snapshots["gradebook mode"] = (grading / "gradebook.db").stat().st_mode
            snapshots["logs"] = sorted(p.name for p in (grading / "logs").iterdir())

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIT_CELL_TIMEOUT", "30")
        results = grade_folder(course, ASSIGNMENT, paths, feedback=True, log=log)
    return course, {r.student: r for r in results}, expected, snapshots


def test_every_hostile_submission_gets_exactly_what_it_earned(graded):
    _, results, expected, _ = graded
    wrong = {
        name: (result.scores, expected[name], result.note)
        for name, result in results.items()
        if result.scores != expected[name]
    }
    assert not wrong


@pytest.mark.skipif(not CONFINED, reason="needs root and mount namespaces")
def test_links_planted_by_a_kernel_reach_nothing_of_the_grader(graded):
    course, results, _, snapshots = graded
    grading = course.grading_dir
    # The victim's files, graded before the hostile submissions, unchanged.
    assert _tree(grading / "autograded" / "victim") == snapshots["victim"]
    # The gradebook: its mode, its content (a database with every grade).
    assert (grading / "gradebook.db").stat().st_mode == snapshots["gradebook mode"]
    assert (grading / "gradebook.db").read_bytes()[:16] == b"SQLite format 3\x00"
    assert course.grades(ASSIGNMENT, "victim-after")
    # The grader's own logs.
    logs = {p.name for p in (grading / "logs").iterdir()}
    assert set(snapshots["logs"]) <= logs
    # Nothing in the grading folder is a link; no feedback holds a copy of
    # the gradebook.
    for path, (mode, _) in _tree(grading).items():
        assert not mode.startswith("l"), path
    for path in (grading / "feedback").rglob("*"):
        if path.is_file():
            assert not path.read_bytes().startswith(b"SQLite format 3"), path
    assert results["links"].total == results["victim"].total


def test_feedback_folders_hold_only_the_feedback(graded):
    course, _, _, _ = graded
    for path in (course.grading_dir / "feedback").rglob("*"):
        assert ".kit" not in path.parts, path
        if path.is_file():
            assert path.suffix in (".html", ".txt"), path
    for path in (course.grading_dir / "autograded").rglob("*"):
        assert ".kit" not in path.parts, path
        assert path.suffix not in (".npz",), path


def test_junk_where_the_grader_cleans_up_costs_nothing(graded):
    course, results, _, _ = graded
    assert results["junk"].total == 17, results["junk"].note
    html = course.grading_dir / "feedback" / "junk" / ASSIGNMENT
    assert (html / "attention_seq2seq.html").is_file()


def test_a_dead_kernel_keeps_what_was_decided_and_grades_the_rest(graded):
    course, results, _, _ = graded
    result = results["crash-in-test"]
    assert "kernel died" in result.note, result.note
    assert result.scores["masked_softmax"] == 2
    assert result.scores["bahdanau_decoder_step"] == 3  # after the restart
    assert (
        (course.grading_dir / "feedback" / "crash-in-test" / ASSIGNMENT)
        .joinpath("attention_seq2seq.html")
        .is_file()
    )


def test_rewritten_cases_do_not_change_the_verdict(graded):
    _, results, _, _ = graded
    assert results["shift-cases"].scores["dot_score"] == 0


def _outputs(course, student, grade_id):
    notebook = nbformat.read(
        course.grading_dir / "autograded" / student / ASSIGNMENT / NOTEBOOK,
        as_version=4,
    )
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return cell.outputs
    raise KeyError(grade_id)


def test_borrowing_by_a_computed_name_is_found_by_what_runs(graded):
    course, _, _, _ = graded
    names = [
        o.ename
        for o in _outputs(course, "borrowed-computed-name", "test_luong_attention")
        if o.output_type == "error"
    ]
    assert names == ["BorrowedAnswer"]


def test_a_forged_record_is_refused(graded):
    course, results, _, _ = graded
    assert results["forged-record"].scores["luong_attention"] == 0
    errors = [
        o
        for o in _outputs(course, "forged-record", "test_luong_attention")
        if o.output_type == "error"
    ]
    assert errors and errors[-1].ename in ("IntegrityError", "BorrowedAnswer")


def test_what_a_hidden_test_printed_is_not_shown(graded):
    course, results, _, _ = graded
    assert results["prints-inputs"].total == 17
    visible = "".join(
        o.get("text", "")
        for o in _outputs(course, "prints-inputs", "test_masked_softmax")
    )
    assert "SCORES" in visible  # visible tests show what the code printed
    for grade_id in ("hidden_masked_softmax", "hidden_luong_attention"):
        hidden = "".join(
            o.get("text", "") for o in _outputs(course, "prints-inputs", grade_id)
        )
        assert "SCORES" not in hidden and "not shown" in hidden, grade_id


def test_a_memorised_answer_earns_nothing(graded):
    _, results, _, _ = graded
    assert results["memorised"].scores["masked_softmax"] == 0


def test_a_batch_with_nothing_gradable_does_not_crash(tmp_path):
    course = Course(grading_dir=tmp_path / "grading")
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    lines = []
    started = []

    def engine():
        started.append(True)
        raise AssertionError("nothing to grade: no engine needed")

    results = grade_folder(
        course, ASSIGNMENT, {"broken": broken}, log=lines.append, engine=engine
    )
    assert results[0].total == 0
    assert "not a notebook" in results[0].note
    assert not started
    assert (course.grading_dir / f"grades-{ASSIGNMENT}.json").is_file()


def test_a_submission_that_is_a_link_is_not_followed(tmp_path):
    course = Course(grading_dir=tmp_path / "grading")
    folder = tmp_path / "submissions"
    folder.mkdir()
    secret = tmp_path / "secret.ipynb"
    secret.write_text(nbformat.writes(_solution(course)))
    (folder / "mallory.ipynb").symlink_to(secret)
    (folder / "eve").symlink_to(tmp_path, target_is_directory=True)
    from autograder.cli import find_submissions

    found = find_submissions(folder, ASSIGNMENT)
    from autograder.pipeline import read_submission

    for path in found.values():
        raw, problem = read_submission(path, folder)
        assert raw is None and "link" in problem, (path, problem)


def _ipc_dir(env):
    """The socket folder nbgrader_config.py gives one nbgrader process."""
    code = (
        "import os, runpy\n"
        "from traitlets.config import Config\n"
        "c = Config()\n"
        "runpy.run_path('nbgrader_config.py', {'get_config': lambda: c})\n"
        "print(c.KernelManager.ip)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return os.path.dirname(done.stdout.strip().splitlines()[-1])


def test_every_grading_process_has_its_own_socket_folder(tmp_path):
    env = {"KIT_KERNEL": "kit-sandbox", "KIT_GRADING_DIR": str(tmp_path)}
    first, second = _ipc_dir(env), _ipc_dir(env)
    assert first != second
    run_a, run_b = tmp_path / "run-a", tmp_path / "run-b"
    run_a.mkdir()
    run_b.mkdir()
    assert _ipc_dir({**env, "KIT_RUN_DIR": str(run_a)}) == str(run_a / "ipc")
    assert _ipc_dir({**env, "KIT_RUN_DIR": str(run_b)}) == str(run_b / "ipc")


def test_two_batches_at_once_grade_as_one_after_the_other(tmp_path):
    """Two graders on one machine, at the same time, each with its own
    workers: the same grades as alone, and no run folder left behind."""
    from autograder.engine import Engine

    probe = Course(grading_dir=tmp_path / "probe")
    full = probe.exercises(ASSIGNMENT)
    buggy = [
        {
            "cell": "luong_attention",
            "old": "weights = masked_softmax(scores, values_mask)",
            "new": "weights = masked_softmax(scores)",
        }
    ]
    notebooks = {"right": _solution(probe), "no-mask": _solution(probe, buggy)}
    expected = {"right": dict(full), "no-mask": {**full, "luong_attention": 0}}
    runs_base = tmp_path / "runs"
    runs_base.mkdir()
    outcome, errors = {}, []

    def batch(name, engine):
        try:
            course = Course(grading_dir=tmp_path / name)
            paths = {}
            for student, notebook in notebooks.items():
                paths[student] = tmp_path / f"{name}-{student}.ipynb"
                nbformat.write(notebook, paths[student])
            results = grade_folder(
                course, ASSIGNMENT, paths, log=lambda _: None, engine=engine
            )
            outcome[name] = {r.student: r.scores for r in results}
        except Exception as error:  # reported below
            errors.append(error)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIT_RUN_BASE", str(runs_base))  # the workers inherit it
        engines = {name: Engine(workers=1).start() for name in ("one", "two")}
    try:
        threads = [
            threading.Thread(target=batch, args=(name, engine))
            for name, engine in engines.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for engine in engines.values():
            engine.close()
    assert not errors
    assert outcome == {"one": expected, "two": expected}
    assert list(runs_base.iterdir()) == []  # every run folder removed


def test_the_journal_keeps_verdicts_when_nbgrader_fails(tmp_path):
    """The unit's fallback: nbgrader failed after deciding some tests."""
    from autograder import unit

    course = Course(grading_dir=tmp_path / "grading")
    course.prepare_grading()
    journal = {
        "tests": {
            "test_dot_score": {"passed": True, "ename": "", "message": ""},
            "hidden_dot_score": {
                "passed": False,
                "ename": "CheckFailed",
                "message": "check_dot_score: case 1 of 2 failed",
            },
        },
        "notes": [],
    }
    notebook = _solution(course)
    course.submit(ASSIGNMENT, "ada", notebook)
    unit._keep_decided(course, ASSIGNMENT, "ada", journal)
    grades = course.grades(ASSIGNMENT, "ada")
    assert grades["test_dot_score"] == 1
    assert grades["hidden_dot_score"] == 0
    assert grades["test_luong_attention"] == 0
    unit._write_fallback_feedback(course, ASSIGNMENT, "ada", journal, ["a note"])
    page = (
        course.grading_dir / "feedback" / "ada" / ASSIGNMENT / "attention_seq2seq.html"
    ).read_text()
    assert "check_dot_score: case 1 of 2 failed" in page and "a note" in page
    assert json.dumps(journal)  # what the unit reads is plain JSON


def test_a_stuck_kernel_and_the_notebook_budget_keep_decided_points(tmp_path):
    """A kernel that no longer answers (it ignores the interrupt, here by
    libc's `signal(SIGINT, SIG_IGN)` reached without an import, then loops)
    is replaced and the rest graded; a notebook that runs out of its time
    budget keeps the tests it reached."""
    course = Course(grading_dir=tmp_path / "grading")
    full = course.exercises(ASSIGNMENT)
    deaf = (
        'libc = getattr(getattr(np, "ctypes" + "lib"), "cty" + "pes").CDLL(None)\n'
        "libc.signal(2, 1)  # SIGINT ignored\n"
        "while True:\n"
        "    pass\n"
    )
    stuck = _solution(course, [_insert_before("test_luong_attention", deaf)])
    # five interrupted loops of 10 s: past a 45 s budget
    loop = "while True:\n    pass\n"
    slow = _solution(course, [_insert_before("luong_attention", loop)] * 5)
    paths = {}
    for name, notebook in (("stuck", stuck), ("over-budget", slow)):
        paths[name] = tmp_path / f"{name}.ipynb"
        nbformat.write(notebook, paths[name])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIT_CELL_TIMEOUT", "10")
        patch.setenv("KIT_NOTEBOOK_TIMEOUT", "45")
        results = {
            r.student: r
            for r in grade_folder(course, ASSIGNMENT, paths, log=lambda _: None)
        }
    assert results["stuck"].scores == dict(full), results["stuck"].note
    assert "stopped answering" in results["stuck"].note
    over = results["over-budget"]
    assert over.scores["masked_softmax"] == 2  # decided before the budget ran out
    assert over.scores["bahdanau_decoder_step"] == 0  # never reached
    assert "time limit of 45 s" in over.note
    page = (course.grading_dir / "feedback" / "over-budget" / ASSIGNMENT).joinpath(
        "attention_seq2seq.html"
    )
    assert "NotGraded" in page.read_text()
