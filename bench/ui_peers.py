"""What the peers' own dashboard servers hand a browser for one long chart.

For each peer (TensorBoard, MLflow) one run is written, through the peer's
own API in its own venv (``bench/envs.py``), with one metric ``train/loss``
of ``points`` points: a noisy decaying curve with a single spike of 100 at
point 777,777 (at 7/9 of the run when it is shorter). The peer's own server
is then started on 127.0.0.1 and asked for that chart's data the way its UI
asks for it:

- TensorBoard (``--load_fast=false``, everything else default; then also
  with ``--samples_per_plugin scalars=<points>``, which keeps every point):
  ``GET /data/plugin/scalars/scalars?run=run&tag=train/loss``. The server
  loads the event file in the background; it is polled until the whole run
  is served (the last step written is there and the answer stops changing).
- MLflow (``mlflow server`` on a SQLite store): the chart of the run page,
  ``GET /ajax-api/2.0/mlflow/metrics/get-history-bulk-interval`` with
  ``max_results=320`` as the UI sends it, and the metric page's
  ``GET /ajax-api/2.0/mlflow/metrics/get-history`` in pages of 25,000 (the
  UI fetches every page before it draws).

Per endpoint: seconds to write the run, seconds from starting the server
until the endpoint first answered with the whole run, then over ``rounds``
requests the median time of one GET, its bytes (uncompressed body), how
many points it returns and whether the spike is among them; for a paged
endpoint also every page of one full read.

    python bench/ui_peers.py                      # 1,000,000 points, 5 rounds
    python bench/ui_peers.py --points 10000       # smoke run
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envs  # noqa: E402

PEERS = ("tensorboard", "mlflow")
TAG = "train/loss"
SPIKE = 100.0
SPIKE_AT = 777_777
TB_RUN = "run"
MLFLOW_PAGE = 25_000      # what the MLflow UI's metric page asks for per page
MLFLOW_SAMPLED = 320      # what the MLflow UI's charts ask get-history-bulk-interval for
HTTP_TIMEOUT = 300.0      # one request
READY_TIMEOUT = 120.0     # a server answering at all
LOAD_TIMEOUT = 900.0      # a server serving the whole run
WRITE_TIMEOUT = 1800.0    # writing the run


def spike_step(points):
    """Step of the single spike: 777,777, or 7/9 of the way for a shorter run."""
    return SPIKE_AT if points > SPIKE_AT else points * 7 // 9


def curve(points):
    """The values written for both peers: a noisy decay with one spike of 100."""
    import numpy as np
    steps = np.arange(points, dtype=np.float64)
    noise = np.random.default_rng(7).standard_normal(points)
    values = 0.1 + 2.0 * np.exp(-steps / max(points / 5, 1.0)) + 0.02 * noise
    values = np.abs(values)
    values[spike_step(points)] = SPIKE
    return values


# Run under the peer's interpreter: argv = values.npy, target; prints one JSON line.
WRITE_TENSORBOARD = r"""
import json, sys, time
import numpy as np
from importlib.metadata import version
from tensorboardX import SummaryWriter
values = np.load(sys.argv[1]).tolist()
start = time.perf_counter()
writer = SummaryWriter(logdir=sys.argv[2])
add = writer.add_scalar
for step, value in enumerate(values):
    add("train/loss", value, step)
writer.close()
print(json.dumps({"write_s": time.perf_counter() - start,
                  "version": "tensorboard " + version("tensorboard")
                             + ", tensorboardX " + version("tensorboardX")}))
"""

WRITE_MLFLOW = r"""
import json, os, sys, time
import numpy as np
from importlib.metadata import version
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
values = np.load(sys.argv[1]).tolist()
root = sys.argv[2]
client = MlflowClient("sqlite:///" + os.path.join(root, "mlflow.db"))
run_id = client.create_run(client.create_experiment(
    "bench", artifact_location=os.path.join(root, "artifacts"))).info.run_id
start = time.perf_counter()
now = int(time.time() * 1000)
for first in range(0, len(values), 1000):   # log_batch takes at most 1,000 metrics
    client.log_batch(run_id, metrics=[Metric("train/loss", value, now, step)
                                      for step, value in enumerate(values[first:first + 1000], first)])
client.set_terminated(run_id)
print(json.dumps({"write_s": time.perf_counter() - start, "run_id": run_id,
                  "version": "mlflow " + version("mlflow")}))
"""


def _env(home):
    env = dict(os.environ, HOME=home, DISABLE_MLFLOW_INTEGRATION="TRUE")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PYTHONPATH", None)      # a peer's venv must not see this checkout's packages
    return env


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url, timeout=HTTP_TIMEOUT):
    """One GET: (status, body bytes, seconds). Identity encoding: the body as served."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    return status, body, time.perf_counter() - start


def _stop(process):
    """End the server and whatever it spawned (it leads its own process group)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)     # helpers left behind by the leader
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout=15)


def _log_tail(path, lines=3):
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-300:]


def _write(peer, script, values_path, target, home):
    done = subprocess.run([str(envs.python_of(peer)), "-c", script, str(values_path), str(target)],
                          capture_output=True, text=True, env=_env(home), cwd=home,
                          timeout=WRITE_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError("write failed: " + done.stderr.strip()[-300:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _serve(command, home, log_path):
    log = open(log_path, "w")
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env(home), cwd=home,
                                start_new_session=True)
    finally:
        log.close()


def _wait_answering(process, url, log_path, deadline):
    """Poll until the server answers ``url`` with 200; its status, body and seconds."""
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}): {_log_tail(log_path)}")
        try:
            status, body, _ = _get(url, timeout=30)
            if status == 200:
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no answer from {url} in time: {_log_tail(log_path)}")
        time.sleep(0.25)


def _row(peer, endpoint, points):
    return {"peer": peer, "endpoint": endpoint, "status": "ok", "version": None,
            "points_written": points, "spike_step": spike_step(points), "write_s": None,
            "ready_s": None, "first_load_s": None, "get_ms": None, "get_ms_range": None,
            "bytes": None, "points_returned": None, "spike_returned": None,
            "pages": None, "all_pages_ms": None, "all_pages_bytes": None,
            "all_pages_points": None, "all_pages_spike": None}


def _failed(rows, error):
    for row in rows:
        if row["status"] == "ok" and row["get_ms"] is None:
            row["status"] = "failed: " + str(error)[:300]
    return rows


def _has_spike(values):
    return any(value is not None and float(value) >= SPIKE - 0.5 for value in values)


def _time_rounds(fetch, rounds):
    """``fetch()`` -> (bytes, values) of one answer; the ms of ``rounds`` calls and the last answer."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        size, values = fetch()
        times.append((time.perf_counter() - start) * 1000)
    return times, size, values


# TensorBoard ---------------------------------------------------------------------------------

def _tb_points(body):
    return json.loads(body)     # [[wall_time, step, value], ...]


def tensorboard_servers(points):
    """The server as it starts by default, then told to keep every point: its default keeps a
    reservoir sample of 1,000 scalars per tag. (``scalars=0`` keeps all when loading, but the
    scalars plugin then downsamples to 0 and answers ``[]``: the count must be given.)"""
    return (("--load_fast=false", ["--load_fast=false"]),
            (f"--load_fast=false --samples_per_plugin scalars={points}",
             ["--load_fast=false", "--samples_per_plugin", f"scalars={points}"]))


def measure_tensorboard(points, rounds, work, values_path):
    written = _write("tensorboard", WRITE_TENSORBOARD, values_path, work / "logs" / TB_RUN, str(work))
    rows = []
    for number, (label, flags) in enumerate(tensorboard_servers(points)):
        row = _row("tensorboard", f"GET /data/plugin/scalars/scalars ({label})", points)
        row["version"], row["write_s"] = written["version"], written["write_s"]
        rows.append(row)
        try:
            _tensorboard_server(row, flags, points, rounds, work, work / f"tensorboard-server-{number}.log")
        except (RuntimeError, OSError, ValueError) as error:
            _failed([row], error)
    return rows


def _tensorboard_server(row, flags, points, rounds, work, log_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/data/plugin/scalars/scalars?" + urllib.parse.urlencode({"run": TB_RUN, "tag": TAG})
    command = [str(envs.python_of("tensorboard").parent / "tensorboard"), "--logdir", str(work / "logs"),
               "--host", "127.0.0.1", "--port", str(port), *flags]
    start = time.monotonic()
    server = _serve(command, str(work), log_path)
    try:
        _wait_answering(server, f"{base}/data/environment", log_path, start + READY_TIMEOUT)
        row["ready_s"] = time.monotonic() - start
        # Loading is in the background: the run appears, then grows until the last step is in;
        # whole once the last step written is served and the next poll answers the same.
        last, complete_at, deadline = None, None, start + LOAD_TIMEOUT
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited ({server.returncode}): {_log_tail(log_path)}")
            status, body, _ = _get(url)
            now = time.monotonic()
            seen = None
            if status == 200:
                data = _tb_points(body)
                seen = (len(data), data[-1][1] if data else None)
            if seen is not None and seen[1] == points - 1:
                if seen == last:
                    break
                complete_at = complete_at or now
            else:
                complete_at = None
            last = seen
            if now > deadline:
                raise RuntimeError(f"run not whole in {LOAD_TIMEOUT:.0f} s: last answer {seen}")
            time.sleep(0.5)
        row["first_load_s"] = complete_at - start

        def fetch():
            status, body, _ = _get(url)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            return len(body), [point[2] for point in _tb_points(body)]

        times, size, values = _time_rounds(fetch, rounds)
        _fill(row, times, size, values, pages=1)
    finally:
        _stop(server)


def _fill(row, times, size, values, pages, all_ms=None, all_size=None, all_values=None):
    row["get_ms"] = statistics.median(times)
    row["get_ms_range"] = (min(times), max(times))
    row["bytes"], row["points_returned"], row["spike_returned"] = size, len(values), _has_spike(values)
    row["pages"] = pages
    row["all_pages_ms"] = row["get_ms"] if all_ms is None else all_ms
    row["all_pages_bytes"] = size if all_size is None else all_size
    all_values = values if all_values is None else all_values
    row["all_pages_points"], row["all_pages_spike"] = len(all_values), _has_spike(all_values)


# MLflow --------------------------------------------------------------------------------------

def _ml_values(body):
    return [metric.get("value") for metric in json.loads(body).get("metrics", [])]


def measure_mlflow(points, rounds, work, values_path):
    sampled = _row("mlflow", f"GET get-history-bulk-interval max_results={MLFLOW_SAMPLED} (run page chart)",
                   points)
    paged = _row("mlflow", f"GET get-history max_results={MLFLOW_PAGE}, every page (metric page)", points)
    rows = [sampled, paged]
    (work / "mlflow").mkdir()
    written = _write("mlflow", WRITE_MLFLOW, values_path, work / "mlflow", str(work))
    for row in rows:
        row["version"], row["write_s"] = written["version"], written["write_s"]
    run_id = written["run_id"]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / "mlflow-server.log"
    command = [str(envs.python_of("mlflow").parent / "mlflow"), "server",
               "--backend-store-uri", "sqlite:///" + str(work / "mlflow" / "mlflow.db"),
               "--default-artifact-root", str(work / "mlflow" / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    sampled_url = f"{base}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?" + urllib.parse.urlencode(
        {"run_ids": run_id, "metric_key": TAG, "max_results": MLFLOW_SAMPLED})

    def page_url(token=None):
        query = {"run_id": run_id, "metric_key": TAG, "max_results": MLFLOW_PAGE}
        if token:
            query["page_token"] = token
        return f"{base}/ajax-api/2.0/mlflow/metrics/get-history?" + urllib.parse.urlencode(query)

    def fetch_sampled():
        status, body, _ = _get(sampled_url)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        return len(body), _ml_values(body)

    def fetch_page(token=None):
        status, body, _ = _get(page_url(token))
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        return len(body), _ml_values(body), json.loads(body).get("next_page_token")

    def fetch_all():
        size, values, token = fetch_page()
        pages, deadline = 1, time.monotonic() + LOAD_TIMEOUT
        while token:
            if time.monotonic() > deadline:
                raise RuntimeError(f"get-history paging not done in {LOAD_TIMEOUT:.0f} s")
            more, page, token = fetch_page(token)
            size, pages = size + more, pages + 1
            values += page
        return size, values, pages

    start = time.monotonic()
    server = _serve(command, str(work), log_path)
    try:
        _wait_answering(server, f"{base}/health", log_path, start + READY_TIMEOUT)
        ready = time.monotonic() - start
        # The data sits in the store: the first (cold) whole answer of each endpoint after the
        # server is up is its first load.
        try:
            cold = time.perf_counter()
            size, values = fetch_sampled()
            sampled["ready_s"], sampled["first_load_s"] = ready, ready + time.perf_counter() - cold
            times, size, values = _time_rounds(fetch_sampled, rounds)
            _fill(sampled, times, size, values, pages=1)
        except (RuntimeError, OSError, ValueError) as error:
            _failed([sampled], error)
        try:
            cold = time.perf_counter()
            all_size, all_values, pages = fetch_all()
            paged["ready_s"], paged["first_load_s"] = ready, ready + time.perf_counter() - cold
            if len(all_values) != points:
                raise RuntimeError(f"get-history returned {len(all_values)} of {points} points")
            times, size, values = _time_rounds(lambda: fetch_page()[:2], rounds)
            all_times = []
            for _ in range(rounds):
                begin = time.perf_counter()
                all_size, all_values, pages = fetch_all()
                all_times.append((time.perf_counter() - begin) * 1000)
            _fill(paged, times, size, values, pages, statistics.median(all_times), all_size, all_values)
        except (RuntimeError, OSError, ValueError) as error:
            _failed([paged], error)
    finally:
        _stop(server)
    return rows


MEASURES = {"tensorboard": measure_tensorboard, "mlflow": measure_mlflow}
ENDPOINTS = {"tensorboard": 2, "mlflow": 2}


def measure_peers(points=1_000_000, rounds=5, workdir=None, peers=PEERS):
    """One row per peer endpoint (see the module doc); a peer whose venv is not ready is
    reported with status ``"missing"`` (or its install failure) and no figures."""
    if points < 2:
        raise ValueError("points must be at least 2")
    import numpy as np
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="ui-peers-") if own else workdir)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        values_path = root / "values.npy"
        np.save(values_path, curve(points))
        for peer in peers:
            state = envs.status(peer)
            if state != "ready":
                for _ in range(ENDPOINTS[peer]):
                    row = _row(peer, "-", points)
                    row["status"] = state
                    rows.append(row)
                continue
            work = root / peer
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            try:
                rows += MEASURES[peer](points, rounds, work, values_path)
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as error:
                row = _row(peer, "-", points)
                row["status"] = "failed: " + str(error)[:300]
                rows.append(row)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return rows


def _number(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _spread(row):
    if row["get_ms"] is None:
        return "-"
    low, high = row["get_ms_range"]
    return f"{_number(row['get_ms'])} ({_number(low)}-{_number(high)})"


def table(rows):
    head = ["peer", "endpoint", "status", "write s", "server up s", "first load s", "one GET ms, median (min-max)",
            "bytes", "points", "spike", "pages", "all pages ms", "all pages bytes", "all pages points",
            "spike in all"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["peer"], row["endpoint"], row["status"], _number(row["write_s"]),
                 _number(row["ready_s"]), _number(row["first_load_s"]), _spread(row),
                 _number(row["bytes"]), _number(row["points_returned"]), _number(row["spike_returned"]),
                 _number(row["pages"]), _number(row["all_pages_ms"]), _number(row["all_pages_bytes"]),
                 _number(row["all_pages_points"]), _number(row["all_pages_spike"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", help="keep the runs and server logs here")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = measure_peers(args.points, args.rounds, args.workdir, tuple(args.peers))
    versions = sorted({row["version"] for row in rows if row["version"]})
    print(f"{args.points:,} points of {TAG!r}, spike of {SPIKE:g} at step {spike_step(args.points):,}; "
          f"{args.rounds} rounds; " + "; ".join(versions))
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
