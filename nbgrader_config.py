"""nbgrader configuration of the course (nbgrader reads it from this folder).

Paths: `solutions/` is the source directory, `assignments/` the release
directory. Submissions, autograded notebooks, feedback and the gradebook go
under the grading directory: `$KIT_GRADING_DIR`, by default `build/grading/`
(`autograder grade --out DIR` and `make demo` set it). Every setting below
answers a way nbgrader loses a correct student's points; see
docs/instructor-guide.md.
"""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

HERE = os.path.dirname(os.path.abspath(__file__))
GRADING = os.path.abspath(
    os.environ.get("KIT_GRADING_DIR", os.path.join(HERE, "build", "grading"))
)
os.makedirs(GRADING, exist_ok=True)  # SQLite does not create its folder
# However nbgrader is started (the kit's engine, `nbgrader autograde` typed by
# hand, the formgrader's Autograde button), the kit's grader knows the course
# and its grading folder: it grades in the sandbox kernel, which hides both.
os.environ.setdefault("KIT_COURSE_ROOT", HERE)
os.environ.setdefault("KIT_GRADING_DIR", GRADING)

c.CourseDirectory.root = HERE
c.CourseDirectory.course_id = "attention-course-kit"
# The exchange folder that `nbgrader release_assignment`, `collect` and
# `release_feedback` use (students' clients must name the same one: on
# JupyterHub, in the global /etc/jupyter/nbgrader_config.py). nbgrader's
# default unless `KIT_EXCHANGE` says otherwise.
c.Exchange.root = os.environ.get("KIT_EXCHANGE", "/srv/nbgrader/exchange")
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = os.path.join(GRADING, "submitted")
c.CourseDirectory.autograded_directory = os.path.join(GRADING, "autograded")
c.CourseDirectory.feedback_directory = os.path.join(GRADING, "feedback")
c.CourseDirectory.db_url = os.environ.get(
    "KIT_GRADEBOOK_URL", "sqlite:///" + os.path.join(GRADING, "gradebook.db")
)
# The jupytext sources (*.py) and the sample-submission specs stay out of
# what students receive: only the notebook is released.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints",
    "*.pyc",
    "__pycache__",
    "feedback",
    "*.py",
    "*.toml",
]

# A deleted test cell is put back and graded (nbgrader's default gives 0).
c.OverwriteCells.add_missing_cells = True

# Student code runs in the `kit-sandbox` kernel that `autograder grade`
# writes (no network, own process space, memory limit: autograder/sandbox.py),
# reached through Unix sockets since the kernel has no network.
if os.environ.get("KIT_KERNEL"):
    c.Execute.kernel_name = os.environ["KIT_KERNEL"]
    c.KernelManager.transport = "ipc"
    # Socket files by absolute path (nbgrader and the kernel run in different
    # folders), in a folder of this grading run's own: graders running at the
    # same time never see, reuse or take each other's sockets. The grading
    # unit makes the run folder (`KIT_RUN_DIR`) and removes it afterwards;
    # an nbgrader started some other way gets a fresh folder of its own.
    # Short, because a Unix socket path has at most 107 characters.
    import atexit
    import tempfile

    RUN = os.environ.get("KIT_RUN_DIR")
    if RUN:
        IPC = os.path.join(RUN, "ipc")
        os.makedirs(IPC, mode=0o700, exist_ok=True)
    else:
        from autograder import safefs

        IPC = tempfile.mkdtemp(prefix="kit-ipc-", dir="/tmp")
        atexit.register(safefs.remove_tree, IPC)
    c.KernelManager.ip = os.path.join(IPC, "kernel")

# Verdicts are decided in nbgrader's process, not in the student's kernel:
# `TrustedExecute` runs the notebook like nbgrader's `Execute` (whose settings
# below it inherits) and judges each graded test from the outputs the kernel
# recorded (autograder/trusted.py).
# `KIT_PLAIN_NBGRADER=1` keeps nbgrader's own `Execute` (the checks then decide
# in the kernel): only the benchmark's baseline uses it.
if os.environ.get("KIT_PLAIN_NBGRADER") != "1":
    c.Autograde.autograde_preprocessors = [
        "autograder.trusted.TrustedExecute",
        "nbgrader.preprocessors.IgnorePattern",
        "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput",
        "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties",
        "nbgrader.preprocessors.CheckCellMetadata",
    ]

# A graded kernel is not asked to clean up after the last cell (atexit hooks
# of TensorFlow take about a second): it is killed, and its sandbox with it.
c.Execute.shutdown_kernel = "immediate"
# Per-cell limit; the whole notebook's limit is set by `autograder grade`.
c.Execute.timeout = int(os.environ.get("KIT_CELL_TIMEOUT", "60"))
# C-level log lines (TensorFlow's C++ logging) go to the grader's console,
# never into a graded cell's stderr, where nbgrader would zero the cell.
c.Execute.extra_arguments = ["--IPKernelApp.capture_fd_output=False"]
# Python-level lines TensorFlow is known to print on import: ignored only when
# a stderr output consists of nothing but such lines.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = (
    r"\A(?:(?:[IWE]\d{4} [^\n]*"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called[^\n]*"
    r"|[^\n]*oneDNN custom operations are on[^\n]*"
    r"|[^\n]*cudart_stub\.cc[^\n]*)\n?)+\Z"
)

# Feedback shows no hidden test code and no tracebacks (server paths).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "autograder.feedback.CleanFeedback",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
