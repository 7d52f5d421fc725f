"""Conf tokens: expiry, the idempotency key, the sweep and the allocator, on a fake clock."""

from __future__ import annotations

import logging

import pytest
from fake_clock import FakeClock

from a6runner import ConfError, Plugin
from a6runner._confstore import MAX_TOKEN, TokenAllocator, TokenStore, parse_entries

TTL = 10.0


class Counting:
    """A ``make`` for TokenStore.prepare that counts how often it was called."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return f"conf #{self.calls}"


def test_a_token_lives_for_the_ttl_and_not_a_moment_longer() -> None:
    clock = FakeClock()
    store: TokenStore[str] = TokenStore(TTL, clock)
    token, expires_at = store.prepare(None, lambda: "conf")
    assert token != 0 and expires_at == clock.now + TTL
    clock.advance(TTL - 0.001)
    assert store.get(token) == "conf"
    assert store.get_with_expiry(token) == ("conf", expires_at)
    clock.advance(0.001)
    assert store.get(token) is None
    assert store.get_with_expiry(token) is None
    assert len(store) == 0  # an expired token found on lookup is dropped at once


def test_the_same_key_gets_the_same_token_without_making_it_again() -> None:
    clock = FakeClock()
    store: TokenStore[str] = TokenStore(TTL, clock)
    make = Counting()
    token, expires_at = store.prepare("route-1", make)
    clock.advance(TTL / 2)
    assert store.prepare("route-1", make) == (token, expires_at)  # the expiry is not extended
    assert store.token_for_key("route-1") == (token, expires_at)
    assert make.calls == 1
    other, _ = store.prepare("route-2", make)
    anonymous, _ = store.prepare(None, make)
    again, _ = store.prepare(None, make)
    assert len({token, other, anonymous, again}) == 4 and make.calls == 4


def test_a_key_never_hands_back_an_expired_token() -> None:
    """Else APISIX would loop on CONF_TOKEN_NOT_FOUND -> PrepareConf -> the same dead token."""
    clock = FakeClock()
    store: TokenStore[str] = TokenStore(TTL, clock)
    make = Counting()
    old, _ = store.prepare("route", make)
    clock.advance(TTL)
    assert store.token_for_key("route") is None
    new, expires_at = store.prepare("route", make)
    assert new != old and make.calls == 2
    assert expires_at == clock.now + TTL
    assert store.get(new) == "conf #2" and store.get(old) is None
    assert store.token_for_key("route") == (new, expires_at)


def test_a_remembered_key_follows_its_token() -> None:
    clock = FakeClock()
    store: TokenStore[str] = TokenStore(TTL, clock)
    store.install(77, "from the supervisor", clock.now + TTL)
    store.remember_key("route", 77)
    assert store.prepare("route", Counting()) == (77, clock.now + TTL)
    clock.advance(TTL)
    assert store.token_for_key("route") is None
    assert store.token_for_key("never-seen") is None


def test_expired_tokens_and_their_keys_are_swept_so_memory_stays_bounded() -> None:
    clock = FakeClock()
    store: TokenStore[str] = TokenStore(3600.0, clock)
    for i in range(1000):
        store.prepare(f"route-{i}", lambda: "conf")
    assert len(store) == 1000
    clock.advance(1800)
    live, _ = store.prepare("live", lambda: "conf")  # prepared later: expires later
    clock.advance(1800)
    # No lookup touched the 1000 dead tokens: the sweep on the next PrepareConf drops them.
    store.prepare(None, lambda: "conf")
    assert len(store) == 2
    assert store.get(live) == "conf"
    assert set(store._by_key) == {"live"}  # the keys of swept tokens go too


def test_sweep_runs_at_most_once_a_minute_and_reports_what_went() -> None:
    clock = FakeClock()
    store: TokenStore[str] = TokenStore(TTL, clock)
    for _ in range(5):
        store.prepare(None, lambda: "conf")
    clock.advance(TTL)
    assert store.sweep() == 5 and len(store) == 0
    store.prepare(None, lambda: "conf")
    clock.advance(TTL)
    assert store.sweep(clock.now - 1) == 0  # as of a moment before the expiry: kept
    assert store.sweep(clock.now) == 1


def test_a_token_still_in_use_is_never_handed_out_again() -> None:
    store: TokenStore[str] = TokenStore(TTL, FakeClock())
    store._tokens = TokenAllocator(start=500)
    store.install(500, "installed by the supervisor", 2000.0)
    token, _ = store.prepare(None, lambda: "new")
    assert token == 501
    assert store.get(500) == "installed by the supervisor" and store.get(501) == "new"


def test_tokens_wrap_around_and_are_never_zero() -> None:
    tokens = TokenAllocator(start=MAX_TOKEN - 1)
    assert [tokens.next() for _ in range(4)] == [MAX_TOKEN - 1, MAX_TOKEN, 1, 2]


def test_two_allocators_do_not_hand_out_the_same_first_tokens() -> None:
    """A restarted runner must not reuse its predecessor's tokens for other confs."""
    before, after = TokenAllocator(), TokenAllocator()
    first = {before.next() for _ in range(1000)}
    second = {after.next() for _ in range(1000)}
    assert len(first) == 1000 and len(second) == 1000
    assert first.isdisjoint(second)


def test_the_sweep_waits_a_minute_between_runs() -> None:
    """Sweeping walks every token: on each PrepareConf it would make them quadratic."""
    clock = FakeClock()
    store: TokenStore[str] = TokenStore(3600.0, clock)
    store.install(1, "short-lived", clock.now + 30)
    clock.advance(60)  # the first sweep is due exactly now
    store.install(2, "a", clock.now + 30)
    assert len(store) == 1  # token 1 went
    clock.advance(31)  # token 2 has expired, but the next sweep is 29 s away
    store.install(3, "b", clock.now + 30)
    assert len(store) == 2
    assert store.get(2) is None  # a lookup never returns it meanwhile


class _Rejects(Plugin):
    name = "rejects"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def parse_conf(self, raw: bytes) -> object:
        raise self.error


def test_a_rejected_entry_is_logged_by_name_and_field_and_the_message_only_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="a6runner")
    error = ConfError("headers.set", "must map names to strings", got=["secret"])
    assert parse_entries({"rejects": _Rejects(error)}, [("rejects", b"{}")]) == ()
    assert [r.getMessage() for r in caplog.records] == [
        "conf entry 'rejects' skipped: headers.set: must map names to strings (got an array)"
    ]
    caplog.clear()
    other = ValueError("token=secret")  # a message may quote the conf
    assert parse_entries({"rejects": _Rejects(other)}, [("rejects", b"{}")]) == ()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "conf entry 'rejects' skipped: its plugin raised ValueError (message not logged: "
            "it may quote the conf; --log-level debug shows it)",
        ),
        (logging.DEBUG, "conf entry 'rejects': ValueError: token=secret"),
    ]
