"""The records beside the streams: the experiment record, params, logs and files.

The modules of the concepts never build ``(sub-database, key, value)``
records or pick key encodings themselves: they call these functions, which
give records to stage or commit through the session, and read them back
through a :class:`~ml_dash.storage.reader.StoreReader`.  A record is
``(db_name, key, value)``: a put, or a delete where ``value`` is None.
"""

import json

from . import keys
from .codec import encode_value

MAX_KEY_SIZE = keys.MAX_KEY_SIZE
text_key = keys.text_key
encode = encode_value  # the one encoding of params, log records and file records

_SCAN_CHUNK = 512  # log records read per transaction when filtering by level


# -- the experiment record ----------------------------------------------------------


def stored_experiment(reader):
    """The experiment record as stored (JSON), ``{}`` when there is none."""
    return reader.get_json(keys.META_DB, keys.EXPERIMENT_KEY, {})


def experiment_put(record):
    return keys.META_DB, keys.EXPERIMENT_KEY, json.dumps(record).encode()


# -- params ---------------------------------------------------------------------


def stored_params(reader):
    """The flat params dict committed in a store."""
    return {key.decode("utf-8"): value for key, value in reader.select(keys.PARAMS_DB)}


def param_put(key, data):
    """A put of the param at LMDB key ``key`` (from :func:`text_key`), ``data`` encoded."""
    return keys.PARAMS_DB, key, data


def param_delete(name):
    return keys.PARAMS_DB, name.encode("utf-8"), None


# -- logs -----------------------------------------------------------------------


def log_put(index, data):
    return keys.LOGS_DB, keys.pack_index(index), data


def next_log_index(reader):
    """The index of the next log record: the count rule, last key + 1."""
    return keys.count_after(reader.last_key(keys.LOGS_DB))


def log_page(reader, start, limit, level):
    """``([(index, record)], has_more)`` of log records from ``start`` on, of ``level`` if given."""
    if limit == 0 or start > keys.MAX_INDEX:  # no record is numbered past MAX_INDEX
        return [], False
    chunk = limit + 1 if level is None else max(limit + 1, _SCAN_CHUNK)
    rows: list = []
    key = keys.pack_index(start)
    while True:
        batch = reader.select(keys.LOGS_DB, start=key, limit=chunk)
        for stored, record in batch:
            if level is None or record[1] == level:
                if len(rows) == limit:
                    return rows, True
                rows.append((keys.unpack_index(stored), record))
        if len(batch) < chunk:
            return rows, False
        key = keys.pack_index(keys.unpack_index(batch[-1][0]) + 1)


# -- files ----------------------------------------------------------------------


def file_record(reader, path):
    """The record of the file stored at ``path``, None if there is none (or it is too long)."""
    key = path.encode("utf-8")
    if not key or len(key) > MAX_KEY_SIZE:  # too long to be stored (a folder joined to a name)
        return None
    return reader.get_value(keys.FILES_DB, key)


def file_records(reader, folder, limit=None):
    """``{stored path: record}`` of every file under ``folder`` (``""``: all), in path
    order; the first ``limit`` of them if given."""
    start = (folder + "/").encode("utf-8") if folder else None
    stop = (folder + "0").encode("utf-8") if folder else None  # '0' follows '/'
    if start is not None and len(start) >= MAX_KEY_SIZE:
        return {}  # no stored path is that long
    # A key that is not UTF-8 (a crafted store) is kept, not fatal: the caller refuses it.
    return {key.decode("utf-8", "surrogateescape"): record
            for key, record in reader.select(keys.FILES_DB, start=start, stop=stop, limit=limit)}


def file_tree_clash(reader, path):
    """What storing a file at ``path`` would clash with: the first folder of ``path``
    that is a stored file, or ``path`` itself if it is a folder of stored files;
    None when the stored paths stay a tree.  One read transaction per folder level."""
    parts = path.split("/")
    for level in range(1, len(parts)):
        above = "/".join(parts[:level])
        if file_record(reader, above) is not None:
            return above
    return path if file_records(reader, path, limit=1) else None


def file_put(key, data):
    return keys.FILES_DB, key, data


def file_delete(path):
    return keys.FILES_DB, path.encode("utf-8", "surrogateescape"), None
