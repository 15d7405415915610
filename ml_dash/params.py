"""Parameters of a run: a flat ``{"a.b.c": value}`` dict, merged set by set.

``exp.params.set(model=dict(lr=0.1, layers=[64, 64]), seed=1)`` stores
``model.lr``, ``model.layers`` and ``seed``.  Each flat key is one record of
the ``params`` sub-database, so a set rewrites only the keys it touches.  A
set is validated and converted whole (keys measured against LMDB's key
limit) before anything is staged, then committed at once as a snapshot of
its own: either all of it is stored or none of it, then or later.
"""

from __future__ import annotations

import bisect
import inspect
import threading
from typing import Any

from . import keypaths
from .config_values import config_dict
from .storage import records
from .values import _NOT_UTF8, MAX_DEPTH, _short, convert_for, unencodable

_PLAIN = (bool, int, float, str, type(None))


def flatten(values: dict) -> dict:
    """``{"a.b": v}`` of a set()'s values: nested dicts and class objects
    opened, each value converted for the store.

    Raises ``TypeError`` naming the key for a key or a value that cannot be
    stored, for nesting past ``MAX_DEPTH`` levels and for a value that
    contains itself (a class that refers to itself, a dict inside itself).
    """
    try:
        # An empty key is refused where it stands: LMDB takes no empty key,
        # and a path with an empty part ("a..b") is a slip, not a name.
        walked = list(keypaths.leaves(values, _open, MAX_DEPTH, empty_keys=False))
    except (TypeError, ValueError) as exc:  # a key: empty, neither str nor int; a value in itself
        raise _refused(f"params: {exc}") from None
    flat = {}
    for path, value in walked:
        name = ".".join(path)
        if isinstance(value, dict) or inspect.isclass(value):  # left closed: at MAX_DEPTH
            raise _refused(f"params: {_short(name)} is nested more than {MAX_DEPTH} levels deep, "
                           "which cannot be stored")
        try:
            flat[name] = _storable(name, value, len(path) - 1)
        except TypeError as exc:  # it names the key and the type, inside lists too
            raise _refused(str(exc)) from None
    return flat


def _refused(message):
    return TypeError(f"{message}; nothing of this set() was stored")


def _open(value):
    """What params open: dicts, and class objects as their public fields."""
    if isinstance(value, dict):
        return value
    if inspect.isclass(value):
        return class_fields(value)
    return None


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
    return convert_for("params", name, value, depth)  # names the key and the type


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
            raise _refused(f"params: {_short(unencodable(value, name))} {_NOT_UTF8}") from None
    return encoded


def merge(stored: dict, order: list, flat: dict) -> tuple[dict, list]:
    """``stored`` with ``flat`` merged in, and its keys in sorted order; nothing changed in place.

    ``order`` is ``sorted(stored)``.  A key replaces the keys it conflicts
    with: its ancestors (``a`` for ``a.b``) and its descendants (``a.b.c``),
    later keys of ``flat`` winning over earlier ones too.  The descendants of
    a key are one run of the sorted keys, found by bisection: scanning every
    stored key for each new one made a set of 10,000 keys take seconds.
    """
    merged = dict(stored)
    order = list(order)
    for key, value in flat.items():
        if key not in merged:  # a stored key has no conflicts: merged never holds any
            below = key + "."
            start = end = bisect.bisect_left(order, below)
            while end < len(order) and order[end].startswith(below):
                del merged[order[end]]
                end += 1
            del order[start:end]
            for cut in (i for i, char in enumerate(key) if char == "."):
                if key[:cut] in merged:  # at most one: merged holds no ancestor of another key
                    del merged[key[:cut]]
                    del order[bisect.bisect_left(order, key[:cut])]
            bisect.insort(order, key)
        merged[key] = value
    return merged, order


class Params:
    """``exp.params`` of a live experiment or of a view: ``set()`` and ``get()``."""

    def __init__(self, owner: Any) -> None:
        self._exp = owner
        self._flat: dict = {}
        self._order: list = []  # sorted(self._flat), kept beside it
        self._session = None  # the session ``_flat`` was loaded in
        self._lock = threading.Lock()  # one set() at a time: each merges into the last

    def _load(self):
        session = self._exp._session
        if session is None:
            return records.stored_params(self._exp._reader())
        if self._session is not session:
            self._flat = records.stored_params(session.reader)
            self._order = sorted(self._flat)
            self._session = session
        return self._flat

    def get(self, flatten: bool = True) -> dict:
        """The parameters: flat ``{"a.b": v}`` or, with ``flatten=False``, nested."""
        flat = dict(sorted(self._load().items()))
        return flat if flatten else keypaths.unflatten(flat)

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
        if not flat:  # set(), or only empty dicts: nothing to store, no snapshot to commit
            return self
        encoded = encode_params(flat)
        with self._lock:
            current = self._load()
            merged, order = merge(current, self._order, flat)
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
                    self._flat, self._order = merged, order
                raise
            self._flat, self._order = merged, order
        return self

    log = set

    # The reference package's helpers, where its users call them
    # (``ParametersBuilder.flatten_dict``); the functions live in keypaths.
    flatten_dict = staticmethod(keypaths.flatten)
    unflatten_dict = staticmethod(keypaths.unflatten)

    def __repr__(self) -> str:
        return f"<Params of {self._exp.prefix}>"


#: The reference package's name of this class: ``exp.params`` is a
#: ``ParametersBuilder`` there, and scripts check it with ``isinstance``.
#: One class under two names, not a subclass: there is one params concept.
ParametersBuilder = Params
