"""Time stamps: now, a point's ``_ts`` as given to ``log()``, and ISO-8601 text.

Stored times are POSIX seconds (float64); every boundary that shows one to a
person (``read()``, ``stats()``, listings, exports) formats it with
:func:`iso`.
"""

import datetime
import math
import numbers
import threading
import time

from .errors import ConfigurationError

_UTC = datetime.timezone.utc
_last_ts = threading.local()  # the last _ts used in this thread: what _ts=-1 reuses

now = time.time


def iso(timestamp):
    """ISO-8601 UTC text of a POSIX timestamp (None stays None), e.g.
    ``2026-11-28T04:33:14.845556Z``.

    Points of one page mostly fall in the same second, so the formatted
    second is kept and only the microseconds are formatted anew: a third of
    the cost of ``datetime.isoformat`` per row of ``read()``.
    """
    if timestamp is None:
        return None
    second = math.floor(timestamp)
    micro = round((timestamp - second) * 1e6)
    if micro == 1_000_000:
        second, micro = second + 1, 0
    global _last_second
    cached = _last_second  # one tuple, read once: safe across threads
    if cached[0] != second:
        cached = _last_second = (
            second, datetime.datetime.fromtimestamp(second, _UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{micro:06d}Z"


_last_second = (None, "")


def resolve_ts(ts):
    """The ``_ts`` of a point: now (None), a given time, or the last one used (``-1``).

    A given time is a real number of seconds since the epoch within years 1
    to 9999 (numpy scalars too); text such as ``"12"`` and bools are refused,
    not converted.
    """
    if ts is None:
        ts = _last_ts.value = time.time()
        return ts
    kind = type(ts)
    if kind is not float and kind is not int:
        if isinstance(ts, (bool, str, bytes)) or not isinstance(ts, numbers.Real):
            item = getattr(ts, "item", None)  # a numpy 0-d array or a tensor
            ts = item() if callable(item) and getattr(ts, "ndim", 1) == 0 else None
            if type(ts) not in (int, float):
                raise TypeError(
                    f"_ts must be a number (seconds since the epoch), got {kind.__name__}")
    if ts == -1:
        try:
            return _last_ts.value
        except AttributeError:
            raise ConfigurationError(
                "_ts=-1 reuses the last timestamp logged in this thread, but none was logged yet") from None
    try:
        ts = float(ts)
    except OverflowError:
        raise ValueError(f"_ts must be {_TS_RANGE}, got an int of {int(ts).bit_length()} bits") from None
    if not _TS_MIN <= ts < _TS_MAX:  # NaN fails too
        raise ValueError(f"_ts must be {_TS_RANGE}, got {ts!r}")
    _last_ts.value = ts
    return ts


# The times a date can show (years 1 to 9999 UTC): stats() and exports print
# a point's _ts as an ISO date, and would fail on any other.
_TS_MIN, _TS_MAX = -62135596800.0, 253402300800.0
_TS_RANGE = "a finite number of seconds since the epoch, within years 1 to 9999"
