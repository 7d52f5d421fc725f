"""Header/arg multi-map with change tracking: the kernel behind Request.headers/args.

Contract of BOTH implementations: ``a6native.headers`` (Cython) and
``a6runner._headers_py`` (pure Python).
"""

from collections.abc import Iterable, Iterator

class MultiMap:
    """An ordered multi-map of ``str`` names to ``str`` values that remembers what changed.

    ``ignore_case=True`` (headers): names compare case-insensitively (ASCII lower-case);
    ``ignore_case=False`` (query args): names compare exactly. The spelling of a name is
    kept as first seen, and replaced by the spelling of the latest ``set``/``add``.

    Values given as None (a header or arg sent without value) are stored as ``""`` when
    they come from ``entries``; ``set``/``add`` require ``str``.
    """

    def __init__(
        self, entries: Iterable[tuple[str, str | None]] = (), ignore_case: bool = True
    ) -> None: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of ``name``, or ``default``."""
    def getall(self, name: str) -> list[str]:
        """Every value of ``name`` in order ([] when absent)."""
    def __getitem__(self, name: str) -> str:
        """First value; KeyError when absent."""
    def __contains__(self, name: object) -> bool: ...
    def __len__(self) -> int:
        """Number of (name, value) entries."""
    def __iter__(self) -> Iterator[str]:
        """Entry names in order (a name repeats once per value)."""
    def items(self) -> list[tuple[str, str]]:
        """Every (name, value) entry in order."""
    def keys(self) -> list[str]:
        """Distinct names in order of first appearance."""
    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``; the entry takes the place of the
        first old one, or goes last when the name is new."""
    def add(self, name: str, value: str) -> None:
        """Append one more value for ``name``."""
    def delete(self, name: str) -> bool:
        """Remove every value of ``name``; True if there was any."""
    def __setitem__(self, name: str, value: str) -> None: ...  # = set
    def __delitem__(self, name: str) -> None:
        """Like delete, but KeyError when absent."""
    @property
    def changed(self) -> bool:
        """True when changes() would be non-empty."""
    def changes(self) -> list[tuple[str, str | None]]:
        """The minimal diff against the entries given at construction.

        Only names whose value list now differs from the original one are reported, in the
        order they were first modified. A name with no values left yields ``(name, None)``;
        otherwise one ``(name, value)`` per current value, in order, with the latest spelling
        of the name. Setting a value back to the original reports nothing.
        """
    def changes_joined(self, sep: str = ", ") -> list[tuple[str, str | None]]:
        """Like changes() but one entry per name, values joined with ``sep`` (APISIX applies
        Rewrite request headers with set_header: the last entry of a name would win)."""
