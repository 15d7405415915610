"""Config objects as params: what ``params.set()`` makes of the objects scripts pass.

The two most common config objects, ``argparse.Namespace`` and dataclass
instances, become nested dicts (then flattened to ``a.b`` keys by params);
so does any other mapping.  Values that are text in all but type become
text: paths (``os.PathLike``, as ``os.fspath`` gives them), enum members
(their ``name``, such as ``"ADAM"``) and ``torch.device``/``torch.dtype``
(``str()``: ``"cuda:0"``, ``"torch.float32"``).  Lists and tuples are
converted item by item.  Anything else is left as it is, for params to
store or refuse with a message naming the key.

(Rejected: ``dataclasses.asdict``, which deep-copies every value first and
does not look inside a Namespace held by a dataclass; and an enum's
``value``, which may be any object, where its name is always text.)
"""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
from collections.abc import Mapping
from typing import Any

from .values import MAX_DEPTH

_TORCH_TEXT = ("device", "dtype")  # torch classes stored as their str()


def config_dict(config: Any, values: dict) -> dict:
    """``values`` with its config objects converted, ``config`` (given positionally to
    ``params.set()``) merged under them; a key given both ways is refused."""
    converted = {key: plain(value) for key, value in values.items()}
    if config is None:
        return converted
    mapping = as_mapping(config)
    if mapping is None:
        raise TypeError(
            f"params.set() takes one positional config: a dict, an argparse.Namespace or a "
            f"dataclass instance, got {type(config).__name__}; or pass keywords: set(name=value)")
    both = sorted(set(mapping) & set(converted), key=str)
    if both:
        raise TypeError(f"params.set(): {both[0]!r} is given both in the positional config and as "
                        "a keyword; give it once (nothing of this set() was stored)")
    return {**{key: plain(value) for key, value in mapping.items()}, **converted}


def as_mapping(value: Any) -> Mapping | None:
    """The fields of a config object as a mapping, None when it is not one."""
    if isinstance(value, Mapping):
        return value
    argparse = sys.modules.get("argparse")  # not imported: no Namespace exists (import stays lean)
    if argparse is not None and isinstance(value, argparse.Namespace):
        return vars(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    return None


def plain(value: Any, depth: int = 0, _inside: frozenset = frozenset()) -> Any:
    """``value`` with config objects turned into dicts and text-like values into text.

    Dicts and lists that hold nothing to convert are returned as they are
    (the same objects), so that params still sees a dict that contains
    itself as such, and names the key where it does.  ``_inside``: ids of
    the containers being converted, where a cycle stops.
    """
    if type(value) in (bool, int, float, str, type(None)) or depth > MAX_DEPTH \
            or id(value) in _inside:
        return value  # the common case first; too deep, or a cycle: params refuses it, naming the key
    inside = _inside | {id(value)}
    if type(value) is dict:
        items = {key: plain(item, depth + 1, inside) for key, item in value.items()}
        return value if all(items[key] is value[key] for key in value) else items
    if isinstance(value, (list, tuple)):
        converted = [plain(item, depth + 1, inside) for item in value]
        return value if all(a is b for a, b in zip(converted, value)) else converted
    mapping = as_mapping(value)
    if mapping is not None:
        return {key: plain(item, depth + 1, inside) for key, item in mapping.items()}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    kind = type(value)
    if kind.__module__ == "torch" and kind.__name__ in _TORCH_TEXT:
        return str(value)
    return value
