"""Track reads on a large track: findByTime and slices by time.

    python bench/tracks.py                # 10,000,000 entries (built once under bench/.work/)
    python bench/tracks.py --quick        # 100,000 entries, a smoke run
    python bench/tracks.py --write bench/results/2026-12-02-tracks.md

The track ``robot/pose`` holds entries at 100 Hz (``_ts`` 0.01 s apart) with
three numeric fields and a list.  It is built once, by ``append()`` and a
flush per 10,000 entries, and reused by later runs (delete
``bench/.work/tracks-*`` to rebuild).  Every figure is read from a
``load()`` view, as an analysis script in another process would:

- ``findByTime(t)`` on the whole track at random times: a binary search on
  the memory-mapped ``_ts`` column and one row read;
- ``findByTime([t1 ... t100])``: 100 sorted times in one call;
- ``list(slice(t, t + 9.99))``: the 1,000 entries of a 10-second window, at
  the start, the middle and the end of the track, decoded into dicts.

Medians (and 90th percentiles) over many calls; the machine is shared.
"""

import argparse
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import ml_dash  # noqa: E402

PREFIX = "bench/tracks/pose"
HZ = 100.0
T0 = 1.7e9


def build(dash_root, entries):
    """The track of ``entries`` entries, unless it is there already; returns seconds taken."""
    try:
        with ml_dash.load(PREFIX, dash_root=dash_root) as view:
            if len(view.tracks("robot/pose")) == entries:
                return None
    except FileNotFoundError:
        pass
    started = time.perf_counter()
    with ml_dash.Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        track = exp.tracks("robot/pose")
        have = len(track)
        for start in range(have, entries, 10_000):
            for i in range(start, min(entries, start + 10_000)):
                track.append(x=i * 1e-3, y=-i * 1e-3, yaw=(i % 628) / 100, q=[0.0, 0.1, 0.2],
                             _ts=T0 + i / HZ)
            exp.flush()
    return time.perf_counter() - started


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e6)
    return times


def measure(dash_root, entries, repeats):
    rng = random.Random(0)
    end = T0 + (entries - 1) / HZ
    rows = []
    with ml_dash.load(PREFIX, dash_root=dash_root) as view:
        track = view.tracks("robot/pose")
        whole = track.slice()
        assert len(whole) == entries
        found = whole.findByTime(T0 + 12.345)
        assert abs(found["timestamp"] - (T0 + 12.34)) < 1e-6, found
        rows.append(("findByTime(t), whole track", timed(
            lambda: whole.findByTime(rng.uniform(T0, end)), repeats * 10)))
        rows.append(("findByTime([100 times]), whole track", timed(
            lambda: whole.findByTime(sorted(rng.uniform(T0, end) for _ in range(100))), repeats)))
        for where, first in (("start", 0), ("middle", entries // 2), ("end", entries - 1000)):
            low = T0 + first / HZ
            window = track.slice(low, low + 999 / HZ)
            assert len(list(window)) == 1000
            rows.append((f"list(slice()) of 1,000 entries at the {where}", timed(
                lambda low=low: list(track.slice(low, low + 999 / HZ)), repeats)))
    return rows


def table(rows, entries):
    lines = [f"| workload ({entries:,} entries) | median | p90 | calls |", "|---|---:|---:|---:|"]
    for name, times in rows:
        times = sorted(times)
        p90 = times[int(len(times) * 0.9)]
        lines.append(f"| {name} | {_us(statistics.median(times))} | {_us(p90)} | {len(times)} |")
    return "\n".join(lines)


def _us(value):
    return f"{value:,.1f} us" if value < 1000 else f"{value / 1000:,.2f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 entries, few calls")
    parser.add_argument("--entries", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--dir", default=os.path.join(HERE, ".work"),
                        help="where the track is built and kept (default bench/.work)")
    parser.add_argument("--write", metavar="PATH", help="also write the table as Markdown here")
    args = parser.parse_args()
    entries = args.entries or (100_000 if args.quick else 10_000_000)
    repeats = args.repeats or (20 if args.quick else 200)
    dash_root = os.path.join(args.dir, f"tracks-{entries}")
    took = build(dash_root, entries)
    if took is not None:
        print(f"built {entries:,} entries in {took:.0f} s ({took / entries * 1e6:.1f} us per entry, "
              "append + a flush per 10,000)")
    text = table(measure(dash_root, entries, repeats), entries)
    print(text)
    if args.write:
        with open(args.write, "w") as out:
            out.write(f"# Track reads, {time.strftime('%Y-%m-%d')}\n\n`python bench/tracks.py`, "
                      f"ml_dash {ml_dash.__version__}, Python {sys.version.split()[0]}, read from a "
                      "`load()` view; medians and 90th percentiles of the calls.\n\n"
                      f"{text}\n")
            if took is not None:
                out.write(f"\nBuilding the track (append, a flush per 10,000 entries): {took:.0f} s, "
                          f"{took / entries * 1e6:.1f} us per entry.\n")


if __name__ == "__main__":
    main()
