"""Column mappings: slot writes, mapping costs, memory over growth, descriptors.

    python bench/columns.py            # about 10 s
    python bench/columns.py --quick    # smoke run

Figures (medians of the repeats, one JSON object on stdout):

- ``slot_write_ns``: one ``values[i] = x`` through the writer's memoryview,
  the write path's per-field cost;
- ``create_us`` / ``grow_us``: a fresh 4,096-slot column file, and one
  doubling of it (``posix_fallocate`` and a new mapping);
- ``map_us``: a reader's first mapping of a 4,096-slot column;
- ``rss_growth_kib`` / ``mappings_left``: resident memory gained, and
  mappings of the file still present, after ``cycles`` grow-and-remap cycles
  of one column whose old arrays were dropped (old mappings must be freed);
- ``fds_per_1000_columns``: descriptors held by 1,000 mapped columns.
"""

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import timeit

from ml_dash.storage.columns import ColumnFile, ColumnMap


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def mappings_of(path):
    with open("/proc/self/maps") as maps:
        return sum(line.rstrip().endswith(path) for line in maps)


def slot_write_ns(directory, number):
    column = ColumnFile(os.path.join(directory, "slots.f64"), 4096, fresh=True)
    values = column.values
    seconds = timeit.timeit("values[1234] = 0.5", globals={"values": values}, number=number)
    return seconds / number * 1e9


def create_and_grow_us(directory, count):
    created, grown = [], []
    for n in range(count):
        path = os.path.join(directory, f"create{n}.f64")
        start = time.perf_counter()
        column = ColumnFile(path, 4096, fresh=True)
        middle = time.perf_counter()
        column.grow(8192)
        grown.append(time.perf_counter() - middle)
        created.append(middle - start)
        column.close()
    return statistics.median(created) * 1e6, statistics.median(grown) * 1e6


def map_us(directory, count):
    path = os.path.join(directory, "mapped.f64")
    ColumnFile(path, 4096, fresh=True).close()
    times = []
    for _ in range(count):
        reader = ColumnMap(path)
        start = time.perf_counter()
        reader.view(4096)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def growth_cycles(directory, cycles):
    """Grow one column by 4,096 slots ``cycles`` times, a reader remapping each time."""
    path = os.path.join(directory, "cycles.f64")
    column = ColumnFile(path, 4096, fresh=True)
    reader = ColumnMap(path)
    reader.view(4096).sum()
    gc.collect()
    before = rss_kib()
    for cycle in range(2, cycles + 2):
        column.grow(cycle * 4096)
        column.values[cycle * 4096 - 1] = float(cycle)
        reader.view(cycle * 4096).sum()  # touches every page of the new mapping
    gc.collect()
    # Only the newest mappings may stay resident: the file itself is in the
    # page cache either way, but each old mapping would add its own pages.
    return rss_kib() - before, mappings_of(path), (cycles + 1) * 4096 * 8 // 1024


def fds_per_1000_columns(directory):
    before = len(os.listdir("/proc/self/fd"))
    held = [ColumnFile(os.path.join(directory, f"fd{n}.f64"), 16, fresh=True) for n in range(1000)]
    readers = [ColumnMap(column.path) for column in held]
    for reader in readers:
        reader.view(16)
    return len(os.listdir("/proc/self/fd")) - before


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    repeats, writes, count, cycles = (1, 20_000, 20, 20) if args.quick else (args.repeats, 2_000_000, 300, 300)
    with tempfile.TemporaryDirectory() as directory:
        slot = statistics.median(slot_write_ns(directory, writes) for _ in range(repeats))
        pairs = [create_and_grow_us(directory, count) for _ in range(repeats)]
        mapped = statistics.median(map_us(directory, count) for _ in range(repeats))
        rss, left, file_kib = growth_cycles(directory, cycles)
        fds = fds_per_1000_columns(directory)
    print(json.dumps({
        "python": sys.version.split()[0],
        "slot_write_ns": round(slot, 1),
        "create_us": round(statistics.median(p[0] for p in pairs), 1),
        "grow_us": round(statistics.median(p[1] for p in pairs), 1),
        "map_us": round(mapped, 1),
        "cycles": cycles,
        "final_file_kib": file_kib,
        "rss_growth_kib": rss,
        "mappings_left": left,
        "fds_per_1000_columns": fds,
    }))


if __name__ == "__main__":
    main()
