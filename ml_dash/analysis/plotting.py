"""Plots of one key across runs, downsampled, written to an image file.

matplotlib is optional (extra ``plot``) and used with its file-only Agg
backend, so plotting works on machines without a display.

Made to be put in a report as it is: the main run drawn darker and thicker
on top of the runs it is compared with, a colour of its own for each run up
to 20 (then shades of one colour map), the legend beside the axes instead of
over the curves, markers where a curve has too few points to be a line, and
``_ts`` on the x axis as local dates and times rather than epoch seconds.
"""

from __future__ import annotations

import datetime
import math
import numbers

import numpy as np

from ..names import ROOT_CLI
from ..view import load
from .listing import list_experiments
from .tables import require

MAIN_COLOUR = "#1a1a1a"
# Curves of at most this many points get markers when ``markers`` is None.
FEW_POINTS = 50
# Legend entries beyond this many are summed up as "and N more": as many as
# fit beside the axes.
LEGEND_ENTRIES = 20


def plot(prefix: str, stream: str | None, key: str, path: str, *, compare: str | None = None,
         dash_root: str | None = None, points: int = 2000, method: str = "minmax",
         x: str | None = None, log_y: bool = False, smooth: float = 0.0,
         markers: bool | None = None, title: str | None = None) -> list[str]:
    """Draw ``key`` of ``stream`` (None for the root) of run ``prefix`` into ``path``.

    ``compare``: a glob of more runs to draw on the same axes (see
    :func:`list_experiments`).  Each curve is downsampled to ``points``
    points with ``method``; ``x`` is the column for the x axis (default
    the point index; ``"_ts"`` is shown as local time).  ``log_y``: a
    logarithmic y axis (values <= 0 left out).  ``smooth``: the weight
    ``0 <= smooth < 1`` of an exponential moving average drawn over the
    faded raw curve (0: none; 0.9 is heavy).  ``markers``: a marker on every
    point (None: only on curves of few points).  ``title``: instead of the
    run, stream and key.  Returns the prefixes drawn: compared runs without
    the stream, the key or any finite value of it are left out.  The main
    run without any is a ``ValueError`` (a chart of nothing is no answer).
    """
    _check_options(points, smooth)
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg")
    pyplot = require("matplotlib.pyplot", "plot")
    prefixes = [prefix.strip("/")]
    if compare:
        prefixes += [r["prefix"] for r in list_experiments(dash_root, compare) if r["prefix"] != prefixes[0]]
    curves = _curves(prefixes, stream, key, dash_root, points, method, x, log_y)
    figure, axes = pyplot.subplots(figsize=(9, 5))
    try:
        colours = [MAIN_COLOUR, *_colours(matplotlib, len(curves) - 1)]
        for rank in reversed(range(len(curves))):  # the main run last: on top
            run, xs, ys = curves[rank]
            label = f"{run} (main)" if rank == 0 and len(curves) > 1 else run
            _draw(axes, _dates(xs) if x == "_ts" else xs, ys, label=label, colour=colours[rank],
                  main=rank == 0, smooth=smooth, markers=markers)
        _decorate(axes, curves, stream, key, x, log_y, smooth, title)
        figure.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        pyplot.close(figure)
    return [run for run, _, _ in curves]


def _check_options(points, smooth):
    if isinstance(points, bool) or not isinstance(points, numbers.Integral) or points < 2:
        raise ValueError(f"plot: points must be a whole number >= 2, got {type(points).__name__} {points!r}")
    if isinstance(smooth, bool) or not isinstance(smooth, numbers.Real) or not 0 <= float(smooth) < 1:
        raise ValueError(f"plot: smooth must be a number with 0 <= smooth < 1 (0: no smoothing), "
                         f"got {type(smooth).__name__} {smooth!r}")


def _curves(prefixes, stream, key, dash_root, points, method, x, log_y):
    """``[(prefix, xs, ys)]`` of the runs that have something to draw, the main run first."""
    curves = []
    for run in prefixes:
        with load(run, dash_root=dash_root) as view:
            try:
                xs, ys = view.metrics(stream).downsample(key, points, method, x=x)
            except KeyError:
                if run == prefixes[0]:
                    raise
                continue  # a compared run without this stream or key
        drawable = np.isfinite(ys) & np.isfinite(xs) & ((ys > 0) if log_y else True)
        if not drawable.any():
            if run == prefixes[0]:
                positive = " > 0 (the y axis is logarithmic)" if log_y else ""
                raise ValueError(f"run {run!r}: {stream or ROOT_CLI} has no finite value{positive} "
                                 f"of {key!r}{f' with a finite {x!r}' if x else ''} to draw")
            continue
        curves.append((run, np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)))
    return curves


def _colours(matplotlib, count):
    """``count`` distinct colours for the compared runs."""
    if count <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        # tab20 pairs a dark and a light shade of each hue: the dark ones first,
        # so that runs next to each other in the legend differ in hue.
        order = [*range(0, 20, 2), *range(1, 20, 2)]
        return [matplotlib.colormaps["tab20"](i) for i in order[:count]]
    # Past 20, no set of distinct colours stays readable: shades along one map,
    # neighbours in the legend neighbours in colour.
    # Its darkest tenth is left out: it would pass for the main run's near-black.
    shades = matplotlib.colormaps["viridis"]
    return [shades(0.12 + i / (count - 1) * 0.83) for i in range(count)]


def _draw(axes, xs, ys, *, label, colour, main, smooth, markers):
    few = len(ys) <= FEW_POINTS
    marker = "o" if (markers if markers is not None else few) else None
    width, zorder = (2.0, 3) if main else (1.0, 2)
    style = {"marker": marker, "markersize": 4 if main else 3, "linewidth": width, "zorder": zorder}
    if smooth:
        # The raw curve stays visible behind, fainter for compared runs, which are many.
        axes.plot(xs, ys, color=colour, alpha=0.25 if main else 0.12, linewidth=width, zorder=zorder - 1)
        axes.plot(xs, _smoothed(ys, smooth), color=colour, label=label, **style)
    else:
        axes.plot(xs, ys, color=colour, label=label, **style)


def _smoothed(ys, weight):
    """The exponential moving average of ``ys`` with ``weight``, debiased at the start
    (as TensorBoard's smoothing slider): NaN points stay NaN and do not count."""
    out = np.full(len(ys), np.nan)
    average, seen = 0.0, 0
    for i, y in enumerate(ys.tolist()):
        if math.isfinite(y):
            average = average * weight + (1 - weight) * y
            seen += 1
            out[i] = average / (1 - weight ** seen)
    return out


def _dates(seconds):
    """Seconds since the epoch as numpy datetimes (UTC), which matplotlib draws as dates."""
    return (np.asarray(seconds) * 1e6).astype("int64").astype("datetime64[us]")


def _decorate(axes, curves, stream, key, x, log_y, smooth, title):
    name = stream or ROOT_CLI
    if title is None:
        main = curves[0][0]
        title = (f"{main}: {name} / {key}" if len(curves) == 1 else
                 f"{name} / {key}: {main} and {len(curves) - 1} more run{'s' if len(curves) > 2 else ''}")
    axes.set_title(title)
    _x_axis(axes, curves, x)
    if len(curves) == 1 and len(curves[0][2]) == 1:  # one point: say its value
        [(_, xs, ys)] = curves
        axes.annotate(f"{ys[0]:.6g}", (_dates(xs)[0] if x == "_ts" else xs[0], ys[0]),
                      xytext=(6, 6), textcoords="offset points")
    axes.set_ylabel(f"{key}{f' (smoothed, {smooth:g})' if smooth else ''}")
    if log_y:
        axes.set_yscale("log")
    else:
        axes.ticklabel_format(axis="y", useOffset=False)
    axes.grid(True, color="#dddddd", linewidth=0.6)
    axes.set_axisbelow(True)
    if len(curves) > 1:
        _legend(axes)


def _legend(axes):
    """The legend beside the axes, main run first, at most ``LEGEND_ENTRIES`` lines."""
    handles, labels = axes.get_legend_handles_labels()
    # Drawn last-to-first so that the main run lies on top: listed first-to-last.
    handles, labels = handles[::-1], labels[::-1]
    if len(handles) > LEGEND_ENTRIES:
        hidden = len(handles) - LEGEND_ENTRIES + 1
        nothing = require("matplotlib.lines", "plot").Line2D([], [], linestyle="none")
        handles = handles[:LEGEND_ENTRIES - 1] + [nothing]
        labels = labels[:LEGEND_ENTRIES - 1] + [f"... and {hidden} more runs"]
    axes.legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                borderaxespad=0, frameon=False)


def _x_axis(axes, curves, x):
    """Label and ticks of the x axis: local time for ``_ts``, whole numbers for indices."""
    if x == "_ts":
        zone = datetime.datetime.now().astimezone()
        dates = require("matplotlib.dates", "plot")
        locator = dates.AutoDateLocator(tz=zone.tzinfo)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=zone.tzinfo))
        offset = zone.strftime("%z")
        offset = f"UTC{offset[:3]}:{offset[3:]}"
        axes.set_xlabel(f"time ({zone.tzname()}, {offset})" if zone.tzname() not in ("UTC", offset)
                        else "time (UTC)")
    else:
        axes.set_xlabel(x or "index")
        if x is None:  # point indices: whole numbers only, even for a curve of one point
            axes.xaxis.set_major_locator(require("matplotlib.ticker", "plot").MaxNLocator(integer=True))
    low = min(float(np.nanmin(xs)) for _, xs, _ in curves)
    high = max(float(np.nanmax(xs)) for _, xs, _ in curves)
    if low == high:  # matplotlib would widen one x value to years of dates, or to +-0.05 of an index
        width = 60.0 if x == "_ts" else 1.0
        ends = np.array([low - width, high + width])
        axes.set_xlim(*(_dates(ends) if x == "_ts" else ends))
