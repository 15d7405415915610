"""Filters over the runs of a listing: ``where="params.lr > 0.01 and status == 'COMPLETED'"``.

A small expression language read with Python's own parser (``ast``) and
evaluated by walking the tree; only the nodes listed here are accepted, so
nothing in an expression can call a function, reach an attribute of a
Python object or import anything.  (Rejected: ``eval`` with emptied
builtins, which is escapable through the attributes of any literal; and
routing the filter through DuckDB, which would make listing need the
``sql`` extra.)

What an expression may hold:

- the fields of a run's listing: ``prefix``, ``status``, ``stale``,
  ``description``, ``tags``, ``points``, ``launches``, ``createdAt``,
  ``startedAt``, ``endedAt``;
- ``params.<key>`` (``params.model.depth`` is the flat key ``model.depth``)
  and ``last.<key>`` (the last value of a root stream key), or with brackets
  for any key: ``params["lr-init"]``, ``last["train/loss"]``;
- literals (numbers, strings, ``True``, ``False``, ``None``, lists),
  comparisons (``== != < <= > >= in``, ``not in``, chained), ``and``,
  ``or``, ``not`` and arithmetic on numbers (``+ - * / %``, unary minus).

A param or value a run lacks is None.  A comparison that Python cannot
make (a string against a number, None against a number) is False rather
than an error, as SQL's NULL is: ``params.lr > 0.01`` selects only the runs
whose ``lr`` is a number above 0.01 (a string ``"0.1"`` is not a number).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

FIELDS = ("prefix", "status", "stale", "description", "tags", "points", "launches",
          "createdAt", "startedAt", "endedAt")
_GROUPS = ("params", "last")
MAX_LENGTH = 10_000  # a filter is a line or two; the parser's memory grows with nesting
MAX_DEPTH = 100  # nodes on the deepest path; the walk takes up to two Python frames per node
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv, ast.Mod: operator.mod}
# (Rejected: ``**``, and arithmetic on text or lists: ``10 ** 10 ** 10`` or ``"a" * 10 ** 9``
# in a filter would hang or fill memory; nothing a filter needs is lost.)


class RunFilter:
    """A compiled ``where``: an expression (text) or a callable of a run's dict."""

    def __init__(self, where: str | Callable[[dict], Any]) -> None:
        if callable(where):
            self._test = lambda run: bool(where(run))
            return
        if not isinstance(where, str):
            raise TypeError(f"where= must be an expression (str) or a callable of a run's dict, "
                            f"got {type(where).__name__}")
        if len(where) > MAX_LENGTH:
            raise ValueError(f"where={where[:60]!r}...: longer than {MAX_LENGTH} characters")
        try:
            tree = ast.parse(where.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ValueError(f"where={where!r}: not an expression ({exc.msg})") from None
        except (RecursionError, MemoryError):  # nested past what Python's parser takes
            raise ValueError(f"where={where[:60]!r}...: nested too deeply") from None
        self._expression = where
        # Depth is measured without recursion and bounded before the tree is walked, so that
        # neither the check nor the walk over each run can meet Python's recursion limit, however
        # deep the caller's own stack.  (Rejected: catching RecursionError around the check alone;
        # the walk spends more frames per node than the check, and a filter the check accepted
        # raised RecursionError in the middle of a listing.)
        if _depth(tree) > MAX_DEPTH:
            raise ValueError(f"where={where[:60]!r}...: nested too deeply "
                             f"(more than {MAX_DEPTH} levels)")
        self._check(tree)
        self._tree = tree
        self._test = lambda run: bool(self._value(self._tree, run))

    def __call__(self, run: dict) -> bool:
        return self._test(run)

    # -- checking, once, before any run is read ------------------------------------------

    def _refuse(self, node, why):
        text = ast.get_source_segment(self._expression.strip(), node) or ast.dump(node)
        raise ValueError(f"where={self._expression!r}: {text!r} {why}")

    def _check(self, node):
        if isinstance(node, (ast.Attribute, ast.Subscript)) or \
                (isinstance(node, ast.Name) and node.id in _GROUPS):
            self._field_of(node)
        elif isinstance(node, ast.Name):
            if node.id not in FIELDS and node.id not in ("true", "false", "null"):
                self._refuse(node, f"is not a field; use one of {', '.join(FIELDS)}, "
                                   "params.KEY or last.KEY")
        elif isinstance(node, ast.Constant):
            pass
        elif isinstance(node, (ast.List, ast.Tuple)):
            for item in node.elts:
                self._check(item)
        elif isinstance(node, ast.BoolOp) or isinstance(node, ast.Compare):
            for child in (node.values if isinstance(node, ast.BoolOp) else [node.left, *node.comparators]):
                self._check(child)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            self._check(node.operand)
        elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            self._check(node.left)
            self._check(node.right)
        else:
            self._refuse(node, "is not allowed here: use fields, params.KEY, last.KEY, literals, "
                               "comparisons, and/or/not and arithmetic")

    def _field_of(self, node):
        """``(group, key)`` of ``params.a.b`` / ``last["k"]``: ``("params", "a.b")``."""
        parts = []
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            if isinstance(node, ast.Attribute):
                parts.append(node.attr)
            elif isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                parts.append(node.slice.value)
            else:
                self._refuse(node, "needs a quoted key in the brackets, e.g. params[\"lr\"]")
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in _GROUPS or not parts:
            self._refuse(node, "is not params.KEY or last.KEY")
        return node.id, ".".join(reversed(parts))

    # -- evaluation ------------------------------------------------------------------------

    def _value(self, node, run):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[node.id]
            return run.get(node.id)
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            group, key = self._field_of(node)
            return (run.get(group) or {}).get(key)
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self._value(item, run) for item in node.elts]
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(self._value(v, run) for v in node.values)
            return any(self._value(v, run) for v in node.values)
        if isinstance(node, ast.UnaryOp):
            operand = self._value(node.operand, run)
            if isinstance(node.op, ast.Not):
                return not operand
            if not _is_number(operand):
                return None
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            left, right = self._value(node.left, run), self._value(node.right, run)
            if not (_is_number(left) and _is_number(right)):
                return None
            return _safely(_ARITHMETIC[type(node.op)], left, right)
        left = self._value(node.left, run)
        for op, right_node in zip(node.ops, node.comparators):
            right = self._value(right_node, run)
            if not _safely(_COMPARE[type(op)], left, right):
                return False
            left = right
        return True


def _depth(tree: ast.AST) -> int:
    """The number of nodes on the longest path from ``tree`` down, counted with a list, not
    the call stack."""
    deepest, pending = 0, [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _is_number(value):
    return isinstance(value, (int, float))


def _safely(function, *values):
    """``function(*values)``, or None where the values do not fit it (``"a" < 1``,
    ``None + 1``, ``1 / 0``, ``x in 3``): a run lacking a param is not an error."""
    if function in (operator.eq, operator.ne):
        return function(*values)
    if any(v is None for v in values):
        return None
    try:
        return function(*values)
    except (TypeError, ArithmeticError, ValueError):
        return None
