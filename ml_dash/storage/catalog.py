"""The catalog: which streams and columns an experiment has.

Held in memory by writers and readers alike and loaded from the ``catalog``
sub-database.  Readers reload it only when ``catalog_version`` in ``meta``
has changed, which costs one ``get`` per read call.
"""

import json
import struct

from ..errors import CorruptStoreError
from ..names import TrackName
from . import keys

ROOT = ""  # internal name of the root stream; user stream names are non-empty
TS_KEY = "_ts"
# The ``kind`` field of a track's catalog record; a stream's record has none,
# so stores written before tracks existed read as they always did.
TRACK_KIND = "track"


class StreamEntry:
    """One stream: its id, name, record (description, tags, ...) and columns."""

    __slots__ = ("sid", "name", "record", "columns", "db_name")

    def __init__(self, sid, name, record):
        self.sid = sid
        self.name = name
        self.record = record
        self.columns = {}  # column key -> column id
        self.db_name = keys.stream_db_name(sid)

    @property
    def is_track(self):
        return type(self.name) is TrackName


class Catalog:
    def __init__(self):
        self.by_name = {}
        self.by_id = {}
        self.version = None

    def refresh(self, txn, env):
        """Reload from ``txn`` if the stored catalog version has changed."""
        meta = env.db(keys.META_DB, txn)
        if meta is None:
            return
        version = txn.get(keys.CATALOG_VERSION_KEY, db=meta)
        if version != self.version:
            self._load(txn, env)
            self.version = version

    def _load(self, txn, env):
        by_id = {}
        db = env.db(keys.CATALOG_DB, txn)
        if db is None:
            return
        columns = []
        names = set()
        for key, value in txn.cursor(db=db):
            try:  # a record that is not one ml_dash writes is damage, not a KeyError
                if key[:1] == keys.STREAM_PREFIX:
                    record = json.loads(value)
                    sid = keys.parse_stream_key(key)
                    name = record.pop("name")
                    if not isinstance(name, str):
                        raise ValueError(f"stream name {name!r}")
                    kind = record.pop("kind", None)
                    if kind == TRACK_KIND:
                        name = TrackName(name)
                    elif kind is not None:
                        raise ValueError(f"kind {kind!r}")
                    if name in names:
                        raise ValueError(f"a second record of {name!r}")
                    names.add(name)
                    by_id[sid] = StreamEntry(sid, name, record)
                elif key[:1] == keys.COLUMN_PREFIX:
                    columns.append((keys.parse_column_key(key), value.decode("utf-8"), key))
            except (ValueError, TypeError, KeyError, AttributeError, struct.error) as exc:
                raise _damaged(env, key, exc) from None
        for (sid, cid), name, key in columns:
            if sid not in by_id:
                raise _damaged(env, key, "a column of no stream")
            by_id[sid].columns[name] = cid
        self.by_id = by_id
        self.by_name = {entry.name: entry for entry in by_id.values()}

    def next_sid(self):
        return max(self.by_id, default=0) + 1

    def add(self, entry):
        self.by_id[entry.sid] = entry
        self.by_name[entry.name] = entry

    def encode_stream(self, entry):
        """The catalog item that records ``entry``."""
        if type(entry.name) is TrackName:
            record = dict(entry.record, name=entry.name.topic, kind=TRACK_KIND)
        else:
            record = dict(entry.record, name=entry.name)
        return keys.stream_key(entry.sid), json.dumps(record).encode()


def _damaged(env, key, cause):
    return CorruptStoreError(f"the store at {env.path} is damaged: its catalog record {key!r} "
                             f"is not one ml_dash writes ({cause}); ml_dash.check() reports what is")
