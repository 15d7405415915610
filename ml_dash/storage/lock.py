"""The single-writer lock: an ``flock`` on ``writer.lock`` in the experiment.

The kernel drops an ``flock`` when its holder dies, so a killed writer never
leaves a stale lock behind and nobody has to unlock anything by hand.

An ``flock`` belongs to the open file, not to the process: a child made by
``fork()`` (a ``multiprocessing`` or DataLoader worker) shares it and would
keep it held after the writer died.  So every child closes its copies of the
lock files at once (see :func:`_after_fork_in_child`).  (Rejected: an
``fcntl`` record lock, which a child does not inherit: it is also dropped
when *any* descriptor of the file is closed in the process, which a reader
of the same run in that process would do by accident.)
"""

import errno
import fcntl
import math
import os
import socket
import stat
import threading
import time

from ..errors import StorageError, WriterLockedError

LOCK_FILE = "writer.lock"

# Every WriterLock of this process that has its file open, whether it holds
# the lock yet or not: the fork hook closes all of them in the child.
_open_locks: "set[WriterLock]" = set()
_open_locks_guard = threading.Lock()


class WriterLock:
    def __init__(self, directory, timeout=0.0, action=None):
        """Take the lock, waiting up to ``timeout`` seconds for a live holder
        (None: as long as it takes).

        ``action``: what the lock is taken for (``"compact it"``), when not
        to write: a live holder is then refused with "wait for the run to
        end, then <action>" instead of the advice given to a second writer.
        """
        self.path = os.path.join(directory, LOCK_FILE)
        self._action = action
        self.identity = None  # (st_dev, st_ino) of the locked file, once held
        self._held = False
        with _open_locks_guard:
            self._fd = _open_lock_file(self.path)
            _open_locks.add(self)
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Held by this process: refused at once, as waiting for it
                # could only end by this process's own doing.
                if self._held_here() or time.monotonic() >= deadline:
                    message = self._refusal(directory)
                    self._close()
                    raise WriterLockedError(message) from None
                time.sleep(0.05)
        self._held = True
        info = os.fstat(self._fd)
        self.identity = (info.st_dev, info.st_ino)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid={os.getpid()} host={socket.gethostname()}\n".encode(), 0)

    def _held_here(self):
        """Whether another WriterLock of this process holds this lock file."""
        info = os.fstat(self._fd)
        with _open_locks_guard:
            return any(lock._held and lock.identity == (info.st_dev, info.st_ino)
                       for lock in _open_locks)

    def _refusal(self, directory):
        """Why the lock cannot be had: this process holds it, or another one does."""
        if self._held_here():
            return (f"{directory} is already open for writing in this process (pid={os.getpid()}): "
                    "an Experiment of the same prefix has its run started; log through that "
                    "Experiment, or end its run first")
        if self._action:
            return (f"{directory} is being written by a live process ({self._holder()}): "
                    f"wait for the run to end (or stop that process), then {self._action}")
        return (f"{directory} is being written by another live process ({self._holder()}); "
                "only one writer per experiment is allowed, open it with "
                "ml_dash.load() to read it")

    def _holder(self):
        try:
            return os.pread(self._fd, 200, 0).decode(errors="replace").strip() or "pid unknown"
        except OSError:
            return "pid unknown"

    def _close(self):
        with _open_locks_guard:
            _open_locks.discard(self)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._held = False

    def release(self):
        if self._fd is not None:
            if self._held:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._close()


def _after_fork_in_child():
    """Close the child's copies of this process's lock files: the lock stays the parent's.

    Only the forking thread lives on in the child, so nothing else uses them;
    the guard may have been held by a thread that is gone, hence a new one.
    """
    global _open_locks_guard
    _open_locks_guard = threading.Lock()
    for lock in list(_open_locks):
        if lock._fd is not None:
            os.close(lock._fd)  # only the child's descriptor: the parent's flock stays
            lock._fd = None
        lock._held = False
    _open_locks.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


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
    elsewhere, or when the lock file was deleted under its writer, by whether
    process ``pid`` on this ``host`` still exists.
    """
    if held is None:
        held = held_flocks()
    if held is not None:
        try:
            st = os.stat(os.path.join(directory, LOCK_FILE))
        except FileNotFoundError:
            pass  # deleted: the writer may well live on, holding the unlinked file
        else:
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


def flock_held(identity, held=None):
    """Whether a live process ``flock``s the file ``(st_dev, st_ino)``; None where
    this cannot be known (no ``/proc/locks``)."""
    if held is None:
        held = held_flocks()
    if held is None:
        return None
    dev, ino = identity
    return (os.major(dev), os.minor(dev), ino) in held


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
