"""Regex body rewriting for response-rewrite: the kernel behind its ``filters``.

Contract of BOTH implementations: ``a6native.bodyrewrite`` (Cython) and
``a6runner._bodyrewrite_py`` (pure Python). Both use Python's ``re`` engine on bytes
(so they accept exactly the same patterns); the native twin compiles the match loop and
the template expansion.
"""

from collections.abc import Sequence

class BodyRewriter:
    """An ordered list of (regex, scope, replace) filters compiled once, at conf time.

    * ``regex``: a Python ``re`` pattern (str), compiled for bytes (UTF-8 encoded).
    * ``scope``: ``"once"`` replaces the first match, ``"global"`` every match.
    * ``replace``: a template in the Go runner's (regexp.Expand) syntax: ``$1`` / ``${1}`` a
      numbered group, ``$name`` / ``${name}`` a named group (``$name`` takes the longest run
      of ``[A-Za-z0-9_]``), ``$$`` a literal ``$``; a group that does not exist or did not
      participate expands to nothing; a ``$`` not followed by a valid reference is literal.

    Raises ``a6runner.ConfError`` (message names the filter index) for a regex that does not
    compile, a scope other than once/global, or a non-str field.
    """

    def __init__(self, filters: Sequence[tuple[str, str, str]]) -> None: ...
    def __len__(self) -> int: ...
    def rewrite(self, body: bytes) -> bytes | None:
        """Apply every filter in order, each to the output of the previous one.

        Matches are exactly those of ``pattern.search`` (once) and ``pattern.finditer``
        (global) on the current body. Returns the rewritten body when at least one filter
        matched (an empty match counts), else None (leave the body unchanged).
        """
