"""MultiMap (headers/args with change tracking), run against both implementations."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from implementations import NO_EXTENSIONS, load_kernel

# The fixture is parametrized per implementation, not mutated per example.
fixture_ok = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)

APISIX_HEADERS = [
    ("host", "example.com"),
    ("user-agent", "curl/8.5.0"),
    ("accept", "*/*"),
    ("x-forwarded-for", "10.0.0.1"),
    ("x-forwarded-for", "10.0.0.2"),
    ("cookie", "a=1"),
]


# -- construction and reading --------------------------------------------------------------


def test_empty_map(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap()
    assert len(m) == 0
    assert m.items() == []
    assert m.keys() == []
    assert list(m) == []
    assert m.changes() == []
    assert not m.changed


def test_reads_in_order_with_repeats(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    assert len(m) == 6
    assert m.items() == APISIX_HEADERS
    assert list(m) == [name for name, _ in APISIX_HEADERS]
    assert m.keys() == ["host", "user-agent", "accept", "x-forwarded-for", "cookie"]
    assert m.get("x-forwarded-for") == "10.0.0.1"
    assert m.getall("x-forwarded-for") == ["10.0.0.1", "10.0.0.2"]
    assert m["accept"] == "*/*"


def test_names_compare_ignoring_ascii_case(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("Content-Type", "text/plain"), ("X-ID", "1")])
    assert m.get("content-type") == "text/plain"
    assert m["CONTENT-TYPE"] == "text/plain"
    assert "x-id" in m
    assert m.getall("x-Id") == ["1"]
    # the spelling is kept as first seen
    assert m.keys() == ["Content-Type", "X-ID"]
    assert m.items() == [("Content-Type", "text/plain"), ("X-ID", "1")]


def test_only_ascii_letters_are_folded(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("X-Ä", "1")])
    assert m.get("x-Ä") == "1"
    assert m.get("x-ä") is None


def test_repeated_name_keeps_first_spelling(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("Accept", "a"), ("ACCEPT", "b")])
    assert m.items() == [("Accept", "a"), ("Accept", "b")]
    assert m.keys() == ["Accept"]


def test_none_values_from_entries_become_empty(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("flag", None), ("k", "v")], ignore_case=False)
    assert m.get("flag") == ""
    assert m["flag"] == ""
    assert m.items() == [("flag", ""), ("k", "v")]
    assert not m.changed


def test_entries_may_be_any_iterable(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(iter(APISIX_HEADERS))
    assert m.items() == APISIX_HEADERS
    m = headers_mod.MultiMap(tuple(APISIX_HEADERS))
    assert m.items() == APISIX_HEADERS


def test_get_default_and_missing(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    assert m.get("absent") is None
    assert m.get("absent", "dflt") == "dflt"
    assert m.getall("absent") == []
    assert "absent" not in m
    assert 42 not in m
    assert None not in m


def test_getitem_missing_raises_key_error(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    with pytest.raises(KeyError, match="Absent"):  # names what was missing, as spelled
        m["Absent"]


def test_delitem_missing_raises_key_error(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    with pytest.raises(KeyError, match="Absent"):
        del m["Absent"]
    assert m.changes() == []


def test_non_str_values_are_rejected(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap()
    with pytest.raises(TypeError):
        m.set("a", None)
    with pytest.raises(TypeError):
        m.add("a", 1)
    with pytest.raises(TypeError):
        m["a"] = b"bytes"
    with pytest.raises(TypeError):
        headers_mod.MultiMap([("a", 1)])
    with pytest.raises(TypeError):
        headers_mod.MultiMap([(None, "v")])
    assert m.changes() == []


@pytest.mark.parametrize("ignore_case", [True, False])
def test_type_errors_say_what_was_given(headers_mod: ModuleType, ignore_case: bool) -> None:
    m = headers_mod.MultiMap([("a", "1")], ignore_case=ignore_case)
    with pytest.raises(TypeError, match=r"^name must be str, not int$"):
        m.get(1)
    with pytest.raises(TypeError, match=r"^name must be str, not bytes$"):
        m.set(b"a", "v")
    with pytest.raises(TypeError, match=r"^value must be str, not NoneType$"):
        m.add("a", None)


def test_a_name_set_back_to_its_value_is_not_a_change_while_others_are(
    headers_mod: ModuleType,
) -> None:
    m = headers_mod.MultiMap([("a", "1"), ("b", "2")])
    m.set("a", "new")
    m.set("b", "2")  # touched after another name: still unchanged
    assert m.changes() == [("a", "new")]
    assert m.changes_joined() == [("a", "new")]


def test_str_subclasses_work_like_str(headers_mod: ModuleType) -> None:
    class HeaderName(str):
        pass

    m = headers_mod.MultiMap([(HeaderName("X-Id"), HeaderName("1"))])
    assert m.get(HeaderName("x-id")) == "1"
    assert HeaderName("X-ID") in m
    m.set(HeaderName("x-id"), HeaderName("2"))
    assert m.changes() == [("x-id", "2")]
    assert m.delete(HeaderName("X-ID"))


# -- mutation and the diff -----------------------------------------------------------------


def test_set_on_absent_name_appends(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    m.set("X-New", "1")
    assert m.items()[-1] == ("X-New", "1")
    assert len(m) == 7
    assert m.changes() == [("X-New", "1")]
    assert m.changed


def test_set_replaces_in_place_of_first_and_drops_others(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    m["x-forwarded-for"] = "1.1.1.1"
    assert m.items() == [
        ("host", "example.com"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("x-forwarded-for", "1.1.1.1"),
        ("cookie", "a=1"),
    ]
    assert m.getall("x-forwarded-for") == ["1.1.1.1"]
    assert m.changes() == [("x-forwarded-for", "1.1.1.1")]


def test_add_appends_one_more_value(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    m.add("accept", "text/html")
    assert m.getall("accept") == ["*/*", "text/html"]
    assert m.items()[-1] == ("accept", "text/html")
    assert m.changes() == [("accept", "*/*"), ("accept", "text/html")]
    assert m.changes_joined() == [("accept", "*/*, text/html")]
    assert m.changes_joined(",") == [("accept", "*/*,text/html")]


def test_delete_reports_name_without_value(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    assert m.delete("X-Forwarded-For") is True
    assert m.delete("x-forwarded-for") is False
    assert "x-forwarded-for" not in m
    assert len(m) == 4
    assert m.changes() == [("x-forwarded-for", None)]
    assert m.changes_joined() == [("x-forwarded-for", None)]


def test_delete_absent_is_no_change(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    assert m.delete("absent") is False
    assert not m.changed
    assert m.changes() == []


def test_delete_then_add(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    del m["host"]
    m.add("host", "other.example")
    assert m.items()[-1] == ("host", "other.example")
    assert m.keys()[-1] == "host"
    assert m.changes() == [("host", "other.example")]


def test_delete_then_add_original_value_back_moves_it_but_reports_nothing(
    headers_mod: ModuleType,
) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    del m["host"]
    m.add("host", "example.com")
    assert m.keys() == ["user-agent", "accept", "x-forwarded-for", "cookie", "host"]
    assert m.changes() == []
    assert not m.changed


def test_set_back_to_original_is_no_change(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    m.set("accept", "text/html")
    assert m.changed
    m.set("accept", "*/*")
    assert not m.changed
    assert m.changes() == []
    assert m.changes_joined() == []


def test_set_single_value_of_multi_valued_name_is_a_change(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    m.set("x-forwarded-for", "10.0.0.1")
    assert m.changes() == [("x-forwarded-for", "10.0.0.1")]


def test_none_from_entries_compares_as_empty_string(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("flag", None)], ignore_case=False)
    m.set("flag", "")
    assert m.changes() == []
    m.delete("flag")
    assert m.changes() == [("flag", None)]


def test_changes_come_in_order_of_first_modification(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap(APISIX_HEADERS)
    m.set("cookie", "b=2")
    m.delete("user-agent")
    m.add("x-a", "1")
    m.set("cookie", "c=3")  # modified again: keeps its place
    assert m.changes() == [("cookie", "c=3"), ("user-agent", None), ("x-a", "1")]


def test_latest_spelling_wins(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("x-id", "1")])
    m.set("X-Id", "2")
    assert m.keys() == ["X-Id"]
    m.add("X-ID", "3")
    assert m.items() == [("X-ID", "2"), ("X-ID", "3")]
    assert m.changes() == [("X-ID", "2"), ("X-ID", "3")]
    m.set("x-id", "4")
    assert m.changes() == [("x-id", "4")]
    assert list(m) == ["x-id"]


def test_spelling_only_change_is_no_change(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("x-id", "1")])
    m.set("X-ID", "1")
    assert m.changes() == []


def test_exact_names_for_args(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("a", "1"), ("A", "2"), ("a", "3")], ignore_case=False)
    assert m.getall("a") == ["1", "3"]
    assert m.getall("A") == ["2"]
    assert m.keys() == ["a", "A"]
    m.set("a", "x")
    assert m.items() == [("a", "x"), ("A", "2")]
    m.delete("A")
    assert m.changes() == [("a", "x"), ("A", None)]


def test_iteration_is_a_snapshot(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("a", "1"), ("b", "2")])
    names = iter(m)
    m.delete("a")
    assert list(names) == ["a", "b"]


def test_many_removals_keep_order(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([(f"h{i}", str(i)) for i in range(10)])
    for i in range(0, 10, 2):
        m.delete(f"h{i}")
    for i in range(3):
        m.add("h0", f"again{i}")
    m.set("h1", "one")
    assert m.items() == [
        ("h1", "one"),
        ("h3", "3"),
        ("h5", "5"),
        ("h7", "7"),
        ("h9", "9"),
        ("h0", "again0"),
        ("h0", "again1"),
        ("h0", "again2"),
    ]
    assert m.keys() == ["h1", "h3", "h5", "h7", "h9", "h0"]
    assert m.changes() == [
        ("h0", "again0"),
        ("h0", "again1"),
        ("h0", "again2"),
        ("h2", None),
        ("h4", None),
        ("h6", None),
        ("h8", None),
        ("h1", "one"),
    ]


def test_add_delete_loop_stays_consistent(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("keep", "1")])
    for i in range(200):
        m.add("tmp", str(i))
        m.add("tmp", "x")
        assert m.delete("tmp")
    assert m.items() == [("keep", "1")]
    assert len(m) == 1
    assert not m.changed


def test_many_entries(headers_mod: ModuleType) -> None:
    entries = [(f"X-H{i % 25}", str(i)) for i in range(100)]
    m = headers_mod.MultiMap(entries)
    assert len(m) == 100
    assert m.getall("x-h3") == ["3", "28", "53", "78"]
    for i in range(100, 140):
        m.add(f"x-new{i}", str(i))
    m.set("X-H0", "zero")
    assert len(m) == 100 - 3 + 40
    assert m.items()[0] == ("X-H0", "zero")
    assert m.items()[-1] == ("x-new139", "139")
    assert m.keys()[:2] == ["X-H0", "X-H1"]
    assert len(m.changes()) == 41
    for i in range(25):
        assert m.delete(f"x-h{i}")
    assert len(m) == 40


def test_initialising_again_starts_over(headers_mod: ModuleType) -> None:
    m = headers_mod.MultiMap([("a", "1")])
    m.set("a", "2")
    m.__init__([("b", "3")])
    assert m.items() == [("b", "3")]
    assert m.changes() == []


# -- differential: random operation sequences against a reference model -------------------


def _fold_ascii(name: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in name)


class ReferenceMultiMap:
    """The contract written as plainly as possible: a list of entries, searched linearly."""

    def __init__(self, entries: list[tuple[str, str | None]], ignore_case: bool) -> None:
        self.fold = _fold_ascii if ignore_case else (lambda name: name)
        self.entries = [(self.fold(n), "" if v is None else v) for n, v in entries]
        self.original = list(self.entries)
        self.spelling: dict[str, str] = {}
        for name, _ in entries:
            self.spelling.setdefault(self.fold(name), name)
        self.touched: list[str] = []  # keys in order of first modification

    def _touch(self, key: str) -> None:
        if key not in self.touched:
            self.touched.append(key)

    def getall(self, name: str) -> list[str]:
        key = self.fold(name)
        return [v for k, v in self.entries if k == key]

    def get(self, name: str) -> str | None:
        values = self.getall(name)
        return values[0] if values else None

    def __contains__(self, name: str) -> bool:
        return bool(self.getall(name))

    def set(self, name: str, value: str) -> None:
        key = self.fold(name)
        self._touch(key)
        self.spelling[key] = name
        slots = [i for i, (k, _) in enumerate(self.entries) if k == key]
        if not slots:
            self.entries.append((key, value))
            return
        self.entries[slots[0]] = (key, value)
        for i in reversed(slots[1:]):
            del self.entries[i]

    def add(self, name: str, value: str) -> None:
        key = self.fold(name)
        self._touch(key)
        self.spelling[key] = name
        self.entries.append((key, value))

    def delete(self, name: str) -> bool:
        key = self.fold(name)
        if not self.getall(name):
            return False
        self._touch(key)
        self.entries = [(k, v) for k, v in self.entries if k != key]
        return True

    def items(self) -> list[tuple[str, str]]:
        return [(self.spelling[k], v) for k, v in self.entries]

    def keys(self) -> list[str]:
        return list(dict.fromkeys(self.spelling[k] for k, _ in self.entries))

    def changes(self) -> list[tuple[str, str | None]]:
        diff: list[tuple[str, str | None]] = []
        for key in self.touched:
            before = [v for k, v in self.original if k == key]
            now = [v for k, v in self.entries if k == key]
            if now != before:
                diff.extend((self.spelling[key], v) for v in now)
                if not now:
                    diff.append((self.spelling[key], None))
        return diff

    def changes_joined(self) -> list[tuple[str, str | None]]:
        joined: dict[str, list[str | None]] = {}
        for name, value in self.changes():
            joined.setdefault(name, []).append(value)
        return [
            (name, None if values == [None] else "; ".join(v for v in values if v is not None))
            for name, values in joined.items()
        ]


# Mixed-case names with non-ASCII letters too: only their ASCII letters fold ("X-Ä" is
# "x-Ä", never "x-ä").
NAMES = st.sampled_from(
    ["a", "A", "b", "B", "x-Id", "X-ID", "x-id", "Ä", "ä", "c", "X-Ä", "x-Ä", "x-ä", "Ü-Ab", "Ü-aB"]
)
VALUES = st.one_of(st.sampled_from(["", "1", "2", "v"]), st.text(max_size=4))
ENTRIES = st.lists(st.tuples(NAMES, st.one_of(st.none(), VALUES)), max_size=12)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), NAMES, VALUES),
        st.tuples(st.just("add"), NAMES, VALUES),
        st.tuples(st.just("delete"), NAMES),
        st.tuples(st.just("get"), NAMES),
        st.tuples(st.just("getall"), NAMES),
        st.tuples(st.just("__contains__"), NAMES),
    ),
    max_size=25,
)


def _state(m: Any) -> tuple[Any, ...]:
    return (
        m.items(),
        m.keys(),
        m.changes(),
        m.changes_joined("; "),
    )


def _full_state(m: Any) -> tuple[Any, ...]:
    return (*_state(m), list(m), len(m), m.changed)


def _apply(m: Any, op: tuple[Any, ...]) -> Any:
    method, *args = op
    return getattr(m, method)(*args)


@fixture_ok
@given(entries=ENTRIES, operations=OPERATIONS, ignore_case=st.booleans())
def test_agrees_with_reference_model(
    headers_mod: ModuleType,
    entries: list[tuple[str, str | None]],
    operations: list[tuple[Any, ...]],
    ignore_case: bool,
) -> None:
    m = headers_mod.MultiMap(entries, ignore_case=ignore_case)
    ref = ReferenceMultiMap(entries, ignore_case)
    for op in operations:
        assert _apply(m, op) == _apply(ref, op), op
        assert _state(m) == (ref.items(), ref.keys(), ref.changes(), ref.changes_joined())
        assert len(m) == len(ref.entries)
        assert m.changed == bool(ref.changes())


@pytest.mark.skipif(NO_EXTENSIONS, reason="A6_NO_EXTENSIONS is set")
@given(entries=ENTRIES, operations=OPERATIONS, ignore_case=st.booleans())
def test_twins_agree(
    entries: list[tuple[str, str | None]],
    operations: list[tuple[Any, ...]],
    ignore_case: bool,
) -> None:
    pure = load_kernel("headers", "python").MultiMap(entries, ignore_case=ignore_case)
    native = load_kernel("headers", "native").MultiMap(entries, ignore_case=ignore_case)
    assert _full_state(pure) == _full_state(native)
    for op in operations:
        assert _apply(pure, op) == _apply(native, op), op
        assert _full_state(pure) == _full_state(native)
