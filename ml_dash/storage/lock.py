"""The single-writer lock: an ``flock`` on ``writer.lock`` in the experiment.

The kernel drops an ``flock`` when its holder dies, so a killed writer never
leaves a stale lock behind and nobody has to unlock anything by hand.
"""

import fcntl
import os
import socket
import time

from ..errors import WriterLockedError

LOCK_FILE = "writer.lock"


class WriterLock:
    def __init__(self, directory, timeout=0.0):
        """Take the lock, waiting up to ``timeout`` seconds for a live holder."""
        self.path = os.path.join(directory, LOCK_FILE)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
