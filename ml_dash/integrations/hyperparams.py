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
MAX_DEPTH = 32  # deeper than any config; a structure that goes on (a cycle) ends as text


def storable(value: Any, depth: int = 0) -> Any:
    """``value`` with its classes, functions and other objects turned into text.

    Mappings (a Lightning ``AttributeDict``, an ``argparse.Namespace``, a
    dataclass instance) become dicts with text keys; lists and tuples become
    lists.  Numbers, text, None, arrays and tensors (``tolist()``), enum
    members and paths are kept: params stores them.
    """
    if type(value) in _PLAIN:
        return value
    if depth > MAX_DEPTH:
        return repr(value)
    if isinstance(value, Mapping):
        return {str(key): storable(item, depth + 1) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
        return storable(value, depth + 1)
    if type(value).__name__ == "Namespace" and hasattr(value, "__dict__"):  # argparse's, or alike
        return storable(vars(value), depth + 1)
    if isinstance(value, (list, tuple)):
        return [storable(item, depth + 1) for item in value]
    if isinstance(value, (_PLAIN, enum.Enum, os.PathLike)) or callable(getattr(value, "tolist", None)):
        return value  # a str or float subclass, numpy, torch: params converts them
    kind = type(value)
    if kind.__module__ == "torch" and kind.__name__ in ("device", "dtype"):
        return value
    if inspect.isclass(value) or inspect.isroutine(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
    return str(value)
