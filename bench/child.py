"""Entry point of one benchmark child process, run with the system's own interpreter.

    python bench/child.py SYSTEM MODE '{"directory": ..., "steps": ..., ...}'

MODE is ``write`` (log the workload, time it), ``read`` (open the finished
run in this fresh process, read it back and check it), ``live-write`` and
``live-read`` (a second process reading while the first still writes).
The result is printed as one JSON line (see ``measure.emit``).
"""

import importlib
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure  # noqa: E402

STREAMS = ("train", "eval", "root")


def write(system, args):
    steps, every = args["steps"], args["commit_every"]
    started = measure.clock()
    writer = system.Writer(args["directory"], args.get("option"))
    setup = measure.clock() - started
    log, commit = writer.log, writer.commit
    start = measure.clock()
    for step in range(steps):
        log(step, *measure.workload(step, steps))
        if (step + 1) % every == 0:
            commit()
    writer.close()
    elapsed = measure.clock() - start
    own, children = measure.peak_rss_mib()
    return {"us_per_step": elapsed / steps * 1e6, "setup_s": setup, "rss_mib": own,
            "helper_rss_mib": children, "disk_bytes": measure.disk_bytes(args["directory"])}


def timed_points(reader, steps, count, budget):
    """``count`` random single-point reads; past ``budget`` seconds, extrapolate."""
    wanted = measure.random_steps(steps, count)
    wrong, done = 0, 0
    start = measure.clock()
    for k in wanted:
        if not measure.close_enough(reader.point(k), measure.expected_train_loss(k)):
            wrong += 1
        done += 1
        if measure.clock() - start > budget:
            break
    elapsed = measure.clock() - start
    return elapsed * count / done, done, wrong


def read(system, args):
    steps = args["steps"]
    start = measure.clock()
    reader = system.Reader(args["directory"])
    opened = measure.clock() - start
    column = reader.full()
    full = measure.clock() - start  # from a new process to the array: open included
    counts = reader.counts()
    bad = [k for k in (0, steps // 2, steps - 1)
           if k >= len(column) or not measure.close_enough(column[k], measure.expected_train_loss(k))]
    result = {"open_s": opened, "full_s": full, "counts": counts, "full_len": len(column),
              "full_wrong": len(bad)}
    try:
        seconds, done, wrong = timed_points(reader, steps, args.get("points", 1000),
                                            args.get("budget", 5.0))
        result.update(random_s=seconds, random_done=done, random_wrong=wrong,
                      random_api=getattr(system, "POINT_API", ""))
    except NotImplementedError as error:
        result["random_s"] = None
        result["random_api"] = str(error) or "no API"
    reader.close()
    return result


def live_write(system, args):
    """Write until the reader leaves a ``stop`` file (or ``steps`` run out)."""
    steps, every, directory = args["steps"], args["commit_every"], args["directory"]
    stop = os.path.join(args["signals"], "stop")
    writer = system.Writer(directory, args.get("option"))
    step = 0
    for step in range(steps):
        writer.log(step, *measure.workload(step, steps))
        if (step + 1) % every == 0:
            writer.commit()
            if step + 1 == every:
                open(os.path.join(args["signals"], "started"), "w").close()
            if os.path.exists(stop):
                break
        if step % 50 == 0:
            time.sleep(0.001)  # a training step does more than log; leave room for the reader
    writer.close()
    return {"steps_written": step + 1}


def live_read(system, args):
    """Poll the run being written; each poll opens it anew and checks what it sees.

    Consistent: every stream holds whole commits (a multiple of the commit
    interval) and every value read back is the one logged at its step. The
    streams are counted by separate calls, so their counts may differ by
    the commits made between those calls.
    """
    signals = args["signals"]
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(signals, "started")):
        if time.time() > deadline:
            return {"live": "writer never committed"}
        time.sleep(0.01)
    polls, consistent, seen, errors = 0, 0, [], []
    for _ in range(args.get("polls", 5)):
        time.sleep(args.get("interval", 0.4))
        polls += 1
        try:
            reader = system.Reader(args["directory"])
            counts = reader.counts()
            column = reader.full()
            every = args["commit_every"]
            ok = (all(count % every == 0 for count in counts.values())
                  and all(measure.close_enough(value, measure.expected_train_loss(step))
                          for step, value in enumerate(column)))
            consistent += ok
            seen.append(counts["train"])
            reader.close()
        except Exception as error:  # the peer's own failure is the finding
            errors.append(f"{type(error).__name__}: {error}"[:200])
    open(os.path.join(signals, "stop"), "w").close()
    return {"polls": polls, "consistent": consistent, "seen": seen, "errors": errors}


MODES = {"write": write, "read": read, "live-write": live_write, "live-read": live_read}


def main():
    name, mode, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    try:
        system = importlib.import_module(f"systems.{name}")
        result = MODES[mode](system, args)
        result["version"] = system.version()
    except Exception as error:
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"[:300]}
    measure.emit(result)


if __name__ == "__main__":
    main()
