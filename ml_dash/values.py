"""What a logged value may be, and the conversions applied at ``log()`` time.

Allowed: int, float (NaN and inf too), bool, str, None, and lists and dicts
of these, nested at most :data:`MAX_DEPTH` levels.  numpy scalars, 0-d
arrays and one-element tensors (anything with ``.item()``) become Python
scalars.  Anything else is rejected synchronously with a ``TypeError``
naming the stream, the key and the type, so bad input never reaches the
store.  The same rules hold for params, log metadata and the descriptions,
tags and metadata of runs, streams and files (:func:`check_info`).
"""

import json
import math

from .names import stream_label as _label

_SCALARS = (bool, int, float, str)

# Levels of lists and dicts inside one value.  Deeper values are refused at
# the call: the encoders would fail later (MessagePack at 512 levels, json
# and the converters themselves at Python's recursion limit), and so would
# every flush after.  No sensible metric or parameter is nested this deep;
# a value that contains itself is caught by the same limit.
MAX_DEPTH = 100




def check_fields(stream, fields):
    """Validate ``fields`` (a fresh dict from ``**kwargs``), converting in place.

    The common case, flat ints, floats, strings and bools, costs one type
    test per value; everything else goes through :func:`convert`.  Keys of
    ``**kwargs`` are always strings; callers with other dicts check their
    keys first (:func:`check_keys`).
    """
    for key, value in fields.items():
        kind = type(value)
        if kind is float or kind is int or kind is str or kind is bool or value is None:
            if not key:
                raise TypeError(f"{_label(stream)}: field names must be non-empty strings")
            continue
        fields[key] = convert(stream, key, value)
    return fields


def check_keys(stream, mapping):
    """``TypeError`` unless every key of ``mapping`` is a non-empty str."""
    for key in mapping:
        if type(key) is not str or not key:
            raise TypeError(
                f"{_label(stream)}: field names must be non-empty strings, got {key!r} "
                f"({type(key).__name__})")


def convert(stream, key, value):
    """``value`` as a storable Python value, or ``TypeError``."""
    return _convert(_label(stream), key, value, 0)


def convert_for(owner, key, value, depth=0):
    """:func:`convert` for a value that is not a field of a stream; errors name ``owner``.

    ``depth``: levels of nesting above ``value`` (a flattened params key).
    """
    return _convert(owner, key, value, depth)


def _convert(owner, key, value, depth):
    if not isinstance(key, str) or not key:
        raise TypeError(f"{owner}: field names must be non-empty strings, got {key!r}")
    if value is None or type(value) in _SCALARS:
        return value
    if isinstance(value, (dict, list, tuple)):
        if depth >= MAX_DEPTH:
            raise TypeError(
                f"{owner}: field {_short(key)} is a {type(value).__name__} nested more than "
                f"{MAX_DEPTH} levels deep (or one that contains itself), which cannot be stored")
        if isinstance(value, dict):
            return {k: _convert(owner, f"{key}.{k}" if isinstance(k, str) else k, v, depth + 1)
                    for k, v in _checked_items(owner, key, value)}
        return [_convert(owner, key, v, depth + 1) for v in value]
    for base in _SCALARS:  # subclasses such as IntEnum or numpy.float64
        if isinstance(value, base):
            return base(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            scalar = item()
        except Exception:
            scalar = value  # not one element: rejected below
        if scalar is None or type(scalar) in _SCALARS:
            return scalar
    raise TypeError(
        f"{owner}: field {_short(key)} has a value of type {type(value).__module__}."
        f"{type(value).__qualname__}, which cannot be stored; use int, float, bool, str, "
        "None, or lists and dicts of these")


def _checked_items(owner, key, mapping):
    for k in mapping:
        if not isinstance(k, str) or not k:
            raise TypeError(
                f"{owner}: field {_short(key)} is a dict with key {k!r} ({type(k).__name__}); "
                "keys must be non-empty strings")
    return [(k, mapping[k]) for k in mapping]


def _short(key, limit=80):
    """``repr(key)``, cut short: a key built from deep nesting can be long."""
    text = repr(key)
    return text if len(text) <= limit else text[:limit] + "..."


def check_info(owner, description=None, tags=None, metadata=None, *, text="description"):
    """``(description, tags, metadata)`` of a run, stream or file, checked and converted.

    Called where they are given (``Experiment(...)``, ``metrics(name, ...)``,
    ``files.save(...)``), so that a bad one is refused at that call, naming
    ``owner``, the key and the type, and never reaches a stored record.  A
    description is a str, tags a list of str, metadata a dict of the values
    ``log()`` accepts; text must be valid UTF-8.  ``tags`` None stays None.
    ``text`` names the first argument in messages (``"notes"`` for a run's notes).
    """
    if description is not None and not isinstance(description, str):
        raise TypeError(f"{owner}: {text} must be a str, got {type(description).__name__}")
    if tags is not None:
        if isinstance(tags, (str, bytes)) or not hasattr(tags, "__iter__"):
            raise TypeError(f"{owner}: tags must be a list of strings, got {type(tags).__name__}")
        tags = list(tags)
        for tag in tags:
            if not isinstance(tag, str):
                raise TypeError(f"{owner}: tags must be strings, got {tag!r} ({type(tag).__name__})")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"{owner}: metadata must be a dict, got {type(metadata).__name__}")
        metadata = {key: _convert(f"{owner} metadata", key, value, 1)
                    for key, value in _checked_items(owner, "metadata", metadata)}
    for name, value in ((text, description), ("tags", tags), ("metadata", metadata)):
        where = unencodable(value, name)
        if where is not None:
            raise TypeError(f"{owner}: {_short(where)} {_NOT_UTF8}")
    return description, tags, metadata


_NOT_UTF8 = ("holds a str that is not valid UTF-8 (a lone surrogate, as os.fsdecode makes of "
             "undecodable bytes), which cannot be stored; decode it with errors='replace'")


def check_name(kind, name):
    """``ValueError`` unless the str ``name`` (of a stream, a track...) is valid UTF-8.

    Names are written into the store and shown by every listing: one that
    cannot be encoded would break ``ml-dash ls`` for the whole dash root, so
    it is refused where it is first given.  ``kind``: ``"stream names"``,
    ``"track topics"``.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{kind} must be valid UTF-8 text, got {name!r}: it holds a lone "
                         "surrogate (as os.fsdecode makes of undecodable bytes); decode it "
                         "with errors='replace'") from None


def check_utf8(owner, key, value):
    """``TypeError`` naming ``owner`` and the field if the key ``key`` or any str
    in ``value`` (keys of its dicts too) is not valid UTF-8: the encoder
    would refuse it at the next commit, and make that commit fail for
    everything else it holds."""
    where = unencodable(key, key) or unencodable(value, key)
    if where is not None:
        raise TypeError(f"{owner}: field {_short(where)} {_NOT_UTF8}")


def unencodable(value, where):
    """The dotted path (``where``, ``where.key`` ...) to the first str in
    ``value``, key or value, that is not valid UTF-8; None if there is none."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = unencodable(key, f"{where}.{key}")
            if found is None:
                found = unencodable(item, f"{where}.{key}")
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for item in value:
            found = unencodable(item, where)
            if found is not None:
                return found
    return None


def strict_json(value):
    """``value`` as JSON text that every parser accepts: a non-finite float
    (NaN, inf, -inf) is written ``null``.

    Python's ``json`` writes them ``NaN`` and ``Infinity`` by default, which
    ``JSON.parse``, ``jq`` and most other readers refuse.  (Rejected: the
    strings ``"NaN"``/``"Infinity"``: a reader would then meet a string in a
    column of numbers.)  Values without such a float, the common case, are
    written in one call.
    """
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def _finite(value):
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def storable_text(text: str) -> str:
    """``text`` with what UTF-8 cannot hold shown as U+FFFD: the bytes of a command line or
    a file name that were not UTF-8 (decoded by Python as lone surrogates, which the store
    refuses), one U+FFFD per byte."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte made
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")
