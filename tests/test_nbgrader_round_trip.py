"""The nbgrader way, end to end, as an instructor and students do it.

With nbgrader's own commands and a local exchange folder: the instructor
releases Assignment 1, three students fetch it, solve it (one correctly, one
with a bug, one late) and submit; the instructor collects, grades with the
kit (`autograder grade A --collected`), presses the formgrader's Autograde
button in a real browser (headless Chromium), reviews a submission in the
formgrader (a comment and extra credit), generates and releases feedback;
each student fetches their feedback. Checked on the way: the collected
submissions are never rewritten (their timestamps decide lateness, their
secrets let `fetch_feedback` find the feedback), the late submission is
marked as nbgrader marks it, and the Autograde button grades in the sandbox
kernel with the kit's verdicts.
"""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.pipeline import Course

pytestmark = pytest.mark.slow

ASSIGNMENT = "01_attention_seq2seq"
NOTEBOOK = "attention_seq2seq.ipynb"
COURSE_ID = "attention-course-kit"
BIN = Path(sys.executable).parent
SPY = (
    "import os\n"
    "print('SPY uid', os.getuid())\n"
    "try:\n"
    "    print('SPY grading folder', sorted(os.listdir({folder!r})))\n"
    "except OSError as error:\n"
    "    print('SPY grading folder', type(error).__name__)\n"
)
CHROMIUM = "/usr/bin/chromium"


def run(command, cwd, env, check=True):
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, command))} failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def digest(folder):
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Classroom:
    """A course root, an exchange, a grading folder and students' homes."""

    def __init__(self, tmp):
        self.course = Course(grading_dir=tmp / "grading")
        self.root = self.course.root
        self.grading = self.course.grading_dir
        self.exchange = tmp / "exchange"
        self.release = tmp / "release"
        self.homes = tmp / "homes"
        self.exchange.mkdir()
        self.exchange.chmod(0o777)
        self.env = {
            **os.environ,
            "KIT_GRADING_DIR": str(self.grading),
            "KIT_EXCHANGE": str(self.exchange),  # nbgrader_config.py reads it
            "PATH": os.pathsep.join([str(BIN), os.environ["PATH"]]),
        }
        self.exchange_args = [f"--CourseDirectory.release_directory={self.release}"]

    def instructor(self, *args, check=True):
        return run(
            [BIN / "nbgrader", *args, *self.exchange_args],
            self.root,
            self.env,
            check,
        )

    def student(self, name, *args):
        """nbgrader as the student `name` (who, on a shared machine, would
        be that user: here `--student` says it)."""
        home = self.homes / name
        home.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "USER": name, "LOGNAME": name, "HOME": str(home)}
        env.pop("KIT_GRADING_DIR")
        env.pop("KIT_EXCHANGE")  # a student's client names the exchange itself
        return run(
            [
                BIN / "nbgrader",
                *args,
                f"--course={COURSE_ID}",
                f"--Exchange.root={self.exchange}",
                *([f"--student={name}"] if args[0] != "fetch_assignment" else []),
            ],
            home,
            env,
        )

    def solve(self, name, sample, extra_cell=""):
        """Write the sample's answers into the student's fetched notebook."""
        path = self.homes / name / ASSIGNMENT / NOTEBOOK
        fetched = nbformat.read(path, as_version=4)
        sample = next(s for s in self.course.samples(ASSIGNMENT) if s.name == sample)
        answers = self.course.make_submission(ASSIGNMENT, sample)
        by_id = {
            c.metadata.get("nbgrader", {}).get("grade_id"): c for c in answers.cells
        }
        for cell in fetched.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.metadata.get("nbgrader", {}).get("solution"):
                cell.source = by_id[grade_id].source
        if extra_cell:
            fetched.cells.append(nbformat.v4.new_code_cell(extra_cell))
        nbformat.write(fetched, path)


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    room = Classroom(tmp_path_factory.mktemp("classroom"))
    room.instructor("generate_assignment", ASSIGNMENT, "--force")
    room.instructor("release_assignment", ASSIGNMENT)
    for name, sample in [("alice", "solution"), ("bob", "luong-no-mask")]:
        room.student(name, "fetch_assignment", ASSIGNMENT)
        room.solve(name, sample, SPY.format(folder=str(room.grading)) * (name == "bob"))
        room.student(name, "submit", ASSIGNMENT)
    # the due date passes; carol submits after it
    time.sleep(1.1)
    due = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    room.instructor("db", "assignment", "add", ASSIGNMENT, f"--duedate={due}")
    time.sleep(1.1)
    room.student("carol", "fetch_assignment", ASSIGNMENT)
    room.solve("carol", "solution")
    room.student("carol", "submit", ASSIGNMENT)
    room.instructor("collect", ASSIGNMENT)
    room.collected = digest(room.grading / "submitted")
    done = run(
        [
            BIN / "autograder",
            "grade",
            ASSIGNMENT,
            "--collected",
            "--out",
            str(room.grading),
            "--workers",
            "2",
            "--quiet",
        ],
        room.root,
        room.env,
    )
    room.grade_output = done.stdout
    return room


def submission(room, student):
    with room.course.gradebook() as gradebook:
        found = gradebook.find_submission(ASSIGNMENT, student)
        notebook = found.notebooks[0]
        return {
            "timestamp": found.timestamp,
            "late": found.total_seconds_late,
            "score": found.score,
            "penalty": notebook.late_submission_penalty,
            "id": notebook.id,
        }


def test_collected_submissions_are_graded_where_they_lie(classroom):
    room = classroom
    # nothing in submitted/ was rewritten: notebooks, timestamps, secrets
    assert digest(room.grading / "submitted") == room.collected
    assert any(name.endswith("submission_secret.txt") for name in room.collected)
    from nbgrader.utils import parse_utc

    for student, total in [("alice", 17), ("bob", 14), ("carol", 17)]:
        folder = room.grading / "submitted" / student / ASSIGNMENT
        stamp = parse_utc((folder / "timestamp.txt").read_text().strip())
        found = submission(room, student)
        assert found["timestamp"] == stamp.replace(tzinfo=None), student
        assert found["score"] == total, (student, room.grade_output)
        # nbgrader's later steps find the timestamp and the secret
        for kind in ("autograded", "feedback"):
            copy = room.grading / kind / student / ASSIGNMENT
            for name in ("timestamp.txt", "submission_secret.txt"):
                assert (copy / name).read_bytes() == (folder / name).read_bytes()
    assert submission(room, "alice")["late"] == 0
    assert submission(room, "bob")["late"] == 0
    assert submission(room, "carol")["late"] > 0  # marked late, as nbgrader does


@pytest.fixture(scope="module")
def formgrader(classroom):
    """A Jupyter server with nbgrader's formgrader on the course, and a
    headless Chromium page logged in to it."""
    if not Path(CHROMIUM).exists():
        pytest.skip("no /usr/bin/chromium (tools/system-packages.sh installs it)")
    from playwright.sync_api import sync_playwright

    room = classroom
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "kit-test-token"
    server = subprocess.Popen(
        [
            BIN / "jupyter",
            "server",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={room.root}",
        ],
        cwd=room.root,
        env=room.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            page.goto(f"{base}/formgrader?token={token}")
            yield page, base
            browser.close()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_formgrader_autograde_button_grades_in_the_sandbox(classroom, formgrader):
    room = classroom
    page, base = formgrader
    autograded = room.grading / "autograded" / "bob" / ASSIGNMENT / NOTEBOOK
    before = nbformat.read(autograded, as_version=4)
    autograded.unlink()
    page.goto(f"{base}/formgrader/manage_submissions/{ASSIGNMENT}")
    row = page.locator("tr", has_text="bob")
    row.locator(".autograde a").click()
    page.wait_for_selector("#success-modal, #error-modal", timeout=300_000)
    assert page.locator("#success-modal").count() == 1, page.content()[-2000:]
    after = nbformat.read(autograded, as_version=4)
    # the kit's verdicts, the same as `autograder grade` gave
    assert submission(room, "bob")["score"] == 14

    def verdicts(notebook):
        found = {}
        for cell in notebook.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            if grade_id.startswith(("test_", "hidden_")):
                errors = [o for o in cell.outputs if o.output_type == "error"]
                found[grade_id] = errors[0].ename if errors else "passed"
        return found

    assert verdicts(after) == verdicts(before)
    assert verdicts(after)["test_luong_attention"] == "CheckFailed"
    # ... decided in the sandbox kernel: another user, the grading folder hidden
    spy = "".join(o.get("text", "") for o in after.cells[-1].outputs)
    assert "SPY uid 65534" in spy or os.geteuid() != 0, spy
    hidden = ("SPY grading folder []", "SPY grading folder FileNotFoundError")
    assert any(h in spy for h in hidden) or os.geteuid() != 0, spy
    assert not page.errors


def test_review_and_feedback_reach_the_students(classroom, formgrader):
    room = classroom
    page, base = formgrader
    bob = submission(room, "bob")
    page.goto(f"{base}/formgrader/submissions/{bob['id']}/")
    page.wait_for_selector(".comment")
    comment = "Look at how the mask reaches your softmax (reviewed by hand)."
    page.locator(".comment").first.fill(comment)
    page.locator(".extra-credit").first.fill("1")
    page.locator(".extra-credit").first.press("Tab")

    def saved():
        with room.course.gradebook() as gradebook:
            found = gradebook.find_submission(ASSIGNMENT, "bob")
            comments = [c.comment for n in found.notebooks for c in n.comments]
            return found.score, comment in comments

    deadline = time.monotonic() + 30  # the formgrader saves on change, by ajax
    while saved() != (15, True) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert saved() == (15, True)  # 14 and the extra credit; the comment
    room.instructor("generate_feedback", ASSIGNMENT, "--force")
    room.instructor("release_feedback", ASSIGNMENT)
    for student in ("alice", "bob", "carol"):
        room.student(student, "fetch_feedback", ASSIGNMENT)
        pages = list((room.homes / student / ASSIGNMENT / "feedback").rglob("*.html"))
        assert len(pages) == 1, student
        text = pages[0].read_text(encoding="utf-8")
        if student == "bob":
            assert comment in text
            assert "values_mask" in text  # the kit's verdict message
        else:
            assert "17" in text
    shutil.rmtree(room.homes / "bob" / ASSIGNMENT / "feedback")
