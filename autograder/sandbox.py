"""The kernel that runs a student's code while grading.

nbgrader runs a submission in a Jupyter kernel it starts from a kernel spec.
The pipeline writes its own spec, `kit-sandbox`, whose command wraps
ipykernel in operating-system limits:

* `prlimit --as`: a memory limit (`KIT_MEMORY_LIMIT_MB`, default 6144 MiB);
  past it, allocations fail with `MemoryError` in the cell that made them
  instead of the machine swapping or the OOM killer taking another process;
  with it `--fsize` (no file over `KIT_FILE_LIMIT_MB`, default 256 MiB, so
  a submission cannot fill the disk in one file) and `--nproc`
  (`KIT_PROCESS_LIMIT`, default 4096 processes and threads for the kernel's
  user: a fork bomb stops there);
* `unshare --net --pid --fork --mount-proc --kill-child` (Linux, as root):
  no network at all (only a loopback that is down; the kernel talks to
  nbgrader through Unix sockets, `KernelManager.transport = "ipc"`), and its
  own process space, so every process the student's code starts, forked
  daemons included, dies with the kernel;
* `setpriv --pdeathsig KILL`: if nbgrader itself is killed (the
  whole-notebook time limit), the kernel goes with it;
* `python -m autograder.jail` (inside the namespaces, as root): the
  solutions, tests, reference and judge code, the grading folder (other
  submissions, the gradebook) and the PostgreSQL sockets are hidden; `/tmp`
  and the home folder are private and fresh; the kernel runs as an
  unprivileged user (`KIT_SANDBOX_UID`, default 65534) that can write only to
  its own submission folder.

Where a tool is missing or not permitted (not root, not Linux), that layer
is left out and `describe()` says so; grading still works.
"""

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["KERNEL_NAME", "describe", "kernel_argv", "write_kernelspec"]

KERNEL_NAME = "kit-sandbox"
DEFAULT_MEMORY_MB = 6144


def memory_limit_mb():
    return int(os.environ.get("KIT_MEMORY_LIMIT_MB", DEFAULT_MEMORY_MB))


@functools.cache
def _works(*command):
    """Whether `command true` runs here (tools exist and are permitted)."""
    if not shutil.which(command[0]):
        return False
    try:
        done = subprocess.run(
            [*command, "true"], capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


NAMESPACES = ("unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child")
PARENT_DEATH = ("setpriv", "--pdeathsig", "KILL")
_PACKAGE = Path(__file__).resolve().parent


def sandbox_uid():
    return int(os.environ.get("KIT_SANDBOX_UID", "65534"))


def _course_folders(root):
    root = Path(root).resolve()
    return [root / "solutions", root / "tests", root / ".git", root / "build"]


def hidden_paths(course_root, grading_dir):
    """What a grading kernel must not see: the course's solutions, tests,
    history and builds, the grading folder, the reference and judge code,
    and, when the kit is installed from a course checkout (an editable
    install: a grading worker's course is a copy elsewhere), that checkout's
    own course folders too."""
    root = Path(course_root).resolve()
    paths = [
        *_course_folders(root),
        Path(grading_dir).resolve(),
        _PACKAGE / "judge",
        _PACKAGE / "reference",
        Path("/run/postgresql"),
        Path("/var/run/postgresql"),
    ]
    checkout = _PACKAGE.parent
    if (checkout / "nbgrader_config.py").is_file() and (
        checkout / "solutions"
    ).is_dir():
        paths += _course_folders(checkout)
    home = Path.home().resolve()
    if home != Path("/") and home not in root.parents and home != root:
        paths.append(home)  # the grader's own files (a venv there is exposed)
    extra = os.environ.get("KIT_SANDBOX_HIDE", "")
    paths += [Path(p) for p in extra.split(os.pathsep) if p]
    unique = dict.fromkeys(str(p) for p in paths if p.exists() and not p.is_symlink())
    return list(unique)


def exposed_paths():
    """What the kernel needs even inside a hidden folder: Python, the venv,
    the `autograder` package and its data (read-only)."""
    from autograder import data

    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix, str(_PACKAGE)}
    paths |= {str(Path(p).resolve()) for p in data.__path__}
    return sorted(str(Path(p).resolve()) for p in paths)


@functools.cache
def _jail_works():
    """Whether the jail can confine a process here (root, mount namespaces)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        try:
            done = subprocess.run(
                [
                    "unshare",
                    "--mount",
                    "--fork",
                    sys.executable,
                    "-m",
                    "autograder.jail",
                    "--hide",
                    scratch,
                    "--",
                    "true",
                ],
                cwd=scratch,
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
    return done.returncode == 0


def layers():
    """The isolation layers available on this machine, outermost first."""
    found = []
    if sys.platform.startswith("linux") and _works(*PARENT_DEATH):
        found.append(("parent death", list(PARENT_DEATH)))
    if sys.platform.startswith("linux") and _works(*NAMESPACES):
        found.append(("namespaces", list(NAMESPACES)))
    limit = memory_limit_mb()
    if limit > 0 and _works("prlimit", "--as=1073741824"):
        files = int(os.environ.get("KIT_FILE_LIMIT_MB", "256"))
        processes = int(os.environ.get("KIT_PROCESS_LIMIT", "4096"))
        found.append(
            (
                "memory",
                [
                    "prlimit",
                    f"--as={limit * 2**20}",
                    f"--fsize={files * 2**20}",
                    f"--nproc={processes}",
                ],
            )
        )
    return found


def kernel_argv(hide=()):
    found = layers()
    argv = [part for _, command in found for part in command]
    names = {name for name, _ in found}
    if "namespaces" in names and _jail_works():
        argv += [sys.executable, "-m", "autograder.jail", "--user", str(sandbox_uid())]
        for path in hide:
            argv += ["--hide", path]
        for path in exposed_paths():
            argv += ["--expose", path]
        argv.append("--")
    return [
        *argv,
        sys.executable,
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]


def describe():
    """One line: which limits the grading kernels run under."""
    names = {name for name, _ in layers()}
    parts = [
        "no network, own process space"
        if "namespaces" in names
        else "network and processes NOT isolated (needs Linux, root and unshare)",
        f"memory limit {memory_limit_mb()} MiB"
        if "memory" in names
        else "NO memory limit (needs prlimit)",
        "killed with the grader"
        if "parent death" in names
        else "not tied to the grader's life (needs setpriv)",
        f"private files, runs as uid {sandbox_uid()}"
        if "namespaces" in names and _jail_works()
        else "files NOT isolated: the kernel sees the course (needs root and "
        "mount namespaces)",
    ]
    return "grading kernels: " + "; ".join(parts)


def write_kernelspec(data_dir, hide=()):
    """Write the `kit-sandbox` kernel spec under `data_dir/kernels/`.

    Point `JUPYTER_PATH` at `data_dir` so that Jupyter finds it. `hide`: the
    paths the kernel must not see (`hidden_paths`).
    """
    folder = Path(data_dir) / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": kernel_argv(hide),
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    # Whole or not at all: graders started at once read it while it is written.
    partial = folder / f".kernel.json.{os.getpid()}"
    partial.write_text(json.dumps(spec, indent=1) + "\n")
    os.replace(partial, folder / "kernel.json")
    return folder
