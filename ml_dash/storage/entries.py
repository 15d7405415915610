"""Track entries on the write path: ordering, merging, and amending the last committed entry.

A track is a stream whose entries are ordered by ``_ts`` and unique in it:
its ``_ts`` column is strictly increasing, so a time lookup is a binary
search on the memory map.  The writer hands the track entries of a snapshot
to :func:`stage_entries`, which, per track:

- sorts them by ``_ts`` (stable: of two appends with one ``_ts`` the later
  one wins a field both have) and merges those with equal ``_ts`` into one;
- merges the first into the track's last committed entry when it has that
  entry's ``_ts``: the row is rewritten (an *amend*) in this same snapshot;
- appends the rest as new rows, like points of a stream.

An entry older than the last committed one cannot be stored without
breaking the order; the session refuses it at ``append()`` (see
``session.TrackFloors``), and this module refuses it again should one get
here (``UnstorablePointError``, that entry alone is dropped).

Crash safety of an amend: its column slots are rewritten before the commit,
like every slot; a kill before the commit leaves the old row with the new
slots.  The watermark of a track therefore never covers its last entry (see
``durability.stored_marks``): every open rebuilds that one entry's slots from
its row, so rows and columns agree after any kill.  (Rejected: amending by
appending the merged entry again under a new index, which needs no
recovery but leaves superseded rows that every read and count must skip;
and writing the amended slots after the commit, which needs the same
recovery and shows readers the old values after the new row.)
"""

from typing import Any

from ..errors import UnstorablePointError
from ..names import stream_label
from . import keys


def _ts_of(point):
    return point[2]


def stage_entries(writer, txn, entries, created, rows):
    """Encode the track entries ``(spec, data, ts)`` of a snapshot.

    New rows are appended to ``rows`` (each track's count advanced, as
    ``Writer._stage_points`` does); returns ``(amends, lasts)``: the rows
    that rewrite a committed entry, ``(state, key, value, ts, old data)``,
    and the ``(state, last _ts)`` to record once the snapshot is committed.
    Column slots are written for both.  A flush per step usually brings
    one entry per track: that case skips sorting and merging.
    """
    groups: dict = {}
    for point in entries:
        group = groups.get(point[0].name)
        if group is None:
            groups[point[0].name] = [point]
        else:
            group.append(point)
    encoder = writer._encoder
    pack, checksum, pack_sum = encoder.pack, encoder.checksum, encoder.pack_sum
    streams = writer._streams
    amends: list = []
    lasts = []
    try:
        for group in groups.values():
            spec = group[0][0]
            state = streams.get(spec.name) or writer._new_stream(spec, created)
            if len(group) == 1:
                merged: Any = ((group[0][2], group[0][1], group[0][1]),)
            else:
                group.sort(key=_ts_of)
                merged = _merged(group)
            last = state.last_ts
            for ts, data, first in merged:
                if last is not None and ts <= last:
                    if ts < last:
                        raise UnstorablePointError(
                            f"{stream_label(spec.name)}: an entry at _ts={ts!r} is older than "
                            f"its last entry, at _ts={last!r}; the entry was dropped", first)
                    index = state.count - 1
                    key = keys.pack_index(index)
                    old = writer._decode(txn.get(key, db=state.db))[2]
                    data = {**old, **data}
                else:
                    index = state.count
                    key = keys.pack_index(index)
                    old = None
                try:
                    value = pack((created, ts, data))
                except (TypeError, ValueError, OverflowError) as exc:
                    raise _unstorable(spec, group, ts, pack, exc) from exc
                if checksum is not None:
                    value += pack_sum(checksum(value))
                if old is None:
                    rows.append((state, key, value))
                    state.count = index + 1
                else:
                    amends.append((state, key, value, ts, old))
                _write_slots(writer, state, index, ts, data)
                last = ts
            lasts.append((state, last))
    except BaseException:
        restore(writer, amends)
        raise
    return amends, lasts


def _write_slots(writer, state, index, ts, data):
    """The column slots of one entry; the writer's fast path when its fields fill the layout."""
    layout = state.layout
    if layout is not None and index < state.capacity and len(data) == len(layout):
        try:
            for key, number in data.items():
                layout[key][index] = number
            state.ts_values[index] = ts
            return
        except (KeyError, TypeError, OverflowError, ValueError):
            pass  # a new key, a string or a nested value: the full path
    writer._slots.write(state, index, ts, data)


def _unstorable(spec, group, ts, pack, exc):
    """The error for an entry the encoder refuses (a str holding a lone surrogate): it names
    the first of its appends that cannot be encoded alone, which the session then drops."""
    culprit = next((point[1] for point in group if point[2] == ts and not _encodes(pack, point[1])),
                   None)
    if culprit is None:
        culprit = next(point[1] for point in group if point[2] == ts)
    return UnstorablePointError(f"{stream_label(spec.name)}: cannot store the entry at _ts={ts!r} "
                                f"({exc}); that append was dropped", culprit)


def _encodes(pack, data):
    try:
        pack(data)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _merged(group):
    """``(ts, merged data, first staged data)`` per distinct ``_ts`` of a sorted group."""
    ts = None
    data: dict = {}
    first = None
    for point in group:
        if point[2] != ts or first is None:
            if first is not None:
                yield ts, data, first
            ts, first = point[2], point[1]
            data = dict(first)
        else:
            data.update(point[1])
    if first is not None:
        yield ts, data, first


def restore(writer, amends):
    """Put back the column slots of amends whose snapshot was not committed."""
    for state, key, _, ts, old in reversed(amends):
        writer._slots.write(state, keys.unpack_index(key), ts, old)
