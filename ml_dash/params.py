"""Parameters of a run: a flat ``{"a.b.c": value}`` dict, merged set by set.

``exp.params.set(model=dict(lr=0.1, layers=[64, 64]), seed=1)`` stores
``model.lr``, ``model.layers`` and ``seed``.  Each flat key is one record of
the ``params`` sub-database, so a set rewrites only the keys it touches.  A
set is validated and converted whole before anything is staged, then
committed at once with one flush: either all of it is stored or none of it.
"""

import inspect

from .storage.keys import PARAMS_DB
from .storage.codec import encode_value
from .values import convert

_PLAIN = (bool, int, float, str, type(None))


def flatten(values, prefix=""):
    """``{"a.b": v}`` from nested dicts and class objects, values converted.

    Raises ``TypeError`` naming the key for a value that cannot be stored.
    """
    flat = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"params: keys must be non-empty strings, got {key!r} under {prefix!r}")
        name = prefix + key
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif inspect.isclass(value):
            flat.update(flatten(class_fields(value), name + "."))
        else:
            flat[name] = _storable(name, value)
    return flat


def class_fields(cls):
    """Public, non-callable attributes of a class object (nested classes expand)."""
    fields = {}
    for klass in reversed(cls.__mro__[:-1]):  # base classes first, object left out
        for key, value in vars(klass).items():
            if key.startswith("_") or isinstance(value, (staticmethod, classmethod, property)):
                continue
            if callable(value) and not inspect.isclass(value):
                continue
            fields[key] = value
    return fields


def _storable(name, value):
    if isinstance(value, _PLAIN) and type(value) in _PLAIN:
        return value
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and getattr(value, "ndim", 0):  # numpy arrays: nested lists
        value = tolist()
    try:
        return convert("params", name, value)
    except TypeError:
        raise TypeError(
            f"params: {name!r} is a {type(value).__module__}.{type(value).__qualname__}, which "
            "cannot be stored; use int, float, bool, str, None, lists, dicts or class objects "
            "of these (nothing of this set() was stored)") from None


def nest(flat):
    """Nested dicts from a flat ``{"a.b": v}`` dict."""
    out = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value
    return out


def conflicts(stored, key):
    """Stored keys that ``key`` replaces: its ancestors (``a`` for ``a.b``) and descendants."""
    parts = key.split(".")
    ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
    below = key + "."
    return [other for other in stored if other in ancestors or other.startswith(below)]


class ParamsReading:
    """``get()``; subclasses provide ``_load()`` giving the stored flat dict."""

    def get(self, flatten=True):
        """The parameters: flat ``{"a.b": v}`` or, with ``flatten=False``, nested."""
        flat = dict(sorted(self._load().items()))
        return flat if flatten else nest(flat)


def stored_params(reader):
    """The flat params dict committed in a store."""
    return {key.decode("utf-8"): value for key, value in reader.select(PARAMS_DB)}


class Params(ParamsReading):
    """``exp.params`` of a live experiment."""

    def __init__(self, experiment):
        self._exp = experiment
        self._flat = {}
        self._session = None  # the session ``_flat`` was loaded in

    def _load(self):
        session = self._exp._session
        if session is None:
            return stored_params(self._exp._reader())
        if self._session is not session:
            self._flat = stored_params(session.reader)
            self._session = session
        return self._flat

    def set(self, **values):
        """Merge ``values`` into the stored params and commit them; returns ``exp.params``.

        Nested dicts and class objects are flattened to ``a.b`` keys; a key
        replaces stored keys that conflict with it (``a`` versus ``a.b``).
        A value that cannot be stored raises ``TypeError`` and nothing of
        this call is stored.
        """
        session = self._exp._open_session()
        flat = flatten(values)
        encoded = {key: encode_value(value) for key, value in flat.items()}
        current = self._load()
        merged = dict(current)
        for key, value in flat.items():
            for other in conflicts(merged, key):
                del merged[other]
            merged[key] = value
        records = [(PARAMS_DB, key.encode("utf-8"), None) for key in current.keys() - merged.keys()]
        records += [(PARAMS_DB, key.encode("utf-8"), data)
                    for key, data in encoded.items() if key in merged]
        session.stage_records(records)
        session.flush()
        self._flat = merged
        return self

    log = set

    def __repr__(self):
        return f"<Params of {self._exp.prefix}>"
