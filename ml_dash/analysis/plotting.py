"""Plots of one key across runs, downsampled, written to an image file.

matplotlib is optional (extra ``plot``) and used with its file-only Agg
backend, so plotting works on machines without a display.
"""

from __future__ import annotations

from ..names import ROOT_CLI
from ..view import load
from .listing import list_experiments
from .tables import require


def plot(prefix: str, stream: str | None, key: str, path: str, *, compare: str | None = None,
         dash_root: str = ".dash", points: int = 2000, method: str = "minmax",
         x: str | None = None) -> list[str]:
    """Draw ``key`` of ``stream`` (None for the root) of run ``prefix`` into ``path``.

    ``compare``: a glob of more runs to draw on the same axes (see
    :func:`list_experiments`).  Each curve is downsampled to ``points``
    points with ``method``; ``x`` is the column for the x axis (default
    the point index).  Returns the prefixes drawn: compared runs without the
    stream or key are left out.
    """
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg")
    pyplot = require("matplotlib.pyplot", "plot")
    prefixes = [prefix]
    if compare:
        prefixes += [r["prefix"] for r in list_experiments(dash_root, compare) if r["prefix"] != prefix]
    figure, axes = pyplot.subplots(figsize=(9, 5))
    drawn = []
    try:
        for run in prefixes:
            with load(run, dash_root=dash_root) as view:
                try:
                    xs, ys = view.metrics(stream).downsample(key, points, method, x=x)
                except KeyError:
                    if run == prefix:
                        raise
                    continue  # a compared run without this stream or key
                axes.plot(xs, ys, label=run, linewidth=1)
                drawn.append(run)
        axes.set_xlabel(x or "index")
        axes.set_ylabel(key)
        axes.set_title(f"{stream or ROOT_CLI} / {key}")
        if len(drawn) > 1:
            axes.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        pyplot.close(figure)
    return drawn
