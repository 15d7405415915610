"""How an integration logs a point: on the fast path of ``Stream.log``.

A framework hands over a dict of metrics.  ``stream.log(mapping)`` takes it as
it is, checking each key, and cost ~7 us a call here; the keyword form
``stream.log(_ts=ts, **fields)`` costs under 1 us, since Python itself checks
that the keys are strings.  The keyword form cannot take a field named ``_ts``
or ``_flush`` (log()'s own arguments): such a point goes the dict way, where
``_ts`` is the point's time, as it is for any ``log()``; so does a point with
a key that is not a str, for ``log()`` to refuse naming it.
"""

from __future__ import annotations

from typing import Any


def log_point(stream: Any, fields: dict, ts: float | None = None) -> None:
    """Stage ``fields`` as one point of ``stream`` (at ``ts``: default now)."""
    if "_ts" not in fields and "_flush" not in fields:
        try:
            stream.log(_ts=ts, **fields)
            return
        except TypeError:
            if all(type(key) is str for key in fields):
                raise  # a value log() refuses, naming it: nothing was staged
    stream.log({**fields, "_ts": ts} if ts is not None else fields)
