"""``.dashrc`` files: saved chart layouts, the one thing the dashboard writes.

A ``.dashrc`` is YAML.  In a run's folder it lists that run's charts; in any
other folder under the dash root, a comparison whose series name runs by
prefix.  The fields are those of the reference ml-dash dashboard::

    charts:
      - ctype: line            # the only chart type drawn today
        title: training loss
        stream: train          # default: the root stream
        xKey: {default: step}  # or a plain name; default "index"
        yKeys: [loss, val_loss]   # or yKey: loss
        xLabel: step
        yLabel: loss
        bins: 1000             # buckets drawn (default: the chart's pixel width)
        series:                # comparisons: which runs, how drawn
          - {prefix: alice/proj/lr-0.1, label: "lr 0.1", color: "#d62728", dash: dot}

Validation is strict, since the file is written by a server that other
processes (or, with a token, other machines) can reach: the folder must lie
inside the dash root once symbolic links are resolved, the file name is
always ``.dashrc``, the text is at most ``MAX_BYTES`` and must parse, with
the safe YAML loader, to a mapping of known fields and types.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from .data import BadRequest, NotFound

FILENAME = ".dashrc"
MAX_BYTES = 256 * 1024
MAX_CHARTS = 500
CHART_TYPES = ("line",)
DASH_STYLES = ("solid", "dot", "dash", "longdash", "dashdot", "longdashdot")
_TEXT_FIELDS = ("title", "stream", "xLabel", "yLabel", "yKey", "description")


def folder_path(root: str, folder: Any) -> str:
    """The absolute directory of ``folder`` (relative to the dash root), refused
    when it leaves the root by ``..``, an absolute path or a symbolic link."""
    if not isinstance(folder, str):
        raise BadRequest(f"folder must be text, got {type(folder).__name__}")
    parts = [p for p in folder.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or "\x00" in folder:
        raise BadRequest(f"folder {folder!r} must stay inside the dash root")
    real_root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(real_root, *parts))
    if path != real_root and not path.startswith(real_root + os.sep):
        raise BadRequest(f"folder {folder!r} leaves the dash root")
    return path


def read(root: str, folder: Any) -> dict:
    """``{"folder", "content", "parsed"}`` of the folder's ``.dashrc`` (None when absent)."""
    path = folder_path(root, folder)
    target = os.path.join(path, FILENAME)
    if not os.path.isfile(target):
        return {"folder": folder, "content": None, "parsed": None}
    with open(target, "rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise BadRequest(f"{FILENAME} of {folder!r} is larger than {MAX_BYTES} bytes")
    text = data.decode("utf-8", errors="replace")
    try:
        parsed = parse(text)
    except BadRequest as exc:
        return {"folder": folder, "content": text, "parsed": None, "error": str(exc)}
    return {"folder": folder, "content": text, "parsed": parsed}


def write(root: str, folder: Any, content: Any) -> dict:
    """Validate ``content`` and write it as the folder's ``.dashrc``, atomically
    (a temporary file renamed over it: a reader never sees half a file)."""
    if not isinstance(content, str):
        raise BadRequest(f"content must be YAML text, got {type(content).__name__}")
    if len(content.encode("utf-8")) > MAX_BYTES:
        raise BadRequest(f"{FILENAME} content is larger than {MAX_BYTES} bytes")
    parsed = parse(content)
    path = folder_path(root, folder)
    if not os.path.isdir(path):
        raise NotFound(f"no folder {folder!r} under the dash root")
    target = os.path.join(path, FILENAME)
    if os.path.islink(target):
        raise BadRequest(f"{FILENAME} of {folder!r} is a symbolic link; it is not replaced")
    descriptor, temporary = tempfile.mkstemp(prefix=".dashrc.", dir=path)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return {"folder": folder, "path": os.path.relpath(target, os.path.realpath(root)), "parsed": parsed}


def parse(text: str) -> dict:
    """The validated layout of a ``.dashrc`` text; BadRequest naming the field that is wrong."""
    import yaml  # the ui extra; imported here so that the data layer does not need it

    try:
        # Aliases are refused: a few lines of nested aliases expand to billions of
        # nodes when the layout is sent as JSON (the "billion laughs").
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise BadRequest(f"{FILENAME} may not use YAML aliases (*name)")
        loaded = _plain(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise BadRequest(f"{FILENAME} is not valid YAML: {exc}") from None
    except RecursionError:
        raise BadRequest(f"{FILENAME} is nested too deeply") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise BadRequest(f"{FILENAME} must be a mapping with 'charts', got {type(loaded).__name__}")
    charts = loaded.get("charts", [])
    if not isinstance(charts, list):
        raise BadRequest(f"{FILENAME}: 'charts' must be a list, got {type(charts).__name__}")
    if len(charts) > MAX_CHARTS:
        raise BadRequest(f"{FILENAME}: at most {MAX_CHARTS} charts, got {len(charts)}")
    return dict(loaded, charts=[_chart(i, chart) for i, chart in enumerate(charts)])


def _plain(value: Any) -> Any:
    """YAML's dates and other scalars as text, so that the layout is plain JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return str(value)


def _chart(i: int, chart: Any) -> dict:
    where = f"{FILENAME}: charts[{i}]"
    if not isinstance(chart, dict):
        raise BadRequest(f"{where} must be a mapping, got {type(chart).__name__}")
    out = dict(chart)
    ctype = out.setdefault("ctype", "line")
    if ctype not in CHART_TYPES:
        raise BadRequest(f"{where}.ctype {ctype!r} is not supported; use one of {list(CHART_TYPES)}")
    for field in _TEXT_FIELDS:
        if field in out and out[field] is not None and not isinstance(out[field], str):
            raise BadRequest(f"{where}.{field} must be text, got {type(out[field]).__name__}")
    x_key = out.get("xKey", "index")
    if isinstance(x_key, dict):
        x_key = x_key.get("default", "index")
    if not isinstance(x_key, str):
        raise BadRequest(f"{where}.xKey must be text or {{default: name}}, got {type(x_key).__name__}")
    out["xKey"] = x_key
    y_keys = out.get("yKeys", [out["yKey"]] if out.get("yKey") else [])
    if not isinstance(y_keys, list) or not y_keys or not all(isinstance(k, str) for k in y_keys):
        raise BadRequest(f"{where} needs yKey (text) or yKeys (a list of text)")
    out["yKeys"] = y_keys
    bins = out.get("bins")
    if bins is not None and (type(bins) is not int or not 2 <= bins <= 10_000):
        raise BadRequest(f"{where}.bins must be a whole number from 2 to 10000, got {bins!r}")
    series = out.get("series", [])
    if not isinstance(series, list):
        raise BadRequest(f"{where}.series must be a list, got {type(series).__name__}")
    for j, entry in enumerate(series):
        if not isinstance(entry, dict) or not isinstance(entry.get("prefix"), str):
            raise BadRequest(f"{where}.series[{j}] must be a mapping with a 'prefix' (text)")
        for field in ("label", "color"):
            if field in entry and not isinstance(entry[field], str):
                raise BadRequest(f"{where}.series[{j}].{field} must be text, got {type(entry[field]).__name__}")
        if "dash" in entry and entry["dash"] not in DASH_STYLES:
            raise BadRequest(f"{where}.series[{j}].dash {entry['dash']!r} is not one of {list(DASH_STYLES)}")
    return out
