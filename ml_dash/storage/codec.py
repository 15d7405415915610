"""Point codec: how one logged point is stored as an LMDB value.

A point is the MessagePack encoding of the array ``[created, ts, data]``:
``created`` (float64, the commit time of its snapshot), ``ts`` (the point's
``_ts``) and ``data`` (a map of the logged fields, without ``_ts``).
MessagePack has readers in every language and keeps ints, floats (NaN and
inf included), bools, strings, None, lists and maps apart.  Integers outside
the 64-bit range, which MessagePack cannot hold, are stored as extension
type 1 whose payload is the integer in ASCII decimal.

Format 2 (see :data:`FORMAT_VERSION`) follows that array with a checksum,
described below.

Why MessagePack: measured per point of two floats, encode / decode took
0.5 / 0.5 us with msgpack, 1.2 / 0.9 us with "shaped rows" (a struct pack
per key set, kept in a catalog) and 3.6 / 3.6 us with json, and msgpack was
also the smallest (33 bytes against 37 and 46).  Pickle and marshal are not
options: analysis scripts on any Python version must read these files.
"""

import struct
import zlib

import msgpack

from ..errors import CorruptStoreError, FormatVersionError

#: The format this release writes in new stores; it reads (and appends to) every one of
#: :data:`READABLE_FORMATS` in its own format.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
BIG_INT_EXT = 1

# Format 2 stores a point as the MessagePack array ``[created, ts, data]``
# followed by 4 bytes: the big-endian Adler-32 of the array's bytes.  LMDB
# checks its pages, not the values in them, so a changed byte inside a point
# would otherwise be read back as another number, another string, or a commit
# time that cannot be formatted.  Adler-32 detects every change of one byte
# (and of two within 65,521 bytes).  Measured per point of two floats, against
# about 230 ns to pack without a sum: a suffix costs about 110 ns more, the
# sum as a fourth array element about 250 ns (the array is built twice), and
# CRC-32 instead of Adler-32 about 40 ns more still.  A sum per snapshot would
# be cheaper to write but could not be checked by a read of one point.
_SUM_SIZE = 4
_MAX_TIME = 1e11  # a commit time past the year 5138 (either way) was not written by ml_dash


def stored_format(value, where):
    """The format version from the ``format`` record ``value`` (None: a new store).

    Raises :class:`FormatVersionError` for a version this release cannot read
    and :class:`CorruptStoreError` for a record that is not a version at all.
    """
    if value is None:
        return FORMAT_VERSION
    try:
        version = int(value)
    except ValueError:
        raise CorruptStoreError(f"{where}: the format record {value[:40]!r} is damaged") from None
    if version not in READABLE_FORMATS:
        raise FormatVersionError(
            f"{where} was written in store format {version}; this ml_dash reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}: upgrade ml_dash to open it")
    return version


def _encode_extra(value):
    if isinstance(value, int):
        return msgpack.ExtType(BIG_INT_EXT, str(value).encode("ascii"))
    raise TypeError(f"cannot encode {type(value).__name__}")


def _decode_ext(code, payload):
    if code == BIG_INT_EXT:
        return int(payload.decode("ascii"))
    return msgpack.ExtType(code, payload)


class PointEncoder:
    """How points become LMDB values in store format ``version``; one per
    writer, since a packer is not thread-safe.

    A value is ``pack(point)`` with, from format 2 on, ``pack_sum(checksum(body))``
    appended.  The writer's loop does the two steps inline (``_stage_points``):
    a Python function around them cost about 50 ns a point more, a sixth of
    what encoding costs, so there is none.
    """

    def __init__(self, version=FORMAT_VERSION):
        #: ``pack((created, ts, data))`` -> the MessagePack bytes of a point.
        self.pack = msgpack.Packer(default=_encode_extra).pack
        #: ``checksum(body)`` -> the sum to append, or None (format 1: no sum).
        self.checksum = zlib.adler32 if version >= 2 else None
        self.pack_sum = _SUM.pack


def encode_value(value):
    """Bytes of a record value (params, logs, file records): MessagePack, big ints kept."""
    return msgpack.packb(value, default=_encode_extra)


def decode_value(data):
    """The value :func:`encode_value` stored; :class:`CorruptStoreError` if it cannot be decoded."""
    try:
        return msgpack.unpackb(data, ext_hook=_decode_ext)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CorruptStoreError(f"a stored record is damaged ({type(exc).__name__}: {exc})") from None


class PointDecoder:
    """Decodes the points of a store in format ``version``.

    ``decode(value)`` gives ``(created, ts, data)``; ``decode_created(value)``
    only the commit time.  Anything that is not a point this release wrote,
    or fails its checksum, raises :class:`CorruptStoreError`: a damaged
    point is never returned.  Both are plain functions, not methods: a page
    of ``read()`` calls one per row.
    """

    def __init__(self, version=FORMAT_VERSION):
        self.checksummed = version >= 2
        self.decode = _decode_checksummed if self.checksummed else _decode_unchecked
        self.decode_created = _created_checksummed if self.checksummed else _created_unchecked


_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


def _decode_checksummed(value, adler32=zlib.adler32, unpackb=msgpack.unpackb):
    body = memoryview(value)[:-_SUM_SIZE]
    if len(value) <= _SUM_SIZE or adler32(body) != _SUM.unpack_from(value, len(body))[0]:
        raise CorruptStoreError("the point fails its checksum")
    try:
        created, ts, data = unpackb(body, ext_hook=_decode_ext)
    except _UNPACK_ERRORS as exc:
        raise CorruptStoreError(f"the point cannot be decoded ({type(exc).__name__}: {exc})") from None
    return created, ts, data


def _decode_unchecked(value):
    """A format-1 point: without a checksum, only what cannot be a point is caught."""
    try:
        created, ts, data = msgpack.unpackb(value, ext_hook=_decode_ext)
    except _UNPACK_ERRORS as exc:
        raise CorruptStoreError(f"the point cannot be decoded ({type(exc).__name__}: {exc})") from None
    if type(data) is not dict or type(created) is not float or not abs(created) < _MAX_TIME or (
            type(ts) is not float and type(ts) is not int):
        raise CorruptStoreError("the point is not [commit time, _ts, fields]")
    return created, ts, data


# Every point the encoder writes starts with the array head and 0xcb (a
# float64) followed by the big-endian commit time: the commit time is read
# without decoding the fields (anything else is decoded in full).
def _created_checksummed(value):
    if value[:2] == _HEAD and len(value) >= 10 + _SUM_SIZE:
        if zlib.adler32(memoryview(value)[:-_SUM_SIZE]) != _SUM.unpack_from(value, len(value) - _SUM_SIZE)[0]:
            raise CorruptStoreError("the point fails its checksum")
        return _CREATED.unpack_from(value, 2)[0]
    return _decode_checksummed(value)[0]


def _created_unchecked(value):
    if value[:2] == _HEAD and len(value) >= 10:
        created = _CREATED.unpack_from(value, 2)[0]
        if abs(created) < _MAX_TIME:
            return created
    return _decode_unchecked(value)[0]


_CREATED = struct.Struct(">d")
_SUM = struct.Struct(">I")
_HEAD = b"\x93\xcb"  # a 3-element array whose first item is a float64
