"""Key layout inside the LMDB environment.

Sub-databases:

``meta``
    ``format`` -> format version (ASCII int); ``experiment`` -> JSON record;
    ``watermark`` -> JSON ``{stream id: count}`` of column data known to be on
    disk; ``catalog_version`` -> ASCII int, bumped with every catalog change;
    ``writer`` -> JSON ``{token, pid, host, lock: [st_dev, st_ino]}`` of the
    writer that opened the store last (checked by every commit of it).
``catalog``
    ``b"s" + sid`` -> JSON stream record (its ``name`` among the fields);
    ``b"c" + sid + cid`` -> UTF-8 column key.  Names never become LMDB keys,
    so they can be of any length and can never collide with internal names.
``s:<sid>``
    one per stream: 8-byte big-endian point index -> encoded point.
``params``
    UTF-8 flat parameter key (``a.b.c``) -> MessagePack value.
``logs``
    8-byte big-endian sequence number -> MessagePack ``[ts, level, message, metadata]``.
``files``
    UTF-8 stored path (``folder/name``, ``name`` at the root) -> MessagePack
    file record; the contents live in ``files/<id>`` beside the environment.

Stream ids and column ids are small unsigned ints packed big-endian, so that
LMDB's byte order equals numeric order.
"""

import struct

from ..errors import CorruptStoreError

META_DB = b"meta"
CATALOG_DB = b"catalog"
PARAMS_DB = b"params"
LOGS_DB = b"logs"
FILES_DB = b"files"

FORMAT_KEY = b"format"
EXPERIMENT_KEY = b"experiment"
WATERMARK_KEY = b"watermark"
CATALOG_VERSION_KEY = b"catalog_version"
WRITER_KEY = b"writer"

STREAM_PREFIX = b"s"
COLUMN_PREFIX = b"c"

_index = struct.Struct(">Q")
_sid = struct.Struct(">I")
_sid_cid = struct.Struct(">II")

pack_index = _index.pack

# LMDB refuses longer keys (MDB_MAXKEYSIZE of the py-lmdb build; the
# environment's max_key_size() says the same).  A put of one fails the whole
# transaction, so a name that would become a key is measured at the call.
MAX_KEY_SIZE = 511


def text_key(text, what):
    """``text`` as the UTF-8 key of a record (a params key, a stored file path).

    ``ValueError`` naming ``what`` when it is not valid UTF-8 or is longer
    than LMDB allows; record keys have no internal prefix, so the key is the
    text's UTF-8 bytes themselves.
    """
    try:
        key = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{what} {text[:80]!r} is not valid UTF-8 text (it holds a lone surrogate, as "
            "os.fsdecode makes of undecodable bytes)") from None
    if len(key) > MAX_KEY_SIZE:
        raise ValueError(
            f"{what} {text[:60]!r}... is {len(key)} bytes long in UTF-8; the store holds keys "
            f"of at most {MAX_KEY_SIZE} bytes")
    return key


# No store gets near it: an index past it is a damaged key (len() of a view
# would raise OverflowError, a writer would size its columns by it).
MAX_INDEX = 1 << 48


def unpack_index(key):
    """The point index stored in an LMDB key of a stream sub-database (or logs)."""
    try:
        index = _index.unpack(key)[0]
    except struct.error:
        index = None
    if index is None or index > MAX_INDEX:
        raise CorruptStoreError(f"the store holds a point or log key {bytes(key)!r} that is not "
                                "an index ml_dash writes; ml_dash.check() reports which")
    return index


def stream_db_name(sid):
    """Name of the sub-database that holds the points of stream ``sid``."""
    return b"s:%d" % sid


def stream_key(sid):
    return STREAM_PREFIX + _sid.pack(sid)


def column_key(sid, cid):
    return COLUMN_PREFIX + _sid_cid.pack(sid, cid)


def parse_column_key(key):
    """``(sid, cid)`` from a catalog column key."""
    return _sid_cid.unpack(key[1:])


def parse_stream_key(key):
    return _sid.unpack(key[1:])[0]


def count_after(last_key):
    """The count rule: a stream (or the logs) holds ``last index + 1`` entries,
    0 when ``last_key`` is None.  Stored nowhere else (see DESIGN.md)."""
    return 0 if last_key is None else unpack_index(last_key) + 1
