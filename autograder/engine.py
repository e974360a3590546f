"""Class-scale grading on Dask: one task per submission, on warm workers.

The engine is a thin layer over the grading unit (`autograder.unit`), which
knows nothing of Dask:

* `Engine()` starts a `LocalCluster` of worker processes (one thread each,
  each pinned to a core of its own); `Engine(scheduler="tcp://host:8786")`
  uses an existing cluster (workers started with `dask worker`, by
  dask-jobqueue on Slurm/PBS, or by dask-kubernetes).
* Workers share no file system with the coordinator. The course a worker
  needs (nbgrader's configuration, the assignment's source and released
  notebooks, the trusted facts and expected outputs of this grading folder's
  draw) reaches it once, through a `WorkerPlugin`, with a fingerprint; a
  worker whose kit differs from the coordinator's is refused with a message
  that says how. Each task carries the submission's bytes and returns
  everything the coordinator keeps: the points of every graded cell, the
  notes, the autograded notebook, the feedback page, the log and timings.
* A worker grades in-process (nbgrader and the grader's code stay loaded),
  one submission at a time, each in a fresh sandboxed kernel and a run
  folder of its own; nothing of one submission stays for the next. A
  submission that runs past its hard limit makes its worker exit (Dask
  restarts it and may retry elsewhere); one that stops its worker again
  and again scores 0 with a note (`KilledWorker`).
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from distributed import WorkerPlugin

__all__ = ["Engine", "GradingTask", "course_payload", "default_workers", "shared"]

PLUGIN_PREFIX = "attention-kit-course-"
#: Memory a worker needs, with headroom: measured by `benchmarks/class_scale.py`
#: (sampled every 0.2 s over all three assignments), a grading kernel peaks at
#: 0.90 GiB and a worker with its kernel at 1.15 GiB.
KERNEL_MEMORY_GB = 1.5
#: How often a submission may stop its worker before it scores 0.
ALLOWED_FAILURES = 2


def kit_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attention-course-kit")
    except PackageNotFoundError:  # pragma: no cover - always installed
        return "unknown"


def default_workers():
    """As many workers as the machine has cores and memory for (a grading
    kernel needs about `KERNEL_MEMORY_GB`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f)
        available = int(fields["MemAvailable"].split()[0]) / 2**20  # GiB
    except (OSError, KeyError, ValueError):
        available = KERNEL_MEMORY_GB * cores
    return max(1, min(cores, int(available // KERNEL_MEMORY_GB)))


#: The coordinator's grading settings a task carries to its worker.
SETTINGS = (
    "KIT_CELL_TIMEOUT",
    "KIT_NOTEBOOK_TIMEOUT",
    "KIT_MEMORY_LIMIT_MB",
    "KIT_FILE_LIMIT_MB",
    "KIT_PROCESS_LIMIT",
    "KIT_SANDBOX",
    "KIT_SANDBOX_UID",
    "KIT_SANDBOX_HIDE",
    "KIT_PLAIN_NBGRADER",
    "KIT_HARD_LIMIT",
)


def current_settings():
    return {key: os.environ[key] for key in SETTINGS if key in os.environ}


@dataclasses.dataclass
class GradingTask:
    """One submission, as it travels to a worker."""

    assignment: str
    student: str
    notebook: str  # the inspected notebook, as JSON
    timeout: int
    course_key: str = ""  # which course payload (plugin) it needs
    settings: dict = dataclasses.field(default_factory=current_settings)


# ------------------------------------------------------------------ the course


def course_payload(course, assignment):
    """What a worker needs of the course to grade `assignment`, as
    `({relative path: bytes}, meta)`; the meta's `fingerprint` names it."""
    from autograder import trusted

    files = {"nbgrader_config.py": (course.root / "nbgrader_config.py").read_bytes()}
    for source in course.sources(assignment):
        relative = source.relative_to(course.root)
        files[str(relative)] = source.read_bytes()
    released = course.release_dir / assignment / course.notebook_name(assignment)
    files[str(released.relative_to(course.root))] = released.read_bytes()
    draw = trusted.case_draw(course.grading_dir / "trusted")
    base = course.grading_dir / "trusted"
    verdicts = trusted.trusted_dir(base)
    for path in sorted(verdicts.glob(f"{assignment}--*.json")):
        files[f"trusted/{path.name}"] = path.read_bytes()
    facts = json.loads(
        (
            verdicts
            / f"{assignment}--{Path(course.notebook_name(assignment)).stem}.json"
        ).read_text(encoding="utf-8")
    )
    for calls in facts["tests"].values():
        for check_name, which, _ in calls:
            trusted.expectations(check_name, which, base, draw)  # cached
            name = f"{check_name}--{which}.npz"
            files[f"trusted/draw-{draw}/{name}"] = (
                verdicts / f"draw-{draw}" / name
            ).read_bytes()
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    meta = {
        "assignment": assignment,
        "draw": draw,
        "kit_version": kit_version(),
        "kit_fingerprint": trusted.fingerprint(),
        "fingerprint": digest.hexdigest()[:16],
    }
    return files, meta


class CourseOnWorker(WorkerPlugin):
    """A `WorkerPlugin` that gives a worker the course, once, and refuses a
    worker whose kit differs from the coordinator's."""

    idempotent = True

    def __init__(self, files, meta, pin=False):
        self.files = files
        self.meta = meta
        self.pin = pin
        self.folder = None
        self.course = None
        self.lock = None  # made on the worker (a plugin travels pickled)
        self.prepared = False
        self.refusal = ""  # why this worker refused the course

    @property
    def name(self):
        return PLUGIN_PREFIX + self.meta["fingerprint"]

    def setup(self, worker):
        from autograder import trusted

        mine = {"kit_version": kit_version(), "kit_fingerprint": trusted.fingerprint()}
        theirs = {k: self.meta[k] for k in mine}
        if mine != theirs:
            self.refusal = (
                f"worker {worker.address} has attention-course-kit "
                f"{mine['kit_version']} (code {mine['kit_fingerprint']}), the "
                f"coordinator {theirs['kit_version']} (code "
                f"{theirs['kit_fingerprint']}): install the same version of "
                "the kit on every worker (pip install the same wheel or checkout)"
            )
            raise RuntimeError(self.refusal)
        if (
            self.pin
            and isinstance(worker.name, int)
            and hasattr(os, "sched_setaffinity")
        ):
            cores = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cores[worker.name % len(cores)]})
        import warnings

        from sqlalchemy.exc import SAWarning

        # nbgrader's own rows trip SQLAlchemy's autoflush warning; not ours.
        warnings.filterwarnings("ignore", category=SAWarning)
        self.lock = threading.Lock()
        self.folder = Path(tempfile.mkdtemp(prefix="kit-worker-"))
        root = self.folder / "course"
        verdicts = self.folder / "grading" / "trusted" / trusted.fingerprint()
        for name, data in self.files.items():
            if name.startswith("trusted/"):
                target = verdicts / name[len("trusted/") :]
            else:
                target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (self.folder / "grading" / "trusted" / "draw").write_text(
            f"{self.meta['draw']}\n"
        )
        (root / "assignments").mkdir(exist_ok=True)

    def teardown(self, worker):
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def ready_course(self):
        """The worker's own course folder, prepared for grading (once)."""
        from autograder.pipeline import Course

        with self.lock:
            if not self.prepared:
                grading = self.folder / "grading"
                self.course = Course(  # a scratch gradebook of the worker's own
                    self.folder / "course",
                    grading,
                    gradebook_url="sqlite:///" + str(grading / "gradebook.db"),
                )
                with _draw(self.meta["draw"]):
                    self.course.prepare_grading([self.meta["assignment"]])
                self.prepared = True
        return self.course


@contextlib.contextmanager
def _draw(draw):
    saved = os.environ.get("KIT_CASE_DRAW")
    os.environ["KIT_CASE_DRAW"] = str(draw)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("KIT_CASE_DRAW", None)
        else:
            os.environ["KIT_CASE_DRAW"] = saved


def _watchdog(seconds):
    """Make this worker exit if a submission runs past its hard limit (the
    notebook's budget is enforced inside; this is the last resort): Dask
    restarts the worker and the scheduler counts the failure."""
    done = threading.Event()

    def watch():
        if not done.wait(seconds):
            os._exit(70)

    threading.Thread(target=watch, daemon=True).start()
    return done


def hard_limit(task):
    """Seconds after which a submission stops its worker: the notebook's
    budget and a grace for nbgrader's own work, or `KIT_HARD_LIMIT`."""
    from autograder import unit

    try:
        return float(task.settings["KIT_HARD_LIMIT"])
    except (KeyError, ValueError):
        return task.timeout + unit.HARD_LIMIT_GRACE


def grade_on_worker(task):
    """The task: grade one submission on this worker, return what the
    coordinator keeps."""
    import nbformat
    from distributed import get_worker

    from autograder import sandbox, unit

    plugin = get_worker().plugins.get(PLUGIN_PREFIX + task.course_key)
    if plugin is None:
        raise RuntimeError(
            f"worker {get_worker().address} has no course {task.course_key} "
            "(its kit may differ from the coordinator's: see its log)"
        )
    if plugin.refusal:  # a worker that joined later with another kit
        raise RuntimeError(plugin.refusal)
    course = plugin.ready_course()
    started = time.monotonic()
    done = _watchdog(hard_limit(task))
    settings = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    settings.update(task.settings, KIT_CASE_DRAW=str(plugin.meta["draw"]))
    try:
        with unit.environment(settings):
            course.write_kernel()  # the sandbox's limits as the coordinator set them
            result = unit.grade_submission(
                course,
                task.assignment,
                task.student,
                nbformat.reads(task.notebook, as_version=4),
                task.timeout,
                in_process=True,
            )
            return unit.collect(course, task.assignment, task.student, result) | {
                "worker": get_worker().address,
                "sandbox": sandbox.describe(),
                "worker_seconds": time.monotonic() - started,
            }
    finally:
        done.set()


# ------------------------------------------------------------------ the engine


class Engine:
    """Where submissions are graded: a local cluster, or an existing one."""

    def __init__(self, workers=None, scheduler=None, pin=True, quiet=True):
        self.workers = workers or default_workers()
        self.scheduler = scheduler
        self.pin = pin and scheduler is None
        self.quiet = quiet
        self.cluster = None
        self.client = None
        self.plugins = {}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def start(self):
        import dask
        from distributed import Client, LocalCluster

        dask.config.set(
            {
                "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                "distributed.worker.daemon": False,  # workers start kernels
                "distributed.scheduler.worker-saturation": 1.0,
            }
        )
        if self.scheduler:
            self.client = Client(self.scheduler)
        else:
            import logging

            self.cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=0,  # a kernel's memory is limited by the sandbox
                dashboard_address=":0",
                silence_logs=logging.ERROR if self.quiet else logging.WARNING,
            )
            self.client = Client(self.cluster)
        return self

    def close(self):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    @property
    def dashboard(self):
        return getattr(self.client, "dashboard_link", "") if self.client else ""

    def worker_count(self):
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def prepare(self, course, assignment):
        """Give every worker (and every worker that joins later) the course;
        return its key."""
        files, meta = course_payload(course, assignment)
        key = meta["fingerprint"]
        if key not in self.plugins:
            plugin = CourseOnWorker(files, meta, pin=self.pin)
            try:
                self.client.register_plugin(plugin, name=plugin.name)
            except RuntimeError as error:
                if "attention-course-kit" not in str(error):
                    raise
                from autograder.pipeline import PipelineError

                raise PipelineError(f"refused: {error}") from None
            self.plugins[key] = plugin
        return key

    def grade(self, tasks):
        """Yield `(task, result dict or None, error or None)` as each
        submission finishes, whatever the order."""
        from distributed import as_completed

        futures = {}
        for task in tasks:
            digest = hashlib.sha256(task.notebook.encode()).hexdigest()[:8]
            future = self.client.submit(
                grade_on_worker,
                task,
                key=f"grade-{task.assignment}-{task.student}-{digest}",
                pure=False,
                retries=1,
            )
            futures[future] = task
        for future in as_completed(futures):
            task = futures[future]
            try:
                yield task, future.result(), None
            except Exception as error:  # KilledWorker, or the task failed twice
                yield task, None, error
            finally:
                future.release()


_SHARED = {}


def shared(workers=None, scheduler=None):
    """One engine per process and settings, started when first asked for and
    closed when the process exits (the command line grades several catalogs
    with one cluster; the tests share one)."""
    import atexit

    key = (workers, scheduler)
    if key not in _SHARED:
        engine = Engine(workers=workers, scheduler=scheduler).start()
        _SHARED[key] = engine
        atexit.register(engine.close)
    return _SHARED[key]
