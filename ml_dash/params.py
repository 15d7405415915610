"""Parameters of a run: a flat ``{"a.b.c": value}`` dict, merged set by set.

``exp.params.set(model=dict(lr=0.1, layers=[64, 64]), seed=1)`` stores
``model.lr``, ``model.layers`` and ``seed``.  Each flat key is one record of
the ``params`` sub-database, so a set rewrites only the keys it touches.  A
set is validated and converted whole (keys measured against LMDB's key
limit) before anything is staged, then committed at once as a snapshot of
its own: either all of it is stored or none of it, then or later.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

from .config_values import config_dict
from .storage import records
from .values import _NOT_UTF8, MAX_DEPTH, _short, convert_for, unencodable

_PLAIN = (bool, int, float, str, type(None))


def flatten(values, prefix="", depth=0):
    """``{"a.b": v}`` from nested dicts and class objects, values converted.

    Raises ``TypeError`` naming the key for a value that cannot be stored
    (or nested past ``MAX_DEPTH`` levels: a class that refers to itself
    would otherwise recurse until Python's limit).
    """
    if depth >= MAX_DEPTH:
        raise TypeError(
            f"params: {_short(prefix.rstrip('.'))} is nested more than {MAX_DEPTH} levels deep "
            "(or refers to itself), which cannot be stored; nothing of this set() was stored")
    flat = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"params: keys must be non-empty strings, got {key!r} "
                            f"({type(key).__name__}) under {_short(prefix)}")
        name = prefix + key
        if isinstance(value, dict):
            flat.update(flatten(value, name + ".", depth + 1))
        elif inspect.isclass(value):
            flat.update(flatten(class_fields(value), name + ".", depth + 1))
        else:
            flat[name] = _storable(name, value, depth)
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


def _storable(name, value, depth):
    if isinstance(value, _PLAIN) and type(value) in _PLAIN:
        return value
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and getattr(value, "ndim", False):  # numpy arrays: nested lists
        value = tolist()
    try:
        return convert_for("params", name, value, depth)
    except TypeError as exc:  # it names the key and the type, inside lists too
        raise TypeError(f"{exc}; nothing of this set() was stored") from None


def encode_params(flat):
    """``{key: (LMDB key, encoded value)}`` of a flat params dict, or an error naming the key.

    A key must fit LMDB's key limit as UTF-8 (``ValueError``); text must be
    valid UTF-8 (``TypeError`` for a value holding a lone surrogate).
    """
    encoded = {}
    for name, value in flat.items():
        key = records.text_key(name, "params key")
        try:
            encoded[name] = key, records.encode(value)
        except UnicodeEncodeError:
            raise TypeError(f"params: {_short(unencodable(value, name))} {_NOT_UTF8}; "
                            "nothing of this set() was stored") from None
    return encoded


def nest(flat):
    """Nested dicts from a flat ``{"a.b": v}`` dict."""
    out: dict = {}
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


class Params:
    """``exp.params`` of a live experiment or of a view: ``set()`` and ``get()``."""

    def __init__(self, owner: Any) -> None:
        self._exp = owner
        self._flat: dict = {}
        self._session = None  # the session ``_flat`` was loaded in
        self._lock = threading.Lock()  # one set() at a time: each merges into the last

    def _load(self):
        session = self._exp._session
        if session is None:
            return records.stored_params(self._exp._reader())
        if self._session is not session:
            self._flat = records.stored_params(session.reader)
            self._session = session
        return self._flat

    def get(self, flatten: bool = True) -> dict:
        """The parameters: flat ``{"a.b": v}`` or, with ``flatten=False``, nested."""
        flat = dict(sorted(self._load().items()))
        return flat if flatten else nest(flat)

    def set(self, config: Any = None, /, **values: Any) -> Params:
        """Merge ``values`` into the stored params and commit them; returns ``exp.params``.

        ``config``: a dict, ``argparse.Namespace`` or dataclass instance whose
        fields are set as keywords are.  Namespaces, dataclasses and mappings
        among the values become nested dicts; paths, enum members (their name)
        and ``torch.device``/``dtype`` become text (see ``config_values``).
        Nested dicts and class objects are flattened to ``a.b`` keys; a key
        replaces stored keys that conflict with it (``a`` versus ``a.b``).
        All or nothing: a value that cannot be stored raises ``TypeError``
        (a key too long for the store ``ValueError``) and a failed commit
        raises too; either way nothing of this call is stored, now or later,
        and ``get()`` still gives what is stored.
        """
        session = self._exp._open_session()
        flat = flatten(config_dict(config, values))
        encoded = encode_params(flat)
        with self._lock:
            current = self._load()
            merged = dict(current)
            for key, value in flat.items():
                for other in conflicts(merged, key):
                    del merged[other]
                merged[key] = value
            changes = [records.param_delete(key) for key in current.keys() - merged.keys()]
            changes += [records.param_put(key, data)
                        for name, (key, data) in encoded.items() if name in merged]
            commits = session.commits
            try:
                # A snapshot of its own, not staged with the rest: a flush
                # that failed (on anyone's data) kept staged records for a
                # later flush, so a set() that raised was stored after all,
                # behind the back of _flat and of its conflict rules.
                session.commit_records(changes)
            except BaseException:
                if session.commits != commits:  # stored, only its fsync failed
                    self._flat = merged
                raise
            self._flat = merged
        return self

    log = set

    def __repr__(self) -> str:
        return f"<Params of {self._exp.prefix}>"
