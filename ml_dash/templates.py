"""Prefix templates: ``{field}`` and ``{field:format}`` expanded into a concrete prefix.

A template is a prefix with fields in Python's ``str.format`` syntax:
``"alice/proj/{now:%Y-%m-%d/%H-%M-%S}"`` or ``"{user}/proj/{path_stem}/{job_counter:03d}"``.
``{EXP.name}`` and ``{RUN.name}`` are the same field as ``{name}`` (the
spellings scripts bring along).  ``{{`` and ``}}`` stand for one brace.

The one rule that keeps a template from escaping its place: a field may
contribute ``/`` between words of its own (``{now:%Y/%m}``, a ``path_stem``
like ``vision/train``), but its text may not start or end with ``/`` nor
hold a ``.`` or ``..`` segment, so no field adds an empty segment, climbs
out of its folder, or turns into the separator itself.  The whole result
is then checked as any prefix is (``paths.check_prefix``).

(Rejected: ``string.Template``'s ``$name``: it has no format specs, and
``{now:%Y-%m-%d}`` and ``{job_counter:03d}`` are what scripts already write.)
"""

import string
from collections.abc import Callable
from typing import Any

from .errors import ConfigurationError, TemplateFieldError

_FORMATTER = string.Formatter()
_NAMESPACES = ("EXP.", "RUN.")
_MAX_DEPTH = 10  # a field's value may itself be a template (project = "{user}/scratch")


def is_template(text: Any) -> bool:
    """True if ``text`` is a string with a field (or an escaped brace) in it."""
    return isinstance(text, str) and ("{" in text or "}" in text)


def literal(text: str) -> str:
    """``text`` as a template that expands to itself: its braces doubled, so none is a field
    (a prefix taken from a folder name or a framework's run name, not written as a template)."""
    return text.replace("{", "{{").replace("}", "}}")


def field_names(template: str) -> list[str]:
    """The field names of ``template`` (namespaces removed), in order;
    ``ConfigurationError`` naming it if its braces do not parse."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:  # "Single '}' encountered", "expected '}' before end of string"
        raise ConfigurationError(
            f"prefix template {template!r}: {exc} (write {{{{ or }}}} for a literal brace)") from None
    names = []
    for _literal, name, _spec, _conversion in parsed:
        if name is None:
            continue
        names.append(_strip_namespace(template, name))
    return names


def check_fields(template: str, known: Any) -> None:
    """``TemplateFieldError`` naming ``template`` if it uses a field not in ``known``."""
    for name in field_names(template):
        if name not in known:
            raise _unknown(template, name, known)


def expand(template: str, lookup: Callable[[str], Any], known: Any,
           unset_hint: Callable[[str], str], nested: Any = ()) -> str:
    """``template`` with every field replaced by ``lookup(name)`` formatted by its spec.

    ``known`` is the collection of field names ``lookup`` answers; the value
    of a field in ``nested`` may itself be a template and is expanded the
    same way (a cycle is refused); other values are text, braces and all.  A
    field whose value is None is refused, with ``unset_hint(name)`` saying
    how to give it one.
    """
    fields = _Fields(lookup, known, unset_hint, nested)
    return _expand(template, template, fields, ())


class _Fields:
    """What a template's fields are looked up in (the arguments of :func:`expand`)."""

    def __init__(self, lookup, known, unset_hint, nested):
        self.lookup, self.known, self.unset_hint, self.nested = lookup, known, unset_hint, nested


def _expand(outer, template, fields, stack):
    if len(stack) > _MAX_DEPTH:
        raise ConfigurationError(
            f"prefix template {outer!r}: fields refer to each other in a circle "
            f"({' -> '.join(stack)})")
    field_names(template)  # braces first: their error names the template, not a field
    parts = []
    for literal, name, spec, conversion in _FORMATTER.parse(template):
        parts.append(literal)
        if name is None:
            continue
        field = _strip_namespace(outer, name)
        if field not in fields.known:
            raise _unknown(outer, field, fields.known)
        if field in stack:
            raise ConfigurationError(
                f"prefix template {outer!r}: field {{{field}}} refers to itself "
                f"({' -> '.join((*stack, field))})")
        try:
            value = fields.lookup(field)
        except ConfigurationError as exc:  # a setting of the wrong type (RUN.now = "today")
            raise ConfigurationError(f"prefix template {outer!r}: field {{{field}}}: {exc}") from None
        if value is None:
            raise ConfigurationError(
                f"prefix template {outer!r}: field {{{field}}} has no value here; "
                f"{fields.unset_hint(field)}")
        if field in fields.nested and is_template(value):
            value = _expand(outer, value, fields, (*stack, field))
        text = _format(outer, field, value, spec or "", conversion)
        _check_field_text(outer, field, text)
        parts.append(text)
    return "".join(parts)


def _format(template, field, value, spec, conversion):
    try:
        if conversion:
            value = _FORMATTER.convert_field(value, conversion)
        # a spec may itself hold fields in str.format ("{x:{width}}"); not supported here
        if "{" in spec:
            raise ValueError("nested fields in a format spec are not supported")
        return format(value, spec)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"prefix template {template!r}: field {{{field}:{spec}}} cannot format its "
            f"{type(value).__name__} value {value!r}: {exc}") from None


def _check_field_text(template, field, text):
    segments = text.split("/")
    if any(s in (".", "..") for s in segments) or ("/" in text and not all(
            (segments[0], segments[-1]))):
        raise ConfigurationError(
            f"prefix template {template!r}: field {{{field}}} expands to {text!r}; a field "
            "may not be or add a '/' at its ends, nor a '.' or '..' segment")


def _strip_namespace(template, name):
    for namespace in _NAMESPACES:
        if name.startswith(namespace):
            name = name[len(namespace):]
            break
    if not name.isidentifier():
        shown = name or "{}"
        raise TemplateFieldError(
            f"prefix template {template!r}: field {shown!r} is not a field name; fields are "
            "named, like {name} or {now:%Y-%m-%d} (no positions, attributes or indexes)")
    return name


def _unknown(template, name, known):
    return TemplateFieldError(
        f"prefix template {template!r}: unknown field {{{name}}}; the fields are "
        f"{', '.join('{' + k + '}' for k in sorted(known))}")
