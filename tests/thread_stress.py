"""Thread stress: first reads of params, logs, files and views while another thread flushes.

    python tests/thread_stress.py --rounds 1000          # the long run
    python tests/thread_stress.py --rounds 20 --mode logs
    python tests/thread_stress.py --seconds 10           # what tests/test_threads.py runs

Each round starts a run and a thread that logs and flushes without pause
(with ``sync_interval`` 1 ms, so the background sync writes its watermark in
a write transaction all the time too), and, at the same moment, threads
that read for the first time in this process:

- ``logs``: ``exp.logs.info()`` (which reads the next log index) and ``read()``;
- ``params``: ``exp.params.set()`` (which merges into the stored params) and ``get()``;
- ``files``: ``exp.files(...).save()`` and ``list()``;
- ``view``: ``load()`` of the run, reading params, logs, files and points
  through the view, which is dropped without ``close()`` (so it is released
  by the garbage collector, in that thread);
- ``load``: ``load()`` again and again, dropping each view.

Even rounds start a fresh run, so its sub-databases do not exist yet; odd
rounds reopen the run of the round before, whose params, logs and files
sub-databases exist but have no handle open in this process (the run was
closed, so its environment was too).  ``--mode`` runs one reader kind
(``sync``: no flushing thread, the main thread itself reads right after its
flushes, against the background sync alone).

A round that does not end within ``--round-timeout`` seconds is a hang:
every thread's stack is printed (``faulthandler``) and the script exits
with status 1.  After each round the run is closed and its params, logs,
files and points are checked; ``ml_dash.check`` every ``--check-every``
rounds.  Prints a JSON summary and exits 0 when everything held.
"""

import argparse
import faulthandler
import gc
import json
import os
import sys
import tempfile
import threading
import time

import ml_dash
import ml_dash.storage.registry as storage_registry
from ml_dash import Experiment, load

MODES = ("logs", "params", "files", "view", "load")
SYNC_FLUSHES, SYNC_READS = 10, 1000  # per round of --mode sync: flushes, reads of each kind after each


def _readers(exp, prefix, dash_root, number):
    """The first-read work of each mode for round ``number``."""
    def logs():
        exp.logs.info(f"round {number}", round=number)
        exp.logs.read()

    def params():
        exp.params.set(round=number)
        assert exp.params.get()["round"] == number

    def files():
        exp.files("stress").save({"round": number}, to=f"round-{number}.json")
        exp.files.list()

    def view():
        forgotten = load(prefix, dash_root=dash_root)  # never closed: collected
        forgotten.params.get()
        forgotten.logs.read()
        forgotten.files.list()
        len(forgotten.metrics)
        forgotten.metrics.read(limit=5)

    def loads():
        for _ in range(5):
            len(load(prefix, dash_root=dash_root).metrics)

    return {"logs": logs, "params": params, "files": files, "view": view, "load": loads}


def one_round(number, dash_root, modes, check):
    """One round; returns the number of flushes its flushing thread made."""
    against_sync = modes == ["sync"]
    # Odd rounds reopen the run of the round before (not against the sync alone:
    # what hung there were reads of sub-databases that did not exist yet).
    prefix = f"stress/run-{number if against_sync else number - number % 2}"
    exp = Experiment(prefix=prefix, dash_root=dash_root, sync_interval=0.001)
    exp.run.start()
    before = len(exp.metrics)
    readers = _readers(exp, prefix, dash_root, number)
    stop = threading.Event()
    flushing = threading.Event()
    flushes = [0]
    errors = []

    def guarded(work):
        def run():
            try:
                start.wait()
                if work is not flusher:
                    # Reads begin once commits follow one another: the hang needed
                    # a read to start while the flusher was inside a transaction.
                    flushing.wait(10)
                work()
            except Exception as exc:  # reported by the main thread
                errors.append(repr(exc))
        return run

    def flusher():
        while not stop.is_set():
            exp.metrics.log(x=flushes[0], round=number).flush()
            flushes[0] += 1
            if flushes[0] == 3:
                flushing.set()

    if against_sync:
        start = threading.Event()
        start.set()
        flushing.set()
        # Reads in the main thread between its flushes, while the background
        # sync writes its watermark; in a fresh run params, logs and files do
        # not exist yet, so every one of these reads looks for them again.
        for _ in range(SYNC_FLUSHES):
            exp.metrics.log(x=flushes[0], round=number).flush()
            flushes[0] += 1
            for _ in range(SYNC_READS):
                exp.params.get()
                exp.logs.read()
                exp.files.list()
        for name in MODES[:3]:
            guarded(readers[name])()
    else:
        start = threading.Barrier(len(modes) + 1)
        threads = [threading.Thread(target=guarded(flusher), name="flusher")]
        threads += [threading.Thread(target=guarded(readers[name]), name=name) for name in modes]
        for thread in threads:
            thread.start()
        for thread in threads[1:]:
            thread.join()
        stop.set()
        threads[0].join()
    exp.run.complete()
    if errors:
        raise AssertionError(f"round {number}: {errors}")
    with load(prefix, dash_root=dash_root) as view:
        assert len(view.metrics) == before + flushes[0], (len(view.metrics), before, flushes[0])
        if "params" in modes or against_sync:
            assert view.params.get()["round"] == number
        if "logs" in modes or against_sync:
            assert view.logs.read(limit=10_000)["data"][-1]["message"] == f"round {number}"
        if "files" in modes or against_sync:
            assert f"round-{number}.json" in [f["filename"] for f in view.files.list()]
    if check:
        report = ml_dash.check(prefix, dash_root=dash_root)
        assert report.ok, report.problems
    return flushes[0]


def run(rounds, dash_root, modes=MODES, seconds=None, round_timeout=60.0, check_every=25):
    """Up to ``rounds`` rounds (or until ``seconds`` have passed); returns a summary."""
    started = time.monotonic()
    done = flushes = 0
    for number in range(rounds):
        if seconds is not None and time.monotonic() - started > seconds:
            break
        faulthandler.dump_traceback_later(round_timeout, exit=True)
        try:
            flushes += one_round(number, dash_root, list(modes), check=(number + 1) % check_every == 0)
        finally:
            faulthandler.cancel_dump_traceback_later()
        done += 1
    gc.collect()  # the runs are closed and every view is dropped: nothing may stay open
    return {"rounds": done, "flushes": flushes, "seconds": round(time.monotonic() - started, 1),
            "open_environments": len(storage_registry._registry),
            "open_fds": len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=None, help="stop starting rounds after this")
    parser.add_argument("--mode", choices=MODES + ("sync", "all"), default="all")
    parser.add_argument("--round-timeout", type=float, default=60.0)
    parser.add_argument("--check-every", type=int, default=25)
    parser.add_argument("--dir", default=None, help="dash root (default: a new temporary directory)")
    args = parser.parse_args()
    modes = MODES if args.mode == "all" else (args.mode,)
    dash_root = args.dir or tempfile.mkdtemp(prefix="ml_dash_threads_")
    summary = run(args.rounds, dash_root, modes, args.seconds, args.round_timeout, args.check_every)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
