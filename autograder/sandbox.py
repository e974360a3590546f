"""The kernel that runs a student's code while grading.

nbgrader runs a submission in a Jupyter kernel it starts from a kernel spec.
The pipeline writes its own spec, `kit-sandbox`, whose command wraps
ipykernel in operating-system limits:

* `prlimit --as`: a memory limit (`KIT_MEMORY_LIMIT_MB`, default 6144 MiB);
  past it, allocations fail with `MemoryError` in the cell that made them
  instead of the machine swapping or the OOM killer taking another process;
* `unshare --net --pid --fork --mount-proc --kill-child` (Linux, as root):
  no network at all (only a loopback that is down; the kernel talks to
  nbgrader through Unix sockets, `KernelManager.transport = "ipc"`), and its
  own process space, so every process the student's code starts, forked
  daemons included, dies with the kernel;
* `setpriv --pdeathsig KILL`: if nbgrader itself is killed (the
  whole-notebook time limit), the kernel goes with it.

Where a tool is missing or not permitted (not root, not Linux), that layer
is left out and `describe()` says so; grading still works.
"""

import functools
import json
import os
import shutil
import subprocess
import sys
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


def layers():
    """The isolation layers available on this machine, outermost first."""
    found = []
    if sys.platform.startswith("linux") and _works(*PARENT_DEATH):
        found.append(("parent death", list(PARENT_DEATH)))
    if sys.platform.startswith("linux") and _works(*NAMESPACES):
        found.append(("namespaces", list(NAMESPACES)))
    limit = memory_limit_mb()
    if limit > 0 and _works("prlimit", "--as=1073741824"):
        found.append(("memory", ["prlimit", f"--as={limit * 2**20}"]))
    return found


def kernel_argv():
    argv = [part for _, command in layers() for part in command]
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
    ]
    return "grading kernels: " + "; ".join(parts)


def write_kernelspec(data_dir):
    """Write the `kit-sandbox` kernel spec under `data_dir/kernels/`.

    Point `JUPYTER_PATH` at `data_dir` so that Jupyter finds it.
    """
    folder = Path(data_dir) / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": kernel_argv(),
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    return folder
