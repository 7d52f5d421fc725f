"""BodyRewriter (response-rewrite filters), run against both implementations."""

from __future__ import annotations

import re
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from implementations import NO_EXTENSIONS, load_kernel

from a6runner._errors import ConfError

# The fixture is parametrized per implementation, not mutated per example.
fixture_ok = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)


def rewrite(module: ModuleType, filters: list[tuple[str, str, str]], body: bytes) -> bytes | None:
    result: bytes | None = module.BodyRewriter(filters).rewrite(body)
    return result


# -- scope and the "did anything match" answer ---------------------------------------------


def test_no_filters(bodyrewrite_mod: ModuleType) -> None:
    rewriter = bodyrewrite_mod.BodyRewriter([])
    assert len(rewriter) == 0
    assert rewriter.rewrite(b"anything") is None


def test_len_counts_filters(bodyrewrite_mod: ModuleType) -> None:
    rewriter = bodyrewrite_mod.BodyRewriter([("a", "once", "b"), ("c", "global", "d")])
    assert len(rewriter) == 2


def test_once_replaces_first_match_only(bodyrewrite_mod: ModuleType) -> None:
    assert rewrite(bodyrewrite_mod, [("cat", "once", "dog")], b"cat cat cat") == b"dog cat cat"


def test_global_replaces_every_match(bodyrewrite_mod: ModuleType) -> None:
    assert rewrite(bodyrewrite_mod, [("cat", "global", "dog")], b"cat cat cat") == b"dog dog dog"


def test_no_match_gives_none(bodyrewrite_mod: ModuleType) -> None:
    filters = [("cat", "global", "dog"), ("(b)ird", "once", "$1")]
    assert rewrite(bodyrewrite_mod, filters, b"a fish") is None
    assert rewrite(bodyrewrite_mod, filters, b"") is None


def test_match_that_changes_nothing_still_counts(bodyrewrite_mod: ModuleType) -> None:
    assert rewrite(bodyrewrite_mod, [("cat", "once", "cat")], b"cat") == b"cat"
    assert rewrite(bodyrewrite_mod, [("(cat)", "global", "$1")], b"a cat") == b"a cat"


def test_empty_match_counts(bodyrewrite_mod: ModuleType) -> None:
    assert rewrite(bodyrewrite_mod, [("^", "once", ">")], b"body") == b">body"
    assert rewrite(bodyrewrite_mod, [("^", "once", ">")], b"") == b">"
    # the same matches as finditer, empty ones included
    assert rewrite(bodyrewrite_mod, [("x*", "global", "-")], b"abxd") == re.sub(
        b"x*", b"-", b"abxd"
    )
    assert rewrite(bodyrewrite_mod, [("(x*)", "global", "<$1>")], b"abxd") == re.sub(
        b"(x*)", b"<\\1>", b"abxd"
    )


def _reference_rewrite(pattern: bytes, once: bool, body: bytes, whole: bool) -> bytes | None:
    """Expand "<$1>" (or "<$0|$1>") at the matches of search / finditer."""
    compiled = re.compile(pattern)
    if once:
        first = compiled.search(body)
        matches = [] if first is None else [first]
    else:
        matches = list(compiled.finditer(body))
    if not matches:
        return None
    out, position = [], 0
    for match in matches:
        group = match.group(1) or b""
        out += [body[position : match.start()], b"<"]
        out += [match.group(0), b"|", group] if whole else [group]
        out.append(b">")
        position = match.end()
    out.append(body[position:])
    return b"".join(out)


@pytest.mark.parametrize(
    ("pattern", "body"),
    [
        (b"(x*)", b"abxd"),
        (b"(x*)", b"xxaxx"),
        (b"(a|)", b"aab"),
        (b"(\\b)", b"ab cd"),
        (b"(a*?)", b"aaa"),
        (b"(|a)", b"aab"),
        (b"(?=a)()", b"aa"),
        (b"(b)?c", b"cbcc"),
        (b"(z)", b"abc"),
    ],
)
@pytest.mark.parametrize("once", [True, False], ids=["once", "global"])
@pytest.mark.parametrize("whole", [True, False], ids=["with-$0", "groups-only"])
def test_matches_are_those_of_finditer(
    bodyrewrite_mod: ModuleType, pattern: bytes, body: bytes, once: bool, whole: bool
) -> None:
    template = "<$0|$1>" if whole else "<$1>"
    filters = [(pattern.decode(), "once" if once else "global", template)]
    assert rewrite(bodyrewrite_mod, filters, body) == _reference_rewrite(pattern, once, body, whole)


@pytest.mark.parametrize(
    ("regex", "replace", "body"),
    [
        ("aa", "b", b"aaaaa"),  # non-overlapping, leftmost: both engines give "bba"
        ("hello", "HELLO", b'{"msg":"hello world"},\n' * 100),
        ("caf\u00e9", "tea", "un caf\u00e9, deux caf\u00e9s".encode()),
        ("x", "\\1 $$ \\g<0>", b"axbxc"),  # backslashes and $$ are literal text here
        ("x", "", b"xxx"),
        ("abc", "z", b"ab"),
    ],
    ids=["overlap", "json", "utf8", "backslashes", "delete", "no-match"],
)
@pytest.mark.parametrize("scope", ["once", "global"])
def test_plain_literal_filters_match_like_re(
    bodyrewrite_mod: ModuleType, regex: str, replace: str, body: bytes, scope: str
) -> None:
    """A plain-literal pattern with a group-free template takes a bytes.replace shortcut
    in both twins: it must find exactly what re finds."""
    literal = replace.replace("$$", "$").encode()
    count = 1 if scope == "once" else 0
    expected, matches = re.subn(
        re.escape(regex.encode()), literal.replace(b"\\", b"\\\\"), body, count=count
    )
    got = bodyrewrite_mod.BodyRewriter([(regex, scope, replace)]).rewrite(body)
    assert got == (expected if matches else None)


def test_filters_apply_in_order_to_the_previous_output(bodyrewrite_mod: ModuleType) -> None:
    filters = [("a", "global", "b"), ("bb", "once", "c")]
    assert rewrite(bodyrewrite_mod, filters, b"ab") == b"c"
    # only the second one matches: still a rewrite
    assert rewrite(bodyrewrite_mod, filters, b"bb") == b"c"
    # only the first one matches
    assert rewrite(bodyrewrite_mod, filters, b"a") == b"b"


def test_rewriter_is_reusable(bodyrewrite_mod: ModuleType) -> None:
    rewriter = bodyrewrite_mod.BodyRewriter([("(o)", "global", "[$1]")])
    assert rewriter.rewrite(b"foo") == b"f[o][o]"
    assert rewriter.rewrite(b"bar") is None
    assert rewriter.rewrite(b"on") == b"[o]n"


def test_bytes_like_bodies(bodyrewrite_mod: ModuleType) -> None:
    rewriter = bodyrewrite_mod.BodyRewriter([("(b)", "global", "<$1>")])
    assert rewriter.rewrite(bytearray(b"abc")) == b"a<b>c"
    assert rewriter.rewrite(memoryview(b"abc")) == b"a<b>c"
    with pytest.raises(TypeError):
        rewriter.rewrite("abc")


def test_utf8_pattern_template_and_body(bodyrewrite_mod: ModuleType) -> None:
    filters = [("(wörld)", "global", "«$1» ✓")]
    body = "hello wörld".encode()
    assert rewrite(bodyrewrite_mod, filters, body) == "hello «wörld» ✓".encode()


def test_regex_features(bodyrewrite_mod: ModuleType) -> None:
    filters = [(r"(?i)<TITLE>(.*?)</title>", "once", "<title>[$1]</title>")]
    body = b"<html><Title>Old</TITLE><title>Two</title>"
    assert (
        rewrite(bodyrewrite_mod, filters, body) == b"<html><title>[Old]</title><title>Two</title>"
    )
    assert rewrite(bodyrewrite_mod, [(r"\d+", "global", "N")], b"a1b22c333") == b"aNbNcN"


# -- Go-style templates --------------------------------------------------------------------

TEMPLATE_CASES = [
    # (template, expansion for pattern (?P<first>a)(b)?(?P<third>c) on "ac")
    ("$1", "a"),
    ("${1}", "a"),
    ("$first", "a"),
    ("${first}", "a"),
    ("$0", "ac"),
    ("${0}", "ac"),
    ("$3|$third", "c|c"),
    ("$2", ""),  # did not take part in the match
    ("[$2]", "[]"),
    ("$4", ""),  # no such group
    ("$99999999999", ""),
    ("$missing", ""),  # no such named group
    ("$1x", ""),  # "$1x" is the name "1x"
    ("${1}x", "ax"),
    ("$first_", ""),  # the name runs as far as [A-Za-z0-9_] does
    ("${first}_", "a_"),
    ("$first-$third", "a-c"),
    ("$01", ""),  # leading zero: a name, not a number
    ("$$", "$"),
    ("$$1", "$1"),
    ("$$$1", "$a"),
    ("$", "$"),
    ("x$", "x$"),
    ("$-", "$-"),
    ("$ 1", "$ 1"),
    ("${}", "${}"),
    ("${1", "${1"),
    ("${first", "${first"),
    ("${fir-st}", "${fir-st}"),
    ("${1]", "${1]"),
    ("$é", "$é"),  # only ASCII name characters
    ("\\1", "\\1"),  # backslashes are plain text, not re escapes
    ("\\g<1>$1\\", "\\g<1>a\\"),
    ("", ""),
    ("plain", "plain"),
]


@pytest.mark.parametrize(("template", "expected"), TEMPLATE_CASES)
def test_template_expansion(bodyrewrite_mod: ModuleType, template: str, expected: str) -> None:
    filters = [("(?P<first>a)(b)?(?P<third>c)", "once", template)]
    assert rewrite(bodyrewrite_mod, filters, b"<ac>") == b"<" + expected.encode() + b">"
    filters = [("(?P<first>a)(b)?(?P<third>c)", "global", template)]
    expanded = expected.encode()
    assert rewrite(bodyrewrite_mod, filters, b"ac-ac") == expanded + b"-" + expanded


def test_template_without_groups_in_pattern(bodyrewrite_mod: ModuleType) -> None:
    assert rewrite(bodyrewrite_mod, [("b", "global", "[$1$0]")], b"abc") == b"a[b]c"


# -- conf errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ([("(", "once", "x")], r"^filters\[0\]\.regex: does not compile \(at position 0\)$"),
        ([("a", "once", "x"), ("a**", "global", "x")], r"^filters\[1\]\.regex: does not compile"),
        (
            [("a", "once", "x"), ("b", "global", "y"), ("a{99999999999}", "once", "")],
            r"^filters\[2\]\.regex: does not compile",
        ),
        ([("(?P<1>x)", "once", "x")], r"^filters\[0\]\.regex: does not compile"),
        ([("a", "twice", "x")], r"^filters\[0\]\.scope: must be 'once' or 'global'$"),
        ([("a", "", "x")], r"^filters\[0\]\.scope: must be 'once' or 'global'$"),
        ([("a", "ONCE", "x")], r"^filters\[0\]\.scope: must be 'once' or 'global'$"),
        (
            [("a", "once", "x"), (b"a", "once", "x")],
            r"^filters\[1\]\.regex: must be a string \(got another value\)$",
        ),
        ([("a", None, "x")], r"^filters\[0\]\.scope: must be a string \(got null\)$"),
        ([("a", "once", 1)], r"^filters\[0\]\.replace: must be a string \(got a number\)$"),
        ([("a", "once")], r"^filters\[0\]: expected \(regex, scope, replace\)$"),
        ([("a", "once", "x"), None], r"^filters\[1\]: expected \(regex, scope, replace\)$"),
        ([("\ud800", "once", "x")], r"^filters\[0\]\.regex: does not compile$"),
        ([("a", "once", "\ud800")], r"^filters\[0\]\.replace: is not valid UTF-8 text$"),
    ],
)
def test_bad_filters_are_conf_errors(
    bodyrewrite_mod: ModuleType, filters: list[tuple[str, str, str]], message: str
) -> None:
    with pytest.raises(ConfError, match=message):
        bodyrewrite_mod.BodyRewriter(filters)


def test_conf_error_is_the_shared_class(bodyrewrite_mod: ModuleType) -> None:
    import a6runner

    with pytest.raises(a6runner.ConfError):
        bodyrewrite_mod.BodyRewriter([("(", "once", "")])
    with pytest.raises(ValueError):  # ConfError is a ValueError too
        bodyrewrite_mod.BodyRewriter([("(", "once", "")])


# -- big bodies ----------------------------------------------------------------------------

MIB = 1024 * 1024


def _big_body() -> bytes:
    line = b"<p>Apache APISIX proxies this line; apisix rewrites it.</p>\n"
    return (line * (MIB // len(line) + 1))[:MIB]


def test_one_mib_body_many_matches_global(bodyrewrite_mod: ModuleType) -> None:
    body = _big_body()
    filters = [(r"(?i)(?P<word>apisix)", "global", "[${word}]")]
    expected = re.sub(rb"(?i)(?P<word>apisix)", rb"[\g<word>]", body)
    assert body.lower().count(b"apisix") > 30_000
    assert rewrite(bodyrewrite_mod, filters, body) == expected


def test_one_mib_body_once_vs_global(bodyrewrite_mod: ModuleType) -> None:
    body = _big_body()
    once = rewrite(bodyrewrite_mod, [("(line)", "once", "LINE")], body)
    every = rewrite(bodyrewrite_mod, [("(line)", "global", "L${1}")], body)
    assert once == body.replace(b"line", b"LINE", 1)
    assert every == body.replace(b"line", b"Lline")
    # a literal template (no group) takes the same road through re
    assert rewrite(bodyrewrite_mod, [("line", "global", "L\\")], body) == body.replace(
        b"line", b"L\\"
    )


def test_one_mib_body_without_match(bodyrewrite_mod: ModuleType) -> None:
    assert rewrite(bodyrewrite_mod, [("(nowhere)", "global", "$1")], _big_body()) is None


# -- differential --------------------------------------------------------------------------

LITERAL_TEXT = st.text(alphabet="ab\\$.", min_size=1, max_size=3)
TEMPLATE_CHARS = st.text(alphabet="ab$${}01_\\-é", max_size=12)
BODIES = st.binary(max_size=40).map(lambda raw: bytes(b"ab\\$."[byte % 5] for byte in raw))


@st.composite
def template_with_re_equivalent(draw: st.DrawFn, group_count: int) -> tuple[str, bytes]:
    """A Go-style template and the same thing as a ``re`` replacement template."""
    go: list[str] = []
    python: list[bytes] = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "dollar", "group", "braced"]))
        if kind == "text":
            text = draw(st.text(alphabet="ab_1\\-", min_size=1, max_size=3))
            if go and go[-1].startswith("$") and go[-1][1:].isdigit():
                text = "-" + text  # keep "$1" from running into a following name char
            go.append(text)
            python.append(text.encode().replace(b"\\", b"\\\\"))
        elif kind == "dollar":
            go.append("$$")
            python.append(b"$")
        else:
            number = draw(st.integers(0, group_count))
            go.append(f"${{{number}}}" if kind == "braced" else f"${number}")
            python.append(b"\\g<%d>" % number)
    return "".join(go), b"".join(python)


@fixture_ok
@given(
    before=LITERAL_TEXT,
    inside=LITERAL_TEXT,
    once=st.booleans(),
    body=BODIES,
    data=st.data(),
)
def test_agrees_with_re_sub(
    bodyrewrite_mod: ModuleType,
    before: str,
    inside: str,
    once: bool,
    body: bytes,
    data: st.DataObject,
) -> None:
    regex = re.escape(before) + "(" + re.escape(inside) + ")?"
    template, python_template = data.draw(template_with_re_equivalent(1))
    expected, count = re.subn(regex.encode(), python_template, body, count=1 if once else 0)
    got = rewrite(bodyrewrite_mod, [(regex, "once" if once else "global", template)], body)
    assert got == (expected if count else None)


@pytest.mark.skipif(NO_EXTENSIONS, reason="A6_NO_EXTENSIONS is set")
@given(
    filters=st.lists(
        st.tuples(
            st.one_of(
                LITERAL_TEXT.map(re.escape),
                st.sampled_from(
                    ["(a)(b)?", "(?P<n>a+)|b", "x*", "(\\$)", "^", "(a)|(b)", "(a*)", "(b?)|(\\.)"]
                ),
            ),
            st.sampled_from(["once", "global"]),
            TEMPLATE_CHARS,
        ),
        max_size=3,
    ),
    body=BODIES,
)
def test_twins_agree(filters: list[tuple[str, str, str]], body: bytes) -> None:
    pure = rewrite(load_kernel("bodyrewrite", "python"), filters, body)
    native = rewrite(load_kernel("bodyrewrite", "native"), filters, body)
    assert pure == native
