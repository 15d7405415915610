"""Nested dicts and flat dicts of key paths: ``{"a": {"b": 1}}`` <-> ``{"a.b": 1}``.

Params are stored flat, one record per key path, and read back nested with
``get(flatten=False)``; users flatten their own configs the same way, with
the separator of their choice (``"/"`` for TensorBoard's hparams, ``"__"``
for environment variables).  :func:`flatten` and :func:`unflatten` are the
two directions; :func:`leaves` is the walk under :func:`flatten`, for the
callers that check or convert each leaf (``exp.params.set``).

Round trip: ``unflatten(flatten(d, sep=s), sep=s) == d`` for every dict
``d`` whose keys are strings with no character of ``s`` and that holds no
empty dict (an empty dict has no leaf, so it has no flat form).  Keys merely
without ``s`` are not enough for a longer separator: ``":"`` and ``""``
joined by ``"::"`` give ``":::"``, which splits as ``""`` and ``":"``.

Walked with an explicit stack, not recursion: a deep config flattens
instead of hitting Python's recursion limit, and a dict that contains itself
is a ``ValueError`` naming the path, not a ``RecursionError``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator
from typing import Any

Expand = Callable[[Any], "dict | None"]

_MISSING = object()  # "no such item", where None is a value


def _dicts(value: Any) -> dict | None:
    """The default ``expand``: a dict is descended into, anything else is a leaf."""
    return value if isinstance(value, dict) else None


def _segment(key: Any, parents: list[str], sep: str, empty_keys: bool = True) -> str:
    """``key`` as one segment of a path: a str (a subclass as a plain str), or an int
    written in decimal.

    An int key becomes its digits, as JSON writes it and as the reference
    package's flattening does; other keys (floats, tuples, None...) would
    give paths that read back as something else, so they are refused.
    """
    if type(key) is str and (key or empty_keys):
        return key
    where = f" under {sep.join(parents)!r}" if parents else ""
    if isinstance(key, str):  # numpy.str_, a str-valued Enum: the characters themselves
        if not key and not empty_keys:
            raise TypeError(f"keys must be non-empty strings, got ''{where}")
        return str.__str__(key)
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):  # numpy ints too
        return str(int(key))
    raise TypeError(f"keys of a nested dict must be strings (or ints), got {key!r} "
                    f"({type(key).__name__}){where}")


def leaves(mapping: dict, expand: Expand = _dicts, max_depth: int | None = None,
           sep: str = ".", empty_keys: bool = True) -> Iterator[tuple[tuple[str, ...], Any]]:
    """``(path, value)`` of each leaf of ``mapping``, depth first, in insertion order.

    ``path`` is the tuple of keys from the top.  ``expand(value)`` returns
    the dict to descend into, or None for a leaf (default: dicts only; params
    also expand class objects).  A value met again inside itself raises
    ``ValueError`` naming its path (``sep`` joins it).  With ``max_depth``,
    a value that ``expand`` would open below that many levels is yielded as
    a leaf instead, for the caller to refuse in its own words.
    ``empty_keys=False`` refuses an empty key (``TypeError``) wherever it is,
    even above an empty dict, which yields no leaf to look at afterwards.
    """
    if not isinstance(mapping, dict):
        raise TypeError(f"expected a dict to flatten, got {type(mapping).__name__}")
    # One frame per open level: (iterator over its items, id of its source);
    # keys[i] is the key that opened frame i + 1.  Paths are built only for
    # the leaves: a tuple per level would cost depth squared on deep nesting.
    stack: list[tuple[Iterator[tuple[Any, Any]], int]] = [(iter(mapping.items()), id(mapping))]
    keys: list[str] = []
    open_ids = {id(mapping)}
    while stack:
        items, source = stack[-1]
        item: Any = next(items, _MISSING)
        if item is _MISSING:
            stack.pop()
            open_ids.discard(source)
            if keys:
                keys.pop()
            continue
        key, value = item
        keys.append(_segment(key, keys, sep, empty_keys))
        children = None if max_depth is not None and len(stack) >= max_depth else expand(value)
        if children is None:
            yield tuple(keys), value
            keys.pop()
            continue
        if id(value) in open_ids:
            raise ValueError(f"{sep.join(keys)!r} contains itself, so it has no flat form")
        open_ids.add(id(value))
        stack.append((iter(children.items()), id(value)))


def check_sep(sep: Any) -> str:
    """``sep`` if it is a non-empty str, else ``TypeError``/``ValueError`` saying so."""
    if not isinstance(sep, str):
        raise TypeError(f"sep must be a str, got {type(sep).__name__}")
    if not sep:
        raise ValueError("sep must be a non-empty str: an empty one cannot be split again")
    return sep


def flatten(mapping: dict, parent_key: str = "", sep: str = ".") -> dict:
    """``{"a.b.c": v}`` from nested dicts; other values (lists too) are kept as they are.

    ``parent_key`` is put in front of every key (``flatten({"b": 1},
    parent_key="a") == {"a.b": 1}``).  Keys must be strings or ints (an int
    becomes its digits); a key given twice, once dotted and once nested
    (``{"a.b": 1, "a": {"b": 2}}``), keeps the later value, as a dict
    literal does.  An empty dict has no leaf and leaves no key.
    """
    check_sep(sep)
    if not isinstance(parent_key, str):
        raise TypeError(f"parent_key must be a str, got {type(parent_key).__name__}")
    head = parent_key + sep if parent_key else ""
    return {head + sep.join(path): value for path, value in leaves(mapping, sep=sep)}


def unflatten(flat: dict, sep: str = ".") -> dict:
    """Nested dicts from ``{"a.b.c": v}``: each key is split on ``sep``.

    A key that holds a value and is also a parent (``{"a": 1, "a.b": 2}``)
    has no nested form: ``ValueError`` naming both keys, in either order.
    (The reference package raises on one order and, on the other, drops
    the earlier keys without a word; keeping either would lose data.)
    A value is never descended into, even a dict: it is not changed.
    """
    check_sep(sep)
    if not isinstance(flat, dict):
        raise TypeError(f"expected a flat dict to unflatten, got {type(flat).__name__}")
    out: dict = {}
    made_by: dict[int, str] = {}  # id of each dict made here -> the first flat key below it
    for key, value in flat.items():
        if not isinstance(key, str):
            raise TypeError(f"keys of a flat dict must be strings, got {key!r} "
                            f"({type(key).__name__})")
        *parents, last = key.split(sep)
        node = out
        for depth, part in enumerate(parents):
            child = node.get(part, _MISSING)
            if child is _MISSING:
                child = node[part] = {}
                made_by[id(child)] = key
            elif id(child) not in made_by:
                raise _clash(sep.join(parents[:depth + 1]), key)
            node = child
        if last in node:  # only a dict made here: flat keys are unique
            raise _clash(key, made_by[id(node[last])])
        node[last] = value
    return out



def _clash(value_key: str, child_key: str) -> ValueError:
    return ValueError(f"cannot unflatten: {value_key!r} holds a value and is also the parent "
                      f"of {child_key!r}")
