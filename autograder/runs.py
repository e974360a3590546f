"""A grading run's own folder: the only place a kernel and the grader share.

Each submission is graded in a run folder of its own, made fresh by the
grading unit (`autograder.unit`) under `/tmp` and removed afterwards:

```
/tmp/kit-run-XXXXXXXX/        root, 0710 (group: the kernel's), never listed
├── cases/    root, 0750: the running test's cases, written by the grader
│             just before the test cell and deleted after it; read-only
│             in the kernel's view
├── ipc/      the kernel's Unix sockets (the one folder the kernel owns)
├── work/     the kernel's working folder: in the sandbox a private tmpfs
│             is mounted over it, so what the kernel writes never lands here
└── journal.json   root, 0600: each test's verdict, as soon as it is decided
```

nbgrader's own files (submitted and autograded notebooks, feedback, the
gradebook) stay in the grading folder, which the kernel cannot see at all.
Nothing the grader opens lies in a folder the kernel can write, except
`ipc/` (sockets it connects to by name in a folder whose name the kernel
cannot learn beforehand) and, when there is no sandbox, `work/`, which is
removed with `safefs.remove_tree` (no link followed).

Several graders on one machine (several batches, or Dask workers) each have
their own run folders: they never share sockets or files.
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path

from autograder import safefs

__all__ = ["RUN_ENV", "RunFolder"]

RUN_ENV = "KIT_RUN_DIR"


def _sandbox_gid():
    """The kernel's group when kernels run as another user (as root)."""
    if os.geteuid() != 0 or os.environ.get("KIT_SANDBOX", "1") == "0":
        return None
    return int(os.environ.get("KIT_SANDBOX_UID", "65534"))


class RunFolder:
    """`cases/`, `ipc/`, `work/` and `journal.json` of one grading run."""

    def __init__(self, path):
        self.path = Path(path)

    cases = property(lambda self: self.path / "cases")
    ipc = property(lambda self: self.path / "ipc")
    work = property(lambda self: self.path / "work")
    journal = property(lambda self: self.path / "journal.json")

    @classmethod
    def create(cls, base=None):
        """A fresh run folder under `base` (default `KIT_RUN_BASE` or /tmp:
        a short path, as Unix socket paths are short)."""
        base = base or os.environ.get("KIT_RUN_BASE") or "/tmp"
        path = Path(tempfile.mkdtemp(prefix="kit-run-", dir=base))
        gid = _sandbox_gid()
        for name in ("cases", "ipc", "work"):
            (path / name).mkdir(mode=0o700)
        if gid is not None:
            # The kernel's user may pass through the run folder and read the
            # cases; other users of the machine may not.
            os.chown(path, 0, gid)
            os.chmod(path, 0o710)
            os.chown(path / "cases", 0, gid)
            os.chmod(path / "cases", 0o750)
        return cls(path)

    @classmethod
    def from_env(cls):
        """The run folder the grading unit made, or None."""
        value = os.environ.get(RUN_ENV)
        if value and Path(value).is_dir():
            return cls(value)
        return None

    def case_mode(self):
        """Mode (and group) of a case file: readable by the kernel's user."""
        return (0o640, _sandbox_gid()) if _sandbox_gid() is not None else (0o600, None)

    def clear_cases(self):
        """Delete every case file (the folder is the grader's own)."""
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.cases):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def write_journal(self, data):
        tmp = self.journal.with_name("journal.json.partial")
        handle = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600
        )
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self.journal)

    def read_journal(self):
        """What the grader decided in this run (empty when it decided nothing)."""
        try:
            data = safefs.read_regular(self.journal, 16 * 2**20)
            journal = json.loads(data.decode("utf-8"))
        except (OSError, ValueError):
            return {"tests": {}, "notes": [], "seconds": []}
        journal.setdefault("tests", {})
        journal.setdefault("notes", [])
        journal.setdefault("seconds", [])
        return journal

    def remove(self):
        """Remove the folder; nothing in it is followed (links are unlinked)."""
        safefs.remove_path(self.path)
