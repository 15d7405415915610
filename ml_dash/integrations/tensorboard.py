"""TensorBoard import: the scalars and hparams of event files into runs.

``import_tensorboard("logs", prefix="alice/tb")`` (or ``ml-dash import
tensorboard logs --prefix alice/tb``) makes one run of every folder under
``logs`` that holds ``*tfevents*`` files, as TensorBoard does:

- the run's prefix is ``prefix`` plus the folder's path below ``logs``
  (``logs/exp1/train`` -> ``alice/tb/exp1/train``; the events directly in
  ``logs`` -> ``alice/tb``).  A run cannot hold another run, so the events
  directly in a folder that also has run folders below it go to its
  ``events`` run (``alice/tb/exp1/events`` beside ``alice/tb/exp1/eval``).
  Prefixes are taken literally, braces included (no template fields).
- a scalar tagged ``train/loss`` goes to stream ``train``, key ``loss`` (split
  at the first ``/``; ``train/grad/w1`` is key ``grad/w1``); a tag without
  ``/`` goes to the root stream.  A key that would be ``step`` or ``_ts`` (or
  empty) is ``tag:`` plus the whole tag.
- the values of one stream at one step are one point (a row of the curve
  table), with the step as its ``step`` field and the wall time of the first
  of them as its ``_ts``; a second value of the same tag at that step (a
  restart that logged the step again) starts a new point.  Points keep the
  order of the events.  Values are gathered a chunk (``CHUNK`` records) at a
  time, so a step split by a chunk's end, or by two imports of a growing
  file, is two points.
- TF1 ``simple_value`` summaries and TF2 scalar tensors (plugin ``scalars``)
  are scalars; the hparams plugin's session start (torch's ``add_hparams``,
  Lightning's ``TensorBoardLogger``) sets params.  Everything else (histograms, images,
  text, graphs...) is counted in the summary's ``skipped``.

It is idempotent: the stream ``tensorboard import`` of each run records
which bytes of which file were imported, committed in the same snapshot as
the points they hold, so a second import adds nothing and a file that grew
adds only its new events.  A file whose last record is not whole (a training
still writing) is imported up to it; a damaged record stops its file there,
and the summary says so.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..arrays import require
from ..errors import MLDashError
from ..experiment import Experiment
from ..run import RUN
from ..templates import literal
from ..view import load
from .tfrecord import RecordReader

#: The stream that records what was imported: one point per committed chunk.
RECORD_STREAM = "tensorboard import"
#: The run of the events directly in a folder that has run folders below it.
OWN_EVENTS = "events"
#: Records per snapshot: under the session's backlog limit, so that no
#: automatic commit splits a chunk's points from its record of them.
CHUNK = 50_000
_RESERVED_KEYS = frozenset(("step", "_ts", "_flush", ""))
_SKIPPED_KINDS = {"histo": "histograms", "image": "images", "audio": "audio"}
# TensorFlow's DataType numbers of the scalar tensors read without numpy.
_DT_FLOAT, _DT_DOUBLE = 1, 2


@dataclass
class ImportSummary:
    """What one import did."""

    runs: dict[str, int] = field(default_factory=dict)
    """Prefix of every run found -> scalar values this import added to it (0: up to date)."""
    scalars: int = 0
    """Scalar values imported, over all runs."""
    hparams: int = 0
    """Hyperparameters set as params."""
    skipped: Counter = field(default_factory=Counter)
    """Values not imported, by kind (``histograms``, ``images``, ``text``, ``graph_def``...)."""
    incomplete: list[str] = field(default_factory=list)
    """Files that end in a record not yet whole: imported up to it, the rest comes next time."""
    problems: list[str] = field(default_factory=list)
    """Runs or files that could not be (wholly) imported, and why."""


def import_tensorboard(logdir: str, prefix: str | None = None,
                       dash_root: str | None = None) -> ImportSummary:
    """Import every run under ``logdir`` (see the module's docstring for the rules).

    ``prefix`` defaults to ``<user>/<name of logdir>``.  Raises
    ``FileNotFoundError`` if ``logdir`` is not a folder; a run that cannot be
    imported (a prefix the store refuses, a run being written) is named in
    the summary's ``problems`` and the others are imported.
    """
    if not isinstance(logdir, (str, os.PathLike)):
        raise TypeError(f"import_tensorboard: logdir must be a folder path, got {type(logdir).__name__}")
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"import_tensorboard: prefix must be a str, got {type(prefix).__name__}")
    logdir = os.fspath(logdir)
    if not os.path.isdir(logdir):
        what = ("is a file: give the folder that holds it (TensorBoard's --logdir)"
                if os.path.exists(logdir) else f"does not exist (looked in {os.path.abspath(logdir)})")
        raise FileNotFoundError(f"TensorBoard log folder {logdir!r} {what}")
    if prefix is None:
        prefix = f"{RUN.user}/{os.path.basename(os.path.abspath(logdir))}"
    summary = ImportSummary()
    folders: dict[str, str] = {}
    for run_prefix, directory, files in _runs(logdir, prefix.strip("/")):
        if run_prefix in folders:  # a folder named like OWN_EVENTS beside the events it names
            summary.problems.append(f"{directory}: not imported: its prefix {run_prefix!r} is "
                                    f"already that of {folders[run_prefix]}")
            continue
        folders[run_prefix] = directory
        _RunImport(run_prefix, directory, dash_root, summary).run(files)
    return summary


def _runs(logdir, base):
    """``(prefix, folder, event file names in order)`` of every run under ``logdir``."""
    found = {}
    for directory, subdirs, names in os.walk(logdir):
        subdirs.sort()
        events = [n for n in names if "tfevents" in n and os.path.isfile(os.path.join(directory, n))]
        if events:
            found[os.path.relpath(directory, logdir)] = sorted(events, key=_file_order)
    for relative, files in sorted(found.items()):
        segments = [] if relative == "." else relative.split(os.sep)
        below = "" if relative == "." else relative + os.sep
        if any(other != relative and other.startswith(below) for other in found):
            segments.append(OWN_EVENTS)
        yield "/".join([base, *segments]), os.path.normpath(os.path.join(logdir, relative)), files


def _file_order(name):
    """Event files by the time in their name (``events.out.tfevents.<time>.<host>...``)."""
    parts = name.split(".")
    stamp = parts[3] if len(parts) > 3 and parts[3].isdigit() else ""
    return (len(stamp), stamp, name)


def place(tag: str) -> tuple[str | None, str]:
    """``(stream, key)`` of a scalar's tag: ``None`` for the root stream."""
    stream, slash, key = tag.partition("/")
    if not slash:
        stream, key = "", tag
    if key in _RESERVED_KEYS:
        key = f"tag:{tag}"
    if stream == RECORD_STREAM:
        stream = f"tag:{stream}"
    return stream or None, key


class _RunImport:
    """The import of one run folder into the run ``prefix``."""

    def __init__(self, prefix, directory, dash_root, summary):
        self.prefix = prefix
        self.directory = directory
        self.dash_root = dash_root
        self.summary = summary
        self.scalars = 0

    def run(self, files):
        summary = self.summary
        try:
            done = _imported(self.prefix, self.dash_root)
        except (ValueError, OSError) as exc:  # an invalid prefix, an unreadable store
            summary.problems.append(f"{self.directory}: not imported: {exc}")
            return
        todo = []
        for name in files:
            start, plugins = done.get(name, (0, {}))
            size = os.path.getsize(os.path.join(self.directory, name))
            if size < start:
                summary.problems.append(f"{os.path.join(self.directory, name)}: {size} bytes, shorter "
                                        f"than the {start} already imported into {self.prefix}: "
                                        "not imported again")
            elif size > start:
                todo.append((name, start, plugins))
        summary.runs[self.prefix] = 0
        if not todo:  # up to date: the run is not even opened, so no launch is recorded
            return
        description = None if done else f"imported from TensorBoard: {os.path.abspath(self.directory)}"
        try:
            with Experiment(literal(self.prefix), dash_root=self.dash_root,
                            description=description).run as exp:
                for name, start, plugins in todo:
                    self._file(exp, name, start, plugins)
        except (MLDashError, ValueError, TypeError, OSError) as exc:
            summary.problems.append(f"{self.directory}: import into {self.prefix} stopped: {exc}")
        summary.runs[self.prefix] = self.scalars

    def _file(self, exp, name, start, plugins):
        path = os.path.join(self.directory, name)
        reader = RecordReader(path, start)
        records = iter(reader)
        decoder = _Decoder(plugins, self.summary.skipped)
        decoder.end = start
        undecodable = None
        while True:
            chunk_start = decoder.end
            more = False
            try:
                more = decoder.decode(records, CHUNK)
            except decoder.DecodeError as exc:  # whole and checksummed, yet not an Event
                undecodable = f"the record after byte {decoder.end} is not an event ({exc})"
            if decoder.records:
                self._commit(exp, name, decoder, chunk_start, decoder.end, decoder.records)
            if not more:
                break
        problem = undecodable or reader.problem
        if problem:
            self.summary.problems.append(f"{path}: {problem}: imported up to byte {decoder.end}")
        elif reader.incomplete:
            self.summary.incomplete.append(f"{path}: {reader.incomplete} bytes after byte {reader.end} "
                                           "are not a whole record yet")

    def _commit(self, exp, name, decoder, start, end, records):
        """One snapshot: the chunk's points and the record of the bytes they came from."""
        if decoder.hparams:  # a snapshot of its own, first: set again if the chunk is imported again
            exp.params.set(decoder.hparams)
            self.summary.hparams += len(decoder.hparams)
        # Every stream first: one the run cannot hold (StreamLimitError) then
        # raises before anything of the chunk is staged, so the flush at the
        # run's end cannot store points without the record of their bytes.
        record = exp.metrics(RECORD_STREAM)
        streams = {stream: exp.metrics(stream) if stream else exp.metrics for stream in decoder.streams}
        for stream, ts, fields in decoder.rows:
            streams[stream].log(_ts=ts, **fields)
        record.log(file=name, start=start, end=end, records=records, scalars=decoder.scalars,
                   tensor_tags=sorted(map(list, decoder.plugins.items())))
        exp.flush()
        self.scalars += decoder.scalars
        self.summary.scalars += decoder.scalars
        decoder.next_chunk()


def _imported(prefix, dash_root):
    """``{file name: (bytes imported, {tag: plugin} of its tensors)}`` of the run ``prefix``."""
    try:
        view = load(prefix, dash_root=dash_root)
    except FileNotFoundError:
        return {}
    with view:
        return _records_of(view)


def _records_of(view):
    """:func:`_imported` of an open view; points of the record stream not of its shape
    (the stream is the user's to write too) are ignored."""
    done: dict[str, tuple[int, dict]] = {}
    if RECORD_STREAM not in {summary["name"] for summary in view.metrics.list_all()}:
        return done  # a run made otherwise, or whose first chunk failed
    stream = view.metrics(RECORD_STREAM)
    start = 0
    while True:
        page = stream.read(start_index=start, limit=1000)
        for row in page["data"]:
            data = row["data"]
            file, end, tags = data.get("file"), data.get("end"), data.get("tensor_tags", [])
            if (isinstance(file, str) and type(end) is int and end > done.get(file, (0,))[0]
                    and all(isinstance(pair, list) and len(pair) == 2 for pair in tags)):
                done[file] = (end, dict(tags))
        if not page["hasMore"]:
            return done
        start += len(page["data"])


class _Decoder:
    """The scalars and hparams of a file's events, gathered into points, chunk by chunk."""

    def __init__(self, plugins, skipped):
        event_pb2 = require("tensorboard.compat.proto.event_pb2", "tensorboard", "TensorBoard import")
        self._parse = event_pb2.Event.FromString
        self.DecodeError = require("google.protobuf.message", "tensorboard").DecodeError
        self.end = 0  # the byte after the last record decoded
        self.records = 0  # records decoded by the last decode()
        self.plugins = dict(plugins)  # tag -> plugin of its tensors (named by its first value only)
        self.skipped = skipped
        self._places: dict[str, tuple] = {}
        self.next_chunk()

    def next_chunk(self):
        self.rows: list[tuple[str | None, float, dict]] = []  # (stream, _ts, fields) in event order
        self._open: dict[tuple, dict] = {}  # (stream, step) -> fields of its latest point
        self.streams: set[str | None] = set()
        self.scalars = 0
        self.hparams: dict[str, Any] = {}

    def decode(self, records, limit):
        """Decode records from the iterator of ``(data, end)`` until ``limit`` of them
        or ``limit`` points; True if it stopped there (more may follow).  ``records``
        counts the records decoded, ``end`` is the byte after the last one; a
        ``DecodeError`` leaves both at the last good one."""
        # The import's inner loop: a TF1 scalar is handled inline, with the
        # decoder's tables in locals (a method call per value cost a tenth more).
        parse, places, opened, rows = self._parse, self._places, self._open, self.rows
        skipped = self.skipped
        self.records = 0
        scalars = 0
        try:
            for record, end in records:
                event = parse(record)
                self.records += 1
                self.end = end
                what = event.WhichOneof("what")
                if what != "summary":
                    if what != "file_version":
                        skipped[what or "empty event"] += 1
                    continue
                step = event.step
                for value in event.summary.value:
                    kind = value.WhichOneof("value")
                    if kind != "simple_value":
                        if kind is None or kind == "tensor":
                            self._tensor(value, event)
                        else:
                            skipped[_SKIPPED_KINDS.get(kind, kind)] += 1
                        continue
                    tag = value.tag
                    where = places.get(tag)
                    if where is None:
                        where = places[tag] = place(tag)
                    stream, key = where
                    fields = opened.get((stream, step))
                    if fields is None or key in fields:
                        fields = opened[(stream, step)] = {"step": step}
                        rows.append((stream, event.wall_time, fields))
                        self.streams.add(stream)
                    fields[key] = value.simple_value
                    scalars += 1
                if self.records >= limit or len(rows) >= limit:
                    return True
        finally:
            self.scalars += scalars
        return False

    def _scalar(self, tag, step, ts, number):
        where = self._places.get(tag)
        if where is None:
            where = self._places[tag] = place(tag)
        stream, key = where
        fields = self._open.get((stream, step))
        if fields is None or key in fields:
            fields = self._open[(stream, step)] = {"step": step}
            self.rows.append((stream, ts, fields))
            self.streams.add(stream)
        fields[key] = number
        self.scalars += 1

    def _tensor(self, value, event):
        plugin = value.metadata.plugin_data.plugin_name
        if plugin:
            self.plugins[value.tag] = plugin
        else:
            plugin = self.plugins.get(value.tag, "tensor")
        if plugin == "scalars":
            number = _tensor_scalar(value.tensor)
            if number is not None:
                self._scalar(value.tag, event.step, event.wall_time, number)
                return
        elif plugin == "hparams":
            found = _session_hparams(value.metadata.plugin_data.content)
            if found is not None:
                self.hparams.update(found)
                return
        self.skipped[plugin] += 1


def _tensor_scalar(tensor):
    """The number of a 0-d numeric tensor, else None."""
    if tensor.tensor_shape.dim:
        return None
    if not tensor.tensor_content:  # the usual case: the value in its typed field
        if tensor.dtype == _DT_FLOAT and tensor.float_val:
            return tensor.float_val[0]
        if tensor.dtype == _DT_DOUBLE and tensor.double_val:
            return tensor.double_val[0]
    tensor_util = require("tensorboard.util.tensor_util", "tensorboard", "TensorBoard import")
    try:
        array = tensor_util.make_ndarray(tensor)
    except (TypeError, ValueError):
        return None
    if array.dtype.kind not in "biuf" or array.size != 1:
        return None
    return array.item()


def _session_hparams(content):
    """``{name: value}`` of an hparams plugin's session start, else None (its experiment
    and session end carry no values)."""
    plugin_data_pb2 = require("tensorboard.plugins.hparams.plugin_data_pb2", "tensorboard",
                              "TensorBoard import")
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    if data.WhichOneof("data") != "session_start_info":
        return {} if data.WhichOneof("data") else None
    values = {}
    for name, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            number = value.number_value
            # All numbers are doubles there: a batch size of 32 comes back 32.0.
            values[name] = int(number) if number.is_integer() else number
        elif kind in ("string_value", "bool_value"):
            values[name] = getattr(value, kind)
        elif kind == "list_value":
            values[name] = [item for item in _plain(value.list_value)]
        else:
            values[name] = None
    return values


def _plain(list_value):
    for item in list_value.values:
        kind = item.WhichOneof("kind")
        yield getattr(item, kind) if kind in ("number_value", "string_value", "bool_value") else None
