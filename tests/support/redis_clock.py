"""Redis' own clock, under the test's control, for fakeredis.

Logic that reads Redis' clock (``TIME`` in the rate limiter's Lua, key expiry behind ``PTTL``) is then
tested on exact figures: how busy the machine is no longer moves "now" between two commands. The clock
stands still until the test moves it (``advance``), as time passing would. Blocking commands' timeouts
read it too: a test on this clock does not block (``XREAD BLOCK``...).
"""

from __future__ import annotations

import time
from typing import Any

import fakeredis._socket._base
import fakeredis.commands_mixins.server_mixin
import pytest

_READERS = (fakeredis._socket._base, fakeredis.commands_mixins.server_mixin)
"""The fakeredis modules that read the wall clock: the command loop (each command's "now", which key
expiry uses) and the ``TIME`` command."""


class RedisClock:
    """Seconds since the epoch as fakeredis sees them; any other ``time`` attribute is the real one."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def redis_clock(monkeypatch: pytest.MonkeyPatch) -> RedisClock:
    clock = RedisClock()
    for module in _READERS:
        monkeypatch.setattr(module, "time", clock)
    return clock
