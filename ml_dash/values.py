"""What a logged value may be, and the conversions applied at ``log()`` time.

Allowed: int, float (NaN and inf too), bool, str, None, and lists and dicts
of these.  numpy scalars, 0-d arrays and one-element tensors (anything with
``.item()``) become Python scalars.  Anything else is rejected synchronously
with a ``TypeError`` naming the stream, the key and the type, so bad input
never reaches the store.
"""

import threading
import time

from .errors import ConfigurationError

_SCALARS = (bool, int, float, str)
_last_ts = threading.local()


def _label(stream):
    return "the root stream" if stream is None else f"stream {stream!r}"


def check_fields(stream, fields):
    """Validate ``fields`` (a fresh dict from ``**kwargs``), converting in place.

    The common case, flat ints, floats, strings and bools, costs one type
    test per value; everything else goes through :func:`convert`.
    """
    for key, value in fields.items():
        kind = type(value)
        if kind is float or kind is int or kind is str or kind is bool or value is None:
            if not key:
                raise TypeError(f"{_label(stream)}: field names must be non-empty strings")
            continue
        fields[key] = convert(stream, key, value)
    return fields


def convert(stream, key, value):
    """``value`` as a storable Python value, or ``TypeError``."""
    if not isinstance(key, str) or not key:
        raise TypeError(f"{_label(stream)}: field names must be non-empty strings, got {key!r}")
    if value is None or type(value) in _SCALARS:
        return value
    if isinstance(value, dict):
        return {k: convert(stream, f"{key}.{k}" if isinstance(k, str) else k, v)
                for k, v in _checked_items(stream, key, value)}
    if isinstance(value, (list, tuple)):
        return [convert(stream, key, v) for v in value]
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
        f"{_label(stream)}: field {key!r} has a value of type {type(value).__module__}."
        f"{type(value).__qualname__}, which cannot be stored; use int, float, bool, str, "
        "None, or lists and dicts of these")


def _checked_items(stream, key, mapping):
    for k in mapping:
        if not isinstance(k, str) or not k:
            raise TypeError(
                f"{_label(stream)}: field {key!r} is a dict with key {k!r}; "
                "keys must be non-empty strings")
    return [(k, mapping[k]) for k in mapping]


def resolve_ts(ts):
    """The ``_ts`` of a point: now (None), a given time, or the last one used (``-1``)."""
    if ts is None:
        ts = _last_ts.value = time.time()
        return ts
    if ts == -1 and type(ts) is not bool:
        try:
            return _last_ts.value
        except AttributeError:
            raise ConfigurationError(
                "_ts=-1 reuses the last timestamp logged in this thread, but none was logged yet") from None
    try:
        ts = float(ts)
    except (TypeError, ValueError):
        raise TypeError(f"_ts must be a number (seconds since the epoch), got {type(ts).__name__}") from None
    _last_ts.value = ts
    return ts


now = time.time
