"""Reads of one process side by side, and the few steps that must run alone."""

import threading


class MapGuard:
    """Read transactions of a process run side by side; some writer steps run alone.

    LMDB may change the size of the memory map only while the process has no
    transaction open, and py-lmdb invalidates every open transaction of the
    environment when it does: a read running in another thread (a view in
    the writer's process, or threads of an analysis script) would fail.
    Aborting a write transaction also waits until no other thread is inside
    an LMDB call, which reads in a loop can postpone forever.  Both run
    through :meth:`alone`, which holds new reads back and waits for open ones.
    """

    def __init__(self):
        # One entry per read in flight.  list.append and list.pop are atomic,
        # so a read costs no lock unless a step that runs alone is pending.
        self._reads = []
        self._alone = False
        self._one_at_a_time = threading.Lock()
        self._changed = threading.Condition(threading.Lock())

    def enter_read(self):
        reads = self._reads
        while True:
            reads.append(None)
            if not self._alone:
                return
            # Set after or before our append: back out and wait for that step.
            self.exit_read()
            with self._changed:
                while self._alone:
                    self._changed.wait()

    def exit_read(self):
        self._reads.pop()
        if self._alone:
            with self._changed:
                self._changed.notify_all()

    def alone(self, function):
        """``function()`` once no read transaction is open, with new ones held back."""
        self.hold()
        try:
            return function()
        finally:
            self.resume()

    def hold(self):
        """Wait until no read transaction is open and hold new ones back until :meth:`resume`.

        :meth:`alone` for one call; ``fork()`` holds reads across the fork.
        """
        self._one_at_a_time.acquire()
        with self._changed:
            self._alone = True
            while self._reads:
                self._changed.wait()

    def resume(self):
        with self._changed:
            self._alone = False
            self._changed.notify_all()
        self._one_at_a_time.release()
