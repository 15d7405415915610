"""Console capture: what a run prints to ``sys.stdout`` and ``sys.stderr``, kept as log records.

``Experiment(..., capture_console=True)`` (or ``RUN.capture_console =
True``) replaces ``sys.stdout`` and ``sys.stderr`` while the run is open by
tees: everything still reaches the terminal at once, and each complete line
becomes an ``info`` record of ``exp.logs`` with ``{"console": "stdout"}``
or ``{"console": "stderr"}`` as its metadata (stderr is not an error level:
``logging`` and progress bars write there).  Off by default: a run's
console may hold what its author would not store.

- Lines are cut at newlines; a partial line waits for its end (and is kept
  at the end of the run).  A carriage return starts the line again, as on a
  terminal: a progress bar redrawn a thousand times is stored once, as it
  was last drawn.  Blank lines are left out; a line is cut at
  :data:`MAX_LINE` characters.
- The tee only appends the line to a queue; a thread of its own turns lines
  into records.  (Rejected: logging from ``write()``: a line printed while
  the printing thread holds a lock that logging takes, such as ``exp.logs``'s
  own while it prints a record, would deadlock it.)  So a line's record is
  staged a moment after it was printed: console lines keep their order
  among themselves, but a record that the run logs in that moment may be
  numbered before them.  The lines that ``exp.logs`` prints itself are not
  captured again (they are records already), so nothing recurses.
- When the run ends the previous streams are put back, if ``sys.stdout``
  is still the tee; if something replaced it meanwhile, the tee stays in
  that chain and only passes text on (and is skipped when the run whose
  tee is above it ends: two runs ended out of order still give the
  original streams back).
- Only what Python code writes through ``sys.stdout``/``sys.stderr`` is
  seen: a ``logging`` handler made before the run holds the earlier stream,
  and output of C code or of child processes goes to the file descriptors
  directly.  (Rejected: redirecting file descriptors 1 and 2 through a pipe:
  output printed just before a crash would be lost with the pipe's thread.)
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from typing import Any

from .logs import echoing
from .values import storable_text

MAX_LINE = 10_000  # characters kept of one line
STOP_TIMEOUT = 2.0  # seconds the end of a run waits for the lines to be stored

_retired: list = []
"""The tees taken out of ``sys.stdout``/``sys.stderr``, kept for the life of the process:
CPython 3.11's ``print()`` writes to ``sys.stdout`` without a reference of its own, so a
tee freed as the run ends crashed (SIGSEGV) another thread's print still inside it.  A
closed tee holds only its target: two small objects per capturing run.  (Rejected:
keeping the last few only: a print blocked on a full pipe may stay inside its tee for
as long as the reader sleeps.)"""


class ConsoleCapture:
    """The tees of one run on ``sys.stdout`` and ``sys.stderr``, and the thread that stores their lines."""

    def __init__(self, logs: Any) -> None:
        self._logs = logs
        self._lines: collections.deque = collections.deque()  # (source, line): append is atomic
        self._wake = threading.Event()
        self._tees: list[_Tee] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._pid = os.getpid()

    @property
    def running(self) -> bool:
        return bool(self._tees)

    def start(self) -> None:
        """Put the tees in place (a no-op when they are)."""
        if self._tees:
            return
        self._stopping = False
        self._pid = os.getpid()
        self._tees = [_Tee(sys.stdout, "stdout", self), _Tee(sys.stderr, "stderr", self)]
        self._thread = threading.Thread(target=self._store_lines, daemon=True, name="ml_dash console capture")
        self._thread.start()
        out, err = self._tees
        if out.target is not None:  # None under pythonw, or closed by the application
            sys.stdout = out  # None under pythonw, or closed by the application
        if err.target is not None:
            sys.stderr = err

    def stop(self) -> None:
        """Put the previous streams back and store every line captured, partial ones too."""
        tees, self._tees = self._tees, []
        if not tees:
            return
        _retired.extend(tees)  # before sys.stdout lets go of them: see _retired
        out, err = tees
        if sys.stdout is out:
            sys.stdout = _past_closed(out.target)
        if sys.stderr is err:
            sys.stderr = _past_closed(err.target)
        if not self.in_its_process():
            # A forked child: the locks of the tees and of the Event may have been held by
            # a thread of the parent at the fork, and no thread of the child releases them.
            for tee in tees:
                tee.detach()
            self._lines.clear()
            return
        for tee in tees:
            tee.close()
        self._stopping = True
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT)
        self._store()  # what the thread had no time for

    def in_its_process(self) -> bool:
        """False in a forked child (a DataLoader worker): no thread of it stores lines, and
        the run is the parent's, so the tees only pass its text on."""
        return os.getpid() == self._pid

    def take(self, source: str, line: str) -> None:
        """Queue one line of ``source`` to be stored (called by the tees)."""
        self._lines.append((source, line))
        self._wake.set()

    def _store_lines(self):
        while True:
            self._wake.wait()
            self._wake.clear()
            if not self._store() or self._stopping:
                return

    def _store(self):
        """Store the queued lines; False when the run can no longer take them."""
        lines = self._lines
        while lines:
            try:
                source, line = lines.popleft()
            except IndexError:  # taken by the other caller (the end of the run)
                return True
            try:
                self._logs.log(storable_text(line), "info", {"console": source}, _echo=False)
            except Exception:  # noqa: BLE001 - the run closed under us: nothing more to store
                lines.clear()
                return False
        return True


class _Tee:
    """A text stream that writes through to ``target`` and hands complete lines on."""

    def __init__(self, target: Any, source: str, capture: ConsoleCapture) -> None:
        self.target = target
        self._source = source
        self._capture: ConsoleCapture | None = capture
        self._partial = ""
        self._lock = threading.RLock()  # reentrant: a signal handler may print inside write()

    def write(self, text: Any) -> int:
        written = self.target.write(text)
        capture = self._capture
        if capture is not None and isinstance(text, str) and text and not echoing() \
                and capture.in_its_process():  # checked before the lock, which a fork may leave held
            self._feed(capture, text)
        return written

    def _feed(self, capture, text):
        with self._lock:
            *lines, rest = (self._partial + text).split("\n")
            redraw = rest.rfind("\r", 0, len(rest) - 1)  # a trailing one may be the start of "\r\n"
            if redraw >= 0:
                rest = rest[redraw + 1:]
            if len(rest) > MAX_LINE:
                lines.append(rest)
                rest = ""
            self._partial = rest
        for line in lines:
            shown = _shown(line)
            if shown:
                capture.take(self._source, shown)

    def close(self) -> None:
        """Stop capturing (text still passes through); the partial line is handed on."""
        with self._lock:
            capture, self._capture = self._capture, None
            rest, self._partial = self._partial, ""
        shown = _shown(rest)
        if capture is not None and shown:
            capture.take(self._source, shown)

    @property
    def closed_tee(self) -> bool:
        """True once its run stopped capturing (it then only passes text on)."""
        return self._capture is None

    def detach(self) -> None:
        """Stop capturing without the lock (in a forked child); the partial line is dropped."""
        self._capture = None
        self._partial = ""

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.target.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty, buffer...
        if name == "target":  # not set yet (copy, pickle): not the target's own
            raise AttributeError(name)
        return getattr(self.target, name)


def _past_closed(stream):
    """``stream``, or what it writes to when it is the closed tee of a run that ended while
    a later one captured: runs ended out of order give back the streams they found."""
    while isinstance(stream, _Tee) and stream.closed_tee:
        stream = stream.target
    return stream


def _shown(line):
    """A line as a terminal shows it: the text after its last carriage return, cut at
    :data:`MAX_LINE`; empty when blank."""
    line = line.rstrip("\r")
    line = line[line.rfind("\r") + 1:]
    return line[:MAX_LINE] if line.strip() else ""
