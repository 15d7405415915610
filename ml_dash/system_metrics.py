"""System metrics: the machine's and the process's load, sampled into the ``system`` stream.

``Experiment(..., system_metrics=True)`` (or ``RUN.system_metrics = True``
for every run of a launch, or ``exp.system_metrics.start(interval=5.0)``
on a started run) samples, every ``interval`` seconds (default 5), on a
daemon thread:

====================================  ==============================================
``cpu_percent``                       the machine's CPU use, percent of all cores
``process_cpu_percent``               this process's, percent of one core (may pass 100)
``memory_percent``                    the machine's memory in use, percent
``memory_used_mb``                    the machine's memory in use, MB (10^6 bytes)
``process_rss_mb``                    this process's resident memory, MB
``disk_read_mb_per_s``                the machine's disk reads since the last sample, MB/s
``disk_write_mb_per_s``               ... writes
``net_sent_mb_per_s``                 the machine's network traffic, MB/s
``net_recv_mb_per_s``                 ...
``gpu<i>_utilization_percent``        per GPU, when NVML answers (``nvidia-ml-py``)
``gpu<i>_memory_used_mb``             ...
``gpu<i>_memory_percent``             ...
====================================  ==============================================

Rates rather than the counters: a counter since boot plots as a line whose
slope is the only thing of interest, and two runs' counters do not compare.
The CPU percentages are over the time since the previous sample too.

Each sample is one point of the run's ``system`` stream, logged through
``Stream.log`` like any other: it lands in the staging queue, a ``deque``
whose ``append`` is atomic, and is committed by the next flush of the run
(the training loop's, or the timed one), in the same snapshot as the
training's points.  The sampler never flushes and takes no lock the
training loop waits on; with ``ML_DASH_BUFFER_ENABLED=false`` its points,
like all others, commit as they are logged.

A probe that raises (a psutil call, an NVML call) is dropped with one
``warn`` log record naming it, and the others go on; when none is left the
sampler ends.  Without NVML (no NVIDIA driver, or ``nvidia-ml-py`` not
installed) there are no GPU columns and no message.

The sampler ends with the run: ``complete()``, ``fail()``, ``cancel()``,
``with exp.run`` on an exception or on Ctrl-C and SIGTERM, and the exit of
the interpreter all stop it before the run's last commit.  It then takes
one last sample (so a run shorter than the interval still has a row), and
is joined for at most ``stop(timeout=)`` seconds; a probe stuck past that
(a hung driver) is left behind, but a lock taken by ``stop()`` makes sure
it never logs once ``stop()`` has returned.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import time
from typing import Any, cast

from .arrays import require
from .errors import ConfigurationError

STREAM = "system"
DEFAULT_INTERVAL = 5.0  # seconds between samples
MIN_INTERVAL = 0.01  # a shorter one would keep a core busy sampling
STOP_TIMEOUT = 2.0  # seconds stop() waits for the last sample
MB = 1e6


def interval_of(value: Any, name: str = "system_metrics") -> float | None:
    """The sampling interval ``value`` asks for: None for off (False, None), the default
    for True, else a number of seconds; ``ConfigurationError`` naming ``name`` otherwise."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_INTERVAL
    # numbers.Real, not (int, float): numpy's int64 and float32 (a config read by numpy or
    # a sweep's grid) are seconds too; numpy's bool_ is not a Real, and is refused
    # (compared as it is: float() of a huge int raises OverflowError)
    if not isinstance(value, numbers.Real) or not MIN_INTERVAL <= cast(float, value) <= threading.TIMEOUT_MAX:
        raise ConfigurationError(
            f"{name} must be True, False or a sampling interval in seconds (at least "
            f"{MIN_INTERVAL}), got {type(value).__name__} {value!r}")
    return float(value)


class SystemMetrics:
    """``exp.system_metrics``: starts and stops the sampler of the run's ``system`` stream."""

    def __init__(self, experiment: Any) -> None:
        self._exp = experiment
        self._sampler: _Sampler | None = None
        # Held while a sampler is swapped: two start() at once made two samplers, and the
        # one overwritten was never stopped.  Reentrant: start() stops the previous one.
        self._swap = threading.RLock()
        self._pid = os.getpid()

    @property
    def running(self) -> bool:
        """True while a sampler thread is sampling this run."""
        return self._sampler is not None and self._sampler.alive

    @property
    def interval(self) -> float | None:
        """Seconds between samples of the running sampler, None when stopped."""
        return self._sampler.interval if self.running and self._sampler else None

    def start(self, interval: float = DEFAULT_INTERVAL) -> SystemMetrics:
        """Sample every ``interval`` seconds until the run ends (or :meth:`stop`).

        On a sampler already running, a new interval replaces its own.
        ``ImportError`` with the install command when psutil is missing.
        """
        seconds = interval_of(interval, "system_metrics.start(interval=...)")
        if seconds is None:
            raise ConfigurationError(f"system_metrics.start(interval=...) takes seconds, got {interval!r}; "
                                     "call stop() to stop")
        self._exp._open_session()  # raises: the run is not started, or read-only
        psutil = require("psutil", "system", "system_metrics.start()")
        self._forget_parents()
        with self._swap:
            self.stop()
            sampler = _Sampler(self._exp, seconds, psutil)
            sampler.start()
            self._sampler = sampler
        return self

    def stop(self, timeout: float | None = STOP_TIMEOUT) -> None:
        """Take a last sample and stop; waits at most ``timeout`` seconds for it.

        Nothing is logged by the sampler once this returns.  A no-op when stopped.
        ``timeout=None`` (or one past ``threading.TIMEOUT_MAX``) waits as long as it takes.
        """
        # checked before the sampler is let go: a refused timeout leaves it running
        if timeout is not None and (not isinstance(timeout, numbers.Real) or not timeout >= 0):
            raise ConfigurationError(f"system_metrics.stop(timeout=...) takes seconds (at least 0) "
                                     f"or None, got {type(timeout).__name__} {timeout!r}")
        if timeout is not None and timeout > threading.TIMEOUT_MAX:
            timeout = None  # past it, join() raised OverflowError
        self._forget_parents()
        with self._swap:
            sampler, self._sampler = self._sampler, None
            if sampler is not None:
                sampler.stop(timeout)

    def _forget_parents(self):
        """In a forked child, drop the parent's sampler (its thread is not in this process)
        and its lock (a thread of the parent may have held it at the fork)."""
        if self._pid != os.getpid():
            self._pid, self._swap, self._sampler = os.getpid(), threading.RLock(), None

    def __repr__(self) -> str:
        state = f"every {self.interval:g} s" if self.running else "stopped"
        return f"<SystemMetrics of {self._exp.prefix}: {state}>"


class _Sampler:
    """One sampler thread and the probes it reads."""

    def __init__(self, experiment, interval, psutil):
        self.interval = interval
        self._exp = experiment
        self._psutil = psutil
        self._stream = experiment.metrics(STREAM)
        self._wake = threading.Event()  # set by stop(): take the last sample now
        self._lock = threading.Lock()  # held while logging; stop() takes it to close
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"ml_dash system metrics {experiment.prefix}")

    @property
    def alive(self):
        return not self._closed and self._thread.is_alive()

    def start(self):
        self._thread.start()

    def stop(self, timeout):
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._lock:
            self._closed = True

    def _run(self):
        try:
            probes = _probes(self._psutil)
        except Exception as exc:  # noqa: BLE001 - psutil failing at its first call
            self._report(f"system metrics could not start: {type(exc).__name__}: {exc}")
            return
        last = time.monotonic()
        try:
            while probes:
                stopping = self._wake.wait(self.interval)
                now = time.monotonic()
                seconds, last = max(now - last, 1e-9), now
                point: dict = {}
                for probe in list(probes):
                    try:
                        probe.read(point, seconds)
                    except Exception as exc:  # noqa: BLE001 - whatever the library raised
                        probes.remove(probe)
                        self._report(f"system metrics: the {probe.name} probe failed and stops "
                                     f"({type(exc).__name__}: {exc})")
                if not self._log(point) or stopping:
                    break
        finally:
            for probe in probes:
                probe.close()

    def _log(self, point):
        """Log ``point`` unless stopped; False when the sampler must end."""
        with self._lock:
            if self._closed:
                return False
            if not point:
                return True
            try:
                self._stream.log(**point)
                return True
            except Exception as exc:  # noqa: BLE001 - the run ended under it, or forked
                self._closed = True
                self._warn(f"system metrics stopped: {type(exc).__name__}: {exc}")
                return False

    def _report(self, message):
        """A ``warn`` record in the run's logs, unless the sampler is stopped."""
        with self._lock:
            if not self._closed:
                self._warn(message)

    def _warn(self, message):
        try:
            self._exp.logs.warn(message)
        except Exception:  # noqa: BLE001 - the run is closed: nowhere to say it
            pass


def _probes(psutil):
    """The probes that work on this machine."""
    probes: list[Any] = [_Cpu(psutil), _Memory(psutil)]
    disks = _Rates("disk", psutil, "disk_io_counters",
                   (("disk_read_mb_per_s", "read_bytes"), ("disk_write_mb_per_s", "write_bytes")))
    network = _Rates("network", psutil, "net_io_counters",
                     (("net_sent_mb_per_s", "bytes_sent"), ("net_recv_mb_per_s", "bytes_recv")))
    probes += [rates for rates in (disks, network) if rates.available]
    gpus = _Gpus.open()
    if gpus is not None:
        probes.append(gpus)
    return probes


class _Cpu:
    name = "cpu"

    def __init__(self, psutil):
        self._psutil = psutil
        self._process = psutil.Process()
        psutil.cpu_percent(None)  # the first call sets the start of the first interval
        self._process.cpu_percent(None)

    def read(self, point, seconds):
        point["cpu_percent"] = float(self._psutil.cpu_percent(None))
        point["process_cpu_percent"] = float(self._process.cpu_percent(None))

    def close(self):
        pass


class _Memory:
    name = "memory"

    def __init__(self, psutil):
        self._psutil = psutil
        self._process = psutil.Process()

    def read(self, point, seconds):
        machine = self._psutil.virtual_memory()
        point["memory_percent"] = float(machine.percent)
        point["memory_used_mb"] = machine.used / MB
        point["process_rss_mb"] = self._process.memory_info().rss / MB

    def close(self):
        pass


class _Rates:
    """Counters of bytes (disks, network interfaces) as MB per second since the last read.

    ``psutil.<counters>()`` may return None (a container without disks): the probe is
    then unavailable.  A counter that went down (a device removed) reads as 0.
    """

    def __init__(self, name, psutil, counters, fields):
        self.name = name
        self._psutil = psutil
        self._counters = counters
        self._fields = fields
        self._last = getattr(psutil, counters)()
        self.available = self._last is not None

    def read(self, point, seconds):
        now = getattr(self._psutil, self._counters)()
        if now is None:
            return
        for field, attribute in self._fields:
            moved = getattr(now, attribute) - getattr(self._last, attribute)
            point[field] = max(moved, 0) / MB / seconds
        self._last = now

    def close(self):
        pass


class _Gpus:
    """Per-GPU utilisation and memory through NVML (``pynvml``, of ``nvidia-ml-py``)."""

    name = "gpu"

    def __init__(self, nvml, handles):
        self._nvml = nvml
        self._handles = handles

    @classmethod
    def open(cls):
        """The probe, or None when NVML is not there (no library, no driver, no GPU)."""
        try:
            import pynvml as nvml
        except ImportError:
            return None
        try:
            nvml.nvmlInit()
        except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound, _DriverNotLoaded...
            return None
        try:
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001
            handles = []
        if not handles:
            _shutdown(nvml)
            return None
        return cls(nvml, handles)

    def read(self, point, seconds):
        for index, handle in enumerate(self._handles):
            use = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            point[f"gpu{index}_utilization_percent"] = float(use.gpu)
            point[f"gpu{index}_memory_used_mb"] = memory.used / MB
            point[f"gpu{index}_memory_percent"] = 100.0 * memory.used / memory.total \
                if memory.total else math.nan

    def close(self):
        _shutdown(self._nvml)


def _shutdown(nvml):
    try:
        nvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - nothing to release then
        pass
