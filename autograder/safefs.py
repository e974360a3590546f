"""File operations that are safe where an untrusted process could have written.

The grader runs as root; a student's kernel runs as another user and could
plant a symbolic link, a FIFO, a device node or a huge file anywhere it may
write. Every function here works relative to a directory file descriptor,
opens each path component with `O_NOFOLLOW` (a link is refused, never
followed), checks with `fstat` that what it opened is what it expected (a
regular file, a directory), and reads with a size limit. Nothing here
changes the mode or owner of anything.

The grading pipeline itself keeps nbgrader's files where the kernel's user
cannot write at all (`autograder.unit`); these functions are for the few
places where the grader must still touch what a student controls: the
submitted files an instructor collected, and the socket folder a kernel
owned.
"""

import contextlib
import errno
import os
import stat
from pathlib import Path

__all__ = [
    "UnsafePath",
    "open_dir",
    "read_beneath",
    "read_regular",
    "remove_path",
    "remove_tree",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafePath(OSError):
    """A path is a link, not a regular file or directory, or too large."""


def _refuse(name, why):
    return UnsafePath(errno.EPERM, f"{name}: {why}")


def open_dir(path, dir_fd=None):
    """A file descriptor of the directory `path` (its last component may not
    be a link). The caller closes it."""
    try:
        return os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(
                os.fspath(path), "not a directory (or a symbolic link)"
            ) from None
        raise


def read_regular(name, limit, dir_fd=None):
    """The bytes of the regular file `name` (relative to `dir_fd`), at most
    `limit` bytes; a link, a FIFO, a device or a larger file is refused."""
    try:
        handle = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _refuse(os.fspath(name), "a symbolic link") from None
        raise
    with os.fdopen(handle, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(os.fspath(name), "not a regular file")
        if info.st_size > limit:
            raise _refuse(
                os.fspath(name), f"{info.st_size} bytes, over the limit of {limit}"
            )
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while read
        raise _refuse(os.fspath(name), f"over the limit of {limit} bytes")
    return data


def read_beneath(root, relative, limit):
    """Read `root/relative`, refusing a link at every component below `root`.

    `root` itself (the folder the instructor named) is trusted; `relative`
    (what the folder holds) is not.
    """
    parts = [p for p in os.fspath(relative).split(os.sep) if p not in ("", ".")]
    if not parts or ".." in parts:
        raise _refuse(os.fspath(relative), "not a path inside the folder")
    handle = open_dir(root)
    try:
        for part in parts[:-1]:
            inner = open_dir(part, dir_fd=handle)
            os.close(handle)
            handle = inner
        return read_regular(parts[-1], limit, dir_fd=handle)
    finally:
        os.close(handle)


def remove_path(path):
    """Delete the folder or file `path` (an absolute path whose parent is the
    grader's own), following no link. Missing is not an error."""
    path = Path(path)
    try:
        parent = open_dir(path.parent)
    except FileNotFoundError:
        return
    try:
        remove_tree(path.name, dir_fd=parent)
    finally:
        os.close(parent)


def remove_tree(name, dir_fd=None, _depth=0):
    """Delete `name` (relative to `dir_fd`) and everything in it, following no
    link: a link is removed, never what it points to. Missing is not an error.
    """
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        return
    if _depth > 64:
        raise _refuse(os.fspath(name), "nested more than 64 folders deep")
    handle = open_dir(name, dir_fd=dir_fd)
    try:
        if (os.fstat(handle).st_dev, os.fstat(handle).st_ino) != (
            info.st_dev,
            info.st_ino,
        ):
            raise _refuse(os.fspath(name), "replaced while it was removed")
        for entry in os.listdir(handle):
            remove_tree(entry, dir_fd=handle, _depth=_depth + 1)
    finally:
        os.close(handle)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=dir_fd)
