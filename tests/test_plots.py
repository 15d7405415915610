"""What ``ml_dash.plot`` and ``ml-dash plot`` draw: charts a person can read.

The text of a chart (title, tick labels, legend) is read back from an SVG written with
matplotlib's ``svg.fonttype = "none"``, which keeps text as text; what is drawn is read from
the pixels of a PNG.
"""

import math
import re
import subprocess
import sys
import time

import pytest
from test_cli import cli

import ml_dash
from ml_dash import Experiment

matplotlib = pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def svg_text(monkeypatch):
    """``read(path)``: the texts of an SVG chart, in drawing order."""
    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")

    def read(path):
        with open(path) as f:
            svg = f.read()
        return [re.sub(r"<[^>]+>", "", t).strip() for t in re.findall(r"<text[^>]*>(.*?)</text>", svg, re.S)]
    return read


def curve_run(dash_root, prefix, steps=200, scale=1.0, first_ts=None):
    with Experiment(prefix=prefix, dash_root=dash_root).run as exp:
        for step in range(steps):
            fields = {"loss": scale * math.exp(-step / 50) + 0.01, "step": step}
            if first_ts is not None:
                fields["_ts"] = first_ts + step
            exp.metrics("train").log(**fields)


def test_a_single_runs_title_names_the_run(dash_root, tmp_path, svg_text):
    curve_run(dash_root, "alice/proj/a")
    out = str(tmp_path / "a.svg")
    ml_dash.plot("alice/proj/a", "train", "loss", out, dash_root=dash_root)
    assert "alice/proj/a: train / loss" in svg_text(out)
    ml_dash.plot("alice/proj/a", "train", "loss", out, dash_root=dash_root, title="Loss of run A")
    assert "Loss of run A" in svg_text(out)


def test_a_one_point_series_is_drawn_with_its_value(dash_root, tmp_path, svg_text):
    with Experiment(prefix="alice/proj/a", dash_root=dash_root).run as exp:
        exp.metrics("eval").log(loss=0.3125)
    out = str(tmp_path / "a.png")
    ml_dash.plot("alice/proj/a", "eval", "loss", out, dash_root=dash_root)
    image = Image.open(out).convert("L")
    width, height = image.size
    middle = image.crop((width * 2 // 5, height * 2 // 5, width * 3 // 5, height * 3 // 5))
    assert middle.getextrema()[0] < 80  # the point is in the middle of the axes, drawn dark
    ml_dash.plot("alice/proj/a", "eval", "loss", str(tmp_path / "a.svg"), dash_root=dash_root)
    texts = svg_text(str(tmp_path / "a.svg"))
    assert "0.3125" in texts
    assert not any("0.04" in t for t in texts)  # no x axis of +-0.05 around index 0


def test_a_key_with_nothing_to_draw_is_an_error(dash_root, tmp_path):
    with Experiment(prefix="alice/proj/a", dash_root=dash_root).run as exp:
        exp.metrics("train").log(loss=float("nan"))
        exp.metrics("train").log(loss=-1.0)
    with pytest.raises(ValueError, match="'alice/proj/a'.*no finite value > 0 .* of 'loss'"):
        ml_dash.plot("alice/proj/a", "train", "loss", str(tmp_path / "a.png"), dash_root=dash_root,
                     log_y=True)
    done = cli("plot", "alice/proj/a", "train", "loss", "--log-y", "-o", str(tmp_path / "a.png"),
               dash_root=dash_root, check=False)
    assert done.returncode == 1 and "no finite value" in done.stderr
    assert not (tmp_path / "a.png").exists()


def test_many_runs_the_main_one_first_and_the_legend_beside_the_axes(dash_root, tmp_path, svg_text):
    for i in range(35):
        curve_run(dash_root, f"alice/sweep/r{i:02d}", steps=20, scale=1 + i / 10)
    out = str(tmp_path / "sweep.svg")
    drawn = ml_dash.plot("alice/sweep/r07", "train", "loss", out, compare="alice/sweep/*",
                         dash_root=dash_root)
    assert len(drawn) == 35 and drawn[0] == "alice/sweep/r07"
    texts = svg_text(out)
    legend = texts[texts.index("alice/sweep/r07 (main)"):]
    assert legend[1:3] == ["alice/sweep/r00", "alice/sweep/r01"]
    assert legend[-1] == "... and 16 more runs" and len(legend) == 20
    assert "train / loss: alice/sweep/r07 and 34 more runs" in texts
    png = str(tmp_path / "sweep.png")
    ml_dash.plot("alice/sweep/r07", "train", "loss", png, compare="alice/sweep/*", dash_root=dash_root)
    ml_dash.plot("alice/sweep/r07", "train", "loss", str(tmp_path / "one.png"), dash_root=dash_root)
    # The legend is beside the axes: the picture widens instead of covering the curves.
    assert Image.open(png).size[0] > Image.open(str(tmp_path / "one.png")).size[0] + 150


def test_time_on_the_x_axis_is_local_time_not_epoch_seconds(dash_root, tmp_path, svg_text, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        start = 1_796_000_000.0  # 2026-11-30 00:53:20 UTC, 06:23:20 in Kolkata
        curve_run(dash_root, "alice/proj/a", steps=600, first_ts=start)
        out = str(tmp_path / "a.svg")
        ml_dash.plot("alice/proj/a", "train", "loss", out, dash_root=dash_root, x="_ts")
        texts = svg_text(out)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert "time (IST, UTC+05:30)" in texts
    assert not any("e9" in t or "1796" in t for t in texts)
    assert any(re.fullmatch(r"06:\d\d", t) for t in texts), texts


def test_cli_log_scale_smoothing_and_markers(dash_root, tmp_path):
    curve_run(dash_root, "alice/proj/a")
    images = {}
    for name, options in {"plain": [], "log": ["--log-y"], "smooth": ["--smooth", "0.9"],
                          "markers": ["--markers"]}.items():
        out = tmp_path / f"{name}.png"
        assert cli("plot", "alice/proj/a", "train", "loss", "-o", str(out), *options,
                   dash_root=dash_root).stdout == f"wrote {out} (1 run)\n"
        images[name] = Image.open(out).convert("RGB").tobytes()
    assert len(set(images.values())) == 4  # each option changes the picture
    for bad in ("1", "-0.5", "nan"):
        done = cli("plot", "alice/proj/a", "train", "loss", "--smooth", bad, "-o", str(tmp_path / "x.png"),
                   dash_root=dash_root, check=False)
        assert done.returncode == 1 and "smooth must be a number with 0 <= smooth < 1" in done.stderr


MEMORY = """
import sys
import ml_dash

def private_kb():
    with open("/proc/self/smaps_rollup") as f:
        fields = dict(line.split()[:2] for line in f if line.split()[1:2] and line.split()[1].isdigit())
    return int(fields["Private_Clean:"]) + int(fields["Private_Dirty:"])

with ml_dash.load("alice/proj/long", dash_root=sys.argv[1]) as view:
    train = view.metrics("train")
    column = train.column("loss")
    before = private_kb()
    if sys.argv[2] == "max":
        column.max()
    else:
        train.downsample("loss", 2000, sys.argv[2])
    print(private_kb() - before)
"""


def test_a_plot_series_of_a_long_column_leaves_it_in_the_page_cache(dash_root):
    points = 2_000_000  # 16 MB of float64
    with Experiment(prefix="alice/proj/long", dash_root=dash_root).run as exp:
        train = exp.metrics("train")
        for step in range(points):
            train.log(loss=1.0 / (step + 1))
    growth = {}
    for method in ("max", "minmax", "lttb"):
        done = subprocess.run([sys.executable, "-c", MEMORY, dash_root, method], capture_output=True,
                              text=True, check=True)
        growth[method] = int(done.stdout)
    # One pass of max() leaves the column's pages mapped in the process; the downsampling
    # walk hands each chunk's pages back (they stay in the page cache).
    assert growth["max"] > 4_000, growth
    assert growth["minmax"] < growth["max"] / 2 and growth["lttb"] < growth["max"] / 2, growth
