"""The catalog: which streams and columns an experiment has.

Held in memory by writers and readers alike and loaded from the ``catalog``
sub-database.  Readers reload it only when ``catalog_version`` in ``meta``
has changed, which costs one ``get`` per read call.
"""

import json

from . import keys

ROOT = ""  # internal name of the root stream; user stream names are non-empty
TS_KEY = "_ts"


class StreamEntry:
    """One stream: its id, name, record (description, tags, ...) and columns."""

    __slots__ = ("sid", "name", "record", "columns", "db_name")

    def __init__(self, sid, name, record):
        self.sid = sid
        self.name = name
        self.record = record
        self.columns = {}  # column key -> column id
        self.db_name = keys.stream_db_name(sid)


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
        for key, value in txn.cursor(db=db):
            if key[:1] == keys.STREAM_PREFIX:
                record = json.loads(value)
                sid = keys.parse_stream_key(key)
                by_id[sid] = StreamEntry(sid, record.pop("name"), record)
            elif key[:1] == keys.COLUMN_PREFIX:
                columns.append((keys.parse_column_key(key), value.decode("utf-8")))
        for (sid, cid), name in columns:
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
        record = dict(entry.record, name=entry.name)
        return keys.stream_key(entry.sid), json.dumps(record).encode()
