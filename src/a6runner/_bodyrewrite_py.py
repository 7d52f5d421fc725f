"""Regex body rewriting (response-rewrite ``filters``): the pure-Python twin of
``a6native.bodyrewrite``. Contract: src/a6native/bodyrewrite.pyi.

Each replacement template (Go ``regexp.Expand`` syntax) is parsed once, at conf time,
by ``a6native.rewrite_filters`` (shared with the compiled twin) into pieces: literal
bytes and group numbers. The pieces are then handed to ``re`` as its own replacement (a
literal, or a ``\\g<n>`` template), so the matches are exactly those of
``search``/``finditer`` and ``re`` does the loop.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from a6native.rewrite_filters import Piece, compile_filters

__all__ = ["BodyRewriter"]


def _as_re_replacement(pieces: list[Piece]) -> bytes:
    """The pieces in ``re``'s own replacement syntax (a plain literal when no group)."""
    return b"".join(
        piece.replace(b"\\", b"\\\\") if isinstance(piece, bytes) else b"\\g<%d>" % piece
        for piece in pieces
    )


class BodyRewriter:
    """An ordered list of (regex, scope, replace) filters compiled once, at conf time: what
    response-rewrite's ``filters`` use, for any plugin that rewrites a body.

    * ``regex``: a Python ``re`` pattern (str), compiled for bytes (UTF-8 encoded).
    * ``scope``: ``"once"`` replaces the first match, ``"global"`` every match.
    * ``replace``: a template in the Go runner's (regexp.Expand) syntax: ``$1`` / ``${1}`` a
      numbered group, ``$name`` / ``${name}`` a named group (``$name`` takes the longest run
      of ``[A-Za-z0-9_]``), ``$$`` a literal ``$``; a group that does not exist or did not
      participate expands to nothing; a ``$`` not followed by a valid reference is literal.

    Raises ``ConfError`` (naming the filter and its field) for a regex that does not
    compile, a scope other than once/global, or a non-str field. ``a6runner.BodyRewriter``
    is the compiled twin (``a6native.bodyrewrite``) unless pure Python was asked for; both
    behave the same.
    """

    __slots__ = ("_filters",)

    def __init__(self, filters: Sequence[tuple[str, str, str]]) -> None:
        # (pattern, needle, replacement, count): with a needle the replacement is the
        # plain bytes for bytes.replace, else a template in re's own syntax
        self._filters: list[tuple[re.Pattern[bytes], bytes | None, bytes, int]] = []
        for f in compile_filters(filters):
            if f.needle is not None and f.plain_replacement is not None:
                self._filters.append((f.pattern, f.needle, f.plain_replacement, f.re_count))
            else:
                self._filters.append((f.pattern, None, _as_re_replacement(f.pieces), f.re_count))

    def __len__(self) -> int:
        """The number of filters."""
        return len(self._filters)

    def rewrite(self, body: bytes) -> bytes | None:
        """Apply every filter in order, each to the output of the previous one.

        Matches are exactly those of ``pattern.search`` (once) and ``pattern.finditer``
        (global) on the current body. Returns the rewritten body when at least one filter
        matched (an empty match counts), else None (leave the body unchanged).
        """
        if not isinstance(body, bytes):
            body = bytes(memoryview(body))
        matched = False
        for pattern, needle, replacement, count in self._filters:
            if needle is not None:
                if needle in body:
                    body = body.replace(needle, replacement, count or -1)
                    matched = True
                continue
            rewritten, matches = pattern.subn(replacement, body, count)
            if matches:
                body = rewritten
                matched = True
        return body if matched else None
