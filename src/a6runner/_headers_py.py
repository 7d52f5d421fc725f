"""Header/arg multi-map with change tracking: the pure-Python twin of ``a6native.headers``.

Layout (shared with the Cython twin, see src/a6native/headers.pyi for the contract):

* ``_keys`` / ``_values``: one slot per entry, in order. A removed entry leaves a hole
  (key None) so no position ever shifts; holes are squeezed out once they outnumber the
  live entries.
* Every slot of one name holds the very same folded key object, so scans compare by
  identity.
* ``_first``: folded key -> slot of its first entry. Its insertion order is the order of
  first appearance (new names always go last), which is what ``keys()`` returns.
* ``_spelling``: folded key -> display name, only for names whose display differs from
  the key (headers from APISIX are already lower-case, so it is usually empty).
* ``_original``: folded key -> values before the first change of that name; None until
  the first change, so a map that is only read never copies anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["MultiMap"]

_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


def _fold_ascii(name: str) -> str:
    if type(name) is str:
        if name.islower():  # no upper-case letter at all: folded already
            return name
    elif not isinstance(name, str):
        raise TypeError(f"name must be str, not {type(name).__name__}")
    # str.lower() would also fold non-ASCII letters, which HTTP does not.
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


def _exact(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be str, not {type(name).__name__}")
    return name


def _require_str_value(value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"value must be str, not {type(value).__name__}")


class MultiMap:
    """An ordered multi-map of ``str`` names to ``str`` values that remembers what changed:
    ``req.headers``, ``req.args``, ``req.resp_headers``, ``resp.headers`` and the headers
    of ``req.response``.

    ``ignore_case=True`` (headers): names compare case-insensitively (ASCII lower-case);
    ``ignore_case=False`` (query args): names compare exactly. The spelling of a name is
    kept as first seen, and replaced by the spelling of the latest ``set``/``add``.
    Values given as None (a header or arg sent without value) are stored as ``""`` when
    they come from ``entries``; ``set``/``add`` require ``str``.

    The runner sends APISIX only what changed (``changes()``). The compiled twin,
    ``a6native.headers.MultiMap``, behaves the same; ``a6runner.MultiMap`` is the one this
    process uses.
    """

    __slots__ = ("_first", "_fold", "_holes", "_keys", "_original", "_spelling", "_values")

    def __init__(
        self, entries: Iterable[tuple[str, str | None]] = (), ignore_case: bool = True
    ) -> None:
        keys: list[str | None] = []
        values: list[str | None] = []
        first: dict[str, int] = {}
        spelling: dict[str, str] = {}
        # the folding and checks are inlined here: this loop runs for every request
        for name, value in entries:
            if not isinstance(name, str):
                raise TypeError(f"name must be str, not {type(name).__name__}")
            if not ignore_case or (type(name) is str and name.islower()):  # folded already
                key = name
            elif name.isascii():
                key = name.lower()
            else:
                key = name.translate(_ASCII_LOWER)
            slot = first.get(key)
            if slot is None:
                first[key] = len(keys)
                if key != name:
                    spelling[key] = name
            else:
                key = keys[slot]  # type: ignore[assignment]  # the shared key object
            if value is None:
                value = ""
            elif not isinstance(value, str):
                raise TypeError(f"value must be str, not {type(value).__name__}")
            keys.append(key)
            values.append(value)
        self._fold = _fold_ascii if ignore_case else _exact
        self._keys = keys
        self._values = values
        self._first = first
        self._spelling = spelling
        self._original: dict[str, list[str]] | None = None
        self._holes = 0

    # -- reading ---------------------------------------------------------------------

    def _values_of(self, key: str) -> list[str]:
        return self._values_at(self._first.get(key))

    def _values_at(self, slot: int | None) -> list[str]:
        """The values of the name whose first entry is at ``slot`` ([] for None)."""
        if slot is None:
            return []
        keys = self._keys
        values = self._values
        shared = keys[slot]
        # count() >= the slots holding this very key object (== is true for identical
        # objects): 1 means this slot alone.
        if keys.count(shared) == 1:
            return [values[slot]]  # type: ignore[list-item]
        return [
            values[i]  # type: ignore[misc]
            for i in range(slot, len(keys))
            if keys[i] is shared
        ]

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of ``name``, or ``default``."""
        slot = self._first.get(self._fold(name))
        return default if slot is None else self._values[slot]

    def getall(self, name: str) -> list[str]:
        """Every value of ``name`` in order (``[]`` when absent)."""
        return self._values_of(self._fold(name))

    def __getitem__(self, name: str) -> str:
        """First value of ``name``; KeyError when absent."""
        slot = self._first.get(self._fold(name))
        if slot is None:
            raise KeyError(name)
        return self._values[slot]  # type: ignore[return-value]

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` has a value (``"X-A" in req.headers``)."""
        return isinstance(name, str) and self._fold(name) in self._first

    def __len__(self) -> int:
        """Number of (name, value) entries."""
        return len(self._keys) - self._holes

    def __iter__(self) -> Iterator[str]:
        """Entry names in order (a name repeats once per value)."""
        spelling = self._spelling
        return iter([spelling.get(key, key) for key in self._keys if key is not None])

    def items(self) -> list[tuple[str, str]]:
        """Every (name, value) entry in order."""
        spelling = self._spelling
        if not spelling and not self._holes:
            return list(zip(self._keys, self._values, strict=True))  # type: ignore[arg-type]
        return [
            (spelling.get(key, key), value)  # type: ignore[misc]
            for key, value in zip(self._keys, self._values, strict=True)
            if key is not None
        ]

    def keys(self) -> list[str]:
        """Distinct names in order of first appearance."""
        spelling = self._spelling
        return [spelling.get(key, key) for key in self._first]

    # -- writing ---------------------------------------------------------------------

    def _remember_original(self, key: str, slot: int | None) -> None:
        """Keep the values of ``key`` (first entry at ``slot``) before its first change."""
        original = self._original
        if original is None:
            self._original = {key: self._values_at(slot)}
        elif key not in original:
            original[key] = self._values_at(slot)

    def _respell(self, key: str, name: str) -> None:
        if key == name:
            self._spelling.pop(key, None)
        else:
            self._spelling[key] = name

    def _drop_from(self, slot: int, shared: str) -> None:
        """Punch a hole in every slot of ``shared`` from ``slot`` on."""
        keys = self._keys
        values = self._values
        if keys.count(shared) == 1:  # the one at slot (see _values_at)
            keys[slot] = None
            values[slot] = None
            dropped = 1
        else:
            dropped = 0
            for i in range(slot, len(keys)):
                if keys[i] is shared:
                    keys[i] = None
                    values[i] = None
                    dropped += 1
        self._holes += dropped
        if self._holes > len(keys) - self._holes:
            self._squeeze()

    def _squeeze(self) -> None:
        keys: list[str | None] = []
        values: list[str | None] = []
        first: dict[str, int] = {}
        for key, value in zip(self._keys, self._values, strict=True):
            if key is not None:
                first.setdefault(key, len(keys))
                keys.append(key)
                values.append(value)
        self._keys = keys
        self._values = values
        self._first = first
        self._holes = 0

    def _append(self, key: str, value: str) -> None:
        slot = self._first.get(key)
        if slot is None:
            self._first[key] = len(self._keys)
        else:
            key = self._keys[slot]  # type: ignore[assignment]
        self._keys.append(key)
        self._values.append(value)

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``; the entry takes the place of the
        first old one, or goes last when the name is new."""
        key = self._fold(name)
        if type(value) is not str:
            _require_str_value(value)
        first = self._first
        slot = first.get(key)
        self._remember_original(key, slot)
        if key != name:
            self._spelling[key] = name
        elif self._spelling:
            self._spelling.pop(key, None)
        keys = self._keys
        if slot is None:
            first[key] = len(keys)
            keys.append(key)
            self._values.append(value)
            return
        self._values[slot] = value
        shared: str = keys[slot]  # type: ignore[assignment]
        if keys.count(shared) == 1:
            return
        for i in range(slot + 1, len(keys)):
            if keys[i] is shared:
                self._drop_from(i, shared)
                break

    def add(self, name: str, value: str) -> None:
        """Append one more value for ``name``."""
        key = self._fold(name)
        _require_str_value(value)
        self._remember_original(key, self._first.get(key))
        self._respell(key, name)
        self._append(key, value)

    def delete(self, name: str) -> bool:
        """Remove every value of ``name``; True if there was any."""
        key = self._fold(name)
        slot = self._first.get(key)
        if slot is None:
            return False
        self._remember_original(key, slot)
        del self._first[key]
        self._drop_from(slot, self._keys[slot])  # type: ignore[arg-type]
        return True

    def __setitem__(self, name: str, value: str) -> None:
        """``set(name, value)``."""
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        """Like ``delete(name)``, but KeyError when absent."""
        if not self.delete(name):
            raise KeyError(name)

    # -- the diff --------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        """True when ``changes()`` would be non-empty."""
        original = self._original
        if original is None:
            return False
        return any(self._values_of(key) != before for key, before in original.items())

    def changes(self) -> list[tuple[str, str | None]]:
        """The minimal diff against the entries given at construction.

        Only names whose value list now differs from the original one are reported, in the
        order they were first modified. A name with no values left yields ``(name, None)``;
        otherwise one ``(name, value)`` per current value, in order, with the latest
        spelling of the name. Setting a value back to the original reports nothing.
        """
        original = self._original
        if original is None:
            return []
        spelling = self._spelling
        diff: list[tuple[str, str | None]] = []
        for key, before in original.items():
            now = self._values_of(key)
            if now == before:
                continue
            name = spelling.get(key, key)
            if now:
                diff.extend((name, value) for value in now)
            else:
                diff.append((name, None))
        return diff

    def changes_joined(self, sep: str = ", ") -> list[tuple[str, str | None]]:
        """Like ``changes()`` but one entry per name, values joined with ``sep`` (APISIX
        applies Rewrite request headers with set_header: the last entry of a name would
        win)."""
        original = self._original
        if original is None:
            return []
        spelling = self._spelling
        diff: list[tuple[str, str | None]] = []
        for key, before in original.items():
            now = self._values_of(key)
            if now != before:
                diff.append((spelling.get(key, key), sep.join(now) if now else None))
        return diff

    def __repr__(self) -> str:
        return f"MultiMap({self.items()!r})"
