"""The conf-time half of regex body rewriting (response-rewrite ``filters``), shared by
both twins of the body rewriter (``a6native.bodyrewrite`` and ``a6runner._bodyrewrite_py``).

Checking the filters and parsing each replacement template (Go ``regexp.Expand`` syntax)
happen once per conf, so one pure-Python implementation serves both twins: they differ
only in the per-body work. Pure Python importing nothing from ``a6runner``, like the
error types in ``a6native.errors``, so the compiled kernel does not import the runtime.
Contract: src/a6native/bodyrewrite.pyi.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from a6native.errors import ConfError

Piece = bytes | int  # literal bytes, or the number of a group to insert

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _reference_at(template: str, start: int) -> tuple[str, int] | None:
    """The group name referenced right after a ``$`` at ``start - 1``, and where the
    reference ends; None when what follows is not a valid reference."""
    braced = template.startswith("{", start)
    name_start = start + 1 if braced else start
    name_end = name_start
    while name_end < len(template) and template[name_end] in _NAME_CHARS:
        name_end += 1
    if name_end == name_start:
        return None
    if not braced:
        return template[name_start:name_end], name_end
    if not template.startswith("}", name_end):
        return None
    return template[name_start:name_end], name_end + 1


def _group_number(name: str, group_count: int, group_index: Mapping[str, int]) -> int | None:
    """The group ``name`` refers to, or None when there is no such group."""
    if name.isdigit() and (name == "0" or not name.startswith("0")):
        number = int(name)
        return number if number <= group_count else None
    # a number with leading zeros is a name, and no group name starts with a digit
    return group_index.get(name)


def parse_template(template: str, group_count: int, group_index: Mapping[str, int]) -> list[Piece]:
    """Split a Go-style template into literal bytes and group numbers, adjacent literals
    merged."""
    pieces: list[Piece] = []
    literal: list[str] = []
    position = 0
    while True:
        dollar = template.find("$", position)
        if dollar < 0:
            literal.append(template[position:])
            break
        literal.append(template[position:dollar])
        if template.startswith("$", dollar + 1):
            literal.append("$")
            position = dollar + 2
            continue
        reference = _reference_at(template, dollar + 1)
        if reference is None:
            literal.append("$")  # not a reference: the $ is literal text
            position = dollar + 1
            continue
        name, position = reference
        group = _group_number(name, group_count, group_index)
        if group is not None:
            text = "".join(literal)
            if text:
                pieces.append(text.encode("utf-8"))
            literal = []
            pieces.append(group)
    text = "".join(literal)
    if text:
        pieces.append(text.encode("utf-8"))
    return pieces


def _require_str(index: int, field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfError(f"filters[{index}].{field}", "must be a string", got=value)
    return value


class CompiledFilter(NamedTuple):
    pattern: re.Pattern[bytes]
    re_count: int  # 1 = once, 0 = global
    pieces: list[Piece]
    # The template as plain bytes when it references no group.
    plain_replacement: bytes | None
    # The pattern's bytes when it is a plain literal (no character re treats specially)
    # and so is the template: bytes.replace then finds the very same non-overlapping
    # leftmost matches as re, several times faster.
    needle: bytes | None


def compile_filter(index: int, regex: object, scope: object, replace: object) -> CompiledFilter:
    """Check and compile one filter."""
    regex = _require_str(index, "regex", regex)
    scope = _require_str(index, "scope", scope)
    replace = _require_str(index, "replace", replace)
    if scope == "once":
        count = 1
    elif scope == "global":
        count = 0
    else:
        raise ConfError(f"filters[{index}].scope", "must be 'once' or 'global'")
    try:
        pattern = re.compile(regex.encode("utf-8"))
    except re.error as exc:  # re's message may quote the pattern: give the position only
        where = "" if exc.pos is None else f" (at position {exc.pos})"
        raise ConfError(f"filters[{index}].regex", f"does not compile{where}") from None
    except (OverflowError, RecursionError, UnicodeEncodeError):
        raise ConfError(f"filters[{index}].regex", "does not compile") from None
    try:
        pieces = parse_template(replace, pattern.groups, pattern.groupindex)
    except UnicodeEncodeError:
        raise ConfError(f"filters[{index}].replace", "is not valid UTF-8 text") from None
    has_groups = any(isinstance(p, int) for p in pieces)
    plain_replacement = None if has_groups else b"".join(p for p in pieces if isinstance(p, bytes))
    needle = (
        pattern.pattern
        if regex and re.escape(regex) == regex and plain_replacement is not None
        else None
    )
    return CompiledFilter(pattern, count, pieces, plain_replacement, needle)


def compile_filters(filters: Sequence[tuple[str, str, str]]) -> list[CompiledFilter]:
    """Check and compile every filter, in order (shared by both twins: conf time only)."""
    compiled = []
    for index, entry in enumerate(filters):
        try:
            regex, scope, replace = entry
        except (TypeError, ValueError):
            raise ConfError(f"filters[{index}]", "expected (regex, scope, replace)") from None
        compiled.append(compile_filter(index, regex, scope, replace))
    return compiled
