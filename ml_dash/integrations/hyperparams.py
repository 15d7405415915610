"""Framework hyperparameters as params that ``exp.params.set()`` can store.

A framework hands its logger whatever the training code was built with:
Lightning's ``save_hyperparameters()`` records every argument of a module's
``__init__``, loss functions, activation classes and callbacks included; a
Keras optimizer's config may hold a schedule object.  ``params.set()`` refuses
what it cannot store, naming the key, which is right for a call a user
writes, but a logger that did so would stop a training run over a value
every other logger records.  So the values that are not data (classes,
functions, other objects) become text here, and the data (numbers, text,
lists, dicts, config objects, arrays, paths, enums) is left for params to
convert as it always does.

(Rejected: leaving a class object to params, which opens a class into its
public attributes: for ``loss=torch.nn.MSELoss`` that stores the internals
of torch, not the name the user chose.)
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import os
from collections.abc import Mapping
from typing import Any

_PLAIN = (bool, int, float, str, type(None))
MAX_DEPTH = 32  # deeper than any config; what goes on deeper ends as text


def storable(value: Any) -> Any:
    """``value`` with its classes, functions and other objects turned into text.

    Mappings (a Lightning ``AttributeDict``, an ``argparse.Namespace``, a
    dataclass instance) become dicts with text keys; lists and tuples become
    lists.  Numbers, text, None, arrays and tensors (``tolist()``), enum
    members and paths are kept: params stores them.  A container that holds
    itself becomes the text ``"<cycle: dict>"`` where it recurs, and an
    object whose ``str()`` raises becomes ``"<TypeName: unprintable>"``: a
    logger must not hang or fail a training run over a value it only records.
    """
    return _storable(value, 0, set())


def _storable(value: Any, depth: int, path: set[int]) -> Any:
    """``storable`` with the ids of the containers above ``value`` in ``path``.

    (Rejected: a depth bound alone.  A dict holding itself under two keys
    doubles the work at every level, so 32 levels were 2**33 calls: a hang.)
    """
    if type(value) in _PLAIN:
        return value
    if depth > MAX_DEPTH:
        return _text(value)
    if id(value) in path:
        return f"<cycle: {type(value).__name__}>"
    if isinstance(value, Mapping):
        return _inside(value, depth, path, lambda: {
            _text(key): _storable(item, depth + 1, path) for key, item in value.items()})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
        return _inside(value, depth, path, lambda: _storable(fields, depth + 1, path))
    if type(value).__name__ == "Namespace" and hasattr(value, "__dict__"):  # argparse's, or alike
        return _inside(value, depth, path, lambda: _storable(vars(value), depth + 1, path))
    if isinstance(value, (list, tuple)):
        return _inside(value, depth, path, lambda: [_storable(item, depth + 1, path) for item in value])
    if isinstance(value, (_PLAIN, enum.Enum, os.PathLike)) or callable(getattr(value, "tolist", None)):
        return value  # a str or float subclass, numpy, torch: params converts them
    kind = type(value)
    if kind.__module__ == "torch" and kind.__name__ in ("device", "dtype"):
        return value
    if inspect.isclass(value) or inspect.isroutine(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
    return _text(value)


def _inside(container: Any, depth: int, path: set[int], convert: Any) -> Any:
    """``convert()`` with ``container`` on the path, so that a way back to it is seen as a cycle."""
    path.add(id(container))
    try:
        return convert()
    except RecursionError:
        raise
    except Exception:  # a mapping whose items() raises, a dataclass field that is a property failing
        return _text(container)
    finally:
        path.discard(id(container))


def _text(value: Any) -> str:
    """``str(value)``, or a placeholder naming its type when its ``__str__`` raises."""
    try:
        return str(value)
    except Exception:  # str() also raises this when __str__ returns something else than text
        return f"<{type(value).__name__}: unprintable>"
