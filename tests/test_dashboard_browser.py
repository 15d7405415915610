"""The dashboard page end to end: a real ``ml-dash serve`` and a headless Chromium.

Four runs in two folders, one of them written by a child process while the
tests run.  The page's chart containers report what they drew (data-points,
data-last, data-start/data-stop, data-exact), so the values on screen are
compared with the values stored.  Screenshots are saved to a temporary folder, or, with
ML_DASH_SCREENSHOTS=docs/images, where the docs take them from (so that a test run leaves
the checkout unchanged).

Skipped only when Debian's Chromium is absent and CI is unset; under CI a
missing browser fails the module.
"""

import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import zlib

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(REPO, os.environ["ML_DASH_SCREENSHOTS"]) if os.environ.get("ML_DASH_SCREENSHOTS") else (
    tempfile.mkdtemp(prefix="ml-dash-screenshots-"))

if not os.path.exists(CHROMIUM) or not os.path.exists(CHROMEDRIVER):
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {CHROMIUM} or {CHROMEDRIVER} is missing", pytrace=False)
    pytest.skip(f"{CHROMIUM} (Debian's chromium with chromium-driver) is not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from ml_dash import Experiment, load  # noqa: E402

SHORT = 60  # points of the two runs of alice/proj
LONG = 6000  # points of bob/other/run-c: bucketed on screen until zoomed
WIDE = 100  # charts of carol/wide/run-w: drawn only when scrolled into view

LIVE_WRITER = textwrap.dedent("""
    import os, sys, time
    from ml_dash import Experiment
    root, stop_file = sys.argv[1], sys.argv[2]
    with Experiment(prefix="bob/other/live", dash_root=root).run as exp:
        exp.params.set(lr=0.005, seed=3)
        i = 0
        while not os.path.exists(stop_file) and i < 3000:
            exp.metrics("train").log(loss=1.0 + i, step=i)
            exp.metrics("train").flush()
            i += 1
            time.sleep(0.2)
""")


CRASHED_WRITER = textwrap.dedent("""
    import os, sys
    from ml_dash import Experiment
    exp = Experiment(prefix="carol/wide/crashed", dash_root=sys.argv[1])
    exp.run.start()
    exp.metrics("train").log(loss=0.5, step=0)
    exp.metrics("train").flush()
    os._exit(1)  # no end of run: RUNNING, with its writer gone
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_runs(root):
    for prefix, lr, seed, n in (("alice/proj/run-a", 0.001, 1, SHORT), ("alice/proj/run-b", 0.01, 2, SHORT),
                                ("bob/other/run-c", 0.1, 1, LONG)):
        with Experiment(prefix=prefix, dash_root=root).run as exp:
            exp.params.set(lr=lr, seed=seed, model={"depth": seed + 1})
            train = exp.metrics("train")
            for i in range(n):
                decay = math.exp(-4 * i / n * (1 + 10 * lr))
                spike = 0.3 if i % 500 == 250 else 0.0
                train.log(loss=0.2 + 0.8 * decay + 0.05 * math.sin(i / 3) + spike, step=i * 10)
                if i % 10 == 9:
                    exp.metrics("eval").log(acc=0.5 + seed / 10 - 0.3 / (1 + i * lr), step=i * 10)
            train.flush()


def _png(width=48, height=32):
    """A small RGB gradient as PNG bytes, written by hand (no imaging library needed)."""
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 5, y * 7, 160)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _extras(root):
    with Experiment(prefix="alice/proj/run-a", dash_root=root).run as exp:
        exp.files.save_text("# run-a\n\nThe baseline: lr 0.001.\n", to="README.md")
        exp.files.save(_png(), to="plots/curve.png")
        exp.logs.info("starting")
        exp.logs.warn("loss spiked", step=120)
        exp.logs.info("done")
    with open(os.path.join(root, "alice", "proj", ".dashrc"), "w") as f:  # a comparison of the folder's runs
        f.write(textwrap.dedent("""
            charts:
              - title: loss by learning rate
                stream: train
                yKey: loss
                series:
                  - {prefix: alice/proj/run-a, label: "lr 0.001", color: "#d62728"}
                  - {prefix: alice/proj/run-b, label: "lr 0.01", dash: dot}
        """))
    with Experiment(prefix="carol/wide/run-w", dash_root=root).run as exp:
        wide = exp.metrics("wide")
        for i in range(20):
            wide.log(**{f"k{j:03d}": i * j for j in range(WIDE)})
        wide.flush()


def _stored(root, prefix, stream="train", key="loss"):
    with load(prefix, dash_root=root) as view:
        handle = view.metrics(stream)
        n = len(handle)
        return n, float(handle.column(key, n - 1, n)[0])


def _wait_http(url, timeout=20):
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def site():
    tmp = tempfile.mkdtemp(prefix="ml-dash-browser-")
    root = os.path.join(tmp, "dash")
    _make_runs(root)
    _extras(root)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", CRASHED_WRITER, root], env=env, timeout=30)
    stop_file = os.path.join(tmp, "stop")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    writer = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, root, stop_file], env=env)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "ml_dash", "serve", "--dash-root", root, "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 20
        while True:  # the server answers, and the live run has its first points
            runs = _wait_http(base + "/api/runs")["runs"]
            live = [r for r in runs if r["prefix"] == "bob/other/live"]
            if live and live[0]["points"] >= 2:
                break
            assert time.time() < deadline, runs
            time.sleep(0.1)
        yield {"base": base, "root": root, "stop_file": stop_file, "env": env}
    finally:
        open(stop_file, "w").close()
        server.terminate()
        for proc in (writer, server):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="ml-dash-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1500,950", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, timeout, poll_frequency=0.1):
    """A wait that looks again at an element replaced meanwhile (the runs table refreshes every 2 s)."""
    return WebDriverWait(driver, timeout, poll_frequency=poll_frequency,
                         ignored_exceptions=(StaleElementReferenceException,))


def _open(driver, base, hash_=""):
    driver.get("about:blank")
    driver.get(base + "/" + (("#" + hash_) if hash_ else ""))
    _wait(driver, 15).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")


def _chart(driver, stream, key, timeout=10, exact_attr="data-points"):
    selector = f'.chart[data-stream="{stream}"][data-key="{key}"]'
    return _wait(driver, timeout).until(
        lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, selector) if e.get_attribute(exact_attr)), None))


def _type(box, text):
    """Replace the box's text the way a person does (clear() fires no input event)."""
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def _visible_rows(driver):
    # read in one script: the table refreshes every 2 s while a run is live
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#runs tr.run'), tr => tr.dataset.prefix)")


def _row(driver, prefix, expression):
    """``expression`` of the runs-table row ``tr`` of ``prefix``, read in one script."""
    script = "var tr = document.querySelector('#runs tr[data-prefix=\"' + arguments[0] + '\"]'); return "
    return driver.execute_script(script + expression, prefix)


def _selected(driver):
    return driver.execute_script("var tr = document.querySelector('#runs tr.selected'); return tr && tr.dataset.prefix")


def _shot(driver, name):
    os.makedirs(IMAGES, exist_ok=True)
    time.sleep(0.3)  # let Plotly finish its transition
    driver.save_screenshot(os.path.join(IMAGES, f"dashboard-{name}.png"))


def test_run_list_shows_every_run(site, browser):
    _open(browser, site["base"])
    assert _visible_rows(browser) == ["alice/proj/run-a", "alice/proj/run-b", "bob/other/live", "bob/other/run-c",
                                      "carol/wide/crashed", "carol/wide/run-w"]
    folders = [e.get_attribute("data-folder") for e in browser.find_elements(By.CSS_SELECTOR, "#folders .folder")]
    assert {"alice/proj", "bob/other", "carol/wide"} <= set(folders)
    assert _row(browser, "bob/other/live", "tr.dataset.status") == "RUNNING"
    browser.find_element(By.CSS_SELECTOR, '#folders .folder[data-folder="bob"]').click()
    assert _visible_rows(browser) == ["bob/other/live", "bob/other/run-c"]
    browser.find_element(By.CSS_SELECTOR, '#folders .folder[data-folder=""]').click()
    assert len(_visible_rows(browser)) == 6
    crashed = browser.find_element(By.CSS_SELECTOR, '#runs tr[data-prefix="carol/wide/crashed"]')
    assert crashed.get_attribute("data-status") == "RUNNING"
    assert crashed.find_elements(By.CSS_SELECTOR, ".badge-stale")
    assert _row(browser, "bob/other/live", "!tr.querySelector('.badge-stale')")
    # a click on a header sorts by it; a second click reverses
    browser.find_element(By.CSS_SELECTOR, '#runs th[data-col="points"]').click()
    assert _visible_rows(browser)[0] == "carol/wide/crashed"
    browser.find_element(By.CSS_SELECTOR, '#runs th[data-col="points"]').click()
    assert _visible_rows(browser)[0] == "bob/other/run-c"


def test_chart_shows_the_stored_values(site, browser):
    _open(browser, site["base"], "run=alice/proj/run-a&tab=dashboard")
    chart = _chart(browser, "train", "loss")
    count, last = _stored(site["root"], "alice/proj/run-a")
    assert int(chart.get_attribute("data-points")) == count == SHORT
    assert float(chart.get_attribute("data-last")) == last
    assert chart.get_attribute("data-exact") == "true"
    assert (chart.get_attribute("data-start"), chart.get_attribute("data-stop")) == ("0", str(count))
    keys = {(e.get_attribute("data-stream"), e.get_attribute("data-key"))
            for e in browser.find_elements(By.CSS_SELECTOR, ".chart")}
    assert keys == {("train", "loss"), ("train", "step"), ("eval", "acc"), ("eval", "step")}
    _shot(browser, "overview")


def test_text_and_expression_filters(site, browser):
    _open(browser, site["base"])
    box = browser.find_element(By.ID, "filter")
    _type(box, "run-c")
    assert _visible_rows(browser) == ["bob/other/run-c"]
    _type(box, "alice")
    assert _visible_rows(browser) == ["alice/proj/run-a", "alice/proj/run-b"]
    _type(box, "")
    expr = browser.find_element(By.ID, "expr")
    _type(expr, "lr < 0.01")
    _wait(browser, 5).until(lambda d: _visible_rows(d) == ["alice/proj/run-a", "bob/other/live"])
    _type(expr, 'lr >= 0.01 && status == "COMPLETED" || seed == 3')
    expected = ["alice/proj/run-b", "bob/other/live", "bob/other/run-c"]
    _wait(browser, 5).until(lambda d: _visible_rows(d) == expected)
    _type(expr, "lr < ")  # incomplete: an error message, not an exception
    _wait(browser, 5).until(lambda d: d.find_element(By.ID, "expr-error").text)


def _check(driver, prefix):
    driver.find_element(By.CSS_SELECTOR, f'#runs input.check[data-prefix="{prefix}"]').click()


def test_compare_two_runs_and_two_folders(site, browser):
    _open(browser, site["base"], "run=alice/proj/run-a")
    _check(browser, "alice/proj/run-a")
    _check(browser, "alice/proj/run-b")
    chart = _chart(browser, "train", "loss", exact_attr="data-lines")
    assert chart.get_attribute("data-lines") == "2"
    assert chart.get_attribute("data-mode") == "runs"
    assert chart.get_attribute("data-points") == f"{SHORT},{SHORT}"
    diff = [tr.get_attribute("data-param")
            for tr in browser.find_elements(By.CSS_SELECTOR, "#params-diff tr[data-param]")]
    assert diff == ["lr", "model.depth", "seed"]
    assert "checked=" in browser.current_url
    # a zoom on the compare chart fetches each run's visible range again
    browser.execute_script("Plotly.relayout(arguments[0], {'xaxis.range[0]': 10, 'xaxis.range[1]': 20})", chart)
    _wait(browser, 5).until(lambda d: chart.get_attribute("data-start") == "10")
    assert chart.get_attribute("data-points") == "11,11"
    # a run of another folder: one mean line with a band per folder
    _check(browser, "bob/other/run-c")
    _wait(browser, 10).until(
        lambda d: (_chart(d, "train", "loss", exact_attr="data-lines").get_attribute("data-mode") == "folder"))
    chart = _chart(browser, "train", "loss", exact_attr="data-lines")
    assert chart.get_attribute("data-lines") == "2"
    _shot(browser, "compare")


def test_zoom_rebuckets_down_to_single_points(site, browser):
    _open(browser, site["base"], "run=bob/other/run-c")
    chart = _chart(browser, "train", "loss")
    assert chart.get_attribute("data-exact") == "false"
    assert int(chart.get_attribute("data-points")) < LONG
    assert (chart.get_attribute("data-start"), chart.get_attribute("data-stop")) == ("0", str(LONG))
    # the same as a drag on the x axis: Plotly reports the new range
    browser.execute_script(
        "var e = document.querySelector('.chart[data-stream=\"train\"][data-key=\"loss\"]');"
        "Plotly.relayout(e, {'xaxis.range[0]': 2200, 'xaxis.range[1]': 2300});")
    _wait(browser, 10).until(lambda d: chart.get_attribute("data-start") != "0")
    start, stop = int(chart.get_attribute("data-start")), int(chart.get_attribute("data-stop"))
    assert 2190 <= start <= 2200 and 2300 <= stop <= 2310
    assert chart.get_attribute("data-exact") == "true"
    assert int(chart.get_attribute("data-points")) == stop - start
    browser.execute_script("arguments[0].scrollIntoView()", chart)
    _shot(browser, "zoom")
    # a middle zoom is still bucketed, on the new range
    browser.execute_script(
        "var e = document.querySelector('.chart[data-stream=\"train\"][data-key=\"loss\"]');"
        "Plotly.relayout(e, {'xaxis.range[0]': 0, 'xaxis.range[1]': 3000});")
    _wait(browser, 10).until(lambda d: chart.get_attribute("data-start") == "0")
    assert chart.get_attribute("data-exact") == "false"
    # double-click: autorange, the whole stream again
    browser.execute_script(
        "var e = document.querySelector('.chart[data-stream=\"train\"][data-key=\"loss\"]');"
        "Plotly.relayout(e, {'xaxis.autorange': true});")
    _wait(browser, 10).until(lambda d: chart.get_attribute("data-stop") == str(LONG))
    # on the step axis (step = 10 * index) the range maps back to point indices
    _open(browser, site["base"], "run=bob/other/run-c&x=step")
    chart = _chart(browser, "train", "loss")
    browser.execute_script(
        "var e = document.querySelector('.chart[data-stream=\"train\"][data-key=\"loss\"]');"
        "Plotly.relayout(e, {'xaxis.range[0]': 30000, 'xaxis.range[1]': 31000});")
    _wait(browser, 10).until(lambda d: chart.get_attribute("data-start") != "0")
    start, stop = int(chart.get_attribute("data-start")), int(chart.get_attribute("data-stop"))
    assert 2950 <= start <= 3000 and 3100 <= stop <= 3150, (start, stop)  # within a bucket of the ends
    assert chart.get_attribute("data-exact") == "true"


def test_smoothed_chart_on_the_step_axis(site, browser):
    _open(browser, site["base"], "run=bob/other/run-c&smooth=0.9&x=step")
    chart = _chart(browser, "train", "loss")
    drawn = int(chart.get_attribute("data-points"))
    assert drawn < LONG and chart.get_attribute("data-exact") == "false"  # a band of min to max per bucket
    title = browser.execute_script("return arguments[0].layout.xaxis.title.text", chart)
    assert title == "step"
    smoothed = browser.execute_script("return arguments[0].data[3].visible", chart)
    assert smoothed is True
    browser.execute_script("arguments[0].scrollIntoView()", chart)
    _shot(browser, "chart")
    # time since start on x, log scale on y: the same points, kept in the URL
    Select(browser.find_element(By.ID, "xaxis")).select_by_value("_ts_rel")
    _wait(browser, 5).until(
        lambda d: d.execute_script("return arguments[0].layout.xaxis.title.text", chart) == "seconds since start")
    xs = browser.execute_script("return arguments[0].data[2].x", chart)
    assert len(xs) == drawn and xs[0] >= 0 and all(b >= a for a, b in zip(xs, xs[1:]))
    browser.find_element(By.ID, "logscale").click()
    _wait(browser, 5).until(lambda d: d.execute_script("return arguments[0].layout.yaxis.type", chart) == "log")
    assert "x=_ts_rel" in browser.current_url and "log=1" in browser.current_url
    Select(browser.find_element(By.ID, "xaxis")).select_by_value("_ts")
    _wait(browser, 5).until(
        lambda d: d.execute_script("return arguments[0].layout.xaxis.type", chart) == "date")


def test_expression_grammar(site, browser):
    _open(browser, site["base"])
    cases = [
        ('lr < 0.01', True), ('lr < 0.01 && status == "COMPLETED"', True), ('lr > 0.01 || seed == 1', True),
        ('!(seed == 1)', False), ("name == 'run-x'", True), ('train/loss <= 0.25', True), ('model.depth != 2', False),
        ('missing > 1', False), ('seed >= 1 and lr < 1', True), ('constructor == constructor', False),
        ('__proto__ != 1', True),
    ]
    row = {"prefix": "p/run-x", "name": "run-x", "folder": "p", "status": "COMPLETED", "points": 5,
           "params": {"lr": 0.001, "seed": 1, "model.depth": 2}, "last": {"train/loss": 0.25}}
    got = browser.execute_script(
        "return arguments[0].map(c => window.mlDash.parseExpr(c[0])(arguments[1]))", cases, row)
    assert got == [expected for _, expected in cases]
    for bad in ("lr <", "alert(1)", "lr < 0.01 &&", "(lr < 1", "lr ~ 2", "constructor.constructor('x')()"):
        with pytest.raises(Exception):  # noqa: B017 - the page's parse error, whatever its wording
            browser.execute_script("window.mlDash.parseExpr(arguments[0])", bad)


def test_live_chart_follows_the_writer(site, browser):
    _open(browser, site["base"], "run=bob/other/live")
    chart = _chart(browser, "train", "loss")
    seen = float(chart.get_attribute("data-last"))
    started = time.time()
    # the writer flushes every 0.2 s; the page polls every 1 s
    _wait(browser, 2.5, poll_frequency=0.05).until(lambda d: float(chart.get_attribute("data-last")) != seen)
    delay = time.time() - started
    print(f"live chart updated {delay:.2f} s after the first poll began")
    assert delay < 2.0, delay
    count, last = _stored(site["root"], "bob/other/live")
    drawn = float(chart.get_attribute("data-last"))
    assert drawn > seen and drawn <= last
    assert int(chart.get_attribute("data-points")) <= count


def test_copied_url_restores_run_and_tab(site, browser):
    _open(browser, site["base"])
    browser.find_element(By.CSS_SELECTOR, '#runs tr[data-prefix="alice/proj/run-b"]').click()
    _wait(browser, 5).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".chart"))
    browser.find_element(By.TAG_NAME, "body").send_keys("4")  # Parameters
    _wait(browser, 5).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-param='lr']"))
    copied = browser.current_url
    assert "run=alice%2Fproj%2Frun-b" in copied and "tab=params" in copied
    browser.get("about:blank")
    browser.get(copied)
    _wait(browser, 15).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    _wait(browser, 5).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-param='lr']"))
    active = browser.find_element(By.CSS_SELECTOR, "#tabs button.active").get_attribute("data-tab")
    assert active == "params"
    selected = browser.find_element(By.CSS_SELECTOR, "#runs tr.selected").get_attribute("data-prefix")
    assert selected == "alice/proj/run-b"
    # j moves the selection to the next run
    browser.find_element(By.TAG_NAME, "body").send_keys("j")
    _wait(browser, 5).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#runs tr.selected").get_attribute("data-prefix") == "bob/other/live")
    browser.find_element(By.TAG_NAME, "body").send_keys("k")
    _wait(browser, 5).until(lambda d: _selected(d) == "alice/proj/run-b")
    browser.find_element(By.TAG_NAME, "body").send_keys("/")
    assert browser.execute_script("return document.activeElement.id") == "filter"


def test_run_tabs_readme_logs_params_files(site, browser):
    _open(browser, site["base"], "run=alice/proj/run-a&tab=readme")
    _wait(browser, 5).until(lambda d: d.find_elements(By.CSS_SELECTOR, "pre.readme"))
    assert browser.find_element(By.CSS_SELECTOR, "pre.readme").text.startswith("# run-a")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("3")  # Logs
    _wait(browser, 5).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".logs tr")) == 4)
    Select(browser.find_element(By.CSS_SELECTOR, "#view select")).select_by_value("warn")
    _wait(browser, 5).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".logs tr")) == 2)
    assert "loss spiked" in browser.find_element(By.CSS_SELECTOR, ".logs").text
    body.send_keys("4")  # Parameters, grouped by dotted prefix
    box = _wait(browser, 5).until(lambda d: d.find_element(By.CSS_SELECTOR, "#view input[type=search]"))
    _type(box, "depth")
    rows = [tr.get_attribute("data-param") for tr in browser.find_elements(By.CSS_SELECTOR, "tr[data-param]")]
    assert rows == ["model.depth"]
    assert browser.find_element(By.CSS_SELECTOR, "th.section").text == "model"
    browser.find_element(By.TAG_NAME, "body").send_keys("5")  # Files: the image shown
    image = _wait(browser, 5).until(lambda d: d.find_element(By.CSS_SELECTOR, ".files img"))
    _wait(browser, 5).until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) == 48)


def test_group_by_param_in_compare(site, browser):
    _open(browser, site["base"], "checked=alice/proj/run-a,alice/proj/run-b,bob/other/run-c&tab=compare&group=seed")
    chart = _chart(browser, "train", "loss", exact_attr="data-lines")
    assert chart.get_attribute("data-mode") == "group"
    assert chart.get_attribute("data-lines") == "2"  # seed 1: run-a and run-c; seed 2: run-b
    labels = browser.execute_script("return arguments[0].data.map(t => t.name).filter(Boolean)", chart)
    assert labels == ["seed=1 (2)", "seed=2 (1)"]


def test_a_hundred_charts_render_lazily(site, browser):
    started = time.time()
    _open(browser, site["base"], "run=carol/wide/run-w")
    first = _chart(browser, "wide", "k000")
    elapsed = time.time() - started
    containers = browser.find_elements(By.CSS_SELECTOR, ".chart")
    assert len(containers) == WIDE
    drawn = len(browser.find_elements(By.CSS_SELECTOR, ".chart[data-points]"))
    assert drawn < WIDE / 2, drawn  # those below the fold wait until scrolled to
    print(f"first of {WIDE} charts drawn {elapsed:.2f} s after the page was asked for; {drawn} drawn")
    assert float(first.get_attribute("data-last")) == 0.0  # k000 is i * 0
    last = containers[-1]
    browser.execute_script("arguments[0].scrollIntoView()", last)
    _wait(browser, 10).until(lambda d: last.get_attribute("data-points") == "20")
    assert float(last.get_attribute("data-last")) == 19 * (WIDE - 1)


def test_save_as_dashrc(site, browser):
    _open(browser, site["base"], "run=alice/proj/run-b")
    _chart(browser, "train", "loss")
    browser.find_element(By.XPATH, "//button[text()='Save as .dashrc']").click()
    _wait(browser, 5).until(lambda d: "saved" in d.find_element(By.CSS_SELECTOR, "#view .toolbar").text)
    path = os.path.join(site["root"], "alice", "proj", "run-b", ".dashrc")
    with open(path) as f:
        content = f.read()
    assert "charts:" in content and "loss" in content
    _open(browser, site["base"], "run=alice/proj/run-b")
    _wait(browser, 5).until(
        lambda d: "(from .dashrc)" in d.find_element(By.CSS_SELECTOR, "#view .toolbar").text)
    chart = _chart(browser, "train", "loss")
    assert int(chart.get_attribute("data-points")) == SHORT


def test_token_is_kept_by_the_page(site, browser):
    port = _free_port()
    command = [sys.executable, "-m", "ml_dash", "serve", "--dash-root", site["root"], "--port", str(port)]
    server = subprocess.Popen(command + ["--token", "s3cret"], env=site["env"], stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/api/runs?token=s3cret")
        try:
            urllib.request.urlopen(base + "/api/runs", timeout=5)
            raise AssertionError("answered without the token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 403
        browser.get("about:blank")
        browser.get(base + "/?token=s3cret#run=alice/proj/run-a")
        _wait(browser, 15).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
        assert len(_visible_rows(browser)) == 6
        chart = _chart(browser, "train", "loss")
        assert int(chart.get_attribute("data-points")) == SHORT
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_live_run_stops_polling_when_it_ends(site, browser):
    _open(browser, site["base"], "run=bob/other/live")
    _chart(browser, "train", "loss")
    assert "live" in browser.find_element(By.ID, "run-head").text
    open(site["stop_file"], "w").close()
    _wait(browser, 6).until(
        lambda d: d.find_element(By.CSS_SELECTOR, '#runs tr[data-prefix="bob/other/live"]').get_attribute("data-status")
        == "COMPLETED")
    _wait(browser, 3).until(lambda d: "live" not in d.find_element(By.ID, "run-head").text.split())
    assert browser.execute_script("return window.mlDash.polling()") is False


def test_folder_dashrc_comparison(site, browser):
    _open(browser, site["base"], "run=alice/proj/run-a")
    browser.find_element(By.CSS_SELECTOR, '#folders .folder[data-folder="alice/proj"]').click()
    _wait(browser, 5).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#tabs button.active").get_attribute("data-tab") == "folder")
    chart = _chart(browser, "train", "loss", exact_attr="data-lines")
    assert chart.get_attribute("data-lines") == "2"
    assert chart.get_attribute("data-points") == f"{SHORT},{SHORT}"
    lines = "arguments[0].data.filter(t => t.showlegend !== false)"
    names = browser.execute_script(f"return {lines}.map(t => t.name)", chart)
    assert names == ["lr 0.001", "lr 0.01"]
    styles = browser.execute_script(f"return {lines}.map(t => [t.line.color, t.line.dash])", chart)
    assert styles[0] == ["#d62728", "solid"] and styles[1][1] == "dot"
    assert "folder=alice%2Fproj" in browser.current_url and "tab=folder" in browser.current_url


def test_no_script_errors(site, browser):
    """Every view of the module ran without an error on the page's console."""
    _open(browser, site["base"], "run=alice/proj/run-a&tab=files")
    _wait(browser, 5).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".files img"))
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []


FAILED_IN_A_REPO = textwrap.dedent("""
    import sys
    from ml_dash import Experiment
    with Experiment(prefix="dave/ctx/broken", dash_root=sys.argv[1]).run as exp:
        exp.metrics("train").log(loss=0.5, step=0)
        raise ValueError("loss is nan at step 1")
""")


def test_a_failed_run_shows_its_error_and_commit(tmp_path, browser):
    """The run page of a run that failed in a git checkout names the exception and the
    commit it ran from, as ``ml-dash show`` does."""
    repo, root = tmp_path / "repo", str(tmp_path / "dash")
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(git[:5] + ["init", "-q", "-b", "main", str(repo)], check=True, timeout=30)
    (repo / "train.py").write_text(FAILED_IN_A_REPO)
    subprocess.run(git + ["add", "train.py"], check=True, timeout=30)
    subprocess.run(git + ["commit", "-q", "-m", "first"], check=True, timeout=30)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True,
                            timeout=30).stdout.strip()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "train.py", root], cwd=repo, env=env, capture_output=True, timeout=60)
    assert done.returncode == 1
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "ml_dash", "serve", "--dash-root", root, "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/api/runs")  # the server answers
        _open(browser, base, "run=dave/ctx/broken")
        metas = _wait(browser, 10).until(
            lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, ".meta") if "error:" in e.text] and
            [e.text for e in d.find_elements(By.CSS_SELECTOR, ".meta")])
        assert any("error: ValueError: loss is nan at step 1" in text for text in metas)
        assert any(f"git {commit[:12]} (main)" in text for text in metas)
        _shot(browser, "failed-run")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
