"""Dashboard benchmark: the HTTP API that the page uses, on the real server.

    python bench/ui.py              # full: 20 streams x 5 keys x 1M points, one 100M stream, 10k runs
    python bench/ui.py --quick      # smoke run, small sizes
    python bench/ui.py --peers      # also TensorBoard's and MLflow's own servers (bench/ui_peers.py)

What is measured (each the median of ``--rounds`` rounds, with a warm page cache):

- first data: every chart of the big run at 1,000 px, as the page asks for it
  (one ``/api/buckets`` request per chart, six at a time like a browser);
- zoom: one chart of the 100M stream re-fetched for a random tenth of its range;
- live: a writer process flushes a point; the time until ``/api/tail``, polled as
  the page polls it, returns that point;
- runs table: ``/api/runs`` over 10,000 runs, on a fresh server (cold) and again (warm).

The stores are built once under ``bench/.work/ui`` (git-ignored) and reused;
``--rebuild`` makes them again.  Results are printed and written as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, ".work", "ui")
SPIKE = 1e6


def build_big(root: str, streams: int, keys: int, points: int, huge: int) -> None:
    """The big run: ``streams`` x ``keys`` x ``points``, plus one stream of ``huge`` points
    with a single spike.  Written through the public API, flushed every 100,000 points."""
    from ml_dash import Experiment

    names = [f"k{j}" for j in range(keys)]
    with Experiment(prefix="bench/ui/big", dash_root=root).run as exp:
        exp.params.set(lr=0.001, seed=0, model={"depth": 12, "width": 768})
        for s in range(streams):
            stream = exp.metrics(f"s{s:02d}")
            log = stream.log
            for i in range(points):
                value = 1.0 / (1 + i)
                log(**dict.fromkeys(names, value))
                if i % 100_000 == 99_999:
                    stream.flush()
            stream.flush()
        stream = exp.metrics("huge")
        log = stream.log
        spike_at = huge * 7 // 9
        for i in range(huge):
            log(value=SPIKE if i == spike_at else (i % 1000) / 1000.0)
            if i % 1_000_000 == 999_999:
                stream.flush()
        stream.flush()


def build_many(root: str, runs: int) -> None:
    from ml_dash import Experiment

    for r in range(runs):
        with Experiment(prefix=f"sweep/p{r % 20:02d}/run-{r:05d}", dash_root=root).run as exp:
            exp.params.set(lr=10.0 ** -(r % 5), seed=r % 3, batch=32 * (1 + r % 4))
            train = exp.metrics("train")
            for i in range(10):
                train.log(loss=1.0 / (i + 1), step=i)
            train.flush()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``ml-dash serve`` in a child process, the way a user starts it."""

    def __init__(self, root: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ml_dash", "serve", "--dash-root", root, "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError("the dashboard server did not start")

    def get(self, path: str, **params) -> tuple[dict, int]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        with urllib.request.urlopen(f"{self.base}{path}?{query}", timeout=60) as response:
            body = response.read()
        return json.loads(body), len(body)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def first_data(server: Server, width: int = 1000) -> tuple[float, int, int]:
    """Seconds to fetch every chart of the big run, requests six at a time; bytes; charts."""
    started = time.perf_counter()
    run, size = server.get("/api/run", prefix="bench/ui/big")
    charts = [(s["name"], key) for s in run["streams"] for key in s["keys"] if key != "_ts"]

    def fetch(chart):
        body, n = server.get("/api/buckets", prefix="bench/ui/big", stream=chart[0], keys=chart[1], width=width)
        return n

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        size += sum(pool.map(fetch, charts))
    return time.perf_counter() - started, size, len(charts)


def zoom(server: Server, huge: int, rng: random.Random, width: int = 1000) -> float:
    span = huge // 10
    start = rng.randrange(0, huge - span)
    started = time.perf_counter()
    body, _ = server.get("/api/buckets", prefix="bench/ui/big", stream="huge", keys="value",
                         width=width, start=start, stop=start + span)
    elapsed = time.perf_counter() - started
    assert len(body["series"]["value"]["max"]) <= width
    return elapsed


LIVE_WRITER = r"""
import sys, time
from ml_dash import Experiment
root, flushes = sys.argv[1], int(sys.argv[2])
with Experiment(prefix="bench/ui/live", dash_root=root).run as exp:
    stream = exp.metrics("train")
    stream.log(loss=0.0).flush()
    print("ready", flush=True)
    for i in range(1, flushes + 1):
        time.sleep(1.3)
        stream.log(loss=float(i))
        stream.flush()
        print(time.time(), flush=True)
"""


def live(server: Server, root: str, flushes: int, interval: float) -> list[float]:
    """Delays from a writer's flush to the poller seeing the point (the page polls every ``interval`` s)."""
    writer = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, root, str(flushes)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)))
    try:
        assert writer.stdout.readline().strip() == "ready"
        flushed_at = []
        seen_at = {}
        last = 0
        deadline = time.monotonic() + flushes * 3 + 10

        def read_flushes():
            for line in writer.stdout:
                flushed_at.append(float(line))

        import threading

        reader = threading.Thread(target=read_flushes, daemon=True)
        reader.start()
        while len(seen_at) < flushes and time.monotonic() < deadline:
            body, _ = server.get("/api/tail", prefix="bench/ui/live", stream="train", after=last)
            now = time.time()
            for index in body["index"]:
                seen_at[index] = now
                last = max(last, index)
            time.sleep(interval)
        reader.join(timeout=10)
        return [seen_at[i + 1] - flushed_at[i] for i in range(min(len(flushed_at), len(seen_at)))]
    finally:
        writer.kill()
        writer.wait()


def runs_table(root: str, rounds: int) -> tuple[float, list[float], int]:
    """The first /api/runs of a fresh server (cold), then warm requests."""
    server = Server(root)
    try:
        started = time.perf_counter()
        body, size = server.get("/api/runs")
        cold = time.perf_counter() - started
        warm = []
        for _ in range(rounds):
            started = time.perf_counter()
            body, size = server.get("/api/runs")
            warm.append(time.perf_counter() - started)
        return cold, warm, len(body["runs"])
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true", help="build the stores again")
    parser.add_argument("--peers", action="store_true", help="also measure TensorBoard's and MLflow's servers")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--work", default=None, help=f"where the stores are built (default {WORK})")
    args = parser.parse_args()
    if args.quick:
        streams, keys, points, huge, runs, rounds = 3, 2, 10_000, 200_000, 50, 3
    else:
        streams, keys, points, huge, runs, rounds = 20, 5, 1_000_000, 100_000_000, 10_000, args.rounds
    work = args.work or (tempfile.mkdtemp(prefix="ml-dash-ui-") if args.quick else WORK)
    sizes = f"{streams}x{keys}x{points}+{huge}+{runs}"
    big_root, many_root = os.path.join(work, "big"), os.path.join(work, "many")
    stamp = os.path.join(work, "built")
    if args.rebuild or not os.path.exists(stamp) or open(stamp).read() != sizes:
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        started = time.perf_counter()
        build_big(big_root, streams, keys, points, huge)
        print(f"built the big run in {time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()
        build_many(many_root, runs)
        print(f"built {runs} runs in {time.perf_counter() - started:.0f} s", flush=True)
        with open(stamp, "w") as handle:
            handle.write(sizes)

    results: dict = {"sizes": {"streams": streams, "keys": keys, "points": points, "huge": huge, "runs": runs}}
    server = Server(big_root)
    try:
        first_data(server)  # warms the page cache and the server's views
        firsts = [first_data(server) for _ in range(rounds)]
        rng = random.Random(5)
        zooms = [zoom(server, huge, rng) for _ in range(rounds * 3)]
        delays = live(server, big_root, flushes=max(3, rounds), interval=1.0)
        results["first_data_s"] = statistics.median(f[0] for f in firsts)
        results["first_data_bytes"] = firsts[0][1]
        results["charts"] = firsts[0][2]
        results["zoom_ms"] = statistics.median(zooms) * 1000
        results["zoom_max_ms"] = max(zooms) * 1000
        results["live_delay_s"] = statistics.median(delays) if delays else None
        results["live_delay_max_s"] = max(delays) if delays else None
    finally:
        server.close()
    cold, warm, count = runs_table(many_root, rounds)
    results.update(runs=count, runs_table_cold_s=cold, runs_table_warm_s=statistics.median(warm))

    print(f"first data, {results['charts']} charts at 1,000 px ({streams} streams x {keys} keys x "
          f"{points:,} points + 1 stream of {huge:,}): {results['first_data_s'] * 1000:.0f} ms, "
          f"{results['first_data_bytes'] / 1e6:.2f} MB")
    print(f"zoom re-fetch of the {huge:,}-point stream (a tenth of it at 1,000 px): "
          f"median {results['zoom_ms']:.1f} ms, max {results['zoom_max_ms']:.1f} ms")
    if delays:
        print(f"live: flush to point seen, polling every 1 s: median {results['live_delay_s']:.2f} s, "
              f"max {results['live_delay_max_s']:.2f} s")
    print(f"runs table of {count:,} runs: cold {cold * 1000:.0f} ms, warm {results['runs_table_warm_s'] * 1000:.0f} ms")
    if args.peers:
        sys.path.insert(0, HERE)
        from ui_peers import measure_peers

        results["peers"] = measure_peers(points=points)
        ours_server = Server(big_root)
        try:
            started = time.perf_counter()
            body, size = ours_server.get("/api/buckets", prefix="bench/ui/big", stream="s00", keys="k0", width=1000)
            results["ours_one_chart"] = {"ms": (time.perf_counter() - started) * 1000, "bytes": size,
                                         "points": 3 * len(body["series"]["k0"]["max"])}
        finally:
            ours_server.close()
        for row in results["peers"]:
            print(row)
        print("ml_dash one chart:", results["ours_one_chart"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    if args.quick:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
