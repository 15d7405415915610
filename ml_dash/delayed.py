"""Calls made a while from now, by one thread per process.

A run has two threads of its own while it is open, the writer's background
sync and the session's timed commit, and neither has anything to do before
a second or so has passed.  Sweeps and benchmark harnesses open and close
thousands of runs that live less than that: starting and joining those two
threads was a tenth of what such a run cost, and far more on a loaded
machine, where a new thread waits to be scheduled before ``start()``
returns.  So a run asks :func:`call_later` to start each of them when its
first work is due, and a run closed before then never starts them.

The one thread here only starts threads: a run's syncs and timed commits
still run in threads of their own, so a slow fsync or a commit waiting for
another process's write never holds up another run.  (Rejected: running
every run's syncs and timed commits in one shared thread, the fewest
threads, but one stuck run would then delay the commits of all others.)
"""

import heapq
import itertools
import os
import threading
import time
import warnings


class Delayed:
    """A call waiting in :func:`call_later`'s queue; :meth:`cancel` drops it.

    A call already taken from the queue may still run after ``cancel()``:
    the function itself must check that it is still wanted (under the lock
    its canceller takes).
    """

    __slots__ = ("function", "cancelled")

    def __init__(self, function):
        self.function = function
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


_queue: list = []  # (due on the monotonic clock, order, Delayed)
_order = itertools.count()
_wakeup = threading.Condition()
_thread: threading.Thread | None = None


def call_later(delay, function):
    """Call ``function()`` about ``delay`` seconds from now; returns its :class:`Delayed`."""
    global _thread
    call = Delayed(function)
    with _wakeup:
        entry = (time.monotonic() + delay, next(_order), call)
        heapq.heappush(_queue, entry)
        if _thread is None:
            _thread = threading.Thread(target=_run_calls, name="ml_dash delayed calls", daemon=True)
            _thread.start()
        elif _queue[0] is entry:
            # Due before the call the thread waits for.  Otherwise it is left
            # asleep: waking it for every run would cost two thread switches a run.
            _wakeup.notify()
    return call


def _run_calls():
    while True:
        with _wakeup:
            while True:
                while _queue and _queue[0][2].cancelled:
                    heapq.heappop(_queue)  # a closed run's: it leaves no entry behind
                if not _queue:
                    _wakeup.wait()
                    continue
                wait = _queue[0][0] - time.monotonic()
                if wait <= 0:
                    break
                _wakeup.wait(wait)
            call = heapq.heappop(_queue)[2]
        try:
            call.function()
        except Exception as exc:  # the thread serves every run of the process: it must live on
            warnings.warn(f"ml_dash: a delayed call failed: {exc}", RuntimeWarning, stacklevel=1)


def _after_fork_in_child():
    # The thread did not survive the fork, and the calls queued were the parent's runs'.
    global _queue, _wakeup, _thread
    _queue = []
    _wakeup = threading.Condition()
    _thread = None


os.register_at_fork(after_in_child=_after_fork_in_child)
