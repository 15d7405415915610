"""Point codec: how one logged point is stored as an LMDB value.

A point is the MessagePack encoding of the array ``[created, ts, data]``:
``created`` (float64, the commit time of its snapshot), ``ts`` (the point's
``_ts``) and ``data`` (a map of the logged fields, without ``_ts``).
MessagePack has readers in every language and keeps ints, floats (NaN and
inf included), bools, strings, None, lists and maps apart.  Integers outside
the 64-bit range, which MessagePack cannot hold, are stored as extension
type 1 whose payload is the integer in ASCII decimal.

Format 2 (see :data:`FORMAT_VERSION`) appends a CRC-32 to every point.

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

# Format 2 ends every point with the CRC-32 of the MessagePack bytes before it
# (4 bytes, little-endian): LMDB checks its pages, not the values in them, so
# a changed byte inside a point would otherwise be read back as another
# number, or a string, a commit time that cannot be formatted.  Measured per
# point of two floats: 0.20 us to pack, 0.33 us with the checksum.  A
# checksum per snapshot instead would be cheaper to write but could not be
# verified by a read of one point.
_CRC = struct.Struct("<I")
_CRC_SIZE = _CRC.size
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
    """Encodes points in store format ``version``; one per writer, since a
    packer is not thread-safe."""

    def __init__(self, version=FORMAT_VERSION):
        packer = msgpack.Packer(default=_encode_extra).pack
        if version < 2:
            #: ``pack((created, ts, data))`` -> bytes; the write path calls it directly.
            self.pack = packer
            return
        crc, tail = zlib.crc32, _CRC.pack

        def pack(point):
            value = packer(point)
            return value + tail(crc(value))
        self.pack = pack

    def encode(self, created, ts, data):
        return self.pack((created, ts, data))


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

    Anything that is not a point this release wrote, or fails its checksum,
    raises :class:`CorruptStoreError`: a damaged point is never returned.
    """

    def __init__(self, version=FORMAT_VERSION):
        self.checksummed = version >= 2

    def body(self, value):
        """The MessagePack part of ``value``, its checksum verified."""
        if not self.checksummed:
            return value
        end = len(value) - _CRC_SIZE
        body = memoryview(value)[:end] if end > 0 else b""
        if end <= 0 or zlib.crc32(body) != _CRC.unpack_from(value, end)[0]:
            raise CorruptStoreError("the point fails its checksum")
        return body

    def decode(self, value):
        """``(created, ts, data)`` from a stored point."""
        try:
            created, ts, data = msgpack.unpackb(self.body(value), ext_hook=_decode_ext)
        except CorruptStoreError:
            raise
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise CorruptStoreError(f"the point cannot be decoded ({type(exc).__name__}: {exc})") from None
        if type(data) is not dict or type(created) is not float or not abs(created) < _MAX_TIME or (
                type(ts) is not float and type(ts) is not int):
            raise CorruptStoreError("the point is not [commit time, _ts, fields]")
        return created, ts, data

    def decode_created(self, value):
        """The commit time of a stored point without decoding its fields.

        Every point the encoder writes starts with these two bytes followed by
        the big-endian float64 commit time; anything else is decoded in full.
        """
        if value[:2] == _CREATED_HEAD:
            body = self.body(value)
            if len(body) >= 10:
                return _CREATED.unpack_from(body, 2)[0]
        return self.decode(value)[0]


_CREATED = struct.Struct(">d")
_CREATED_HEAD = b"\x93\xcb"  # a 3-element array whose first item is a float64
