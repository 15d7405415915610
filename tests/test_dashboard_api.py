"""The dashboard's HTTP/JSON API on real stores (Starlette's test client, no mocks).

Buckets are checked against numpy's min/max over the same index ranges; the
live tail against a writer flushing in this process; access against the
token and Host rules; ``.dashrc`` against paths that leave the dash root.
"""

import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("yaml")
from starlette.testclient import TestClient  # noqa: E402

from ml_dash import Experiment  # noqa: E402
from ml_dash.dashboard.app import create_app  # noqa: E402

LOCAL = "http://127.0.0.1"


def _make_run(root, prefix, values, params=None, stream="train", extra=None):
    with Experiment(prefix=prefix, dash_root=str(root)).run as exp:
        if params:
            exp.params.set(**params)
        handle = exp.metrics(stream)
        for i, value in enumerate(values):
            fields = {"loss": value, "step": 10 * i}
            if extra is not None:
                fields.update(extra(i))
            handle.log(**fields)
        handle.flush()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    rng = np.random.default_rng(7)
    values = rng.normal(size=12_345)
    values[7_777] = 1e6  # one spike among the points
    _make_run(root, "alice/proj/big", values.tolist(), {"lr": 0.001, "seed": 1, "model": {"depth": 4}},
              extra=lambda i: {"sparse": float(i)} if i % 3 == 0 else {})
    _make_run(root, "alice/proj/small", [3.0, 2.0, 1.0], {"lr": 0.1, "seed": 2})
    _make_run(root, "bob/other/run", [float(i) for i in range(100)], {"lr": 0.01, "seed": 1})
    return root, values


@pytest.fixture(scope="module")
def client(store):
    return TestClient(create_app(str(store[0])), base_url=LOCAL)


def _expected(values, start, stop, width):
    part = values[start:stop]
    size = max(1, -(-len(part) // width))
    lows, highs, lasts = [], [], []
    for i in range(0, len(part), size):
        chunk = part[i:i + size]
        present = chunk[~np.isnan(chunk)]
        lows.append(float(present.min()) if len(present) else None)
        highs.append(float(present.max()) if len(present) else None)
        lasts.append(float(present[-1]) if len(present) else None)
    return lows, highs, lasts, size


@pytest.mark.parametrize("start,stop,width", [
    (None, None, 1000), (None, None, 7), (100, 5_000, 333), (7_000, 8_000, 1000),
    (12_000, None, 2000), (0, 1, 10), (5, 5, 10)])
def test_buckets_are_exact_min_max_last(client, store, start, stop, width):
    _, values = store
    params = {"prefix": "alice/proj/big", "stream": "train", "keys": "loss", "width": width}
    if start is not None:
        params["start"] = start
    if stop is not None:
        params["stop"] = stop
    body = client.get("/api/buckets", params=params).json()
    lo, hi = start or 0, len(values) if stop is None else stop
    lows, highs, lasts, size = _expected(values, lo, hi, width)
    series = body["series"]["loss"]
    assert body["count"] == len(values) and (body["start"], body["stop"]) == (lo, hi)
    assert series["min"] == lows and series["max"] == highs and series["last"] == lasts
    assert len(series["min"]) <= width
    assert body["exact"] == (size == 1)
    assert body["index"] == list(range(lo, hi, size))


def test_a_spike_is_in_the_band_at_every_zoom(client):
    for start, stop, width in [(0, 12_345, 1000), (0, 12_345, 10), (7_000, 9_000, 50), (7_770, 7_790, 1000)]:
        body = client.get("/api/buckets", params={"prefix": "alice/proj/big", "stream": "train", "keys": "loss",
                                                  "width": width, "start": start, "stop": stop}).json()
        assert max(body["series"]["loss"]["max"]) == 1e6


def test_buckets_skip_missing_values_and_give_x(client, store):
    body = client.get("/api/buckets", params={"prefix": "alice/proj/big", "stream": "train",
                                              "keys": "sparse,loss", "width": 100, "x": "step"}).json()
    sparse = np.full(len(store[1]), np.nan)
    sparse[::3] = np.arange(0, len(store[1]), 3)
    lows, highs, lasts, size = _expected(sparse, 0, len(sparse), 100)
    assert body["series"]["sparse"] == {"min": lows, "max": highs, "last": lasts}
    last_points = [min(i + size, len(sparse)) - 1 for i in range(0, len(sparse), size)]
    assert body["x"] == [10.0 * i for i in last_points]  # x of each bucket's last point


def test_exact_buckets_when_zoomed_to_fewer_points_than_pixels(client, store):
    body = client.get("/api/buckets", params={"prefix": "alice/proj/big", "stream": "train", "keys": "loss",
                                              "start": 100, "stop": 150, "width": 1000}).json()
    assert body["exact"] is True
    assert body["series"]["loss"]["last"] == store[1][100:150].tolist()


def test_live_tail_returns_only_new_points(tmp_path):
    client = TestClient(create_app(str(tmp_path)), base_url=LOCAL)
    with Experiment(prefix="alice/live/run", dash_root=str(tmp_path)).run as exp:
        for i in range(5):
            exp.metrics("train").log(loss=float(i))
        exp.metrics("train").flush()
        runs = client.get("/api/runs").json()["runs"]
        assert [(r["prefix"], r["status"], r["live"]) for r in runs] == [("alice/live/run", "RUNNING", True)]
        first = client.get("/api/tail", params={"prefix": "alice/live/run", "stream": "train", "after": -1}).json()
        assert first["index"] == [0, 1, 2, 3, 4] and first["series"]["loss"] == [0, 1, 2, 3, 4]
        exp.metrics("train").log(loss=5.0)
        unflushed = client.get("/api/tail", params={"prefix": "alice/live/run", "stream": "train", "after": 4})
        assert unflushed.json()["index"] == []  # only committed snapshots are seen
        exp.metrics("train").flush()
        after = client.get("/api/tail", params={"prefix": "alice/live/run", "stream": "train", "after": 4}).json()
        assert after["index"] == [5] and after["series"]["loss"] == [5.0] and after["count"] == 6
    runs = client.get("/api/runs").json()["runs"]
    assert (runs[0]["status"], runs[0]["live"]) == ("COMPLETED", False)


def test_runs_table_carries_params_last_values_and_filters(client):
    runs = client.get("/api/runs").json()["runs"]
    assert [r["prefix"] for r in runs] == ["alice/proj/big", "alice/proj/small", "bob/other/run"]
    small = runs[1]
    assert small["params"] == {"lr": 0.1, "seed": 2} and small["last"] == {"train/loss": 1.0, "train/step": 20.0}
    assert small["folder"] == "alice/proj" and small["name"] == "small" and small["points"] == 3
    assert runs[0]["params"]["model.depth"] == 4
    assert "path" not in small  # no absolute paths of the server's disk
    only = client.get("/api/runs", params={"pattern": "alice/**"}).json()["runs"]
    assert [r["prefix"] for r in only] == ["alice/proj/big", "alice/proj/small"]


def test_runs_table_sees_new_and_changed_runs(tmp_path):
    client = TestClient(create_app(str(tmp_path)), base_url=LOCAL)
    _make_run(tmp_path, "a/b/one", [1.0])
    assert [r["points"] for r in client.get("/api/runs").json()["runs"]] == [1]
    _make_run(tmp_path, "a/b/one", [2.0, 3.0])  # appended by a second launch
    _make_run(tmp_path, "a/b/two", [1.0])
    runs = client.get("/api/runs").json()["runs"]
    assert [(r["prefix"], r["points"], r["last"]["train/loss"]) for r in runs] == [
        ("a/b/one", 3, 3.0), ("a/b/two", 1, 1.0)]


def test_aggregate_is_mean_min_max_std_across_runs(tmp_path):
    _make_run(tmp_path, "g/a/r1", [0.0, 2.0, 4.0, 6.0])
    _make_run(tmp_path, "g/a/r2", [2.0, 4.0, 6.0, 8.0])
    client = TestClient(create_app(str(tmp_path)), base_url=LOCAL)
    body = client.get("/api/aggregate", params={"prefixes": "g/a/r1,g/a/r2", "stream": "train", "key": "loss",
                                                "width": 4}).json()
    assert body["mean"] == [1.0, 3.0, 5.0, 7.0] and body["min"] == [0.0, 2.0, 4.0, 6.0]
    assert body["max"] == [2.0, 4.0, 6.0, 8.0] and body["std"] == [1.0, 1.0, 1.0, 1.0] and body["n"] == [2] * 4


def test_run_page_data_and_logs(tmp_path):
    with Experiment(prefix="a/b/c", dash_root=str(tmp_path)).run as exp:
        exp.params.set(optimizer={"name": "adam", "lr": 3e-4})
        exp.metrics.log(epoch=1).flush()
        exp.files.save_text("# My run\nnotes", to="README.md")
        exp.logs.info("starting")
        exp.logs.warn("loss is high", loss=9)
    client = TestClient(create_app(str(tmp_path)), base_url=LOCAL)
    body = client.get("/api/run", params={"prefix": "a/b/c"}).json()
    assert body["readme"] == "# My run\nnotes"
    assert body["params"] == {"optimizer.name": "adam", "optimizer.lr": 3e-4}
    assert [(s["name"], s["count"]) for s in body["streams"]] == [(None, 1)]
    assert body["info"]["status"] == "COMPLETED" and body["dashrc"] is None
    logs = client.get("/api/logs", params={"prefix": "a/b/c", "level": "warn"}).json()["logs"]
    assert [(r["level"], r["message"]) for r in logs] == [("warn", "loss is high")]
    found = client.get("/api/logs", params={"prefix": "a/b/c", "q": "START"}).json()["logs"]
    assert [r["message"] for r in found] == ["starting"]
    readme = client.get("/api/file", params={"prefix": "a/b/c", "path": "README.md"})
    assert readme.content == b"# My run\nnotes" and readme.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path,params,status,words", [
    ("/api/buckets", {"prefix": "alice/proj/big", "stream": "train", "keys": "los"}, 404, "'los'"),
    ("/api/buckets", {"prefix": "alice/proj/big", "stream": "trian"}, 404, "'trian'"),
    ("/api/buckets", {"prefix": "alice/proj/nope", "stream": "train"}, 404, "alice/proj/nope"),
    ("/api/buckets", {"prefix": "alice/proj/big", "stream": "train", "width": "0"}, 400, "width"),
    ("/api/buckets", {"prefix": "alice/proj/big", "stream": "train", "width": "wide"}, 400, "width"),
    ("/api/buckets", {"prefix": "alice/proj/big", "stream": "train", "width": "99999999"}, 400, "width"),
    ("/api/buckets", {"stream": "train"}, 400, "prefix"),
    ("/api/buckets", {"prefix": "../../etc", "stream": "train"}, 400, ""),
    ("/api/tail", {"prefix": "alice/proj/big", "stream": "train", "limit": "0"}, 400, "limit"),
    ("/api/aggregate", {"prefixes": "", "stream": "train", "key": "loss"}, 400, "prefixes"),
    ("/api/file", {"prefix": "alice/proj/big", "path": "nope.txt"}, 404, "nope.txt"),
    ("/api/logs", {"prefix": "alice/proj/big", "level": "loud"}, 400, "loud"),
])
def test_bad_requests_are_refused_with_a_message(client, path, params, status, words):
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_a_token_is_required_when_set(store):
    app = create_app(str(store[0]), token="s3cret")
    client = TestClient(app, base_url="http://192.0.2.1:8765")  # any Host: the token decides
    assert client.get("/api/runs").status_code == 403
    assert client.get("/api/runs", params={"token": "wrong"}).status_code == 403
    assert client.get("/").status_code == 403
    assert client.get("/api/runs", params={"token": "s3cret"}).status_code == 200
    assert client.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_without_a_token_only_loopback_hosts_are_answered(store):
    app = create_app(str(store[0]))
    assert TestClient(app, base_url="http://localhost:8765").get("/api/runs").status_code == 200
    assert TestClient(app, base_url="http://[::1]:8765").get("/api/runs").status_code == 200
    rebound = TestClient(app, base_url="http://attacker.example:8765").get("/api/runs")
    assert rebound.status_code == 403 and "attacker.example" in rebound.json()["error"]
    client = TestClient(app, base_url=LOCAL)
    for host in ("127.0.0.1.attacker.example", "[::1].attacker.example", "[::1]x", "attacker.example:127.0.0.1", ""):
        assert client.get("/api/runs", headers={"host": host}).status_code == 403, host
    assert client.get("/api/runs", headers={"host": "LocalHost:8765"}).status_code == 200


def test_dashrc_round_trip_and_validation(tmp_path):
    _make_run(tmp_path, "a/b/c", [1.0])
    client = TestClient(create_app(str(tmp_path)), base_url=LOCAL)
    layout = "charts:\n  - ctype: line\n    yKeys: [loss]\n    xKey: {default: step}\n    stream: train\n"
    saved = client.post("/api/dashrc", json={"folder": "a/b/c", "content": layout})
    assert saved.status_code == 200 and saved.json()["path"] == "a/b/c/.dashrc"
    assert (tmp_path / "a/b/c/.dashrc").read_text() == layout
    chart = client.get("/api/run", params={"prefix": "a/b/c"}).json()["dashrc"]["charts"][0]
    assert chart["xKey"] == "step" and chart["yKeys"] == ["loss"]
    dated = client.post("/api/dashrc", json={"folder": "a/b", "content": "when: 2021-01-01\ncharts: []\n"})
    assert dated.status_code == 200 and dated.json()["parsed"]["when"] == "2021-01-01"  # YAML dates as text
    compare = "charts:\n  - yKey: loss\n    series:\n      - {prefix: a/b/c, label: mine, dash: dot}\n"
    assert client.post("/api/dashrc", json={"folder": "a", "content": compare}).status_code == 200
    assert client.get("/api/dashrc", params={"folder": "a"}).json()["parsed"]["charts"][0]["series"][0][
        "label"] == "mine"
    # the store is still whole
    from ml_dash import check
    assert check("a/b/c", dash_root=str(tmp_path)).ok


@pytest.mark.parametrize("folder,content,words", [
    ("../outside", "charts: []", "inside the dash root"),
    ("a/../../x", "charts: []", "inside the dash root"),
    ("/etc", "charts: []", None),
    ("a/b/c", "charts: [", "not valid YAML"),
    ("a/b/c", "- just a list", "mapping"),
    ("a/b/c", "charts:\n  - ctype: pie\n    yKey: loss\n", "pie"),
    ("a/b/c", "charts:\n  - title: no keys\n", "yKey"),
    ("a/b/c", "charts:\n  - yKey: loss\n    bins: lots\n", "bins"),
    ("a/b/c", "charts:\n  - yKey: loss\n    series: [{label: x}]\n", "prefix"),
    ("a/b/c", "!!python/object/apply:os.system ['true']", "not valid YAML"),
    ("a/b/c", "x: " + "y" * 300_000, "larger than"),
    ("a/b/nope", "charts: []", "no folder"),
    ("a/b/c", 42, "YAML text"),
    ("a/b/c", "a: &a [1, 1]\nb: &b [*a, *a]\nc: [*b, *b]\ncharts: []", "aliases"),
    ("a/b/c", "[" * 50_000 + "]" * 50_000, "nested too deeply"),
])
def test_dashrc_refuses_bad_paths_and_content(tmp_path, folder, content, words):
    _make_run(tmp_path, "a/b/c", [1.0])
    (tmp_path.parent / "outside").mkdir(exist_ok=True)
    client = TestClient(create_app(str(tmp_path)), base_url=LOCAL)
    response = client.post("/api/dashrc", json={"folder": folder, "content": content})
    if folder == "/etc":  # an absolute folder is taken relative to the root: a/ b/ etc, not /etc
        assert response.status_code == 404 and not os.path.exists("/etc/.dashrc.written-by-test")
        return
    assert response.status_code in (400, 404), response.text
    assert words in response.json()["error"]
    assert not (tmp_path.parent / "outside" / ".dashrc").exists()


def test_a_dashrc_that_cannot_be_written_on_a_full_disk_is_an_error_and_the_old_one_stays(tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        _make_run(disk, "a/b/c", [1.0])
        client = TestClient(create_app(str(disk)), base_url=LOCAL)
        assert client.post("/api/dashrc", json={"folder": "a/b", "content": "charts: []\n"}).status_code == 200
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)  # the disk filled to the last byte
        try:
            for size in (1 << 16, 4096, 1):
                try:
                    while True:
                        os.write(filler, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(filler)
        response = client.post("/api/dashrc", json={"folder": "a/b", "content": "title: " + "x" * 200_000})
        assert response.status_code == 507 and ".dashrc" in response.json()["error"]
        assert (disk / "a" / "b" / ".dashrc").read_text() == "charts: []\n"
        assert [p for p in os.listdir(disk / "a" / "b") if p.startswith(".dashrc.")] == []  # no temporary left
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_dashrc_refuses_a_folder_linked_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    _make_run(root, "a/b/c", [1.0])
    os.symlink(outside, root / "a" / "link")
    client = TestClient(create_app(str(root)), base_url=LOCAL)
    response = client.post("/api/dashrc", json={"folder": "a/link", "content": "charts: []"})
    assert response.status_code == 400 and "leaves the dash root" in response.json()["error"]
    os.symlink(outside / "target", root / "a" / "b" / ".dashrc")
    response = client.post("/api/dashrc", json={"folder": "a/b", "content": "charts: []"})
    assert response.status_code == 400 and not (outside / "target").exists()


def test_the_server_never_writes_into_a_store(store, client):
    root = store[0]

    def snapshot():
        out = {}
        for folder, _, files in os.walk(root):
            for name in files:
                if name == "lock.mdb":  # LMDB's reader table: readers register there by design
                    continue
                path = os.path.join(folder, name)
                stat = os.stat(path)
                out[path] = (stat.st_size, stat.st_mtime_ns)
        return out

    before = snapshot()
    client.get("/api/runs")
    for prefix in ("alice/proj/big", "alice/proj/small", "bob/other/run"):
        client.get("/api/run", params={"prefix": prefix})
        client.get("/api/buckets", params={"prefix": prefix, "stream": "train", "width": 50})
        client.get("/api/tail", params={"prefix": prefix, "stream": "train", "after": 0})
        client.get("/api/logs", params={"prefix": prefix})
    assert snapshot() == before


def test_static_page_and_the_local_plotly_bundle(client):
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    bundle = client.get("/static/plotly.min.js")
    assert bundle.status_code == 200 and len(bundle.content) > 1_000_000  # served from the package
    assert client.get("/static/../app.py").status_code == 404


def test_import_ml_dash_stays_lean():
    code = ("import sys, ml_dash; bad = [m for m in ('starlette', 'uvicorn', 'yaml', 'plotly', "
            "'ml_dash.dashboard') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args):
    process = subprocess.Popen([sys.executable, "-m", "ml_dash", "serve", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    return process, line


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait(url):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            return _get(url)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the server at {url} never answered")


def test_serve_on_every_address_prints_a_token_and_refuses_requests_without_it(store):
    port = _free_port()
    process, line = _start(["--dash-root", str(store[0]), "--host", "0.0.0.0", "--port", str(port)])
    try:
        assert "?token=" in line, line
        token = line.strip().rsplit("?token=", 1)[1]
        assert len(token) >= 20
        base = f"http://127.0.0.1:{port}"  # the request stays on this machine
        assert _wait(f"{base}/api/runs") == 403
        assert _get(f"{base}/api/runs?token={token}") == 200
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_on_loopback_needs_no_token(store):
    port = _free_port()
    process, line = _start(["--dash-root", str(store[0]), "--port", str(port)])
    try:
        assert line.strip().endswith(f"127.0.0.1:{port}/"), line
        assert _wait(f"http://127.0.0.1:{port}/api/runs") == 200
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert math.isfinite(process.returncode or 0)
