"""Class-scale grading on a real Dask cluster, and no grade lost.

A `dask scheduler` and two `dask worker` processes are started on
127.0.0.1 (`autograder.loopback`), each worker in a temporary folder of its
own and in a mount namespace where the coordinator's folder (submissions,
grading folders) and the checkout's course folders (solutions, tests, git,
builds) are empty: everything a worker grades with reaches it through Dask.
On that cluster:

* a batch grades with the expected scores, on both workers, and the grading
  folder is an ordinary nbgrader course (gradebook, autograded, feedback);
* a worker killed with SIGKILL mid-batch: its submission is graded
  elsewhere, none twice, none lost;
* a worker whose kit differs is refused with a message that says so;
* a submission that stops its worker again and again scores 0 with a note;
* the coordinator killed mid-batch, the same command run again: what was
  graded is kept, the rest graded, one result each (SQLite and PostgreSQL,
  a throwaway server started by the test);
* two runs at once on one grading folder and gradebook never mix results.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder import sandbox
from autograder.cli import grade_folder
from autograder.engine import CourseOnWorker, Engine, course_payload
from autograder.loopback import LoopbackCluster
from autograder.pipeline import Course, PipelineError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("unshare"),
        reason="workers with hidden folders need root (a mount namespace)",
    ),
]

ASSIGNMENT = "01_attention_seq2seq"
BATCH = ["solution", "blank", "dot-scaled", "luong-no-mask", "decoder-old-state"]
NOTEBOOK = "attention_seq2seq.ipynb"
CHECKOUT = Path(__file__).resolve().parents[1]


class Place:
    """The coordinator's folder: submissions and grading folders."""

    def __init__(self, base):
        self.base = base
        self.course = Course()
        self.samples = {s.name: s for s in self.course.samples(ASSIGNMENT)}
        self.expected = {
            name: self.course.expected_scores(ASSIGNMENT, sample)
            for name, sample in self.samples.items()
        }
        self.submissions = base / "submissions"
        self.paths = self.write(self.submissions, {name: name for name in BATCH})

    def write(self, folder, students):
        """Write `{student: sample name}` as `<student>.ipynb` in `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for student, name in students.items():
            paths[student] = folder / f"{student}.ipynb"
            nbformat.write(
                self.course.make_submission(ASSIGNMENT, self.samples[name]),
                paths[student],
            )
        return paths

    def grading(self, name):
        return Course(grading_dir=self.base / name)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    return Place(tmp_path_factory.mktemp("coordinator"))


@pytest.fixture(scope="module")
def cluster(place, tmp_path_factory):
    hide = [*sandbox._course_folders(CHECKOUT), place.base]
    hide = [p for p in hide if Path(p).is_dir()]
    with LoopbackCluster(
        workers=2, hide=hide, folder=tmp_path_factory.mktemp("loopback")
    ) as running:
        running.hidden = hide
        yield running


@pytest.fixture
def engine(cluster):
    with Engine(scheduler=cluster.address) as started:
        yield started


def scores(results):
    return {r.student: r.scores for r in results}


def submissions_in_gradebook(course):
    """student -> how many submissions of the assignment the gradebook holds."""
    count = {}
    with course.gradebook() as gradebook:
        for submission in gradebook.assignment_submissions(ASSIGNMENT):
            name = submission.student.id
            count[name] = count.get(name, 0) + 1
    return count


def gradebook_totals(course, students):
    return {s: sum((course.grades(ASSIGNMENT, s) or {}).values()) for s in students}


# ------------------------------------------------------------------ a batch


def test_batch_grades_on_workers_that_share_no_files(place, cluster, engine):
    from distributed import get_task_stream

    seen = engine.client.run(
        lambda paths: {p: bool(os.listdir(p)) for p in paths}, cluster.hidden
    )
    assert seen and all(not any(v.values()) for v in seen.values()), seen
    course = place.grading("grading-batch")
    with get_task_stream(engine.client) as stream:
        results = grade_folder(course, ASSIGNMENT, place.paths, engine=engine)
    assert scores(results) == {name: place.expected[name] for name in BATCH}
    workers = {t["worker"] for t in stream.data if t["key"].startswith("grade-")}
    assert len(workers) == 2, workers
    # An ordinary nbgrader course: gradebook, autograded and feedback folders.
    assert submissions_in_gradebook(course) == dict.fromkeys(BATCH, 1)
    assert gradebook_totals(course, BATCH) == {
        name: sum(place.expected[name].values()) for name in BATCH
    }
    for name in BATCH:
        for kind, file in [
            ("autograded", "attention_seq2seq.ipynb"),
            ("feedback", "attention_seq2seq.html"),
        ]:
            assert (course.grading_dir / kind / name / ASSIGNMENT / file).is_file()


def test_a_worker_killed_mid_batch_loses_nothing(place, cluster, engine):
    course = place.grading("grading-worker-killed")
    lines, killed = [], []

    def log(line):
        lines.append(line)
        if killed or "graded " not in line:
            return
        busy = [a for a, keys in engine.client.processing().items() if keys]
        if busy:
            pids = engine.client.run(os.getpid, workers=busy[:1])
            for address, pid in pids.items():
                os.kill(pid, signal.SIGKILL)
                killed.append(address)

    results = grade_folder(
        course, ASSIGNMENT, place.paths, engine=engine, log=log, feedback=False
    )
    assert killed, "no worker was busy to kill"
    assert scores(results) == {name: place.expected[name] for name in BATCH}
    graded = [line.split()[1].rstrip(":") for line in lines if "graded " in line]
    graded = [g for g in graded if g in BATCH]
    assert sorted(graded) == sorted(BATCH)  # each once: none twice, none lost
    assert submissions_in_gradebook(course) == dict.fromkeys(BATCH, 1)
    cluster.wait_for_workers(2)  # the nanny restarted it


def test_a_worker_with_another_kit_is_refused(place, engine, monkeypatch):
    course = place.grading("grading-other-kit")
    course.prepare_grading([ASSIGNMENT])
    files, meta = course_payload(course, ASSIGNMENT)
    other = dict(meta, kit_version="0.0.1-other", fingerprint="other-kit")
    with pytest.raises(RuntimeError, match="install the same version of the kit"):
        engine.client.register_plugin(CourseOnWorker(files, other), name="kit-other")
    # Through the engine, the instructor gets the reason, not a traceback.
    monkeypatch.setattr("autograder.engine.course_payload", lambda *_: (files, other))
    with pytest.raises(PipelineError, match=r"refused: worker .* coordinator 0\.0\.1"):
        engine.prepare(course, ASSIGNMENT)


def test_a_submission_that_stops_its_worker_scores_zero(
    place, cluster, engine, monkeypatch
):
    monkeypatch.setenv("KIT_HARD_LIMIT", "1")  # every submission runs past it
    course = place.grading("grading-stops-worker")
    results = grade_folder(
        course, ASSIGNMENT, {"solution": place.paths["solution"]}, engine=engine
    )
    assert [r.total for r in results] == [0]
    assert "stopped its worker again and again" in results[0].note
    cluster.wait_for_workers(2)


# ------------------------------------------------------------------ the coordinator


def postgres_binaries():
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on a socket in a temporary folder."""
    import pwd
    import tempfile

    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (make test installs it as root)")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user")
    folder = Path(tempfile.mkdtemp(prefix="kit-pg-"))
    os.chown(folder, user.pw_uid, user.pw_gid)

    def as_postgres(*command):
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True,
            capture_output=True,
            cwd=folder,
        )

    as_postgres(
        str(binaries / "initdb"), "-D", f"{folder}/data", "-A", "trust",
        "-U", "postgres", "-E", "UTF8", "--no-sync",
    )  # fmt: skip
    options = f"-k {folder} -c listen_addresses='' -c fsync=off"
    as_postgres(
        str(binaries / "pg_ctl"), "-D", f"{folder}/data", "-o", options,
        "-l", f"{folder}/server.log", "-w", "start",
    )  # fmt: skip
    try:
        as_postgres(str(binaries / "createdb"), "-h", str(folder), "kit")
        yield f"postgresql+psycopg://postgres@/kit?host={folder}"
    finally:
        as_postgres(
            str(binaries / "pg_ctl"), "-D", f"{folder}/data", "-m", "immediate", "stop"
        )
        shutil.rmtree(folder, ignore_errors=True)


def grade_command(place, cluster, out, folder=None, url=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if url:
        env["KIT_GRADEBOOK_URL"] = url
    command = [
        str(Path(sys.executable).with_name("autograder")),
        "grade",
        ASSIGNMENT,
        str(folder or place.submissions),
        "--out",
        str(place.base / out),
        "--scheduler",
        cluster.address,
        "--no-feedback",
    ]
    return subprocess.Popen(
        command,
        cwd=CHECKOUT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_coordinator_killed_then_run_again(place, cluster, database, request):
    url = request.getfixturevalue("postgres") if database == "postgresql" else None
    out = f"grading-coordinator-{database}"
    state = place.base / out / "state" / ASSIGNMENT
    first = grade_command(place, cluster, out, url=url)
    deadline = time.monotonic() + 300
    while len(list(state.glob("*.json"))) < 2:
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    kept = {p.stem for p in state.glob("*.json")}
    assert 2 <= len(kept) < len(BATCH)

    again = grade_command(place, cluster, out, url=url)
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output
    for name in BATCH:
        if name in kept:
            assert f"kept {name}:" in output, output
        else:
            assert f"graded {name}:" in output, output
    previous = os.environ.get("KIT_GRADEBOOK_URL")
    course = place.grading(out)
    if url:
        os.environ["KIT_GRADEBOOK_URL"] = url
    try:
        assert submissions_in_gradebook(course) == dict.fromkeys(BATCH, 1)
        assert gradebook_totals(course, BATCH) == {
            name: sum(place.expected[name].values()) for name in BATCH
        }
    finally:
        if previous is None:
            os.environ.pop("KIT_GRADEBOOK_URL", None)
        else:
            os.environ["KIT_GRADEBOOK_URL"] = previous
    rows = json.loads((place.base / out / f"grades-{ASSIGNMENT}.json").read_text())
    assert {row["student"]: row["scores"] for row in rows} == {
        name: place.expected[name] for name in BATCH
    }


def test_two_runs_at_once_never_mix(place, cluster):
    students = ["ann", "bob", "cy"]
    right = place.write(place.base / "run-right", dict.fromkeys(students, "solution"))
    wrong = place.write(
        place.base / "run-wrong", dict.fromkeys(students, "decoder-old-state")
    )
    out = "grading-two-runs"
    runs = [
        grade_command(place, cluster, out, folder=right[students[0]].parent),
        grade_command(place, cluster, out, folder=wrong[students[0]].parent),
    ]
    for run in runs:
        output, _ = run.communicate(timeout=600)
        assert run.returncode == 0, output
    course = place.grading(out)
    assert submissions_in_gradebook(course) == dict.fromkeys(students, 1)
    totals = gradebook_totals(course, students)
    digests = {
        "solution": {
            s: hashlib.sha256(right[s].read_bytes()).hexdigest() for s in students
        },
        "decoder-old-state": {
            s: hashlib.sha256(wrong[s].read_bytes()).hexdigest() for s in students
        },
    }
    for student in students:
        kept = json.loads(
            (course.grading_dir / "state" / ASSIGNMENT / f"{student}.json").read_text()
        )
        sample = next(n for n, d in digests.items() if d[student] == kept["digest"])
        # The gradebook, the state and the submitted notebook are one run's.
        assert kept["scores"] == place.expected[sample], student
        assert totals[student] == sum(place.expected[sample].values()), student
        submitted = nbformat.read(
            course.grading_dir / "submitted" / student / ASSIGNMENT / NOTEBOOK,
            as_version=4,
        )
        answer = nbformat.read((right if sample == "solution" else wrong)[student], 4)
        assert answers(submitted) == answers(answer), student


def answers(notebook):
    return {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
