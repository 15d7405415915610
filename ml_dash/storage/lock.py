"""The single-writer lock: an ``flock`` on ``writer.lock`` in the experiment.

The kernel drops an ``flock`` when its holder dies, so a killed writer never
leaves a stale lock behind and nobody has to unlock anything by hand.
"""

import errno
import fcntl
import os
import socket
import stat
import time

from ..errors import StorageError, WriterLockedError

LOCK_FILE = "writer.lock"


class WriterLock:
    def __init__(self, directory, timeout=0.0):
        """Take the lock, waiting up to ``timeout`` seconds for a live holder."""
        self.path = os.path.join(directory, LOCK_FILE)
        self._fd = _open_lock_file(self.path)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder()
                    os.close(self._fd)
                    self._fd = None
                    raise WriterLockedError(
                        f"{directory} is being written by another live process ({holder}); "
                        "only one writer per experiment is allowed, open it with "
                        "ml_dash.load() to read it") from None
                time.sleep(0.05)
        self._pid = os.getpid()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid={os.getpid()} host={socket.gethostname()}\n".encode(), 0)

    def _holder(self):
        try:
            return os.pread(self._fd, 200, 0).decode(errors="replace").strip() or "pid unknown"
        except OSError:
            return "pid unknown"

    def release(self):
        if self._fd is not None:
            if self._pid == os.getpid():  # a forked child shares the lock: closing its copy is enough
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _open_lock_file(path):
    """The descriptor of the lock file at ``path``, created if missing.

    Opened with ``O_NOFOLLOW``, and refused unless it is a regular file: the
    lock file is truncated and written, and a link (or a FIFO, a device)
    planted in a run folder would have that done to what it points at.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageError(f"{path} is a symbolic link; ml_dash never follows links inside "
                               "a run folder: remove it (a new lock file is made)") from None
        raise StorageError(f"cannot open the writer lock {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"{path} is not a regular file, so it cannot be the writer lock: "
                           "remove it (a new lock file is made)")
    return fd


def writer_alive(directory, pid=None, host=None, held=None):
    """Whether a live process holds the writer lock of ``directory``.

    Asked without taking the lock (taking it, even briefly, would make a
    writer starting at that moment fail): on Linux by finding the lock file
    among the kernel's ``flock`` locks in ``/proc/locks`` (``held`` is that
    set, read once by :func:`held_flocks` when many runs are asked about);
    elsewhere by whether process ``pid`` on this ``host`` still exists.
    """
    if held is None:
        held = held_flocks()
    if held is not None:
        try:
            st = os.stat(os.path.join(directory, LOCK_FILE))
        except FileNotFoundError:
            return False
        return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) in held
    if not pid or host != socket.gethostname():
        return bool(pid)  # another machine's process: cannot tell, assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def held_flocks():
    """``{(major, minor, inode)}`` of every file ``flock``-ed on this machine, or
    None where ``/proc/locks`` cannot be read."""
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    held = set()
    for line in lines:
        fields = line.split()
        if "FLOCK" in fields and "->" not in fields:
            try:
                major, minor, inode = fields[fields.index("FLOCK") + 4].split(":")
                held.add((int(major, 16), int(minor, 16), int(inode)))
            except (IndexError, ValueError):
                continue
    return held
