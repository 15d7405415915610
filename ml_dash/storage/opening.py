"""Opening a store for writing, and recovery after an unclean shutdown.

A writer opens the store in one write transaction: it stamps the format
version of a new store (an older one is appended to in its own format),
takes ownership (see ``owner.py``), loads the catalog and each stream's
committed count (the count rule, ``keys.count_after``), maps the column
files and rebuilds the slots past the synced watermark from the rows (see
``slots.ColumnSlots.open``).  The watermark is left as stored: rebuilt slots
are not on disk yet, and the next sync (the background one, or close)
flushes them and records it.  (Rejected: recording it here, as it once was:
a transaction more per run, and a mark claiming rebuilt slots that a crash
of the machine could still take.)
"""

import json

from . import keys
from .catalog import TS_KEY
from .codec import FORMAT_VERSION, PointDecoder, PointEncoder, stored_format
from .owner import take_ownership
from .reader import json_record
from .slots import StreamState


def open_store(writer, on_open=None):
    """Load ``writer``'s state from its store (under its write lock).

    ``on_open(stored experiment record)`` returns records put in the same
    transaction: a run's start record costs no commit of its own, nor the
    pages a commit copies (a 100-point run's data file is 3 pages smaller).
    """
    env = writer.env.lmdb
    env.reader_check()
    try:
        _load_store(writer, env, on_open)
    except BaseException:
        writer.env.aborted()
        raise


def _load_store(writer, env, on_open):
    with env.begin(write=True) as txn:
        txn_id = txn.id()
        meta = writer.env.db(keys.META_DB, txn, create=True)
        writer.env.db(keys.CATALOG_DB, txn, create=True)
        stored = txn.get(keys.FORMAT_KEY, db=meta)
        if stored is None:
            txn.put(keys.FORMAT_KEY, str(FORMAT_VERSION).encode(), db=meta)
        # An older store is appended to in its own format: one store, one point encoding.
        version = stored_format(stored, writer.directory)
        writer._encoder = PointEncoder(version)
        writer._decode = PointDecoder(version).decode
        take_ownership(txn, meta, writer._owner, writer._writer_lock, writer.directory)
        if on_open is not None:
            stored_record = json_record(txn.get(keys.EXPERIMENT_KEY, db=meta), keys.EXPERIMENT_KEY,
                                        writer.directory, {})
            for db_name, key, value in on_open(stored_record):
                txn.put(key, value, db=writer.env.db(db_name, txn, create=True))
        writer._catalog.refresh(txn, writer.env)
        watermark = _watermark(txn.get(keys.WATERMARK_KEY, b"{}", db=meta))
        for entry in writer._catalog.by_id.values():
            db = writer.env.db(entry.db_name, txn, create=True)
            state = StreamState(entry, _count(txn, db))
            state.db = db
            writer._streams[entry.name] = state
            mark = watermark.get(str(entry.sid), 0)
            # derived data: a damaged mark costs a rebuild from the rows, not the run
            writer._slots.open(state, txn, mark if type(mark) is int and mark >= 0 else 0, writer._decode)
            if entry.is_track and state.count:
                state.last_ts = float(state.files[TS_KEY].values[state.count - 1])
    writer._last_txn_id = txn_id
    writer.env.committed()


def _count(txn, db):
    """Committed points of a stream: its last index + 1."""
    if db is None:
        return 0
    cursor = txn.cursor(db=db)
    return keys.count_after(cursor.key() if cursor.last() else None)


def _watermark(stored):
    """The stored watermark as a dict (empty, so rebuilding every column, if damaged)."""
    try:
        marks = json.loads(stored)
    except ValueError:
        return {}
    return marks if isinstance(marks, dict) else {}
