"""The last step before a grading kernel starts: a private file system view
and an unprivileged user.

`python -m autograder.jail --hide PATH ... --user UID -- KERNEL ARGV` runs as
root inside the kernel's own mount namespace (`unshare`, see
`autograder.sandbox`) and, before it becomes the kernel:

1. covers every `--hide` path: a folder with an empty read-only tmpfs, a file
   with `/dev/null`. The sandbox hides the solutions, the tests, the
   reference and judge packages, the whole grading folder (other students'
   submissions, the gradebook, the cached expected outputs) and the
   PostgreSQL socket folder;
2. gives the kernel fresh, private `/tmp`, `/var/tmp` and `/dev/shm`, and a
   home folder inside that `/tmp`, so nothing one submission writes can be
   seen by another;
3. puts back, read-only, the `--expose` folders a hidden folder contains
   (the Python installation when it lives in the grader's hidden home) and
   the grading run's `cases/` folder (the grader's, where it writes the
   running test's cases), and, writable, only the folder of the kernel's
   Unix sockets (the run's own `ipc/`);
4. gives a grading kernel a working folder of its own: a fresh tmpfs over
   the run's `work/`, which no grader process ever opens and which vanishes
   with the kernel (outside a grading run, the folder the kernel was started
   in is put back as it is);
5. hands its own folders to `--user` (default 65534, "nobody") and drops to
   that user with no supplementary groups and `no_new_privs`, so the kernel
   can write nowhere else and cannot undo the mounts.

Without root, or where mounts are not permitted, it starts the kernel
unchanged and says so on the grader's console (`sandbox.describe()` reports
the same before grading).
"""

import argparse
import ctypes
import json
import os
import signal
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source, target, fstype=None, flags=0, data=None):
    def enc(value):
        return None if value is None else value.encode()

    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {target}: {os.strerror(error)}")


def _tmpfs(target, mode="755", size="16m"):
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode={mode}")


def _chown_tree(path, uid, gid):
    os.chown(path, uid, gid)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                os.chown(full, uid, gid)


def _connection(argv):
    """Index and path of the connection file argument (`-f PATH`)."""
    for i, part in enumerate(argv[:-1]):
        if part == "-f":
            return i + 1, argv[i + 1]
    return None, None


def _expose(path, handle):
    """Bind `handle`'s folder at `path`, read-only."""
    os.makedirs(path, exist_ok=True)
    _mount(f"/proc/self/fd/{handle}", path, flags=MS_BIND | MS_REC)
    _mount(None, path, flags=MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _read_font_cache():
    folder = os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "matplotlib",
    )
    found = {}
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.endswith(".json"):
                with open(os.path.join(folder, name), "rb") as f:
                    found[name] = f.read()
    return found


#: What of the grader's environment a kernel keeps: locale, the Python and
#: TensorFlow settings, the kernel's own. Everything else (the gradebook's
#: URL and its password, the grading and course folders, tokens, keys, the
#: grader's credentials) never reaches student code.
_ENV_KEPT = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TERM",
        "TZ",
        "SHELL",
        "PYTHONHASHSEED",
        "PYTHONWARNINGS",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "NBGRADER_EXECUTION",
        "KIT_GRADING_CASES",
        "KIT_QUICK",
        "KIT_DATA_MIRROR",
        "KIT_DATA_CACHE",
        "KERAS_BACKEND",
        "MPLBACKEND",
        "XLA_FLAGS",
        "JPY_PARENT_PID",
        "JPY_SESSION_NAME",
    }
)
_ENV_KEPT_PREFIXES = (
    "LC_",
    "TF_",
    "OMP_",
    "MKL_",
    "KMP_",
    "OPENBLAS_",
    "CUDA_",
    "NVIDIA_",
)


def _kernel_environment(environ):
    """The grader's environment, reduced to what a kernel needs."""
    return {
        key: value
        for key, value in environ.items()
        if key in _ENV_KEPT or key.startswith(_ENV_KEPT_PREFIXES)
    }


def _under(path, folders):
    return any(path == f or path.startswith(f + "/") for f in folders)


def _run_folders(workdir):
    """The grading run's folders, when the kernel is a submission's grading
    kernel (`autograder.unit` made `KIT_RUN_DIR` and started it in its
    `work/`): `(private working folder or None, cases folder or None)`."""
    run = os.environ.get("KIT_RUN_DIR", "")
    if not run or not os.path.isdir(run):
        return None, None
    run = os.path.realpath(run)
    work = os.path.join(run, "work")
    private = workdir if os.path.realpath(workdir) == work else None
    cases = os.environ.get("KIT_GRADING_CASES", "")
    if not cases or os.path.realpath(cases) != os.path.join(run, "cases"):
        cases = None
    return private, (os.path.join(run, "cases") if cases else None)


def confine(hide, uid, argv, expose=()):
    """Set up the view and the user; return the kernel's argv (maybe changed)."""
    workdir = os.getcwd()
    index, connection = _connection(argv)
    info = {}
    if connection is not None:
        with open(connection, encoding="utf-8") as f:
            info = json.load(f)
    private_work, cases = _run_folders(workdir)
    # Folders put back as they are: the kernel's sockets (its own, writable)
    # and, outside a grading run, the folder it was started in.
    keep = [] if private_work else [workdir]
    if info.get("transport") == "ipc":
        keep.append(os.path.dirname(info["ip"]))
    handles = {path: os.open(path, os.O_PATH) for path in keep if os.path.isdir(path)}
    readonly = {cases: os.open(cases, os.O_PATH)} if cases else {}
    exposed = {
        path: os.open(path, os.O_PATH)
        for path in {os.path.realpath(p) for p in expose}
        if os.path.isdir(path)
    }

    fonts = _read_font_cache()  # the grader's, while its home is still visible

    _mount(None, "/", flags=MS_REC | MS_PRIVATE)
    private = ("/tmp", "/var/tmp", "/dev/shm")
    for path in private:
        if os.path.isdir(path):
            _tmpfs(path, mode="1777", size="2g" if path == "/tmp" else "256m")
    # What the kernel needs from a folder that is now fresh (a course checked
    # out under /tmp) comes back read-only.
    for inner in sorted(exposed):
        if _under(inner, private):
            _expose(inner, exposed[inner])
    shown = list(exposed)
    covered = []
    for path in sorted(set(hide), key=len):  # outer folders first
        if _under(path, private) and not _under(path, shown):
            continue  # already out of sight: the private folder is fresh
        if os.path.isdir(path) and not os.path.islink(path):
            _tmpfs(path, size="64k")
            covered.append(path)
            # What the kernel needs from inside it (the Python installation
            # under a hidden home folder) comes back read-only; paths hidden
            # inside those (longer, so later in this loop) are covered again.
            for inner, handle in sorted(exposed.items()):
                if inner.startswith(path + "/"):
                    _expose(inner, handle)
        elif os.path.isfile(path):
            _mount("/dev/null", path, flags=MS_BIND)
    for path, handle in handles.items():
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{handle}", path, flags=MS_BIND | MS_REC)
        os.close(handle)
    # The running test's cases: the grader's folder, read-only here.
    for path, handle in readonly.items():
        _expose(path, handle)
        os.close(handle)
    for handle in exposed.values():
        os.close(handle)
    for path in covered:  # the kept folders inside stay writable: own mounts
        _mount(None, path, flags=MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    if private_work:
        # The kernel's working folder is a fresh tmpfs of its own: nothing it
        # writes there reaches the grader's disk, and it vanishes with the
        # kernel. The grader never reads it (records come as cell outputs).
        os.makedirs(private_work, exist_ok=True)
        _tmpfs(private_work, mode="700", size="1g")
        os.chdir(private_work)

    home = "/tmp/home"
    cache = os.path.join(home, ".cache", "matplotlib")
    os.makedirs(cache, exist_ok=True)
    for name, data in fonts.items():  # saves rebuilding matplotlib's font list
        with open(os.path.join(cache, name), "wb") as f:
            f.write(data)
    argv = list(argv)
    owned = [home, *keep[0 if private_work else 1 :]]
    if private_work:
        owned.append(private_work)
    if index is not None:
        copy = os.path.join("/tmp", "kernel.json")
        with open(copy, "w", encoding="utf-8") as f:
            json.dump(info, f)
        argv[index] = copy
        owned.append(copy)
    for path in owned:
        _chown_tree(path, uid, uid)
    kept = _kernel_environment(os.environ)
    os.environ.clear()
    os.environ.update(kept)
    os.environ.update(
        HOME=home,
        MPLCONFIGDIR=os.path.join(home, ".config", "matplotlib"),
        KERAS_HOME=os.path.join(home, ".keras"),
        XDG_CACHE_HOME=os.path.join(home, ".cache"),
        IPYTHONDIR=os.path.join(home, ".ipython"),
        JUPYTER_RUNTIME_DIR=os.path.join(home, "runtime"),
        USER="nobody",
        TMPDIR="/tmp",
    )
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # Changing user clears the parent-death signal: set it again, so the kernel
    # still dies with the `unshare` that started it.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return argv


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograder.jail")
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("--expose", action="append", default=[])
    parser.add_argument("--user", type=int, default=65534)
    parser.add_argument("kernel", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    kernel = args.kernel[1:] if args.kernel[:1] == ["--"] else args.kernel
    try:
        kernel = confine(args.hide, args.user, kernel, args.expose)
    except (OSError, ValueError) as error:
        print(f"[autograder.jail] not confined: {error}", file=sys.stderr)
        sys.exit(70)  # never run a submission less isolated than announced
    os.execvp(kernel[0], kernel)


if __name__ == "__main__":
    main()
