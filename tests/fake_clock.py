"""A monotonic clock the test moves by hand: time passes only when the test says so."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.readings = 0  # how often it was read: a test can wait for a reader's next turn

    def __call__(self) -> float:
        self.readings += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
